"""CleanupSink as the cleanup client's listener: every answer cleanup can give.

cleanup's answers reach smtpd's transaction directly (cleanup_opened,
cleanup_answered, cleanup_failed; fastpost.mail.cleanup_clnt): these tests drive a
CleanupSink over a real UNIX socket to a scripted peer that speaks the cleanup
protocol (greeting, OPEN -> queue ID or refusal, END -> a reply, or hanging up), and
check what the session would see: the queue ID future (id_pending) and finish()'s
future, including the failure replies (452/451/550) and the futures' being settled
exactly once. The success path against the real cleanup service is covered by
tests/cleanup, tests/accept and tests/daemons/smtpd.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from fastpost.daemons.smtpd.cleanupsink import CleanupSink
from fastpost.daemons.smtpd.info import ClientInfo, Envelope, Recipient
from fastpost.daemons.smtpd.sink import SinkError
from fastpost.mail import attr
from fastpost.mail import cleanup_proto as P
from fastpost.mail.cleanup_clnt import CleanupClient


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


async def _message(path, *, content=b"Subject: x\r\n\r\nhello\r\n", wait_id=True):
    """One message through a CleanupSink: (queue ID or exception, result or exception)."""
    sink = CleanupSink(CleanupClient(path, timeout=10, idle=5, ttl=1000), flags=0)
    try:
        env = Envelope("a@example.org")
        txn = sink.begin(_client(), env)
        txn.add_recipient(Recipient("b@example.net"))
        got_id = got = None
        if wait_id:
            try:
                got_id = await asyncio.wait_for(txn.id_pending, 10)
            except SinkError as exc:
                return exc, None
        txn.write(b"Received: from x\r\n")
        txn.write(content)
        try:
            got = await asyncio.wait_for(txn.finish(), 10)
        except SinkError as exc:
            got = exc
        if not wait_id:
            got_id = txn.id_pending.result() if txn.id_pending.done() and \
                txn.id_pending.exception() is None else txn.id_pending.exception()
        return got_id, got
    finally:
        await sink.close()


def _run(tmp_path, open_reply, end_reply, **kw):
    async def main():
        peer = Peer(os.path.join(str(tmp_path), "cleanup"), open_reply, end_reply)
        await peer.start()
        try:
            return await _message(peer.path, **kw), peer.frames
        finally:
            peer.close()
    return asyncio.run(main())


def test_accepted_message_gets_cleanups_queue_id(tmp_path):
    (qid, result), frames = _run(
        tmp_path, lambda f: {"t": f["t"], "id": "4ABC123"},
        lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok", "id": "4ABC123"})
    assert qid == "4ABC123" and result == "4ABC123"
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
def test_first_client_line_fixups(tmp_path, content, stored):
    """Postfix smtpd's fix-ups of the first line after the Received: header."""
    (_, result), frames = _run(
        tmp_path, lambda f: {"t": f["t"], "id": "4ABC123"},
        lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok", "id": "4ABC123"}, content=content)
    assert result == "4ABC123"
    assert frames[1]["d"] == b"Received: from x\r\n" + stored


def test_end_reply_without_id_falls_back_to_the_opened_one(tmp_path):
    (qid, result), _ = _run(tmp_path, lambda f: {"t": f["t"], "id": "5DEF"},
                            lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok"})
    assert (qid, result) == ("5DEF", "5DEF")


def test_refused_open_is_cleanups_reply(tmp_path):
    (err, result), _ = _run(
        tmp_path,
        lambda f: {"t": f["t"], "c": 452, "x": "4.3.1 Insufficient system storage"},
        lambda f: pytest.fail("no END after a refused OPEN"))
    assert isinstance(err, SinkError) and result is None
    assert (err.reply.code, err.reply.enhanced, err.reply.text) == (
        452, "4.3.1", "Insufficient system storage")


def test_rejected_content_is_cleanups_reply(tmp_path):
    (qid, err), _ = _run(
        tmp_path, lambda f: {"t": f["t"], "id": "6AAA"},
        lambda f: {"t": f["t"], "c": 550, "x": "5.7.1 message content rejected"})
    assert qid == "6AAA"
    assert isinstance(err, SinkError)
    assert (err.reply.code, err.reply.enhanced, err.reply.text) == (
        550, "5.7.1", "message content rejected")


def test_cleanup_gone_before_the_end_is_a_write_error(tmp_path):
    (qid, err), _ = _run(tmp_path, lambda f: {"t": f["t"], "id": "7BBB"}, lambda f: None)
    assert qid == "7BBB"
    assert isinstance(err, SinkError)
    assert (err.reply.code, err.reply.enhanced) == (451, "4.3.0")
    assert err.log.startswith("cleanup: ") and "connection closed by cleanup" in err.log


def test_cleanup_gone_before_the_id_fails_both_futures(tmp_path):
    # The session finished the message before cleanup answered OPEN (it does not wait
    # at DATA when the ID is late only in this test): both futures fail, once.
    (id_err, err), _ = _run(tmp_path, lambda f: None, lambda f: None, wait_id=False)
    for e in (id_err, err):
        assert isinstance(e, SinkError) and (e.reply.code, e.reply.enhanced) == (451, "4.3.0")


def test_no_cleanup_at_all_is_a_write_error(tmp_path):
    async def main():
        return await _message(os.path.join(str(tmp_path), "nothing-here"))
    err, result = asyncio.run(main())
    assert isinstance(err, SinkError) and result is None
    assert (err.reply.code, err.reply.enhanced) == (451, "4.3.0")
    assert "connect" in err.log


def _outcome_txn_freed(tmp_path, open_reply, end_reply, *, abort=False):
    """One message to its outcome with the cyclic GC off: is the transaction freed by
    its reference count? (Session 9: a self-reference left every message's transaction,
    futures, envelope and lists to the cyclic GC, ~12,000 instructions per message.)"""
    import gc
    import weakref

    async def one(path):
        sink = CleanupSink(CleanupClient(path, timeout=10, idle=5, ttl=1000), flags=0)
        try:
            txn = sink.begin(_client(), Envelope("a@example.org"))
            ref = weakref.ref(txn)
            txn.add_recipient(Recipient("b@example.net"))
            try:
                await asyncio.wait_for(txn.id_pending, 10)
            except SinkError:
                return ref, "refused"
            if abort:
                txn.abort()
                return ref, "aborted"
            txn.write(b"Received: from x\r\n")
            txn.write(b"Subject: x\r\n\r\nhello\r\n")
            try:
                outcome = await asyncio.wait_for(txn.finish(), 10)
            except SinkError as exc:
                outcome = exc.reply.code
            return ref, outcome
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
        ref, outcome = asyncio.run(main())
        return ref() is None, outcome
    finally:
        if was_enabled:
            gc.enable()



@pytest.mark.parametrize("open_reply,end_reply,abort,outcome", [
    (lambda f: {"t": f["t"], "id": "8CCC"},
     lambda f: {"t": f["t"], "c": 250, "x": "2.0.0 Ok", "id": "8CCC"}, False, "8CCC"),
    (lambda f: {"t": f["t"], "id": "8CCC"}, lambda f: None, True, "aborted"),
], ids=["accepted", "aborted"])
def test_transaction_is_freed_without_the_cyclic_gc(tmp_path, open_reply, end_reply, abort,
                                                    outcome):
    # (The failure paths are left out: an exception raised from a future keeps a
    # traceback -> frame -> future -> exception cycle, asyncio's own, on rare paths.)
    freed, got = _outcome_txn_freed(tmp_path, open_reply, end_reply, abort=abort)
    assert got == outcome
    assert freed, "the transaction is still alive: a reference cycle keeps it"


@pytest.mark.parametrize("open_reply,called", [
    (lambda f: {"t": f["t"], "id": "9DDD"}, [(True, "9DDD")]),
    (lambda f: {"t": f["t"], "c": 452, "x": "4.3.1 Insufficient system storage"}, []),
], ids=["opened", "refused"])
def test_on_id_is_called_once_with_the_id_then_cleared(tmp_path, open_reply, called):
    """The session's _id_arrived hook (on_id): called from cleanup's answer, right after
    id_pending got the ID, once; cleared either way (it references the session)."""
    async def main():
        peer = Peer(os.path.join(str(tmp_path), "cleanup"), open_reply, lambda f: None)
        await peer.start()
        sink = CleanupSink(CleanupClient(peer.path, timeout=10, idle=5, ttl=1000), flags=0)
        try:
            txn = sink.begin(_client(), Envelope("a@example.org"))
            calls = []
            txn.on_id = lambda t, pending: calls.append((t is txn, pending.result()))
            try:
                await asyncio.wait_for(txn.id_pending, 10)
            except SinkError:
                pass
            return calls, txn.on_id
        finally:
            await sink.close()
            peer.close()
    calls, left = asyncio.run(main())
    assert calls == called and left is None
