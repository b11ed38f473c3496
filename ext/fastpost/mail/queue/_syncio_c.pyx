# cython: language_level=3
"""fdatasync timed without the GIL: the compiled kernel (a measuring aid).

Reference and specification: src/fastpost/mail/queue/_syncio_py.py (same names, same
arguments, same results). The return time is read before the GIL is asked for again,
so a caller that reads time.perf_counter() (CLOCK_MONOTONIC on Linux, the same clock)
as soon as it runs sees how long its thread waited for the GIL after the sync.
"""

from libc.errno cimport errno, EINTR


cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def fdatasync_timed(int fd):
    """fdatasync(fd) without the GIL; return CLOCK_MONOTONIC seconds (called, returned).

    OSError (with the errno) if the sync fails; EINTR is retried.
    """
    cdef double t0, t1
    cdef int rc, err = 0
    with nogil:
        t0 = _now()
        while True:
            rc = fdatasync(fd)
            if rc == 0 or errno != EINTR:
                break
        if rc < 0:
            err = errno
        t1 = _now()
    if rc < 0:
        raise OSError(err, f"fdatasync: {__import__('os').strerror(err)}")
    return (t0, t1)
