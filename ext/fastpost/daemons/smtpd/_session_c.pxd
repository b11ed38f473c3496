# Augmenting declarations for src/fastpost/daemons/smtpd/_session_py.py, compiled by
# setup.py as the extension fastpost.daemons.smtpd._session_c (Cython pure-Python mode:
# a .pxd named after the compiled module types the .py it is built from).
#
# What is declared here becomes C in the compiled build and means nothing to the
# interpreter: the module constants are C statics, SessionCore is a cdef class with
# these typed fields (public: the Python subclass and the tests read and write them),
# and the cdef methods are C functions called directly from within the class (not
# overridable from Python; each has a def wrapper in the .py where the subclass needs
# it). Keep every field's type and every signature in step with the .py: Cython
# checks that each cdef method and field exists there (a mismatch fails the build).

cimport cython
# (the compiled protocol core: conn's per-command methods as C calls)
from fastpost.smtp._server_c cimport ServerConnection as _CServerConnection
# (the log line keeper: its keep() as a C call)
from fastpost.util._logline_c cimport LineKeeper as _LineKeeper
# (a reply's code, the client and the transaction's envelope: fields as C members)
from fastpost.smtp._reply_c cimport Reply as _CReply
from fastpost.daemons.smtpd._info_c cimport ClientInfo as _Client, Envelope as _Envelope

cdef str _CLOSED
cdef object _NEED_DATA
cdef object _PAUSED
cdef tuple _STATS_ORDER
cdef object _HANGUP
cdef str _UNKNOWN
cdef object _Future
cdef object _MAIL_OK
cdef object _RCPT_OK
cdef object _START_DATA
cdef object _OK
cdef object _BYE
cdef dict _ONCE_TEXTS
cdef list _LAST_ONCE
cdef str _NEUTER
cdef object _NEUTER_SEARCH
cdef object _QUEUED
cdef object _Reply
cdef object _H_MAIL
cdef object _H_RCPT
cdef object _H_DATA
cdef object _H_CHUNK
cdef object _H_END_OF_DATA
cdef object _H_QUIT
cdef _LineKeeper _KEEPER
cdef object _monotonic
cdef dict _PORT_TEXTS

cdef bint _is_awaitable(object value)
cdef inline bint _closed(str input_mode)
@cython.locals(text=str, reply=_CReply)
cpdef queued_reply(str queue_id)


cdef class _Deadline:
    cdef public double when
    cdef public object session
    cdef public _Deadlines owner
    cpdef cancel(self)


cdef class _Deadlines:
    cdef public object loop
    cdef public object delay
    cdef public object queue
    cdef public object handle
    cdef public Py_ssize_t live
    @cython.locals(d=_Deadline)
    cpdef _Deadline add(self, session)
    @cython.locals(d=_Deadline)
    cpdef _fire(self)


cdef class ServiceFields:
    cdef public object settings
    cdef public object sink
    cdef public object policy
    cdef public object _loop
    cdef public object read_view
    cdef public object sessions
    cdef public object client_counts
    cdef public object limits
    cdef public object greet_options
    cdef public object authenticator
    cdef public object space_ok_until
    cdef public object on_connect
    cdef public object on_disconnect
    cdef public object on_session_end
    cdef public object last_session
    cdef public object greeting
    cdef public object ehlo_plain
    cdef public object helo_reply
    cdef public _Deadlines deadlines


