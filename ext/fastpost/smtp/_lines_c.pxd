# Declarations of ext/fastpost/smtp/_lines_c.pyx for the kernels that cimport it
# (_server_c: the command lines without a Python call or object per line).

cdef tuple _split(const unsigned char *p, Py_ssize_t n)


cdef class LineReader:
    cdef public Py_ssize_t limit    # longest line content reported whole (settable)
    cdef unsigned char *_buf        # storage (NULL when empty)
    cdef Py_ssize_t _cap            # bytes allocated at _buf
    cdef Py_ssize_t _start          # read offset
    cdef Py_ssize_t _end            # write offset
    cdef bint _skipping             # discarding the rest of an overlong line

    cdef int _reserve(self, Py_ssize_t more) except -1
    cdef void _emptied(self) noexcept
    cdef int feed_ptr(self, const unsigned char *p, Py_ssize_t n) except -1
    cdef Py_ssize_t peek_line(self, const unsigned char **line, Py_ssize_t *length,
                              int *flags) noexcept
    cdef void consume(self, Py_ssize_t used) noexcept
    cdef tuple _line(self)
