"""pickup: a local submission that cleanup refuses for good goes back to its sender.

Postfix counterpart: cleanup_bounce.c (cleanup run with CLEANUP_FLAG_BOUNCE, as
pickup asks): a non-delivery notice through the bounce service, not only a log line.

A sendmail user is gone by the time pickup reads the file, so a 5xx from cleanup
(a header/body check's REJECT, message_size_limit, too many hops) cannot be told to
anyone but the sender. What pickup does then:

1. sends cleanup a stand-in of the message: the same sender, recipients and DSN
   fields, without checks, mappings or automatic BCCs (request flags 0), the content
   cut at a line end after bounce_size_limit bytes, and on hold, so that qmgr leaves
   it alone;
2. asks cleanup, on the same connection (cleanup_proto RETURNED), to mark the held
   stand-in's recipients bounced: cleanup appends a ``failed`` entry for each to its
   bounce log (the status and text are cleanup's refusal: ``5.7.1 no thanks``) and
   logs ``ID: to=<rcpt>, relay=none, delay=D, delays=D/0/0/0, dsn=5.7.1,
   status=bounced (text)`` under the refused message's queue ID, as Postfix's cleanup
   does (fastpost.daemons.cleanup.returned; D: since the submission's arrival). Only
   when cleanup could not give the stand-in the refused message's ID (its connection
   was replaced in between) does pickup log ``ID: returned to the sender through
   STAND-IN``, the one line Postfix has no counterpart for;
3. asks the bounce service for the notice (``flush``; its rules apply: no notice to
   the null sender, NOTIFY=NEVER, postmaster copies by notify_classes);
4. removes the stand-in from the queue.

Failures: if cleanup refuses the stand-in too (no recipients at all, say) the file is
removed with a warning, as before; if the queue store or the bounce service cannot be
reached, the stand-in is removed again and the maildrop file stays for the next scan.

Parameters: bounce_size_limit, bounce_service_name, queue_directory and the queue store's (QueueSettings).
"""

from __future__ import annotations


from fastpost.mail.dsn_text import bounce_status
from fastpost.util import log

class _Store:
    store = None
    bounce = None


_opened = _Store()


def _handles(cfg):
    from fastpost.mail.bounce_clnt import BounceClient
    from fastpost.mail.queue import QueueSettings, QueueStore

    if _opened.store is None:
        _opened.store = QueueStore.open(settings=QueueSettings.from_config(cfg, queue_directory="."))
    if _opened.bounce is None:
        _opened.bounce = BounceClient(cfg, queue_directory=".")
    return _opened.store, _opened.bounce


def close() -> None:
    if _opened.bounce is not None:
        _opened.bounce.close()
        _opened.bounce = None
    if _opened.store is not None:
        _opened.store.close()
        _opened.store = None



def cut(content: bytes, limit: int) -> bytes:
    """The content up to limit bytes, ending at a line end (the headers at least)."""
    if limit <= 0 or len(content) <= limit:
        return content
    end = content.rfind(b"\n", 0, limit)
    if end < 0:
        end = content.find(b"\n")
        if end < 0:
            return content[:limit] + b"\n"
    return content[:end + 1]


async def bounce_rejected(client, cfg, meta: dict, msg, received: bytes, code: int,
                          text: str, refused_id: str | None = None) -> bool:
    """Return the refused submission ``msg`` to its sender; True when done (the maildrop
    file may go), False to try again later. ``refused_id``: the queue ID cleanup gave
    the refused message (its log lines carry it; default: the stand-in's)."""
    from fastpost.mail.cleanup_clnt import CleanupError

    status, reason = bounce_status(text)
    stand_in = dict(meta)
    stand_in["f"] = 0
    if refused_id:
        stand_in["reuse_id"] = refused_id  # cleanup gives the stand-in that ID again
    txn = client.open(stand_in)
    try:
        await txn.opened
        for address, orcpt, notify in msg.recipients:
            txn.add_recipient(address, orcpt, notify)
        txn.write(received)
        waiter = txn.write(cut(msg.content, cfg.get_int("bounce_size_limit")))
        if waiter is not None:
            await waiter
        code2, text2, queue_id = await txn.finish({"hold": 1})
    except CleanupError as exc:
        log.warn("rejected message from=<%s>: cannot queue the notice's copy: %s; will retry",
                 msg.sender, exc)
        return False
    if code2 // 100 == 5:
        log.warn("rejected message from=<%s>: no notice possible (%d %s); removed",
                 msg.sender, code2, text2)
        return True
    if code2 != 250:
        log.warn("rejected message from=<%s>: cannot queue the notice's copy: %d %s; "
                 "will retry", msg.sender, code2, text2)
        return False
    store = None
    try:
        # cleanup writes the failed entries and logs the status=bounced lines (as
        # Postfix's cleanup does: fastpost.daemons.cleanup.returned)
        code3, text3, _ = await txn.returned(f"{status} {reason}")
        if code3 != 250:
            raise RuntimeError(f"cleanup: {code3} {text3}")
        if refused_id and refused_id != queue_id:  # cleanup could not reuse the ID
            log.info("%s: returned to the sender through %s", refused_id, queue_id)
        store, bounce = _handles(cfg)
        await bounce.flush(queue_id, ["bounce"])
        done = True
    except Exception as exc:  # noqa: BLE001 - the store or the bounce service: try again
        log.warn("%s: cannot return the rejected message to <%s>: %s; will retry",
                 queue_id, msg.sender, exc)
        close()
        store = None
        done = False
    try:
        if store is None:
            store, _ = _handles(cfg)
        with store.edit() as ed:
            ed.delete(queue_id)
    except Exception as exc:  # noqa: BLE001
        log.warn("%s: cannot remove the notice's copy: %s", queue_id, exc)
    return done


__all__ = ["bounce_rejected", "close", "cut"]
