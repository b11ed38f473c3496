"""CleanupSink's transactions as the cleanup client's listener: every answer cleanup
can give, in both builds of the per-message code.

cleanup's answers reach smtpd's transaction directly (cleanup_opened,
cleanup_answered, cleanup_failed; fastpost.mail.cleanup_clnt), and the transaction
calls the session directly (a direct transaction, fastpost.daemons.smtpd.sink:
``_sink_opened(txn)``, ``_sink_answered(txn, queue_id, exc)``). These tests drive
CleanupSink's begin() over a real UNIX socket to a scripted peer that speaks the
cleanup protocol (greeting, OPEN -> queue ID or refusal, END -> a reply, or hanging
up), with a recording stand-in for the session, and check what the session is told:
the queue ID or the refusal, the commit or its failure (452/451/550), each exactly
once, and that no reference to the session or a cycle is left. Every test runs on the
compiled build (_cleanuptxn_c, production's) and on the same source interpreted
(_cleanuptxn_py): the two must agree. The success path against the real cleanup
service is covered by tests/cleanup, tests/accept and tests/daemons/smtpd.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from fastpost.daemons.smtpd import _cleanuptxn_py
from fastpost.daemons.smtpd.cleanupsink import CleanupSink
from fastpost.daemons.smtpd.info import ClientInfo, Envelope, Recipient
from fastpost.daemons.smtpd.sink import SinkError
from fastpost.mail import attr
from fastpost.mail import cleanup_proto as P
from fastpost.mail.cleanup_clnt import CleanupClient

_cleanuptxn_c = pytest.importorskip("fastpost.daemons.smtpd._cleanuptxn_c")


@pytest.fixture(params=["compiled", "reference"])
def impl(request):
    """The build under test: the compiled module (production's) or the .py."""
    return _cleanuptxn_c if request.param == "compiled" else _cleanuptxn_py


def test_the_sink_uses_the_compiled_build():
    assert CleanupSink.begin is _cleanuptxn_c.begin
    assert _cleanuptxn_c.__file__.endswith(".so")
    # The .pxd took effect: its cdef methods are C functions, invisible from Python.
    assert not hasattr(_cleanuptxn_c.CleanupTransaction, "_c_append")
    assert callable(_cleanuptxn_py.CleanupTransaction._c_append)


class Session:
    """The session's side of a direct transaction: what it is told, in order; the
    first answer of each kind settles a future."""

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.calls: list = []
        self.opened = loop.create_future()
        self.answered = loop.create_future()

    def _sink_opened(self, txn):
        self.calls.append(("opened", txn.queue_id, txn.refusal))
        if not self.opened.done():
            if txn.refusal is not None:
                self.opened.set_exception(txn.refusal)
            else:
                self.opened.set_result(txn.queue_id)

    def _sink_answered(self, txn, queue_id, exc):
        self.calls.append(("answered", queue_id, exc))
        if not self.answered.done():
            if exc is not None:
                self.answered.set_exception(exc)
            else:
                self.answered.set_result(queue_id)


class Peer:
    """A scripted cleanup: ``open_reply(frame)`` and ``end_reply(frame)`` give the
    answer frame, or None to hang up; every frame received is kept."""

    def __init__(self, path, open_reply, end_reply):
        self.path = path
        self.open_reply = open_reply
        self.end_reply = end_reply
        self.frames: list[dict] = []
        self.server = None

    async def start(self):
        self.server = await asyncio.start_unix_server(self._serve, self.path)

    async def _serve(self, reader, writer):
        dec = attr.FrameDecoder(1 << 24, 8)
        writer.write(attr.encode_many([{"protocol": P.PROTOCOL}]))
        while data := await reader.read(65536):
            buf = dec.get_buffer(len(data))
            buf[:len(data)] = data
            dec.buffer_updated(len(data))
            while (frame := dec.next_frame()) is not None:
                self.frames.append(frame)
                op = frame.get("o")
                reply = (self.open_reply(frame) if op == P.OPEN
                         else self.end_reply(frame) if op == P.END else {})
                if reply is None:
                    writer.close()
                    return
                if reply:
                    writer.write(attr.encode_many([reply]))

    def close(self):
        self.server.close()


def _client():
    return ClientInfo(name="client.example", addr="192.0.2.1", port="4321",
                      reverse_name="client.example", server_addr="127.0.0.1",
                      server_port="25", helo="client.example", protocol="ESMTP")


async def _message(path, impl, *, content=b"Subject: x\r\n\r\nhello\r\n", wait_id=True):
    """One message through CleanupSink's begin() of ``impl``: (queue ID or exception,
    result or exception, the session's calls)."""
    sink = CleanupSink(CleanupClient(path, timeout=10, idle=5, ttl=1000), flags=0)
    session = Session(asyncio.get_running_loop())
    try:
        env = Envelope("a@example.org")
        txn = impl.begin(sink, _client(), env)
        assert type(txn) is impl.CleanupTransaction and txn.direct
        txn.session = session
        txn.add_recipient(Recipient("b@example.net"))
        got_id = got = None
        if wait_id:
            try:
                got_id = await asyncio.wait_for(session.opened, 10)
            except SinkError as exc:
                return exc, None, session.calls
        txn.write(b"Received: from x\r\n")
        txn.write(content)
        assert txn.finish() is None
        try:
            got = await asyncio.wait_for(session.answered, 10)
        except SinkError as exc:
            got = exc
        if not wait_id:
            got_id = session.opened.result() if session.opened.done() and \
                session.opened.exception() is None else session.opened.exception()
        assert txn.session is None and txn.listener is None  # nothing more can come
        return got_id, got, session.calls
    finally:
        await sink.close()


def _run(tmp_path, impl, open_reply, end_reply, **kw):
    async def main():
        peer = Peer(os.path.join(str(tmp_path), "cleanup"), open_reply, end_reply)
        await peer.start()
        try:
            return await _message(peer.path, impl, **kw), peer.frames
        finally:
            peer.close()
    return asyncio.run(main())


def test_accepted_message_gets_cleanups_queue_id(tmp_path, impl):
    (qid, result, calls), frames = _run(
        tmp_path, impl, lambda f: {"t": f["t"], "id": "4ABC123"},
        lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok", "id": "4ABC123"})
    assert qid == "4ABC123" and result == "4ABC123"
    assert calls == [("opened", "4ABC123", None), ("answered", "4ABC123", None)]
    opened, end = frames
    assert opened["o"] == P.OPEN and opened["s"] == "a@example.org"
    assert opened["a"] == [
        ["log_client_name", "client.example"], ["log_client_address", "192.0.2.1"],
        ["log_client_port", "4321"], ["log_message_origin", "client.example[192.0.2.1]"],
        ["log_helo_name", "client.example"], ["log_protocol_name", "ESMTP"],
        ["client_name", "client.example"], ["reverse_client_name", "client.example"],
        ["client_address", "192.0.2.1"], ["client_port", "4321"],
        ["server_address", "127.0.0.1"], ["server_port", "25"],
        ["helo_name", "client.example"], ["protocol_name", "ESMTP"],
        ["client_address_type", "2"]]
    assert opened["ctx"] == "remote" and "filter" not in opened and "enc" not in opened
    assert end["o"] == P.END and end["r"] == [["b@example.net", "", 0]]
    assert end["d"] == b"Received: from x\r\nSubject: x\r\n\r\nhello\r\n"


@pytest.mark.parametrize("content,stored", [
    (b"From someone  Sat Nov 21\r\nSubject: x\r\n\r\nhi\r\n",
     b"X-Mailbox-Line: From someone  Sat Nov 21\r\nSubject: x\r\n\r\nhi\r\n"),
    (b">From someone\r\n\r\nhi\r\n", b"X-Mailbox-Line: >From someone\r\n\r\nhi\r\n"),
    (b" folded\r\n\r\nhi\r\n", b"\r\n folded\r\n\r\nhi\r\n"),
    (b"From: a@example.org\r\n\r\nhi\r\n", b"From: a@example.org\r\n\r\nhi\r\n"),
])
def test_first_client_line_fixups(tmp_path, impl, content, stored):
    """Postfix smtpd's fix-ups of the first line after the Received: header."""
    (_, result, _), frames = _run(
        tmp_path, impl, lambda f: {"t": f["t"], "id": "4ABC123"},
        lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok", "id": "4ABC123"}, content=content)
    assert result == "4ABC123"
    assert frames[1]["d"] == b"Received: from x\r\n" + stored


def test_end_reply_without_id_falls_back_to_the_opened_one(tmp_path, impl):
    (qid, result, _), _ = _run(tmp_path, impl, lambda f: {"t": f["t"], "id": "5DEF"},
                            lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok"})
    assert (qid, result) == ("5DEF", "5DEF")


def test_refused_open_is_cleanups_reply(tmp_path, impl):
    (err, result, calls), _ = _run(
        tmp_path, impl,
        lambda f: {"t": f["t"], "c": 452, "x": "4.3.1 Insufficient system storage"},
        lambda f: pytest.fail("no END after a refused OPEN"))
    assert isinstance(err, SinkError) and result is None
    assert (err.reply.code, err.reply.enhanced, err.reply.text) == (
        452, "4.3.1", "Insufficient system storage")
    assert calls == [("opened", "", err)]


def test_rejected_content_is_cleanups_reply(tmp_path, impl):
    (qid, err, calls), _ = _run(
        tmp_path, impl, lambda f: {"t": f["t"], "id": "6AAA"},
        lambda f: {"t": f["t"], "c": 550, "x": "5.7.1 message content rejected"})
    assert qid == "6AAA"
    assert isinstance(err, SinkError)
    assert (err.reply.code, err.reply.enhanced, err.reply.text) == (
        550, "5.7.1", "message content rejected")
    assert calls == [("opened", "6AAA", None), ("answered", None, err)]


def test_cleanup_gone_before_the_end_is_a_write_error(tmp_path, impl):
    (qid, err, calls), _ = _run(tmp_path, impl, lambda f: {"t": f["t"], "id": "7BBB"}, lambda f: None)
    assert qid == "7BBB"
    assert isinstance(err, SinkError)
    assert (err.reply.code, err.reply.enhanced) == (451, "4.3.0")
    assert err.log.startswith("cleanup: ") and "connection closed by cleanup" in err.log
    assert calls == [("opened", "7BBB", None), ("answered", None, err)]


def test_cleanup_gone_before_the_id_tells_both_waits(tmp_path, impl):
    # The message finished before cleanup answered OPEN (the session waits for the ID
    # at DATA; only this test does not): the session hears of the failure both as the
    # refusal and as the commit's failure, once each.
    (id_err, err, calls), _ = _run(tmp_path, impl, lambda f: None, lambda f: None,
                                   wait_id=False)
    for e in (id_err, err):
        assert isinstance(e, SinkError) and (e.reply.code, e.reply.enhanced) == (451, "4.3.0")
    assert calls == [("opened", "", id_err), ("answered", None, id_err)]


def test_no_cleanup_at_all_is_a_write_error(tmp_path, impl):
    async def main():
        return await _message(os.path.join(str(tmp_path), "nothing-here"), impl)
    err, result, _ = asyncio.run(main())
    assert isinstance(err, SinkError) and result is None
    assert (err.reply.code, err.reply.enhanced) == (451, "4.3.0")
    assert "connect" in err.log


class _Envelope(Envelope):
    """An Envelope that can be referenced weakly (it lives as long as its transaction)."""


def _outcome_freed(tmp_path, impl, open_reply, end_reply, *, abort=False):
    """One message to its outcome with the cyclic GC off: are the transaction (seen
    through its envelope) and the session freed by their reference counts? (Session 9:
    a self-reference left every message's transaction, futures, envelope and lists to
    the cyclic GC, ~12,000 instructions per message; the session and its direct
    transaction reference each other until no answer can follow.)"""
    import gc
    import weakref

    async def one(path):
        sink = CleanupSink(CleanupClient(path, timeout=10, idle=5, ttl=1000), flags=0)
        session = Session(asyncio.get_running_loop())
        try:
            txn = impl.begin(sink, _client(), _Envelope("a@example.org"))
            refs = weakref.ref(txn.envelope), weakref.ref(session)
            session.txn = txn  # as the real session: a cycle until the transaction ends
            txn.session = session
            txn.add_recipient(Recipient("b@example.net"))
            opened = session.opened
            try:
                await asyncio.wait_for(opened, 10)
            except SinkError:
                return refs, "refused"
            if abort:
                txn.abort()
                return refs, "aborted"
            txn.write(b"Received: from x\r\n")
            txn.write(b"Subject: x\r\n\r\nhello\r\n")
            txn.finish()
            try:
                outcome = await asyncio.wait_for(session.answered, 10)
            except SinkError as exc:
                outcome = exc.reply.code
            return refs, outcome
        finally:
            await sink.close()

    async def main():
        peer = Peer(os.path.join(str(tmp_path), "cleanup"), open_reply, end_reply)
        await peer.start()
        try:
            return await one(peer.path)
        finally:
            peer.close()

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        refs, outcome = asyncio.run(main())
        return [ref() is None for ref in refs], outcome
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("open_reply,end_reply,abort,outcome", [
    (lambda f: {"t": f["t"], "id": "8CCC"},
     lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok", "id": "8CCC"}, False, "8CCC"),
    (lambda f: {"t": f["t"], "id": "8CCC"}, lambda f: None, True, "aborted"),
], ids=["accepted", "aborted"])
def test_transaction_and_session_are_freed_without_the_cyclic_gc(
        tmp_path, impl, open_reply, end_reply, abort, outcome):
    # (The failure paths are left out: an exception raised from a future keeps a
    # traceback -> frame -> future -> exception cycle, asyncio's own, on rare paths.)
    freed, got = _outcome_freed(tmp_path, impl, open_reply, end_reply, abort=abort)
    assert got == outcome
    assert freed == [True, True], "a reference cycle keeps the transaction or the session"


def test_a_failing_session_loses_its_client_not_the_cleanup_connection(tmp_path, impl):
    """An exception in the session's code on cleanup's answer goes to the loop's
    exception handler and closes that client's connection; the cleanup connection
    (every session's) carries on with the next message."""
    class Transport:
        aborted = False

        def abort(self):
            self.aborted = True

    class Broken(Session):
        def _sink_opened(self, txn):
            raise ZeroDivisionError("a bug in the session")

    async def main():
        peer = Peer(os.path.join(str(tmp_path), "cleanup"),
                    lambda f: {"t": f["t"], "id": f"Q{f['t']}"},
                    lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok", "id": f"Q{f['t']}"})
        await peer.start()
        loop = asyncio.get_running_loop()
        handled = []
        loop.set_exception_handler(lambda _loop, ctx: handled.append(ctx["exception"]))
        sink = CleanupSink(CleanupClient(peer.path, timeout=10, idle=5, ttl=1000), flags=0)
        try:
            broken = Broken(loop)
            broken.transport = Transport()
            txn = impl.begin(sink, _client(), Envelope("a@example.org"))
            txn.session = broken
            for _ in range(100):
                if handled:
                    break
                await asyncio.sleep(0.01)
            txn.abort()
            good = Session(loop)
            txn2 = impl.begin(sink, _client(), Envelope("a@example.org"))
            txn2.session = good
            txn2.add_recipient(Recipient("b@example.net"))
            qid = await asyncio.wait_for(good.opened, 10)
            txn2.write(b"Received: from x\r\nSubject: y\r\n\r\n")
            txn2.finish()
            result = await asyncio.wait_for(good.answered, 10)
            return list(handled), broken.transport.aborted, qid, result, sink.client.connections
        finally:
            await sink.close()
            peer.close()

    handled, aborted, qid, result, connections = asyncio.run(main())
    assert [type(e) for e in handled] == [ZeroDivisionError] and aborted
    assert qid == result == "Q2" and connections == 1


def _attach_state(conn, txn, frame):
    """What attaching ``txn`` left on ``conn`` (cleanup_clnt._Conn)."""
    return (txn.conn is conn, txn.tid, conn.next_tid, dict(conn.txns) == {txn.tid: txn},
            conn.out == [frame], conn.out[0] is frame, frame.get("o"), frame.get("t"),
            conn.flush_scheduled, conn.idle_handle is None, conn.watch_handle is not None)


@pytest.mark.parametrize("ready", [True, False])
def test_begin_attaches_as_the_connections_attach(impl, ready):
    """begin() attaches through CleanupClient.start: the same
    number, frame, flush, idle timer and watchdog as _Conn.attach on an equal
    connection; a closed or too old connection is replaced, as start() replaces it."""
    from fastpost.mail.cleanup_clnt import _Conn

    async def main():
        loop = asyncio.get_running_loop()
        states = []
        for way in ("begin", "attach"):
            cc = CleanupClient("/nonexistent/cleanup", timeout=10, idle=5, ttl=1000)
            conn = _Conn(cc, loop)
            cc.conn = conn
            conn.ready = ready
            conn.next_tid = 7
            idle = conn.idle_handle = loop.call_later(100, lambda: None)
            sink = CleanupSink(cc, flags=0)
            if way == "begin":
                txn = impl.begin(sink, _client(), Envelope("a@example.org"))
                frame = conn.out[0]
            else:
                txn = impl.CleanupTransaction(Envelope("a@example.org"), cc.path)
                frame = {"f": 0}
                conn.attach(txn, frame)
            assert idle.cancelled()
            states.append(_attach_state(conn, txn, frame))
            conn.watch_handle.cancel()
            conn.closed = True  # (no transport: nothing to close)
        assert states[0] == states[1]
        assert states[0][1:3] == (7, 8) and states[0][8] == ready

        # The connection is replaced when closed or older than ipc_ttl (start()'s rule).
        for spoil in ("closed", "old"):
            cc = CleanupClient("/nonexistent/cleanup", timeout=10, idle=5, ttl=1000)
            old = _Conn(cc, loop)
            cc.conn = old
            if spoil == "closed":
                old.closed = True
            else:
                old.started -= 2000
            txn = impl.begin(CleanupSink(cc, flags=0), _client(), Envelope("a@example.org"))
            assert txn.conn is cc.conn and cc.conn is not old and cc.connections == 1
            cc.close()
            await asyncio.sleep(0)

    asyncio.run(main())


def test_local_clients_is_local_is_the_compiled_one():
    """LocalClients.is_local answers through the per-message module's is_local (the
    compiled build's in production); its rules, element by element."""
    import types

    from fastpost.daemons.smtpd.cleanupsink import LocalClients
    from fastpost.mail.config import Config

    def clients(words, tmp="/nonexistent"):
        cfg = Config(tmp, text=f"local_header_rewrite_clients = {words}\n"
                               "mynetworks = 10.0.0.0/8\ninet_interfaces = 127.0.0.1\n")
        return LocalClients(cfg)

    cert = types.SimpleNamespace(peer_cert=b"x", peer_verified=False)
    verified = types.SimpleNamespace(peer_cert=b"x", peer_verified=True)
    cases = [
        ("permit_inet_interfaces", ClientInfo(addr="127.0.0.1"), True),
        ("permit_inet_interfaces", ClientInfo(addr="192.0.2.1"), False),
        ("permit_mynetworks", ClientInfo(name="x", addr="10.1.2.3"), True),
        ("permit_mynetworks", ClientInfo(name="x", addr="192.0.2.1"), False),
        ("permit_sasl_authenticated", ClientInfo(addr="192.0.2.1", sasl_username="u"), True),
        ("permit_sasl_authenticated", ClientInfo(addr="192.0.2.1"), False),
        ("permit_tls_all_clientcerts", ClientInfo(addr="192.0.2.1", tls=cert), True),
        ("permit_tls_clientcerts", ClientInfo(addr="192.0.2.1", tls=cert), False),
        ("permit_tls_clientcerts", ClientInfo(addr="192.0.2.1", tls=verified), True),
        ("static:yes", ClientInfo(addr="192.0.2.1"), True),
        ("static:yes", ClientInfo(addr=""), False),
    ]
    for words, client, expected in cases:
        lc = clients(words)
        assert lc.is_local(client) is expected, (words, client)
        assert _cleanuptxn_py.is_local(lc, client) is expected
        assert _cleanuptxn_c.is_local(lc, client) is expected
