# Augmenting declarations for src/fastpost/smtp/_state_py.py, compiled by setup.py as
# the extension fastpost.smtp._state_c (Cython pure-Python mode, as
# ext/fastpost/daemons/smtpd/_session_c.pxd; docs/conventions.md).
#
# ServerState is a cdef class with public typed fields (the server cores, the session
# and the tests read and write them); reset_transaction is cpdef, so that on_reply and
# reset_session call it as a C function. Keep every field and signature in step with
# the .py (Cython checks that each exists there).

cdef class ServerState:
    cdef public str phase
    cdef public object helo
    cdef public bint esmtp
    cdef public bint tls
    cdef public bint authenticated
    cdef public long rcpt_accepted
    cdef public long rcpt_tried
    cdef public bint bdat_first

    cpdef reset_transaction(self)
