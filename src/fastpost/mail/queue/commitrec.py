"""CommitRec, insert_records, settle: one message's commit record (selector).

Postfix counterpart: none directly (see fastpost.mail.queue._commitrec_py, the one
source of both builds: run as Python under that name, the reference, and compiled by
Cython's pure-Python mode, typed by ext/fastpost/mail/queue/_commitrec_c.pxd, into
fastpost.mail.queue._commitrec_c, which production runs).

Parameters and diagnostics: see _commitrec_py.
Fast path: _commitrec_py.py compiled as _commitrec_c; reference: _commitrec_py.py
interpreted.
"""

from fastpost._accel import select

_impl = select("fastpost.mail.queue._commitrec_c", "fastpost.mail.queue._commitrec_py")
CommitRec = _impl.CommitRec
commit_record = _impl.commit_record
insert_records = _impl.insert_records
settle = _impl.settle

__all__ = ["CommitRec", "commit_record", "insert_records", "settle"]
