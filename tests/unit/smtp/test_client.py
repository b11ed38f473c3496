"""ClientConnection: against the server core in memory, and against real servers
(Postfix's smtp-sink in SMTP and LMTP mode, and fastpost's own smtpd) over loopback.
"""

import os
import random
import shutil
import socket
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.smtp import events as ev
from fastpost.smtp import replies
from fastpost.smtp.client import ClientConnection, ClientOptions, Recipient, parse_reply_line
from fastpost.smtp.errors import LocalProtocolError, RemoteProtocolError
from fastpost.smtp.server import ServerConnection, ServerOptions


def pair(respond, *, lmtp=False):
    """Return (client, pump): pump() moves bytes both ways until both are idle."""
    server = ServerConnection(ServerOptions(hostname="mx"))
    client = ClientConnection(ClientOptions(helo_name="client.example", lmtp=lmtp))
    client.receive_data(server.send(replies.greeting("mx ESMTP")))
    log = []
    content = []

    def pump(on_event=None):
        for _ in range(1000):
            moved = False
            out = client.data_to_send()
            if out:
                server.receive_data(out)
                moved = True
            while not server.closed:
                try:
                    event = server.next_event()
                except RemoteProtocolError as err:
                    client.receive_data(server.send(err.reply, close=err.fatal))
                    moved = True
                    continue
                if event is ev.NEED_DATA or event is ev.PAUSED:
                    break
                moved = True
                if isinstance(event, ev.DataChunk):
                    content.append(event.data)
                if event.needs_reply:
                    client.receive_data(server.send(respond(event)))
            while True:
                event = client.next_event()
                if event is ev.NEED_DATA:
                    break
                moved = True
                log.append(event)
                if on_event:
                    on_event(client, event)
            if not moved:
                return log
        raise AssertionError("no progress")

    return client, pump, content


def accept_all(event):
    t = type(event)
    if t is ev.Ehlo:
        return replies.ehlo("mx", ["PIPELINING", "SIZE 1000", "8BITMIME", "DSN", "CHUNKING", "SMTPUTF8"])
    if t is ev.Rcpt:
        return replies.relay_denied(event.address) if event.address.startswith("bad") else replies.RCPT_OK
    return {ev.Mail: replies.MAIL_OK, ev.Data: replies.START_DATA, ev.Quit: replies.BYE,
            ev.EndOfData: replies.queued("Q1"), ev.Helo: replies.helo("mx")}.get(
        t, replies.bdat_queued(event.total, "Q2") if t is ev.ChunkEnd and event.last
        else replies.bdat_ok(getattr(event, "total", 0)) if t is ev.ChunkEnd else replies.OK)


def send_on_354(body):
    def on_event(client, event):
        if isinstance(event, ev.Response) and event.command == "DATA" and event.reply.code == 354:
            client.send_content(body)
            client.end_content()
    return on_event


def result_of(log):
    results = [e for e in log if isinstance(e, ev.TransactionResult)]
    assert len(results) == 1, log
    return results[0]


def test_pipelined_transaction_with_dsn_and_stuffing():
    client, pump, content = pair(accept_all)
    client.hello()
    pump()
    assert client.pipelining and client.max_size == 1000 and client.offers("dsn")
    client.mail("a@b", [Recipient("x@y", ("SUCCESS", "FAILURE"), "rfc822;x@y"), "bad@y", "z@y"],
                size=50, body="8BITMIME", ret="HDRS", envid="id+1")
    log = pump(send_on_354(b".first line\nsecond\r\nlast"))
    result = result_of(log)
    assert result.delivered
    assert [(a, r.code) for a, r in result.results] == [("x@y", 250), ("bad@y", 554), ("z@y", 250)]
    assert b"".join(content) == b".first line\r\nsecond\r\nlast\r\n"


def test_without_pipelining_commands_wait_for_replies():
    def respond(event):
        if isinstance(event, ev.Ehlo):
            return replies.ehlo("mx", ["SIZE 1000"])
        return accept_all(event)

    client, pump, content = pair(respond)
    client.hello()
    pump()
    assert not client.pipelining
    client.mail("a@b", ["x@y", "z@y"], body="8BITMIME", ret="FULL")
    out = client.data_to_send()
    assert out == b"MAIL FROM:<a@b>\r\n"  # no BODY= (no 8BITMIME), no RET= (no DSN)
    client._out.insert(0, out)
    result = result_of(pump(send_on_354(b"hi\r\n")))
    assert result.delivered


