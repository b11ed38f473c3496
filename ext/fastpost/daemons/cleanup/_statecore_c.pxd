# Augmenting declarations for src/fastpost/daemons/cleanup/_statecore_py.py, compiled by
# setup.py as the extension fastpost.daemons.cleanup._statecore_c (Cython pure-Python
# mode: a .pxd named after the compiled module types the .py it is built from).
#
# The module constants are C statics; StateCore is a cdef class with these fields
# (public: the Python subclass CleanupState and the tests read and write them); the
# cdef methods are C functions called from within the class (each has a def wrapper in
# the .py where Python calls it). Keep every field and signature in step with the .py:
# Cython checks that each cdef method and field exists there.

cimport cython

cdef object _END
cdef object _FLAGS_EXTERNAL
cdef object _FLAG_FILTER
cdef object _FLAG_HOLD
cdef object _FLAG_DISCARD
cdef object _FLAG_EXTRACT
cdef object _FLAG_MAP_OK
cdef object _FLAG_BCC_OK
cdef object _KINDS
cdef long _HDR_MESSAGE_ID
cdef long _HDR_DATE
cdef long _HDR_FROM
cdef long _HDR_RESENT_MESSAGE_ID
cdef long _HDR_RESENT_DATE
cdef long _HDR_RESENT_FROM
cdef object _RCPT_MASK
cdef object _RESENT_RCPT_MASK
cdef object _CLASS_BYTES
cdef object _HeaderReader
cdef object _header_pass
cdef object _HOLD
cdef object _INCOMING
cdef object _QueueError
cdef object _printable
cdef object _info_later
cdef object _KEEPER
cdef object _monotonic
cdef object _time

@cython.locals(data=bytes, n=Py_ssize_t, i=Py_ssize_t, c=cython.uchar)
cpdef object _id_text(object value)
@cython.locals(at=Py_ssize_t, dot=Py_ssize_t)
cpdef bint _to_itself(str address)


cdef class StateCore:
    cdef public object svc
    cdef public object s
    cdef public object conn
    cdef public object tid
    cdef public object flags
    cdef public object arrival
    cdef public object sender_raw
    cdef public object attrs
    cdef public object filter
    cdef public object ret
    cdef public object envid
    cdef public object encoding
    cdef public object context
    cdef public object fullname
    cdef public bint log_ident
    cdef public object uid
    cdef public object builder
    cdef public object queue_id
    cdef public list rcpts_raw
    cdef public list pending
    cdef public set dups
    cdef public object reader
    cdef public bint inspect
    cdef public bint hold
    cdef public bint discard
    cdef public bint extract
    cdef public object header_context
    cdef public object sender
    cdef public object last_rcpt
    cdef public object error
    cdef public bint blocked
    cdef public bint envelope_done
    cdef public object size
    cdef public object rcpt_count
    cdef public object qmgr_flags
    cdef public bint in_headers
    cdef public bint resent
    cdef public object message_id
    cdef public object resent_message_id
    cdef public bint cte_8bit

    cdef int _c_open(self, svc, conn, tid, dict frame) except -1
    @cython.locals(data=object, size=Py_ssize_t, env_size=Py_ssize_t, k=Py_ssize_t,
                   map_ok=bint, todo=list, hdrs=list)
    cdef bint _c_fast(self, dict frame) except -1
    cdef list _c_trailer(self, mask)
    cdef _c_log_ids(self)
