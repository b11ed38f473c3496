"""pickup: sendmail -bv, address verification; a report to the sender, no delivery.

Postfix counterpart: sendmail -bv (a message queued with the verify flag, delivery
agents in verify mode, the trace service's "delivery status report").

sendmail -bv puts a maildrop file with the attribute ``verify=1`` (the set-gid
postdrop keeps that one attribute, it can only cause a report to its own sender).
pickup then:

1. has cleanup queue the message on hold (so canonical and virtual alias mapping,
   and the address rewriting, apply as they would to real mail; qmgr leaves it);
2. for every resulting recipient asks trivial-rewrite where it goes, and decides:

   * an ``error`` transport (or a resolve failure): undeliverable, with its text;
   * the local transport (``local_transport``'s service): the local part without its
     recipient_delimiter extension is looked up in alias_maps (``deliverable``,
     "delivers to alias NAME") and in the password file ("delivers to mailbox");
     neither: ``undeliverable``, 5.1.1 ``unknown user: "NAME"`` (luser_relay, when
     set, makes it deliverable);
   * an ``smtp`` or ``lmtp`` transport (by its master.cf program): the agent is asked
     in verify mode (fastpost.daemons.verify.probe.ask_agent: MAIL and RCPT, no DATA),
     and its answer is the verdict: ``deliverable (250 2.1.5 Ok)``, ``undeliverable
     (host H[A] said: 550 ...)``, or a temporary failure reported as undeliverable
     with its 4.x.x status (the agent logs its own status line);
   * any other transport: deliverable, "delivery via TRANSPORT to NEXTHOP" (the
     remote site is not asked);

3. writes one trace entry per recipient (NOTIFY=SUCCESS, so the trace service reports
   it), logs ``ID: to=<r>, relay=none, dsn=D, status=deliverable|undeliverable (text)``
   and asks the trace service for the report to the sender;
4. removes the held copy.

Parameters: local_transport, alias_maps, ipc_timeout, recipient_delimiter, luser_relay, the
rewrite client's and the bounce client's.
Failures: as reject.py: the maildrop file stays for the next scan when the store,
trivial-rewrite or the trace service cannot be reached.
"""

from __future__ import annotations

import asyncio
import pwd
import time

from fastpost.util import log

_programs: dict[str, str] | None = None
#: transports whose agent writes the status line of a -bv recipient itself
AGENT_PROGRAMS_LOGGED = ("smtp", "lmtp")


def load_programs(cfg) -> None:
    """Read master.cf's transports (pickup's pre_init: before leaving the configuration
    directory's reach)."""
    global _programs
    from fastpost.daemons.verify.probe import transport_programs

    _programs = transport_programs(cfg)


async def _local_verdict(cfg, address: str) -> tuple[str, str, str]:
    from fastpost.mail.maps import MapList, MapRetry

    local = address.rpartition("@")[0] if "@" in address else address
    local = local.lower()
    for delim in cfg.get("recipient_delimiter"):
        if delim in local:
            local = local.split(delim, 1)[0]
            break
    if cfg.get_list("alias_maps"):
        for m in MapList.from_param(cfg, "alias_maps").maps:
            try:
                value = await m.aget(local)
            except MapRetry:
                return "undeliverable", "4.3.0", "alias database unavailable"
            if value is not None:
                return "deliverable", "2.0.0", f"delivers to alias {local}"
    try:
        pwd.getpwnam(local)
        return "deliverable", "2.0.0", "delivers to mailbox"
    except KeyError:
        pass
    if cfg.get("luser_relay"):
        return "deliverable", "2.0.0", f"delivers to luser_relay {cfg.get('luser_relay')}"
    return "undeliverable", "5.1.1", f'unknown user: "{local}"'


