"""pickup: take local submissions from the maildrop directory and give them to cleanup.

Postfix counterpart: src/pickup/pickup.c (pickup(8)).

master.cf:

    pickup    unix  n  -  n  60  1  pickup

A trigger server (one process): at every wake-up (sendmail's trigger, the master's
timer every ``wakeup`` seconds, a requeue by ``fastpost super -r``) it scans
$queue_directory/maildrop and, for each complete file (fastpost.mail.maildrop; dot
names are files being written), checks it (a regular file with one link, a complete
record stream), logs ``ID: uid=N from=<sender>`` (N: the file's owner), prepends
``Received: by $myhostname ($mail_name, from userid N) id ID; date`` and hands it to
cleanup as a local message (rewrite_context local; sendmail -t asks cleanup to take
recipients from the headers; a requeued message keeps its original arrival time and
gets no second Received: header). Up to ``PARALLEL`` files go to cleanup at once, so
they share its group commit. A file is removed only after cleanup's durable answer.

Failures: a file that is not a maildrop stream is moved to $queue_directory/corrupt
with a warning (as Postfix does, nothing is lost); cleanup's permanent refusal (5xx:
too big, a check's REJECT) is logged and returned to the sender as a non-delivery
notice through the bounce service (reject.py), then the file is removed (with
soft_bounce = yes it stays in maildrop, as in Postfix, and is tried again at each
scan); a temporary failure (cleanup unreachable, full disk) leaves the file for the
next scan.

Parameters: queue_directory, myhostname, mail_name, cleanup_service_name,
receive_override_options, ipc_timeout, ipc_idle, ipc_ttl, soft_bounce, and the trigger
skeleton's.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat

from fastpost.util import log

#: Files handed to cleanup at once.
PARALLEL = 64
#: Largest maildrop file read (anything larger goes to cleanup's size check in pieces).
READ_LIMIT = 1 << 30

PARAMS = ("cleanup_service_name", "receive_override_options", "ipc_timeout", "ipc_idle",
          "ipc_ttl", "mail_name", "myhostname", "bounce_service_name", "bounce_size_limit",
          "soft_bounce")


class _State:
    client = None
    cfg = None
    flags = 0
    hostname = ""
    mail_name = ""
    busy = False
    again = False
    soft_bounce = False


state = _State()


def _pre_init(ctx) -> None:
    from fastpost.daemons.pickup import reject, verify  # noqa: F401 - import before chroot
    from fastpost.mail import bounce_clnt, bounce_log, cleanup_clnt, deliver, envelope, maildrop  # noqa: F401
    from fastpost.mail import queue  # noqa: F401

    verify.load_programs(ctx.cfg)  # sendmail -bv asks smtp/lmtp agents (master.cf)


def _post_init(ctx) -> None:
    from fastpost.mail import cleanup_proto as P
    from fastpost.mail import ipc
    from fastpost.mail.cleanup_clnt import CleanupClient

    cfg = ctx.cfg
    path = ipc.endpoint(".", cfg.get("cleanup_service_name"), ipc.PUBLIC)
    state.client = CleanupClient(path, timeout=float(cfg.get_time("ipc_timeout")),
                                 idle=float(cfg.get_time("ipc_idle")),
                                 ttl=float(cfg.get_time("ipc_ttl")))
    state.flags = P.external_flags(cfg)
    state.cfg = cfg
    state.hostname = cfg.get("myhostname")
    state.mail_name = cfg.get("mail_name")
    state.soft_bounce = cfg.get_bool("soft_bounce")


async def service(data: bytes, ctx) -> None:
    """One wake-up: take every complete file in maildrop."""
    if state.busy:
        state.again = True
        return
    state.busy = True
    try:
        while True:
            state.again = False
            await scan("maildrop")
            if not state.again:
                break
    finally:
        state.busy = False


async def scan(directory: str) -> int:
    """Hand every complete file in directory to cleanup; return how many were taken."""
    try:
        names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except OSError as exc:
        log.warn("scan %s: %s", directory, exc.strerror)
        return 0
    taken = 0
    for start in range(0, len(names), PARALLEL):
        batch = names[start:start + PARALLEL]
        results = await asyncio.gather(*(take(directory, n) for n in batch))
        taken += sum(results)
    return taken


def _corrupt(directory: str, name: str, why: str) -> None:
    try:
        os.rename(os.path.join(directory, name), os.path.join("corrupt", name))
    except OSError as exc:
        log.warn("%s/%s: %s: cannot move to corrupt: %s", directory, name, why, exc.strerror)
        return
    log.warn("%s/%s: %s: moved to corrupt", directory, name, why)


async def take(directory: str, name: str) -> bool:
    """Give one maildrop file to cleanup; True when it was taken (and removed)."""
    from fastpost.daemons.smtpd.received import rfc2822_date
    from fastpost.mail import cleanup_proto as P
    from fastpost.mail import maildrop
    from fastpost.mail.cleanup_clnt import CleanupError, CleanupRefused

    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # taken by another pickup, or removed
    except OSError as exc:
        log.warn("open %s: %s", path, exc.strerror)
        if exc.errno == errno.ELOOP:
            _corrupt(directory, name, "symbolic link")
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            fd = -1
            _corrupt(directory, name, "not a regular file with one link")
            return False
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            data = fh.read(READ_LIMIT)
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        msg = maildrop.parse(data)
    except maildrop.MaildropError as exc:
        _corrupt(directory, name, str(exc))
        return False
    uid = st.st_uid
    attrs = [["rewrite_context", "local"], ["log_message_origin", "local"]]
    requeued = verify = False
    for key, value in msg.attrs:
        if key == "requeue":
            requeued = True  # fastpost super -r: trusted only from the queue's owner
        elif key == "verify":
            verify = True  # sendmail -bv: a report to the sender, no delivery
    if requeued and uid != os.geteuid():
        requeued = False
    flags = state.flags | P.FLAG_BOUNCE  # what cleanup refuses, this returns (or keeps)
    if msg.flags & P.FLAG_EXTRACT:
        flags |= P.FLAG_EXTRACT
    meta = {"f": flags, "time": int(msg.arrival * 1e6), "s": msg.sender, "a": attrs,
            "ctx": "local", "uid": uid}
    if msg.fullname is not None:
        meta["fullname"] = msg.fullname
    if msg.ret:
        meta["ret"] = msg.ret
    if msg.envid:
        meta["envid"] = msg.envid
    if verify:
        from fastpost.daemons.pickup.verify import verify_message

        attrs.append(["verify", "1"])  # the trace service then uses the verify template
        received = (f"Received: by {state.hostname} ({state.mail_name}, from userid {uid})\n"
                    f"\tid verify; {rfc2822_date()}\n").encode()
        if not await verify_message(state.client, state.cfg, meta, msg, received):
            return False
        try:
            os.unlink(path)
        except OSError as exc:
            log.warn("remove %s: %s", path, exc.strerror)
        return True
    txn = state.client.open(meta)
    try:
        queue_id = await txn.opened
    except CleanupRefused as exc:
        log.warn("%s: cleanup refused it: %d %s; will retry", name, exc.code, exc.text)
        return False
    except CleanupError as exc:
        log.warn("%s: %s; will retry", name, exc)
        return False
    log.info("%s: uid=%d from=<%s>", queue_id, uid, msg.sender)
    for address, orcpt, notify in msg.recipients:
        txn.add_recipient(address, orcpt, notify)
    received = b""
    if not requeued:
        received = (f"Received: by {state.hostname} ({state.mail_name}, from userid {uid})\n"
                    f"\tid {queue_id}; {rfc2822_date()}\n").encode()
        txn.write(received)
    content = msg.content
    view = memoryview(content)
    step = 1 << 20
    for i in range(0, len(content), step):
        waiter = txn.write(bytes(view[i:i + step]))
        if waiter is not None:
            await waiter
    try:
        code, text, _ = await txn.finish()
    except CleanupError as exc:
        log.warn("%s: %s; will retry", name, exc)
        return False
    if code // 100 == 4:
        log.warn("%s: cleanup: %d %s; will retry", queue_id, code, text)
        return False
    if code // 100 == 5 and state.soft_bounce:
        # as Postfix 3.7 under soft_bounce: cleanup has logged its "reject: ..." line,
        # nothing is returned and the file stays for the next scan
        return False
    if code // 100 == 5:
        from fastpost.daemons.pickup.reject import bounce_rejected

        # cleanup has logged its "reject: ..." line; the rest is logged under queue_id
        # as Postfix's cleanup logs a bounced local submission (reject.py)
        if not await bounce_rejected(state.client, state.cfg, meta, msg, received, code, text,
                                     queue_id):
            return False
    try:
        os.unlink(path)
    except OSError as exc:
        log.warn("remove %s: %s", path, exc.strerror)
    return True


async def _on_exit(ctx) -> None:
    if state.client is not None:
        state.client.close()
    from fastpost.daemons.pickup import reject

    reject.close()


def main(argv: list[str]) -> None:
    """Run pickup on the trigger skeleton (the master calls this in a forked worker)."""
    from fastpost.server import trigger_server_main

    trigger_server_main(argv, service, name="pickup", params=PARAMS, pre_init=_pre_init,
                        post_init=_post_init, on_exit=_on_exit)
