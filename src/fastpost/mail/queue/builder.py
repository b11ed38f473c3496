"""MessageBuilder: what cleanup fills in, record by record and chunk by chunk.

Postfix counterpart: the queue file cleanup writes while it receives a message
(src/cleanup/cleanup_envelope.c ... cleanup_final.c, src/global/mail_stream.c).

A builder is made by a committer, and it gets its queue ID at once, as a Postfix queue
file does when cleanup opens it (so smtpd can log ``ID: client=...`` before DATA).
The producer then adds the envelope, streams the content, adds extracted records, and
hands the builder to ``await committer.commit(builder)``.

Memory: a message is held once, as encoded records. When it grows past
fastpost_queue_large_message_size it is spilled to a segment file of its own
(``<id>.tmp``, locked), and from then on every content chunk goes straight to that file
(in the committer's I/O thread, so the event loop never blocks on disk); commit then
completes and syncs that file. abort() throws the message away (and its file).

Parameters: line_length_limit (content line pieces), fastpost_queue_large_message_size.
Diagnostics: ValueError for records added out of order (a bug in the caller);
InsufficientStorage from write() when spilling finds the disk full (the message is then
dead: abort it and answer 452); RuntimeError when used after commit or abort.
"""

from fastpost._accel import select
from fastpost.mail.queue.largefile import LargeFile

# The classes are one source run as Python and compiled (fastpost.mail.queue._builder_py
# says why): production runs fastpost.mail.queue._builder_c.
_impl = select("fastpost.mail.queue._builder_c", "fastpost.mail.queue._builder_py")
MessageBuilder = _impl.MessageBuilder
QueueFileBuilder = _impl.QueueFileBuilder

__all__ = ["LargeFile", "MessageBuilder", "QueueFileBuilder"]