async def verdict(cfg, rewriter, sender: str, address: str,
                  queue_id: str = "") -> tuple[str, str, str, str]:
    """(action, status, reason, transport) for one recipient."""
    res = await rewriter.resolve(sender, address)
    if res.failed or res.transport in ("error", "retry"):
        text = res.nexthop or "address resolution failed"
        return "undeliverable", "5.1.2" if res.transport != "retry" else "4.3.0", text, res.transport
    local_transport = cfg.get("local_transport").split(":", 1)[0]
    if res.transport == local_transport:
        action, status, reason = await _local_verdict(cfg, res.recipient)
        return action, status, reason, res.transport
    from fastpost.daemons.verify.probe import AGENT_PROGRAMS, ask_agent
    from fastpost.mail import deliver as D

    if _programs is None:
        load_programs(cfg)
    if _programs.get(res.transport) in AGENT_PROGRAMS and queue_id:
        try:
            r = await ask_agent(".", float(cfg.get_time("ipc_timeout")), queue_id,
                                res.transport, res.nexthop, sender, res.recipient, address,
                                time.time())
        except Exception as exc:  # noqa: BLE001 - the agent cannot be asked
            return ("undeliverable", "4.3.0", f"mail transport unavailable: {exc}",
                    "none")  # (relay=none: logged here, the agent said nothing)
        action = "deliverable" if r.status == D.SENT else "undeliverable"
        return action, r.dsn, r.text, res.transport
    return ("deliverable", "2.0.0", f"delivery via {res.transport} to {res.nexthop} "
            "(not verified with the remote site)", res.transport)


async def verify_message(client, cfg, meta: dict, msg, received: bytes) -> bool:
    """Report on ``msg``'s recipients to its sender; True when done."""
    from fastpost.daemons.pickup import reject
    from fastpost.mail import deliver as D
    from fastpost.mail.bounce_log import LogEntry
    from fastpost.mail.cleanup_clnt import CleanupError
    from fastpost.mail.envelope import read_envelope
    from fastpost.mail.rewrite_clnt import RewriteClient

    txn = client.open(meta)
    try:
        await txn.opened
        for address, orcpt, notify in msg.recipients:
            txn.add_recipient(address, orcpt, notify)
        txn.write(received)
        waiter = txn.write(reject.cut(msg.content, cfg.get_int("bounce_size_limit")))
        if waiter is not None:
            await waiter
        code, text, queue_id = await txn.finish({"hold": 1})
    except CleanupError as exc:
        log.warn("verify request from=<%s>: %s; will retry", msg.sender, exc)
        return False
    if code // 100 == 5:
        log.warn("verify request from=<%s>: refused by cleanup: %d %s; removed",
                 msg.sender, code, text)
        return True
    if code != 250:
        log.warn("verify request from=<%s>: %d %s; will retry", msg.sender, code, text)
        return False
    log.info("%s: verify request from=<%s>", queue_id, msg.sender)
    store = None
    rewriter = RewriteClient(cfg, queue_directory=".")
    try:
        store, bounce = reject._handles(cfg)
        info = store.get(queue_id)
        waited = 0.0
        while info is None:
            if waited > 30:
                raise TimeoutError("not in the queue index after 30s")
            await asyncio.sleep(0.01)
            waited += 0.01
            info = store.get(queue_id)
        env = read_envelope(store.read(queue_id, info))
        entries = []
        for r in env.recipients:
            action, status, reason, transport = await verdict(cfg, rewriter, env.sender,
                                                              r.address, queue_id)
            entries.append(LogEntry(r.address, r.offset, status, action, reason,
                                    r.orig if r.orig != r.address else "", r.orcpt,
                                    D.NOTIFY_SUCCESS, "none"))
            if (_programs or {}).get(transport) not in AGENT_PROGRAMS_LOGGED:  # agent logged it
                log.info("%s: to=<%s>, relay=%s, delay=0, dsn=%s, status=%s (%s)", queue_id,
                         r.address, transport or "none", status, action, reason)
        with store.edit() as ed:
            for e in entries:
                ed.append_log(queue_id, "trace", e.encode())
        await bounce.trace(queue_id)
        done = True
    except Exception as exc:  # noqa: BLE001 - store, rewrite or trace service: retry
        log.warn("%s: cannot verify for <%s>: %s; will retry", queue_id, msg.sender, exc)
        reject.close()
        store = None
        done = False
    finally:
        rewriter.close()
    try:
        if store is None:
            store, _ = reject._handles(cfg)
        with store.edit() as ed:
            ed.delete(queue_id)
    except Exception as exc:  # noqa: BLE001
        log.warn("%s: cannot remove the verify request: %s", queue_id, exc)
    return done


__all__ = ["verdict", "verify_message"]
