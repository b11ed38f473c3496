# cython: language_level=3, annotation_typing=False, nonecheck=True
"""smtpd's per-message path to cleanup: one source, run as Python and compiled.

Postfix counterpart: smtpd's side of mail_stream (src/smtpd/smtpd.c mail_open_stream
and the records it sends; mail_stream_finish waiting for cleanup's status).

What runs here for every message smtpd hands to cleanup (CleanupSink, cleanupsink.py):

    begin(sink, client, envelope)   CleanupSink.begin: the OPEN frame (the client
                                    attributes, flags, sender, DSN fields) and the
                                    transaction, started on the shared connection
    CleanupTransaction              the message: the session's transaction (sink.py),
                                    the cleanup client's transaction (the fields and
                                    methods cleanup_clnt._Conn uses) and its listener,
                                    in one object
    reply_of(code, text)            cleanup's answer as an SMTP Reply

The transaction talks to the session *directly* (sink.py, "direct transactions"):
the session sets ``txn.session`` at the first RCPT, and cleanup's answers call it back
at once, from the connection's read, with no future and no loop handle between them:

    session._sink_opened(txn)                    the queue ID arrived (txn.queue_id),
                                                 or the OPEN was refused (txn.refusal)
    session._sink_answered(txn, queue_id, exc)   the commit's answer (exc None: 250)

``finish()`` sends the END frame and returns None; the session's ``250 ... queued as
ID`` follows only from _sink_answered with cleanup's 250, which cleanup sends only
after the sync that covers the message.

One source, two modules (Cython's pure-Python mode, docs/conventions.md): this file is
the reference, imported as fastpost.daemons.smtpd._cleanuptxn_py; setup.py compiles it,
typed by ext/fastpost/daemons/smtpd/_cleanuptxn_c.pxd, into
fastpost.daemons.smtpd._cleanuptxn_c, which production runs (cleanupsink.py selects).

Parameters: none read here (CleanupSink passes flags, content_filter and the
local_header_rewrite_clients matcher).
Diagnostics: SinkError with cleanup's reply for a refused OPEN or a rejected message;
``451 4.3.0 Error: queue file write error`` (logged by the session as ``cleanup: ...``)
when the connection to cleanup fails. An exception in the session's own code while it
handles an answer is given to the loop's exception handler and closes that client's
connection only, never the connection to cleanup that all sessions share.
"""

from __future__ import annotations

import time

from fastpost.daemons.smtpd.sink import SinkError
from fastpost.mail import cleanup_clnt as _clnt
from fastpost.mail import cleanup_proto as P
from fastpost.mail.cleanup_clnt import CleanupError, CleanupRefused
from fastpost.smtp import replies
from fastpost.smtp.replies import Reply
from fastpost.util import log

__all__ = ["CleanupTransaction", "begin", "is_local", "reply_of"]

# Module constants (C statics in the compiled build: the .pxd).
_CHUNK = _clnt.CHUNK
_OPENING = _clnt._OPENING
_OPEN = _clnt._OPEN
_FINISHED = _clnt._FINISHED
_OVER = _clnt._OVER
_OP_DATA = P.DATA
_OP_END = P.END
_OP_ABORT = P.ABORT
_WRITE_ERROR = replies.WRITE_ERROR
_refusal = _clnt._refusal
#: client_address_type: AF_INET6 or AF_INET (Postfix's numbers)
_ADDR_TYPE_6 = ("client_address_type", "10")
_ADDR_TYPE_4 = ("client_address_type", "2")


def reply_of(code, text):
    """cleanup's (code, "d.d.d text") as a Reply."""
    dsn, _, rest = text.partition(" ")
    if len(dsn) >= 5 and dsn[0] in "245" and dsn[1] == ".":
        return Reply(code, rest or dsn, dsn)
    return Reply(code, text)


def _first_line(head):
    """Postfix's fix-ups of the client's first line (cleanupsink's docstring)."""
    if head.lstrip(b">").startswith(b"From "):
        return b"X-Mailbox-Line: " + head
    if head[:1] in (b" ", b"\t"):
        return b"\r\n" + head
    return head


def _session_failed(session, exc):
    """The session's code raised while handling cleanup's answer: report it as an
    exception in a callback is reported, and close that one client's connection (the
    answer came from the cleanup connection's read, which must carry on)."""
    session.loop.call_exception_handler({
        "message": "smtpd session failed on cleanup's answer", "exception": exc,
        "protocol": session})
    transport = session.transport
    if transport is not None:
        transport.abort()


