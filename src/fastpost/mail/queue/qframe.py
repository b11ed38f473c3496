"""message_frame: a small message's segment frame in one buffer (selector).

Postfix counterpart: none (fastpost's segment frames, fastpost.mail.queue.segment).
Fast path: ext/fastpost/mail/queue/_qframe_c.pyx (header written in place, the CRC
taken while the chunks are copied); reference: _qframe_py.py. The committer builds
every small message's frame with it (commitrec.commit_record, from Committer.commit_cb),
and short_id_at gives Committer.new_queue_id its short IDs.

Parameters and diagnostics: see _qframe_py.
"""

from fastpost._accel import select

_impl = select("fastpost.mail.queue._qframe_c", "fastpost.mail.queue._qframe_py")
message_frame = _impl.message_frame
size_record = _impl.size_record
short_id_at = _impl.short_id_at

__all__ = ["message_frame", "short_id_at", "size_record"]
