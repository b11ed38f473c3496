"""Content kernel (selector): message text to SMTP DATA bytes for the smtp/lmtp agent.

Postfix counterpart: src/smtp/smtp_proto.c (smtp_text_out and the content loop).

See fastpost.daemons.smtp._wire_py for the contract: dot-stuffing and
smtp_line_length_limit folding in one pass over a CR LF text.

Parameters: the caller passes smtp_line_length_limit (fold_limit).
Diagnostics: ValueError for a bad fold_limit.
Fast path: ext/fastpost/daemons/smtp/_wire_c.pyx; reference: _wire_py.py
"""

from fastpost._accel import select

_impl = select("fastpost.daemons.smtp._wire_c", "fastpost.daemons.smtp._wire_py")

wire_text = _impl.wire_text

__all__ = ["wire_text"]
