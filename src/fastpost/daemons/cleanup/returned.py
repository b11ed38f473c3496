"""cleanup: a refused local submission's stand-in is marked bounced, by cleanup.

Postfix counterpart: src/cleanup/cleanup_bounce.c (cleanup_bounce: for a message
submitted with CLEANUP_FLAG_BOUNCE that cleanup refuses, it appends a ``failed``
entry per recipient to the bounce log, logs ``ID: to=<r>, [orig_to=<o>, ]relay=none,
delay=D, delays=D/0/0/0, dsn=X.Y.Z, status=bounced (TEXT)`` and asks bounce(8) for
the notice). Under soft_bounce Postfix's cleanup does none of it and the file stays in
maildrop; fastpost's pickup does the same (it never asks for the stand-in).

In fastpost a refused message leaves nothing behind (its builder is aborted), so
pickup (fastpost.daemons.pickup.reject) sends cleanup a held stand-in of it on the
same connection (OPEN with ``reuse_id``: it takes the refused message's queue ID
again), then a RETURNED request naming the stand-in and cleanup's refusal
(``5.7.1 no thanks``). This module answers that request: cleanup, not pickup,
writes the ``failed`` entries and logs the ``status=bounced`` lines, so that
their program name is cleanup's, as in Postfix. pickup then asks the bounce service
for the notice and removes the stand-in.

Only a message this connection opened as a stand-in (CleanupServerProtocol.stand_in)
and that is on hold may be marked so: a client cannot make cleanup bounce any other
message. The lines carry the refused message's ID when the stand-in was given it
(always, unless the connection was replaced in between: then the stand-in's own ID,
and pickup logs the link).

Parameters: delay_logging_resolution_limit (from the cleanup settings' Config).
How it fails: ``(451, "4.3.0 ...")`` when the stand-in is not (yet) in the index after
30 s or the index cannot be written (pickup keeps the maildrop file and tries again);
``(550, "5.5.1 ...")`` for a message that is not this connection's held stand-in.
"""

from __future__ import annotations

import asyncio
import time

from fastpost.mail.dsn_text import bounce_status
from fastpost.util import log

__all__ = ["mark_bounced"]

#: How long the stand-in may take to appear in the queue index (the committer answers
#: once the data is durable; its index thread follows).
INDEX_WAIT = 30.0



async def mark_bounced(store, queue_id: str, log_id: str, text: str, delay_limit: int,
                       wait: float = INDEX_WAIT) -> tuple[int, str]:
    """Record every recipient of the held stand-in ``queue_id`` as bounced with cleanup's
    refusal ``text`` and log Postfix's ``status=bounced`` line for each, under
    ``log_id``. Returns the reply (code, text) for the client."""
    from fastpost.mail.bounce_log import LogEntry
    from fastpost.mail.deliver import format_delay
    from fastpost.mail.envelope import read_envelope
    from fastpost.mail.queue import HOLD

    status, reason = bounce_status(text)
    try:
        info = store.get(queue_id)
        waited = 0.0
        while info is None:
            if waited >= wait:
                return 451, f"4.3.0 Error: {queue_id} is not in the queue index"
            await asyncio.sleep(0.01)
            waited += 0.01
            info = store.get(queue_id)
        if info.state != HOLD:
            return 550, f"5.5.1 Error: {queue_id} is not on hold"
        env = read_envelope(store.read(queue_id, info))
        with store.edit() as ed:
            for r in env.recipients:
                entry = LogEntry(r.address, r.offset, status, "failed", reason,
                                 r.orig if r.orig != r.address else "", r.orcpt, r.notify,
                                 "none")
                ed.append_log(queue_id, "bounce", entry.encode())
    except Exception as exc:  # noqa: BLE001 - the store: pickup tries again later
        log.warn("%s: cannot record the returned message's recipients: %s", queue_id, exc)
        return 451, "4.3.0 Error: queue file write error"
    delay = format_delay(max(0.0, time.time() - env.arrival), delay_limit)
    for r in env.recipients:  # orig_to when the recipient was rewritten ("bare")
        orig = f", orig_to=<{r.orig}>" if r.orig and r.orig != r.address else ""
        log.info("%s: to=<%s>%s, relay=none, delay=%s, delays=%s/0/0/0, dsn=%s, "
                 "status=bounced (%s)", log_id, r.address, orig, delay, delay, status, reason)
    return 250, "2.0.0 Ok"