def test_all_recipients_refused_pipelined():
    def respond(event):
        if isinstance(event, ev.Rcpt):
            return replies.rejected(550, "5.1.1", "unknown")
        return accept_all(event)

    client, pump, content = pair(respond)
    client.hello()
    pump()
    client.mail("a@b", ["x@y"])
    log = pump()
    result = result_of(log)
    assert not result.delivered
    assert result.results[0][1].code == 550
    # The next transaction starts with RSET (the server's MAIL state is unknown).
    client.mail("a@b", ["z@y"])
    assert client.data_to_send().startswith(b"RSET\r\nMAIL FROM:<a@b>\r\n")


def test_mail_refused_fails_every_recipient():
    def respond(event):
        if isinstance(event, ev.Mail):
            return replies.rejected(553, "5.7.1", "sender refused")
        return accept_all(event)

    client, pump, _ = pair(respond)
    client.hello()
    pump()
    client.mail("a@b", ["x@y", "z@y"])
    result = result_of(pump())
    assert [r.code for _, r in result.results] == [553, 553]


def test_421_mid_session():
    def respond(event):
        if isinstance(event, ev.Rcpt):
            return replies.timeout("mx")
        return accept_all(event)

    client, pump, _ = pair(respond)
    client.hello()
    pump()
    client.mail("a@b", ["x@y", "z@y"])
    log = pump()
    result = result_of(log)
    assert [r.code for _, r in result.results] == [421, 421]
    assert client.closed
    with pytest.raises(LocalProtocolError):
        client.noop()


def test_unsolicited_421():
    client = ClientConnection()
    client.receive_data(b"220 hi\r\n")
    assert client.next_event().command == "GREETING"
    client.receive_data(b"421 4.3.2 going down\r\n")
    event = client.next_event()
    assert (event.command, event.reply.code, event.reply.enhanced) == ("UNSOLICITED", 421, "4.3.2")
    assert client.closed


def test_not_sent_when_the_server_cannot_take_it():
    client = ClientConnection(ClientOptions(helo_name="me"))
    client.receive_data(b"220 hi\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
    client.hello()
    client.data_to_send()
    assert [client.next_event().command for _ in range(2)] == ["GREETING", "EHLO"]
    client.mail("\u00e9@b", ["x@y"], smtputf8=True)
    result = client.next_event()
    assert result.results[0][1].enhanced == "5.6.7" and not result.delivered
    client.mail("a@b", ["x@y"], size=5000)
    result = client.next_event()
    assert (result.results[0][1].code, result.results[0][1].enhanced) == (552, "5.3.4")
    assert client.data_to_send() == b""


def test_ehlo_refused_then_helo():
    client = ClientConnection(ClientOptions(helo_name="me"))
    client.receive_data(b"220 old server\r\n")
    client.next_event()
    client.hello()
    assert client.data_to_send() == b"EHLO me\r\n"
    client.receive_data(b"502 5.5.2 what?\r\n")
    event = client.next_event()
    assert (event.command, event.reply.code) == ("EHLO", 502)
    client.helo()
    assert client.data_to_send() == b"HELO me\r\n"
    client.receive_data(b"250 old.example\r\n")
    assert client.next_event().command == "HELO"
    assert not client.esmtp


def test_bdat_transaction():
    client, pump, content = pair(accept_all)
    client.hello()
    pump()
    client.mail("a@b", ["x@y"], use_bdat=True)
    client.send_content(b".not stuffed\nline")
    client.end_content()
    result = result_of(pump())
    assert result.delivered
    assert b"".join(content) == b".not stuffed\r\nline\r\n"


def test_lmtp_per_recipient_replies():
    calls = {"n": 0}

    def respond(event):
        if isinstance(event, ev.EndOfData):
            return replies.queued("Q")
        return accept_all(event)

    client, pump, _ = pair(respond, lmtp=True)
    client.hello()
    assert client._out[0] == b"LHLO client.example\r\n"
    # Our server core speaks SMTP, not LMTP: feed the LMTP replies by hand instead.
    client = ClientConnection(ClientOptions(helo_name="c", lmtp=True))
    client.receive_data(b"220 lmtp\r\n250-lmtp\r\n250 PIPELINING\r\n")
    client.hello()
    assert [client.next_event().command for _ in range(2)] == ["GREETING", "LHLO"]
    client.mail("a@b", ["x@y", "bad@y", "z@y"])
    client.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n")
    events = [client.next_event() for _ in range(5)]
    assert events[-1].reply.code == 354
    client.send_content(b"hello\r\n")
    client.end_content()
    assert client.data_to_send().endswith(b"hello\r\n.\r\n")
    client.receive_data(b"250 2.0.0 x delivered\r\n452 4.2.2 z over quota\r\n")
    dots = [client.next_event() for _ in range(2)]
    assert [(d.recipient, d.reply.code) for d in dots] == [("x@y", 250), ("z@y", 452)]
    result = client.next_event()
    assert [(a, r.code) for a, r in result.results] == [("x@y", 250), ("bad@y", 550), ("z@y", 452)]
    assert result.delivered
    del calls


def test_reply_parsing_and_garbage():
    assert parse_reply_line(b"250-PIPELINING") == (250, False, "PIPELINING")
    assert parse_reply_line(b"250") == (250, True, "")
    assert parse_reply_line(b"2500 x") is None
    assert parse_reply_line(b"abc") is None
    client = ClientConnection()
    client.receive_data(b"220-a\r\n250 b\r\n")  # code changes inside one reply
    with pytest.raises(RemoteProtocolError) as exc:
        client.next_event()
    assert exc.value.fatal and client.closed


@settings(max_examples=200, deadline=None)
@given(body=st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"..", b"\r\n.\r\n"]),
                     max_size=40).map(b"".join),
       seed=st.integers(0, 1000))
