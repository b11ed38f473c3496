"""fastpost queue: list the queue, as postqueue(1) does; and the mailq command.

Postfix counterpart: src/postqueue/postqueue.c, showq_compat.c, showq_json.c; the
``mailq`` and ``sendmail -bp`` entry points of src/sendmail/sendmail.c.

    fastpost queue [-c config_dir] -p       mailq listing (fastpost.mail.queue.showq)
    fastpost queue [-c config_dir] -j       one JSON object per message
    fastpost queue [-c config_dir] -f       deliver all queued mail now (trigger qmgr AFDI)
    fastpost queue [-c config_dir] -i id    deliver that deferred message now
    fastpost queue [-c config_dir] -s site  deliver the deferred mail for a site now
    mailq [-c config_dir] [-v]              the same as -p

``-f`` asks qmgr to retry every deferred message ignoring retry times and
defer_transports, and to forget dead destinations (Postfix's postqueue -f), then asks
the fast-flush service to refresh its logs. ``-i`` and ``-s`` go through the fast-flush
service (fastpost.daemons.flush, ``public/flush``), as Postfix's do: ``-s`` for a site
that fast_flush_domains lists (its per-destination log), ``-i`` for one deferred
message. Like showq, reaching public/ needs membership of setgid_group when not root.
Failures, as postqueue words them, exit 69: ``Flush service is not configured for
destination "site"``, ``Invalid request: "site"``, ``Cannot flush mail queue - mail
system is down``.

Who can read the queue index (root, mail_owner) lists it directly, the way postqueue
works as the super-user while the mail system is down. Everyone else asks the showq
service (fastpost.daemons.showq, ``public/showq``) and prints what it sends with the
same code, batch by batch; reaching public/ needs membership of setgid_group (Postfix's
postqueue is set-gid to it). When showq cannot be reached: ``postqueue: fatal: Queue
report unavailable - mail system is down: ...``, exit 69 (EX_UNAVAILABLE), as Postfix.

Parameters: queue_directory, enable_long_queue_ids, showq_service_name,
flush_service_name, queue_service_name, trigger_timeout, ipc_timeout,
setgid_group (named in the hint when public/ is out of reach), authorized_mailq_users
(-p, -j, mailq), authorized_flush_users (-f, -s, -i): a user they refuse gets
``postqueue: fatal: User NAME(UID) is not allowed to view|flush the mail queue``, exit
69, as Postfix (root and mail_owner are always allowed).
Diagnostics: ``postqueue: fatal: ...`` on standard error with exit 1 (bad option,
configuration error, unusable queue) or 69 (showq or the flush service unavailable,
qmgr not running: ``Cannot flush mail queue - mail system is down`` after a warning
with the reason); ``postqueue: warning: ID: no such deferred message``.
"""

from __future__ import annotations

import getopt
import os
import sys

from fastpost.cli.queuetool import Tool, ToolFatal

USAGE = "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site"
EX_UNAVAILABLE = 69


def _can_read_queue(qdir: str) -> bool:
    index_dir = os.path.join(qdir, "index")
    return not ((os.path.exists(qdir) and not os.access(qdir, os.R_OK | os.X_OK)) or
                (os.path.exists(index_dir) and not os.access(index_dir, os.R_OK | os.X_OK)))


