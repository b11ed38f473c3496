# Declarations of ext/fastpost/smtp/_server_c.pyx: its fields, and the methods the
# compiled smtpd session calls at C level (cpdef: the same names from Python).

from fastpost.smtp._lines_c cimport LineReader
from fastpost.smtp._data_c cimport DotDecoder


cdef class _OptionCopies:
    cdef object options
    cdef bint allowed  # options.access_denied is None
    cdef bint soft_bounce
    cdef bint helo_required
    cdef bint tls_required
    cdef bint strict  # strict_rfc821
    cdef object size_limit  # message_size_limit
    cdef object rcpt_limit  # recipient_limit


cdef class ServerConnection:
    cdef object _options  # (the options property)
    cdef _OptionCopies _o  # its fields the quick path reads (the property's setter)
    cdef public object state
    cdef public str input
    cdef public list notes
    cdef LineReader _reader
    cdef object _pending
    cdef bint _pending_last
    cdef str _pending_name
    cdef object _error
    cdef bint _eof
    cdef bint _closed_event_sent
    cdef DotDecoder _decoder
    cdef list _chunks
    cdef bint _content_done
    cdef Py_ssize_t _chunk_left
    cdef bint _chunk_last
    cdef bint _chunk_keep
    cdef Py_ssize_t _chunk_size
    cdef Py_ssize_t _chunk_raw_total
    cdef object _bdat_decoder
    cdef Py_ssize_t _data_bytes


    cpdef receive_data(self, data)
    cpdef receive_from(self, buffer, Py_ssize_t nbytes)
    cpdef next_event(self)
    cpdef bytes send(self, reply, bint close=*)
    cdef int _receive_ptr(self, const unsigned char *p, Py_ssize_t n, data) except -1
    cdef void _close(self)
    cdef object _starved(self)
    cdef _apply(self, str pending, reply, int code)
    cdef void _end_auth(self)
    cdef object _next_command(self)
    cdef object _command(self, bytes raw_verb, bytes raw_args, int flags)
    cdef object _quick_event(self, int kind, str text, long long size)
    cdef object _quick(self, int kind, str text, event)
    cdef _start_data(self)
    cdef int _feed_data(self, const unsigned char *p, Py_ssize_t n) except -1
    cdef object _next_data_event(self)
