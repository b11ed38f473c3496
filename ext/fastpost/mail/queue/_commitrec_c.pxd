# Augmenting declarations for src/fastpost/mail/queue/_commitrec_py.py, compiled by
# setup.py as the extension fastpost.mail.queue._commitrec_c (Cython pure-Python mode:
# a .pxd named after the compiled module types the .py it is built from;
# docs/conventions.md). Keep every field and signature in step with the .py.

cimport cython

cdef long _DEFERRED
cdef long _DONE
cdef long _PENDING
cdef Py_ssize_t _CHUNK
cdef object _VERSION
cdef object _msg_pack
cdef object _rcpt_pack
cdef object _u32_pack
cdef object _u64_pack
cdef object _time
cdef long _FLAG_LARGE
cdef object _SECTION_DONE
cdef object _message_frame
cdef object _size_record


cdef class CommitRec:
    cdef public object builder
    cdef public str queue_id
    cdef public bytes key
    cdef public long state
    cdef public long flags
    cdef public object segid
    cdef public object offset
    cdef public object length
    cdef public double arrival
    cdef public object size
    cdef public object sender
    cdef public list recipients
    cdef public object frame
    cdef public object future
    cdef public object callback

    cpdef resolve(self, exc)


@cython.locals(rec=CommitRec, chunks=list, size_record=bytes)
cpdef CommitRec commit_record(builder, long state, future, callback)


@cython.locals(ok=Py_ssize_t, i=Py_ssize_t, rec=CommitRec)
cpdef Py_ssize_t settle(list batch, list results) except -1

cdef bytes _enc(str text)

@cython.locals(parts=list, i=Py_ssize_t, addr=bytes)
cdef bytes _rcp_chunk(list rcpts, Py_ssize_t start, Py_ssize_t end)

@cython.locals(rec=CommitRec, rcpts=list, n=Py_ssize_t, nlive=Py_ssize_t, ordered=bint,
               i=Py_ssize_t, end=Py_ssize_t, key=bytes, prefix=bytes, sender=bytes,
               dups=list, states=dict, live=dict, domains=set, address=str, at=Py_ssize_t,
               micros=cython.longlong, when=double, value=bytes)
cpdef tuple insert_records(txn, list recs, index)