class CleanupTransaction:
    """One message to cleanup (module docstring)."""

    #: the session calls back through _sink_opened / _sink_answered (sink.py)
    direct = True

    __slots__ = ("conn", "tid", "listener", "state", "done", "error", "_rcpts", "_data",
                 "_size", "queue_id", "envelope", "stage", "head", "path", "session",
                 "refusal", "finished")

    def __init__(self, envelope, path):
        # The cleanup client's fields (cleanup_clnt.CleanupTxn's; conn and tid are set
        # by CleanupClient.start).
        self.conn = None
        self.tid = 0
        self.listener = self  # (cleared when no answer can follow: no cycle is left)
        self.state = _OPENING
        self.done = False
        self.error = None  # the CleanupError that ended it when the connection failed
        self._rcpts = []
        self._data = []
        self._size = 0
        # The session's.
        self.queue_id = ""
        self.envelope = envelope
        self.stage = 0  # 0: Received: header next, 1: first client line next, 2: the rest
        self.head = b""
        self.path = path  # cleanup's endpoint, for the diagnostics
        #: the session to call back (set by it at the first RCPT; cleared when no
        #: answer can follow, or when the session lets go: it references this object)
        self.session = None
        #: SinkError: cleanup refused the OPEN (the reply to DATA/BDAT)
        self.refusal = None
        self.finished = False  # finish() was called: the session waits for the commit

    # -- the cleanup client's transaction and listener ---------------------------------

    def waiting(self):
        """True while an answer from cleanup is due (the connection's watchdog)."""
        return self.state == _OPENING or self.state == _FINISHED

    def fail(self, exc):
        """The connection went away (cleanup_clnt._Conn.fail)."""
        self.done = True
        if isinstance(exc, CleanupError):
            self.error = exc
        if self.listener is not None and self.state != _OVER:
            self.state = _OVER
            self.cleanup_failed(exc)

    def answer(self, conn, frame):
        """cleanup's reply ``frame`` from ``conn``'s read (cleanup_clnt.CleanupTxn.answer,
        for a transaction that is its own listener): the queue ID, or the OPEN's
        refusal, then the commit's answer. Compiled, the fields are C members and the
        listener's methods C calls: no interpreted frame per reply."""
        if self.listener is None:
            return  # no answer can follow (answered, failed, or let go)
        tid = self.tid
        state = self.state
        if state == _OPENING:
            if frame.get("c") is None:
                self.state = _FINISHED if self.done else _OPEN
                self.cleanup_opened(frame["id"])
                return
            del conn.txns[tid]
            self.state = _OVER
            self.done = True
            self.cleanup_failed(_refusal(frame))
            conn.maybe_idle()
            return
        if state != _FINISHED:
            raise ValueError(f"reply for transaction {tid} before its end")
        txns = conn.txns
        del txns[tid]
        self.state = _OVER
        self.cleanup_answered(int(frame["c"]), frame.get("x", ""), frame.get("id", ""))
        if not txns:
            conn.maybe_idle()

    def cleanup_opened(self, queue_id):
        self.queue_id = queue_id
        session = self.session
        if session is not None:
            try:
                session._sink_opened(self)
            except Exception as exc:  # noqa: BLE001 - the session's bug: its connection
                _session_failed(session, exc)

    def cleanup_answered(self, code, text, queue_id):
        # The last answer: no reference to the session or to itself is kept (the
        # transaction is then freed by reference counting, not by the cyclic GC).
        self.listener = None
        session = self.session
        if session is None:
            return
        self.session = None
        try:
            if code == 250:
                session._sink_answered(self, queue_id or self.queue_id, None)
            else:
                session._sink_answered(self, None, SinkError(reply_of(code, text)))
        except Exception as exc:  # noqa: BLE001
            _session_failed(session, exc)

    def cleanup_failed(self, exc):
        if isinstance(exc, CleanupRefused):
            err = SinkError(reply_of(exc.code, exc.text))
        elif isinstance(exc, CleanupError):
            err = SinkError(_WRITE_ERROR, log=f"cleanup: {exc}")
        else:
            err = exc
        self.listener = None  # no answer follows
        session = self.session
        self.session = None
        opening = not self.queue_id
        if opening:
            self.refusal = err  # (kept for DATA/BDAT when the session is not waiting)
        if session is None:
            return
        try:
            if opening:
                session._sink_opened(self)
            if self.finished:
                session._sink_answered(self, None, err)
        except Exception as exc2:  # noqa: BLE001
            _session_failed(session, exc2)

    # -- the session's transaction (sink.Transaction) ----------------------------------

    def add_recipient(self, recipient):
        rcpt = recipient  # (compiled: a Recipient, its fields as C members)
        notify = rcpt.notify
        self._rcpts.append((rcpt.address, rcpt.orcpt or "",
                            P.notify_bits(notify) if notify else 0))

    def write(self, data):
        """Content: None, or a future to wait on while cleanup's socket is full."""
        stage = self.stage
        if stage != 2:
            if stage == 0:
                # smtpd's own lines (PREPENDs, then its Received: header) come first.
                if data.startswith(b"Received: "):
                    self.stage = 1
            else:
                # The client's first line: look at it whole (or at enough of it) first.
                head = self.head + data if self.head else data
                if head.find(b"\n") < 0 and len(head) < 1024:
                    self.head = head
                    return None
                self.head = b""
                self.stage = 2
                first = head[:1]
                if first == b">" or first == b" " or first == b"\t" or head.startswith(b"From "):
                    head = _first_line(head)
                data = head
        return self._c_append(data)

    def _c_append(self, data):
        if self.done:
            return None
        self._data.append(data)
        size = self._size + len(data)
        self._size = size
        if size >= _CHUNK:
            self._c_send_frame(_OP_DATA, None)
        conn = self.conn
        return conn.drain_waiter() if conn.paused else None

    def _c_send_frame(self, op, extra):
        """A frame with the recipients and content not sent yet, to the connection's
        next write: CleanupTxn._flush_data's work, compiled here (a cdef class cannot
        derive from CleanupTxn, a Python class; calling its method would put an
        interpreted call back on every message)."""
        frame = {"o": op, "t": self.tid}
        if self._rcpts:
            frame["r"] = self._rcpts
            self._rcpts = []
        data = self._data
        if data:
            frame["d"] = data[0] if len(data) == 1 else b"".join(data)
            self._data = []
            self._size = 0
        if extra:
            frame.update(extra)
        conn = self.conn
        conn.out.append(frame)
        if not conn.flush_scheduled and conn.ready:
            conn.flush_scheduled = True
            conn.loop.call_soon(conn.flush)

    def finish(self):
        """Send the END frame; cleanup's answer comes to session._sink_answered (None
        is returned: nothing to wait on here)."""
        if self.head:
            head = self.head
            self.head = b""
            self.stage = 2
            self._c_append(_first_line(head))
        env = self.envelope
        extra = None
        if env.hold or env.discard or env.filter or env.redirect or env.bcc:
            extra = {}
            for name in ("hold", "discard", "filter", "redirect"):
                value = getattr(env, name, None)
                if value:
                    extra[name] = value if isinstance(value, str) else "yes"
            if env.bcc:
                extra["bcc"] = list(env.bcc)
        if self.error is not None:  # the connection went away during the content
            raise SinkError(_WRITE_ERROR, log=f"cleanup: {self.error}")
        if self.done:
            raise RuntimeError("transaction already finished")
        self.done = True
        self.finished = True
        if self.state == _OPEN:
            self.state = _FINISHED
        self._c_send_frame(_OP_END, extra)
        conn = self.conn
        if conn.watch_handle is None:
            conn.armed(self)
        return None

    def abort(self):
        """Forget the message (cleanup throws away what it has); never raises."""
        self.session = None  # the session let go
        conn = self.conn
        if not self.done:
            self.done = True
            self._rcpts = []
            self._data = []
            if conn.txns.pop(self.tid, None) is not None and not conn.closed:
                conn.send({"o": _OP_ABORT, "t": self.tid})
            conn.maybe_idle()
        if self.tid not in conn.txns:  # forgotten: no answer reaches it any more
            self.listener = None


