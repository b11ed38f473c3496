"""Indexed-table key folding and lookup (selector).

Fast path: ext/fastpost/mail/maps/_indexed_c.pyx; reference: _indexed_py.py.
"""

from fastpost._accel import select

_impl = select("fastpost.mail.maps._indexed_c", "fastpost.mail.maps._indexed_py")

IndexedReader = _impl.IndexedReader
encode_key = _impl.encode_key
encode_value = _impl.encode_value
decode_value = _impl.decode_value
NUL_AUTO, NUL_WITH, NUL_WITHOUT = 0, 1, 2
