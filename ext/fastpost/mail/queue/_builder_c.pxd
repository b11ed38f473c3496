# Augmenting declarations for src/fastpost/mail/queue/_builder_py.py, compiled by
# setup.py as the extension fastpost.mail.queue._builder_c (Cython pure-Python mode:
# a .pxd named after the compiled module types the .py it is built from;
# docs/conventions.md). Keep every field and signature in step with the .py.

cdef long _ENVELOPE
cdef long _CONTENT
cdef long _EXTRACTED
cdef long _DONE


cdef class QueueFileBuilder:
    cdef public Py_ssize_t line_limit  # content line pieces (line_length_limit)
    cdef public list chunks  # encoded records not yet taken (the C record first)
    cdef public Py_ssize_t offset  # bytes produced so far, taken chunks included
    cdef public long section  # _ENVELOPE, _CONTENT, _EXTRACTED or _DONE
    cdef public object arrival  # T record's time (float), None before it
    cdef public object sender  # S record's address (str), None before it
    cdef public list recipients  # Recipient per R/D record, in order
    cdef public dict attrs  # A records' name -> value (last wins)
    cdef public Py_ssize_t data_offset  # offset of the first content record (0: none yet)
    cdef public Py_ssize_t xtra_offset  # offset of the X record (0: none yet)
    cdef public long qmgr_flags  # C record field 4
    cdef public long smtputf8  # C record field 6
    cdef public object _pending  # partial content line (bytes)
    cdef public dict _pending_rcpt  # the next recipient's O/o/n data


cdef class MessageBuilder:
    cdef public object committer  # the Committer that made it and commits it
    cdef public object queue_id  # str
    cdef public QueueFileBuilder records  # the queue file's records
    cdef public Py_ssize_t spill_threshold  # bytes at which it moves to its own file
    cdef public object large  # LargeFile once spilled, else None
    cdef public object state  # "open", "committing", "committed" or "aborted"
