# Augmenting declarations for src/fastpost/daemons/smtpd/_received_py.py, compiled by
# setup.py as the extension fastpost.daemons.smtpd._received_c (Cython pure-Python
# mode, as _session_c.pxd; docs/conventions.md).
#
# The module constants are C statics; rfc2822_date and protocol_name are cpdef, so that
# received_header calls them as C functions (Python callers see them unchanged). Keep
# every signature in step with the .py (Cython checks that each exists there).

cimport cython

cdef list _last_date
cdef object _strftime
cdef object _localtime
cdef object _time
cdef str _DATE_FORMAT

@cython.locals(last=list)
cpdef str rfc2822_date(when=*)
cpdef str protocol_name(esmtp, tls, auth, smtputf8)
@cython.locals(ch=Py_UCS4, dot=bint)
cdef bint _dot_atom(str local)
cdef _external(address)