def _list(tool: Tool, config_dir: str | None, mode: str) -> int:
    from fastpost.mail.queue.showq import ListingError, from_parts, render_json, render_mailq, write_json, write_mailq

    cfg = tool.config(config_dir)
    qdir = cfg.get("queue_directory")
    long_ids = cfg.get_bool("enable_long_queue_ids")
    try:
        if not _can_read_queue(qdir):
            listed = from_parts(_showq_parts(tool, cfg))
            if mode == "j":
                render_json(listed, sys.stdout)
            else:
                render_mailq(listed, sys.stdout, long_ids)
            sys.stdout.flush()
            return 0
        store = tool.open_store(cfg)
        try:
            if mode == "j":
                write_json(store, sys.stdout)
            else:
                write_mailq(store, sys.stdout, long_ids)
            sys.stdout.flush()
        finally:
            store.close()
    except BrokenPipeError:
        pass
    except _Unavailable as exc:
        print(f"{tool.prog}: fatal: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except ListingError as exc:  # a malformed listing from the showq service
        sys.stdout.flush()
        print(f"{tool.prog}: fatal: Queue report unavailable - {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    return 0


class _Unavailable(Exception):
    """The showq service cannot be used (exit 69, as postqueue's "mail system is down")."""


def _showq_parts(tool: Tool, cfg):
    """Yield the listing's attribute lists (showq.Entry.to_parts) from the showq
    service, reply by reply."""
    from fastpost.daemons.showq import MAX_BATCH, PROTOCOL
    from fastpost.mail import ipc

    qdir = cfg.get("queue_directory")
    path = ipc.endpoint(qdir, cfg.get("showq_service_name"), ipc.PUBLIC)
    client = ipc.AttrClient(path, PROTOCOL, timeout=cfg.get_time("ipc_timeout"))
    try:
        try:
            client.connect()
        except ipc.IPCError as exc:
            hint = ""
            if "Permission denied" in str(exc):
                hint = (f" (the account must be in the group {cfg.get('setgid_group')} "
                        "to reach the showq service)")
            raise _Unavailable(f"Queue report unavailable - mail system is down: {exc}{hint}") from None
        while True:
            try:
                reply = client.request({"request": "list", "count": MAX_BATCH}, retry=False)
            except ipc.IPCError as exc:
                raise _Unavailable(f"Queue report unavailable - {exc}") from None
            if reply.get("status") != 0 or not isinstance(reply.get("messages"), list):
                raise _Unavailable(f"Queue report unavailable - showq refused: {reply.get('error')}")
            for attrs in reply["messages"]:
                if not isinstance(attrs, dict):
                    raise _Unavailable("Queue report unavailable - malformed queue listing entry")
                yield attrs
            if not reply.get("more"):
                return
    finally:
        client.close()


def _flush(tool: Tool, config_dir: str | None, mode: str, arg: str) -> int:
    from fastpost.mail import ipc
    from fastpost.mail import flush_clnt as fc

    cfg = tool.config(config_dir)
    qdir = cfg.get("queue_directory")
    if mode == "f":
        try:
            ipc.mail_trigger(qdir, cfg.get("queue_service_name"), ipc.QMGR_FLUSH,
                             timeout=cfg.get_time("trigger_timeout"))
        except ipc.IPCError as exc:
            tool.warn(str(exc))
            print(f"{tool.prog}: fatal: Cannot flush mail queue - mail system is down", file=sys.stderr)
            return EX_UNAVAILABLE
        refresh_flush_logs(cfg)
        return 0
    with fc.FlushClient(cfg) as flush:
        if mode == "i":
            status, reply = flush.send_file(arg)
        elif not _eligible(cfg, arg):  # asked here first, as postqueue does
            status, reply = fc.FLUSH_STAT_DENY, {}
        else:
            status, reply = flush.send_site(arg)
    if status == fc.FLUSH_STAT_OK:
        if mode == "i" and not reply.get("moved"):
            tool.warn(f"{arg}: no such deferred message")
        return 0
    if status == fc.FLUSH_STAT_DENY:
        text = f'Flush service is not configured for destination "{arg}"'
    elif status == fc.FLUSH_STAT_BAD:
        text = f'Invalid request: "{arg}"'
    else:
        if flush.error:
            tool.warn(flush.error)
        text = "Cannot flush mail queue - mail system is down"
    print(f"{tool.prog}: fatal: {text}", file=sys.stderr)
    return EX_UNAVAILABLE


def _eligible(cfg, site: str) -> bool:
    """Whether fast_flush_domains lists the site (a failing table: let the service say)."""
    from fastpost.mail.domain_list import DomainList
    from fastpost.mail.maps import MapRetry

    domains = DomainList.from_param(cfg, "fast_flush_domains")
    try:
        return bool(domains) and domains.match(site.lower().rstrip("."))
    except MapRetry:
        return True


def refresh_flush_logs(cfg) -> None:
    """Ask the fast-flush service to refresh its logs (fast_flush_refresh_time,
    fast_flush_purge_time); quietly nothing when master.cf has no flush service."""
    from fastpost.mail import flush_clnt as fc

    with fc.FlushClient(cfg) as flush:
        flush.refresh()


def _helper(config_dir: str | None, args: list[str]) -> None:
    """An unprivileged user who cannot reach public/: run the set-gid helper of the
    instance (fastpost.cli.setgid) with ``args`` instead; it never returns then."""
    from fastpost.cli import setgid

    if os.geteuid() == 0 or setgid.IN_HELPER:
        return
    from fastpost.mail.config import Config, ConfigError, config_directory

    try:
        cfg = Config(config_directory(config_dir))
    except ConfigError:
        return  # the normal path reports it
    if os.access(os.path.join(cfg.get("queue_directory"), "public"), os.X_OK):
        return
    helper = setgid.helper_path(cfg, "postqueue")
    if helper is not None:
        sys.stdout.flush()
        os.execv(helper, [helper, *args])


def _refused(config_dir: str | None, what: str) -> int | None:
    """authorized_mailq_users / authorized_flush_users (fastpost.cli.authorized): None
    when the real user may, else the exit status after Postfix's message, which
    postqueue prints also when run as mailq or sendmail -bp/-q."""
    from fastpost.cli import authorized
    from fastpost.mail.config import Config, ConfigError

    try:
        cfg = Config(config_dir)
    except ConfigError:
        return None  # the command's own path reports it
    refusal = authorized.check(cfg, what)
    if refusal is None:
        return None
    print(f"postqueue: fatal: {refusal[1]}", file=sys.stderr, flush=True)
    authorized.log_refusal(cfg, "postqueue", refusal[1])  # as Postfix's postqueue
    return refusal[0] or EX_UNAVAILABLE


def main(argv: list[str], prog: str = "postqueue") -> int:
    tool = Tool(prog)
    try:
        pairs, args = getopt.getopt(argv, "c:fi:jps:v")
    except getopt.GetoptError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return tool.fatal(USAGE)
    config_dir = None
    mode = None
    arg = ""
    for opt, val in pairs:
        if opt == "-c":
            config_dir = val
        elif opt in ("-f", "-j", "-p"):
            mode = opt[1]
        elif opt in ("-i", "-s"):
            mode = opt[1]
            arg = val
    if args or mode is None:
        return tool.fatal(USAGE)
    from fastpost.mail.mainvalues import refused as bad_values

    if bad_values(config_dir, prog):  # as Postfix's postqueue: exit 69
        return EX_UNAVAILABLE
    _helper(config_dir, [o + v for o, v in pairs if o != "-c"])
    refused = _refused(config_dir, "mailq" if mode in ("p", "j") else "flush")
    if refused is not None:
        return refused
    try:
        if mode in ("p", "j"):
            return _list(tool, config_dir, mode)
        return _flush(tool, config_dir, mode, arg)
    except ToolFatal as exc:
        return tool.fatal(str(exc))


def mailq(argv: list[str]) -> int:
    """The mailq command (sendmail -bp): the queue listing."""
    config_dir = None
    try:
        pairs, args = getopt.getopt(argv, "c:C:v")
    except getopt.GetoptError as exc:
        print(f"mailq: fatal: {exc}", file=sys.stderr)
        return 64
    for opt, val in pairs:
        if opt in ("-c", "-C"):
            config_dir = val
    tool = Tool("mailq")
    from fastpost.mail.mainvalues import refused as bad_values

    if bad_values(config_dir, "mailq"):  # Postfix's mailq is its sendmail: exit 75
        return 75
    _helper(config_dir, ["-p"])
    refused = _refused(config_dir, "mailq")
    if refused is not None:
        return refused
    try:
        return _list(tool, config_dir, "p")
    except ToolFatal as exc:
        return tool.fatal(str(exc))
