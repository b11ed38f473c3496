# Declarations of ext/fastpost/smtp/_data_c.pyx for the kernels that cimport it
# (_server_c: DATA content decoded from the read buffer without a buffer object).

cdef class DotDecoder:
    cdef readonly long long size_limit  # output stops after this many bytes (0: none)
    cdef readonly bint strict           # only CRLF . CRLF after CRLF ends the data
    cdef readonly long long size        # content bytes, also those past the limit
    cdef readonly long long bare_lf     # lines that ended in a bare LF
    cdef readonly bint too_big          # size went past size_limit
    cdef readonly long long raw_lines   # input bytes consumed through the last line end
    cdef long long _raw                 # input bytes consumed by earlier feed() calls
    cdef bint _prev_crlf                # the previous line ended in CR LF
    cdef int _state                     # BOL, DOT, DOTCR, MID, MIDCR or DONE

    cdef tuple feed_ptr(self, const unsigned char *p, Py_ssize_t n)