cdef class SessionCore:
    cdef public ServiceFields service
    cdef public object settings
    cdef public object loop
    cdef public object transport
    cdef public object conn
    cdef public object client
    cdef public object where
    cdef public dict stats
    cdef public long errors
    cdef public long long bytes_in
    cdef public long long bytes_out
    cdef public bint waiting
    cdef public list _out
    cdef public bint _busy
    cdef public bint _read_paused
    cdef public bint _write_paused
    cdef public bint _closed
    cdef public list _early
    cdef public double _last_io
    cdef public bint _in_data
    cdef public object envelope
    cdef public object txn
    cdef public long junk
    cdef public long overshoot
    cdef public object _data_rejected
    cdef public bint _received_done
    cdef public bint _skip_log
    cdef public bint _greeted
    cdef public object _timer
    cdef public object _timeout
    cdef public object _auth_state
    cdef public object _counted_addr
    cdef public object _real_client
    cdef public object _anvil_ident
    cdef public bint _anvil_unknown
    cdef public bint _direct
    cdef public int _sink_wait
    cdef public object _sink_verb
    cdef public object _sink_fn
    cdef public object _read_view
    cdef public object _idle_stages
    cdef public object _handler_table

    @cython.locals(conn=_CServerConnection)
    cdef _c_received(self, Py_ssize_t nbytes)
    cdef _c_pause_reading(self)
    cdef _c_resume_reading(self)
    @cython.locals(c=_Client, svc=ServiceFields)
    cdef _c_lost(self)
    @cython.locals(c=_Client)
    cdef _c_addresses(self, peer, local)
    cdef _c_close(self)
    @cython.locals(svc=ServiceFields, deadlines=_Deadlines)
    cdef _c_arm_timer(self)
    @cython.locals(c=_Client, svc=ServiceFields)
    cdef _c_greet_options(self)
    @cython.locals(svc=ServiceFields)
    cdef _c_greet_sasl(self)
    @cython.locals(c=_Client, svc=ServiceFields)
    cdef _c_greet(self, names)
    cdef _c_connect_checked(self, decision)
    @cython.locals(c=_Client)
    cdef _helo_checked(self, decision, event, bint esmtp)
    @cython.locals(c=_Client, svc=ServiceFields)
    cdef _c_ehlo_reply(self)
    @cython.locals(conn=_CServerConnection)
    cdef _c_run(self)
    @cython.locals(err=bint)
    cdef _c_respond(self, verb, _CReply reply, ok=*, close=*, error=*)
    @cython.locals(counts=list, conn=_CServerConnection)
    cdef _c_send(self, verb, _CReply reply, ok, close)
    @cython.locals(out=list, data=bytes, conn=_CServerConnection)
    cdef _c_flush(self)
    @cython.locals(stats=dict, counts=list, key=tuple, text=str, last=tuple, same=bint,
                   i=Py_ssize_t)
    cdef str _c_stats_text(self)
    @cython.locals(parts=list, ok_total=long, total=long, ok=long, n=long, stats=dict)
    cdef str _c_stats_text_full(self)
    cdef _c_junk(self)
    cdef bint _idle(self, stage)
    cdef _ask(self, stage, on_done, recipient=*, etrn_domain=*, size=*, helo=*)
    cdef _c_refused(self, decision, verb=*)
    cdef _c_abort_txn(self)
    cdef _c_reset_transaction(self)
    cdef _c_on_mail(self, event)
    cdef _c_on_rcpt(self, event)
    cdef _c_on_data(self, event)
    cdef _c_on_chunk(self, event)
    cdef _c_on_end_of_data(self, event)
    cdef _c_on_quit(self, event)
    @cython.locals(svc=ServiceFields)
    cdef _c_mail(self, event)
    cdef _c_mail_checked(self, decision)
    cdef _c_write(self, data)
    @cython.locals(c=_Client, env=_Envelope)
    cdef _c_start_content(self)
    cdef _c_data_checked(self, decision)
    cdef _c_finish_message(self, verb, size, too_big, bare_lf, reply_ok)
    cdef _eom_checked(self, decision, verb, reply_ok)
    cdef _c_commit(self, verb, reply_ok)
    cdef _c_rcpt(self, event)
    cdef _rcpt_checked(self, decision, event, address)
    @cython.locals(env=_Envelope)
    cdef _c_add_recipient(self, rcpt)
    cdef _c_committed(self, verb, reply_ok, queue_id)
    cdef _c_commit_failed(self, verb, exc)
    cdef _c_sink_wait(self, int what, verb, fn)
    cdef bint _c_sink_resume(self) except -1
    @cython.locals(c=_Client, env=_Envelope)
    cdef _c_log_client(self, txn)
    cdef _c_id_refused(self, verb, exc)
