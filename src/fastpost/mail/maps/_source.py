"""Table-source parsing for builds (selector).

Fast path: ext/fastpost/mail/maps/_source_c.pyx; reference: _source_py.py.
"""

from fastpost._accel import select

_impl = select("fastpost.mail.maps._source_c", "fastpost.mail.maps._source_py")

parse_records = _impl.parse_records
unique_sorted = _impl.unique_sorted
