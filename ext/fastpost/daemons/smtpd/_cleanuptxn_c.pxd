# Augmenting declarations for src/fastpost/daemons/smtpd/_cleanuptxn_py.py, compiled by
# setup.py as the extension fastpost.daemons.smtpd._cleanuptxn_c (Cython pure-Python
# mode, as _session_c.pxd; docs/conventions.md).
#
# The module constants are C statics; CleanupTransaction is a cdef class whose fields
# are public (cleanup_clnt._Conn, the session and the tests read and write them); the
# _c_* methods are C functions called from within the class. Keep every field and
# signature in step with the .py (Cython checks that each exists there).

cimport cython
# (the client and the envelope: their fields as C members)
from fastpost.daemons.smtpd._info_c cimport ClientInfo as _Client, Envelope as _Envelope, \
    Recipient as _Recipient
# (the connection to cleanup: its per-message fields as C members, attach() a C call)
from fastpost.mail._cleanupconn_c cimport ConnFields as _ConnFields

cdef Py_ssize_t _CHUNK
cdef int _OPENING
cdef int _OPEN
cdef int _FINISHED
cdef int _OVER
cdef object _OP_DATA
cdef object _OP_END
cdef object _OP_ABORT
cdef object _WRITE_ERROR
cdef object _refusal
cdef tuple _ADDR_TYPE_6
cdef tuple _ADDR_TYPE_4


@cython.locals(c=_Client)
cpdef bint is_local(local_clients, client) except -1
@cython.locals(conn=_ConnFields)
cdef _begin(sink, _Client client, _Envelope envelope)


cdef class CleanupTransaction:
    cdef public _ConnFields conn
    cdef public object tid
    cdef public object listener
    cdef public int state
    cdef public bint done
    cdef public object error
    cdef public list _rcpts
    cdef public list _data
    cdef public Py_ssize_t _size
    cdef public object queue_id
    cdef public object envelope
    cdef public int stage
    cdef public object head
    cdef public object path
    cdef public object session
    cdef public object refusal
    cdef public bint finished

    @cython.locals(state=int, txns=dict)
    cpdef answer(self, _ConnFields conn, dict frame)
    cpdef cleanup_opened(self, queue_id)
    cpdef cleanup_answered(self, code, text, queue_id)
    cpdef cleanup_failed(self, exc)
    @cython.locals(env=_Envelope, conn=_ConnFields)
    cpdef finish(self)
    @cython.locals(rcpt=_Recipient)
    cpdef add_recipient(self, recipient)
    @cython.locals(size=Py_ssize_t, conn=_ConnFields)
    cdef _c_append(self, data)
    @cython.locals(frame=dict, data=list, conn=_ConnFields)
    cdef _c_send_frame(self, op, extra)

