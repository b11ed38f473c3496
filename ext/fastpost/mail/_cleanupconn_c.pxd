# Augmenting declarations for src/fastpost/mail/_cleanupconn_py.py, compiled by setup.py
# as the extension fastpost.mail._cleanupconn_c (Cython pure-Python mode, as
# daemons/smtpd/_session_c.pxd; docs/conventions.md).
#
# ConnFields is a cdef class whose fields are public (cleanup_clnt._Conn, its Python
# subclass, and the tests read and write them); smtpd's compiled transaction cimports
# it and reads them as C members. Keep every field and signature in step with the .py.

cdef object _OP_OPEN
cdef object _monotonic


cdef class ConnFields:
    cdef public object loop
    cdef public dict txns
    cdef public object next_tid
    cdef public list out
    cdef public bint flush_scheduled
    cdef public bint ready
    cdef public bint closed
    cdef public double started
    cdef public double ttl
    cdef public bint paused
    cdef public object idle_handle
    cdef public object watch_handle

    cpdef bint usable(self) except -1
    cpdef attach(self, txn, dict frame)
