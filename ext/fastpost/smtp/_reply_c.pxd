# Augmenting declarations for src/fastpost/smtp/_reply_py.py, compiled by setup.py as
# the extension fastpost.smtp._reply_c (Cython pure-Python mode, as
# ext/fastpost/smtp/_state_c.pxd; docs/conventions.md).
#
# Reply is a cdef class whose fields are public Python objects (what is stored is what
# is read back, as with the slots of the interpreted build); the compiled protocol
# core (_server_c.pyx) and smtpd's session core cimport it and read a reply's code and
# wire bytes as C members. Keep the fields in step with the .py's __slots__.

cdef class Reply:
    cdef public object code
    cdef public object enhanced
    cdef public object lines
    cdef public object wire