def begin(sink, client, envelope):
    """CleanupSink.begin: start one message (cleanupsink.py; sink.MessageSink)."""
    return _begin(sink, client, envelope)


def _begin(sink, client, envelope):
    # (begin's work; compiled, the client's and the envelope's fields are C members)
    name = client.name
    addr = client.addr
    port = client.port
    helo = client.helo
    proto = client.protocol
    fwd = client.forwarded
    if fwd:  # XFORWARD from a content filter: the log_* attributes are the original's
        log_name = fwd.get("NAME", name)
        log_addr = fwd.get("ADDR", addr)
        log_port = fwd.get("PORT", port)
        log_helo = fwd.get("HELO", helo or "")
        log_proto = fwd.get("PROTO", proto)
    else:
        log_name, log_addr, log_port, log_helo, log_proto = name, addr, port, helo, proto
    # The attributes with a value, in this order, as (name, value) pairs (cleanup reads
    # pairs, and the encoder takes any sequence). attrs.append, not a bound method kept
    # in a local: compiled, that is a direct list append.
    attrs = []
    if log_name:
        attrs.append(("log_client_name", log_name))
    if log_addr:
        attrs.append(("log_client_address", log_addr))
    if log_port:
        attrs.append(("log_client_port", log_port))
    attrs.append(("log_message_origin", f"{log_name}[{log_addr}]"))
    if log_helo:
        attrs.append(("log_helo_name", log_helo))
    if log_proto:
        attrs.append(("log_protocol_name", log_proto))
    if name:
        attrs.append(("client_name", name))
    if client.reverse_name:
        attrs.append(("reverse_client_name", client.reverse_name))
    if addr:
        attrs.append(("client_address", addr))
    if port:
        attrs.append(("client_port", port))
    if client.server_addr:
        attrs.append(("server_address", client.server_addr))
    if client.server_port:
        attrs.append(("server_port", client.server_port))
    if helo:
        attrs.append(("helo_name", helo))
    if proto:
        attrs.append(("protocol_name", proto))
    attrs.append(_ADDR_TYPE_6 if ":" in addr else _ADDR_TYPE_4)
    if fwd and "IDENT" in fwd:
        attrs.append(("log_ident", fwd["IDENT"]))
    if client.sasl_method:
        attrs.append(("sasl_method", client.sasl_method))
        attrs.append(("sasl_username", client.sasl_username or ""))
    if fwd and "SOURCE" in fwd:
        local = fwd["SOURCE"] == "LOCAL"
    else:
        local_clients = sink.local_clients
        try:
            local = local_clients is not None and is_local(local_clients, client)
        except Exception as exc:  # noqa: BLE001 - a table that cannot answer: remote
            log.warn("local_header_rewrite_clients lookup failed: %s", exc)
            local = False
    meta = {"f": sink.flags, "time": int(time.time() * 1e6), "s": envelope.sender, "a": attrs,
            "ctx": "local" if local else "remote", "ident": 1}
    if sink.content_filter:
        meta["filter"] = sink.content_filter
    body = envelope.body
    if body is not None:
        if body == "8BITMIME":
            meta["enc"] = "8bit"
        elif body == "7BIT":
            meta["enc"] = "7bit"
    if envelope.ret:
        meta["ret"] = P.RET.get(envelope.ret, "")
    if envelope.envid:
        meta["envid"] = envelope.envid
    # Not waiting for the queue ID here saves the session a round trip to cleanup
    # (RCPT is answered at once; the ID is needed at DATA, for the Received: header,
    # by when cleanup has long answered). A refused OPEN (full disk) is then the reply
    # to DATA/BDAT instead of RCPT. (Answers come from a later turn of the loop, never
    # from start().)
    cc = sink.client
    txn = CleanupTransaction(envelope, cc.path)
    # CleanupClient.start(txn, meta), its usual case inline: the connection's
    # usable() and attach() are C calls here (cleanup_clnt's ConnFields, compiled)
    conn = cc.conn
    try:
        if conn is not None and conn.usable():
            conn.attach(txn, meta)
        else:
            cc.start(txn, meta)
    except RuntimeError as exc:  # no running loop to connect from
        raise SinkError(_WRITE_ERROR, log=f"cleanup: {exc}") from None
    return txn


def is_local(local_clients, client):
    """LocalClients.is_local (cleanupsink.py): True when the client's message headers
    are rewritten as local mail (local_header_rewrite_clients)."""
    c = client  # (compiled: a ClientInfo, its fields as C members)
    if local_clients.sasl and c.sasl_username is not None:
        return True
    tls = c.tls
    if tls is not None and tls.peer_cert:
        if local_clients.tls_all_certs or (local_clients.tls_certs
                                           and getattr(tls, "peer_verified", False)):
            return True
    addr = c.addr
    if local_clients.inet_interfaces and addr and (
            addr in local_clients.interfaces
            or (local_clients.any_interface and addr == c.server_addr)):
        return True
    mynetworks = local_clients.mynetworks
    if mynetworks is not None and mynetworks.match(c.name, addr):
        return True
    for table in local_clients.tables:
        if addr and table.get(addr) is not None:
            return True
    return False
