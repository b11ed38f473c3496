"""Message-content kernels (selector): DATA dot-unstuffing and end-of-data
detection, BDAT normalisation, size and bare-LF accounting.

Postfix counterpart: the DATA/BDAT loops of src/smtpd/smtpd.c.

See fastpost.smtp._data_py for the contract (including which byte sequences end a
message under each smtpd_forbid_bare_newline setting).

Parameters: the caller passes message_size_limit and whether the end of data is
strict (smtpd_forbid_bare_newline != no).
Diagnostics: ValueError when fed after the end.
Fast path: ext/fastpost/smtp/_data_c.pyx; reference: _data_py.py
"""

from fastpost._accel import select

_impl = select("fastpost.smtp._data_c", "fastpost.smtp._data_py")

DotDecoder = _impl.DotDecoder
ChunkDecoder = _impl.ChunkDecoder

__all__ = ["ChunkDecoder", "DotDecoder"]
