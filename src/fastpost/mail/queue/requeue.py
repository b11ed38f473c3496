"""Requeue: a queued message back through maildrop, pickup and cleanup (postsuper -r).

Postfix counterpart: src/postsuper/postsuper.c (requeue: rename into maildrop), and
what qmgr and pickup then do with the moved file.

``requeue(store, queue_id, maildrop_dir, owner)`` writes the message (its recipients
not yet delivered, its arrival time and DSN data, its content) to maildrop as a
fastpost.mail.maildrop file marked ``requeue=ID`` (pickup trusts that mark only in a
file owned by the queue's owner) and then removes it from the queue, in that order: a
crash in between leaves both copies, never none.

A message in the **active** queue is not requeued at once: qmgr is delivering it, and
a copy taken now would be delivered again to the recipients whose delivery is under
way. Postfix 3.7 renames the file into maildrop at once (checked here: postsuper -r
during a pipe delivery; when pickup gets to the file before the delivery ends, that
recipient is delivered twice, and deliveries qmgr starts afterwards fail with "open
active ID: No such file or directory"). fastpost instead marks the message
(``request(store, id)``: FLAG_REQUEUE, set only while it is active, in the same
transaction that checks the state), and qmgr carries the request out when the message
leaves the active queue — after every delivery under way was recorded — so recipients
already delivered stay delivered and only the others are requeued. A message that
leaves active fully delivered needs no requeue; a marked message found later outside
active (qmgr stopped or crashed meanwhile) is requeued by qmgr instead of activated.

A message in any other queue is **claimed** before it is copied: one transaction that
checks its state moves it to hold and marks it (FLAG_REQUEUE), so qmgr cannot activate
it while the copy is written (it never activates a held message). The copy is then
written to maildrop and the message removed; if writing fails, the claim is undone
(state, retry time and flags as they were). A crash between the claim and the removal
leaves the message held and marked (visible in mailq; `super -H` releases it, and
qmgr then requeues it instead of activating it) and possibly a copy in maildrop too:
both, never none.

Parameters: none of its own (the callers pass the maildrop directory and owner).
Diagnostics: QueueError/CorruptMessage/CorruptQueueFile when the message cannot be
read (it then stays queued); OSError when maildrop cannot be written (likewise).
"""

from __future__ import annotations

from fastpost.mail import maildrop
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.message import content_text


def request(store, queue_id: str) -> str | None:
    """Mark an active message for requeue when qmgr is done with it.

    Return its state name when it is not active (the caller requeues it now, or skips
    it), "active" when it was marked (or already was), None when there is no such
    message. One index transaction: the state is checked where it is changed."""
    with store.edit() as ed:
        info = ed.get(queue_id, recipients=False)
        if info is None:
            return None
        if info.state == ix.ACTIVE and not info.flags & ix.FLAG_REQUEUE:
            ed.set_flags(queue_id, add=ix.FLAG_REQUEUE)
        return info.state_name


def requeue(store, queue_id: str, directory: str, owner: tuple[int, int] | None = None,
            states=None) -> bool:
    """Write a message to maildrop, then remove it from the queue; False when it is
    gone, not in ``states`` (codes; default: any but active) or has no recipient left
    to deliver (it is then left as it was). Raises what reading or writing raised (the
    message then stays where it was).

    The message is claimed first (moved to hold and marked in the transaction that
    checks its state), so that qmgr cannot activate it between the read and the
    removal; see the module's docstring."""
    allowed = states if states is not None else {ix.INCOMING, ix.DEFERRED, ix.HOLD, ix.CORRUPT}
    allowed = set(allowed) - {ix.ACTIVE}
    with store.edit() as ed:
        info = ed.get(queue_id, recipients=False)
        if info is None or info.state not in allowed:
            return False
        before = (info.state, info.next_retry, info.flags)
        ed.set_state(queue_id, ix.HOLD)
        ed.set_flags(queue_id, add=ix.FLAG_REQUEUE)
    try:
        msg = _drop_message(store, queue_id, info)
        name = maildrop.drop(directory, maildrop.encode(msg), owner) if msg is not None else None
    except BaseException:
        _unclaim(store, queue_id, before)
        raise
    if name is None:  # nothing left to deliver: left to qmgr as it was
        _unclaim(store, queue_id, before)
        return False
    with store.edit() as ed:
        ed.delete(queue_id)  # gone already (super -d meanwhile): nothing to do
    return True


def _drop_message(store, queue_id: str, info) -> maildrop.DropMessage | None:
    """The maildrop copy of a claimed message: its recipients not yet delivered, its
    arrival time, DSN data and content; None when no recipient is left."""
    data = store.read(queue_id, info)
    parsed = store.parsed(queue_id)
    content = content_text(data, parsed)
    live = {r.offset for r in store.iter_recipients(queue_id, live_only=True)}
    rcpts = [(r.address, r.dsn_orcpt or "", r.dsn_notify) for r in parsed.recipients
             if r.offset in live and not r.done]
    if not rcpts:
        return None
    return maildrop.DropMessage(sender=parsed.sender or "", recipients=rcpts, content=content,
                                arrival=parsed.arrival, ret=parsed.attrs.get("ret_flags") or None,
                                envid=parsed.attrs.get("envelope_id") or None,
                                attrs=[("requeue", queue_id)])


def _unclaim(store, queue_id: str, before: tuple[int, float, int]) -> None:
    """Undo a claim: the state, retry time and flags the message had (if it is still
    held: super -H or -d meanwhile wins)."""
    state, next_retry, flags = before
    with store.edit() as ed:
        cur = ed.get(queue_id, recipients=False)
        if cur is None or cur.state != ix.HOLD:
            return
        ed.set_state(queue_id, state, next_retry=next_retry if state == ix.DEFERRED else None)
        ed.set_flags(queue_id, add=flags, remove=cur.flags & ~flags)


__all__ = ["request", "requeue"]
