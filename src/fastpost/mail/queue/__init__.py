"""The fastpost queue: a log-structured store of Postfix-format queue files.

Postfix counterpart: the queue directory ($queue_directory/{incoming,active,deferred,
hold,corrupt}, the bounce/defer/trace logs) and the code that writes and moves its files.

Modules, one concept each:
    queue_id   queue IDs in Postfix's short and long forms
    message    a message as a Postfix queue file: QueueFileBuilder, parse()
    segment    the append-only segment files and their frames
    index      the LMDB index (states, locations, recipients, logs)
    builder    MessageBuilder: what cleanup fills in, spilling large messages
    committer  group commit: one writev + one fdatasync per batch
    store      QueueStore: open + recovery, reading, editing, compaction
    space      the queue_minfree check; InsufficientStorage
    importer   Postfix queue directories into the store
    showq      mailq (postqueue -p) and JSON (postqueue -j) output

The API other subsystems use:
    store = QueueStore.open(queue_dir, cfg)        # recovers what crashed
    committer = store.committer(name, on_indexed=callback)
    builder = committer.builder()                  # has builder.queue_id already
    queue_id = await committer.commit(builder)     # after the batch's fdatasync
    store.messages(states) / store.due(state, until) / store.get(id) / store.read(id)
    with store.edit() as ed: ed.set_state(...), ed.mark_recipients(...), ed.delete(...)

See docs/queue.md for the design and its invariants.
"""

from fastpost.mail.queue.index import (
    ACTIVE, CORRUPT, DEFERRED, HOLD, INCOMING, RCPT_DEFERRED, RCPT_DONE, RCPT_PENDING, MessageInfo,
    RcptInfo,
)
from fastpost.mail.queue.segment import InsufficientStorage
from fastpost.mail.queue.space import enough_space
from fastpost.mail.queue.store import CorruptMessage, QueueError, QueueSettings, QueueStore

__all__ = [
    "ACTIVE", "CORRUPT", "DEFERRED", "HOLD", "INCOMING", "RCPT_DEFERRED", "RCPT_DONE", "RCPT_PENDING",
    "CorruptMessage", "InsufficientStorage", "MessageInfo", "QueueError", "QueueSettings", "QueueStore",
    "RcptInfo", "enough_space",
]
