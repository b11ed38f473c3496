# cython: language_level=3
"""Commit-batch writer without the GIL: the compiled kernel.

Reference and specification: src/fastpost/mail/queue/_syncio_py.py (same names, same
arguments, same results). ``serve()`` runs in a thread of its own and never holds the
GIL while it waits, writes or syncs: the batch is handed over as a C array of
(pointer, length) over bytes objects the writer keeps referenced until ``collect()``;
completion is signalled by writing the eventfd (``fileno()``) the event loop watches.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_Check
from libc.errno cimport errno, EINTR, EIO, EAGAIN
from libc.stdint cimport uint64_t
from libc.stdlib cimport realloc, free
from posix.types cimport off_t


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t pwritev(int fd, const iovec *iov, int iovcnt, off_t offset)

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_CLOEXEC
    int EFD_NONBLOCK

cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)
    ssize_t c_write "write"(int fd, const void *buf, size_t n)
    ssize_t c_read "read"(int fd, void *buf, size_t n)
    int c_close "close"(int fd)
    off_t lseek(int fd, off_t offset, int whence)
    int SEEK_SET

cdef extern from "<limits.h>" nogil:
    int IOV_MAX

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *m, const void *attr)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_cond_init(pthread_cond_t *c, const void *attr)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_signal(pthread_cond_t *c)


cdef enum:
    IDLE = 0
    QUEUED = 1
    DONE = 2


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class BatchWriter:
    """One batch at a time: submit() on the loop, serve() in a thread, collect() on the loop."""

    cdef pthread_mutex_t mu
    cdef pthread_cond_t cv
    cdef int efd
    cdef iovec *iov
    cdef Py_ssize_t niov
    cdef Py_ssize_t cap
    cdef object keep  # the submitted buffers, referenced until collect()
    cdef int fd
    cdef off_t offset
    cdef bint sync
    cdef int state
    cdef bint stopping
    cdef Py_ssize_t written
    cdef int err
    cdef double t_write
    cdef double t_sync
    cdef double t_back

    def __cinit__(self):
        self.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        if self.efd < 0:
            raise OSError(errno, "eventfd")
        pthread_mutex_init(&self.mu, NULL)
        pthread_cond_init(&self.cv, NULL)
        self.iov = NULL
        self.state = IDLE

    def __dealloc__(self):
        # serve() holds a reference to self while it runs: no thread is using us here
        free(self.iov)
        if self.efd >= 0:
            c_close(self.efd)

    def fileno(self):
        """The eventfd that becomes readable when a batch is done."""
        return self.efd

    @property
    def busy(self):
        """True from submit() until collect() has returned the result."""
        return self.state != IDLE

    @property
    def times(self):
        """CLOCK_MONOTONIC seconds of the last batch: writes started, fdatasync called, returned."""
        return (self.t_write, self.t_sync, self.t_back)

    def submit(self, int fd, list buffers, off_t offset, bint sync=True):
        """Write ``buffers`` (bytes) at ``offset`` of ``fd``, then fdatasync (if ``sync``).

        The file position is left at the end of what was written. RuntimeError if a
        batch is in flight; TypeError for a buffer that is not bytes.
        """
        cdef Py_ssize_t i, n, k = 0
        cdef object b
        cdef iovec *p
        if self.state != IDLE:
            raise RuntimeError("a batch is in flight")
        n = len(buffers)
        if n > self.cap:
            p = <iovec *>realloc(self.iov, n * sizeof(iovec))
            if p == NULL:
                raise MemoryError()
            self.iov = p
            self.cap = n
        for i in range(n):
            b = buffers[i]
            if not PyBytes_Check(b):
                raise TypeError(f"buffer {i} is {type(b).__name__}, not bytes")
            if PyBytes_GET_SIZE(b):
                self.iov[k].iov_base = PyBytes_AS_STRING(b)
                self.iov[k].iov_len = PyBytes_GET_SIZE(b)
                k += 1
        self.niov = k
        self.keep = buffers
        self.fd = fd
        self.offset = offset
        self.sync = sync
        # The GIL stays held: serve() holds the mutex only for a few instructions and
        # never waits for the GIL, so this cannot block for long (nor deadlock).
        pthread_mutex_lock(&self.mu)
        self.state = QUEUED
        pthread_cond_signal(&self.cv)
        pthread_mutex_unlock(&self.mu)

    def collect(self):
        """Return (bytes written, 0) or (0, errno) of the finished batch; None while it runs."""
        cdef uint64_t count
        cdef int st
        c_read(self.efd, &count, 8)  # EAGAIN when already read: fine
        pthread_mutex_lock(&self.mu)
        st = self.state
        pthread_mutex_unlock(&self.mu)
        if st != DONE:
            return None
        self.keep = None
        self.state = IDLE
        return (self.written, self.err)

    def stop(self):
        """Make serve() return once the batch in flight (if any) is done."""
        pthread_mutex_lock(&self.mu)
        self.stopping = True
        pthread_cond_signal(&self.cv)
        pthread_mutex_unlock(&self.mu)

    def serve(self):
        """Run batches until stop() (call in a thread of its own; the GIL is not held)."""
        with nogil:
            self._serve()

    cdef void _serve(self) noexcept nogil:
        cdef uint64_t one = 1
        pthread_mutex_lock(&self.mu)
        while True:
            while self.state != QUEUED and not self.stopping:
                pthread_cond_wait(&self.cv, &self.mu)
            if self.state != QUEUED:
                break
            pthread_mutex_unlock(&self.mu)
            self._run()
            pthread_mutex_lock(&self.mu)
            self.state = DONE
            pthread_mutex_unlock(&self.mu)
            while c_write(self.efd, &one, 8) < 0 and errno == EINTR:
                pass
            pthread_mutex_lock(&self.mu)
        pthread_mutex_unlock(&self.mu)

    cdef void _run(self) noexcept nogil:
        cdef Py_ssize_t i = 0, total = 0
        cdef ssize_t n
        cdef int cnt
        cdef off_t off = self.offset
        self.written = 0
        self.err = 0
        self.t_write = _now()
        self.t_sync = 0.0
        self.t_back = 0.0
        while i < self.niov:
            cnt = <int>(self.niov - i) if self.niov - i < IOV_MAX else IOV_MAX
            n = pwritev(self.fd, self.iov + i, cnt, off)
            if n < 0:
                if errno == EINTR:
                    continue
                self.err = errno
                return
            if n == 0:
                self.err = EIO
                return
            total += n
            off += n
            while n > 0:  # past what was written (a short write leaves part of one)
                if <size_t>n >= self.iov[i].iov_len:
                    n -= self.iov[i].iov_len
                    i += 1
                else:
                    self.iov[i].iov_base = <char *>self.iov[i].iov_base + n
                    self.iov[i].iov_len -= n
                    n = 0
        if lseek(self.fd, off, SEEK_SET) < 0:
            self.err = errno
            return
        if self.sync:
            self.t_sync = _now()
            while fdatasync(self.fd) < 0:
                if errno != EINTR:
                    self.err = errno
                    self.t_back = _now()
                    return
            self.t_back = _now()
        self.written = total


def fdatasync_timed(int fd):
    """fdatasync(fd) without the GIL; return CLOCK_MONOTONIC seconds (called, returned).

    The second time is taken before the GIL is asked for again: a caller that reads
    time.perf_counter() (the same clock on Linux) right after sees how long it waited
    for the GIL. OSError if the sync fails.
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