def test_content_round_trip(body, seed):
    """Whatever the caller's content and however it is cut, the server gets it back
    dot-unstuffed with CR LF line ends (bare LF normalised), and DATA is never ended early."""
    rng = random.Random(seed)
    cuts = sorted(rng.randrange(len(body) + 1) for _ in range(3)) if body else []

    def on_event(client, event):
        if isinstance(event, ev.Response) and event.command == "DATA" and event.reply.code == 354:
            last = 0
            for cut in cuts + [len(body)]:
                client.send_content(body[last:cut])
                last = cut
            client.end_content()

    client, pump, content = pair(accept_all)
    client.hello()
    pump()
    client.mail("a@b", ["x@y"])
    result = result_of(pump(on_event))
    assert result.delivered
    expected = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if expected.endswith(b"\r") and not expected.endswith(b"\r\n"):
        expected += b"\n"  # a final CR is taken as the start of the last line ending
    elif expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    # A CR at the end of a piece followed by LF in the next is one line ending.
    assert b"".join(content) == expected


# ------------------------------------------------------------------ real servers


def deliver(port: int, sender: str, recipients, content: bytes, *, lmtp=False, use_bdat=False):
    """Run one ClientConnection session over a real socket; return its events."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    client = ClientConnection(ClientOptions(helo_name="client.example", lmtp=lmtp))
    events = []
    state = {"mailed": False, "quit": False}
    try:
        while not client.closed:
            while True:
                event = client.next_event()
                if event is ev.NEED_DATA:
                    break
                events.append(event)
                if isinstance(event, ev.Response):
                    if event.command == "GREETING":
                        client.hello()
                    elif event.command in ("EHLO", "LHLO") and not state["mailed"]:
                        state["mailed"] = True
                        client.mail(sender, recipients, size=len(content), use_bdat=use_bdat)
                        if use_bdat:
                            client.send_content(content)
                            client.end_content()
                    elif event.command == "DATA" and event.reply.code == 354:
                        client.send_content(content)
                        client.end_content()
                elif isinstance(event, ev.TransactionResult) and not state["quit"]:
                    state["quit"] = True
                    client.quit()
                elif isinstance(event, ev.ConnectionClosed):
                    return events
            out = client.data_to_send()
            if out:
                sock.sendall(out)
            if client.closed:
                break
            data = sock.recv(65536)
            client.receive_data(data)
    finally:
        sock.close()
    return events


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def smtp_sink(tmp_path):
    """Start Postfix's smtp-sink; yields a function (args...) -> port."""
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(exe):
        pytest.skip("smtp-sink (Debian postfix) not installed")
    procs = []

    def start(*args):
        port = _free_port()
        cmd = [exe, *args, f"127.0.0.1:{port}", "100"]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "nobody"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                assert time.monotonic() < deadline, "smtp-sink did not start"
                time.sleep(0.02)

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_against_postfix_smtp_sink(smtp_sink):
    port = smtp_sink()
    events = deliver(port, "a@example.org", ["b@example.net", "c@example.net"],
                     b"Subject: x\r\n\r\n.dot\r\n")
    result = [e for e in events if isinstance(e, ev.TransactionResult)][0]
    assert result.delivered and [r.code for _, r in result.results] == [250, 250]
    ehlo = [e for e in events if isinstance(e, ev.Response) and e.command == "EHLO"][0]
    assert "PIPELINING" in ehlo.reply.lines


