# Augmenting declarations for src/fastpost/daemons/smtpd/_info_py.py, compiled by
# setup.py as the extension fastpost.daemons.smtpd._info_c (Cython pure-Python mode,
# as _session_c.pxd; docs/conventions.md).
#
# Each dataclass is a cdef class (Cython keeps it a dataclass: the same __init__,
# __repr__, __eq__, fields() and replace()); its fields are public Python objects, so
# that what is stored is what is read back, as with the slots of the interpreted
# build. The compiled session core, cleanup sink and Received: header cimport these
# classes and read the fields as C members. Keep every field in step with the .py
# (Cython checks that each exists there), in the same order.

cdef str UNKNOWN
cdef str NAME_OK
cdef object _FRESH


cdef class ClientInfo:
    cdef public object name
    cdef public object addr
    cdef public object port
    cdef public object reverse_name
    cdef public object name_status
    cdef public object reverse_name_status
    cdef public object server_addr
    cdef public object peer_addr
    cdef public object server_port
    cdef public object helo
    cdef public object protocol
    cdef public object tls
    cdef public object sasl_method
    cdef public object sasl_username
    cdef public object forwarded
    cdef public object improper_pipelining
    cdef public object policy_state


cdef class Recipient:
    cdef public object address
    cdef public object notify
    cdef public object orcpt


cdef class Envelope:
    cdef public object sender
    cdef public object size
    cdef public object body
    cdef public object smtputf8
    cdef public object ret
    cdef public object envid
    cdef public object auth
    cdef public object recipients
    cdef public object queue_id
    cdef public object hold
    cdef public object discard
    cdef public object filter
    cdef public object redirect
    cdef public object bcc
    cdef public object prepend
