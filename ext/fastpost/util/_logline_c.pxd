# Augmenting declarations for src/fastpost/util/_logline_py.py, compiled by setup.py as
# the extension fastpost.util._logline_c (Cython pure-Python mode, as smtpd's
# _session_c.pxd; docs/conventions.md).
#
# LineKeeper is a cdef class: its fields are C fields (public: log.py sets them from
# Python), so keep() reads them without attribute lookups. Keep every field and
# signature in step with the .py (Cython checks that each exists there).

cimport cython

cdef object _get_ident
cdef object _time


cdef class LineKeeper:
    cdef public bint on
    cdef public object thread
    cdef public str head
    cdef public long stamp_second
    cdef public str stamp_host
    cdef public str prefix
    cdef public list pending
    cdef public Py_ssize_t limit
    cdef public object loop
    cdef public object flush

    @cython.locals(now=double, pending=list, n=Py_ssize_t)
    cpdef bint keep(self, str text) except -1