def test_against_postfix_smtp_sink_rcpt_failures(smtp_sink):
    port = smtp_sink("-f", "rcpt")
    events = deliver(port, "a@example.org", ["b@example.net", "c@example.net"], b"x\r\n")
    result = [e for e in events if isinstance(e, ev.TransactionResult)][0]
    assert not result.delivered and [r.code // 100 for _, r in result.results] == [5, 5]


def test_against_postfix_smtp_sink_lmtp(smtp_sink):
    port = smtp_sink("-L", "-r", ".")  # LMTP; every final reply is a 4xx
    events = deliver(port, "a@example.org", ["b@example.net", "c@example.net"], b"x\r\n", lmtp=True)
    dots = [e for e in events if isinstance(e, ev.Response) and e.command == "DOT"]
    assert [(d.recipient, d.reply.code // 100) for d in dots] == [("b@example.net", 4), ("c@example.net", 4)]
    result = [e for e in events if isinstance(e, ev.TransactionResult)][0]
    assert not result.delivered


def test_against_fastpost_smtpd(tmp_path):
    from fastpost.daemons.smtpd.testing import SmtpdThread

    with SmtpdThread(tmp_path) as srv:
        body = b"Subject: both ends fastpost\r\n\r\n..two dots\r\nbare\nline\r\n"
        events = deliver(srv.port, "a@example.org", ["b@example.net"], body)
        result = [e for e in events if isinstance(e, ev.TransactionResult)][0]
        assert result.delivered
        events = deliver(srv.port, "a@example.org", ["c@example.net"], body, use_bdat=True)
        assert [e for e in events if isinstance(e, ev.TransactionResult)][0].delivered
        srv.wait_sessions(0)
        (m1, c1), (m2, c2) = srv.sink.messages()
        expected = b"Subject: both ends fastpost\r\n\r\n..two dots\r\nbare\r\nline\r\n"
        assert c1.endswith(expected) and c2.endswith(expected)


@pytest.mark.parametrize("pipelining", [True, False])
def test_verify_only_stops_after_rcpt(pipelining):
    """Address verification probes: MAIL and RCPT, each recipient's own reply, no DATA;
    the server's open transaction is RSET before the next one."""
    def respond(event):
        if isinstance(event, ev.Ehlo):
            return replies.ehlo("mx", ["PIPELINING"] if pipelining else ["SIZE 1000"])
        if isinstance(event, ev.Data):
            raise AssertionError("DATA sent by a probe")
        return accept_all(event)

    client, pump, content = pair(respond)
    client.hello()
    pump()
    assert client.pipelining is pipelining
    client.mail("a@b", ["x@y", "bad@y", "z@y"], verify_only=True)
    log = pump()
    result = result_of(log)
    assert [(a, r.code) for a, r in result.results] == [("x@y", 250), ("bad@y", 554), ("z@y", 250)]
    assert not any(isinstance(e, ev.Response) and e.command == "DATA" for e in log)
    assert content == []
    client.mail("a@b", ["z@y"], verify_only=True)
    assert client.data_to_send().startswith(b"RSET\r\nMAIL FROM:<a@b>\r\n")
