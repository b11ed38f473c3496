"""smtpd with Python's smtplib as the client: plain, STARTTLS, AUTH, limits, seams.

Every test runs the real session layer on loopback, on uvloop and on asyncio.
"""

import asyncio
import smtplib
import socket
import ssl
import threading

import pytest

from fastpost.daemons.smtpd.policy import Decision, Policy
from fastpost.daemons.smtpd.sasl import StaticAuthenticator
from fastpost.daemons.smtpd.sink import SinkError
from fastpost.daemons.smtpd.testsink import FileTestSink
from fastpost.smtp import replies

MSG = b"Subject: test\r\nFrom: a@example.org\r\n\r\nHello.\r\n.leading dot\r\n"


def tls_context(cert):
    """A client context that trusts our self-signed certificate (we connect by IP)."""
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    return ctx


def client(srv, **kw):
    return smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.example", timeout=30, **kw)


def test_send_and_store(smtpd):
    srv = smtpd()
    with client(srv) as s:
        code, text = s.ehlo()
        assert code == 250
        assert s.has_extn("pipelining") and s.has_extn("chunking") and s.has_extn("smtputf8")
        assert s.esmtp_features["size"] == "10240000"
        refused = s.sendmail("a@example.org", ["b@example.net", "c@example.net"], MSG)
        assert refused == {}
        assert s.sendmail("", ["postmaster@mx.fastpost.test"], b"Subject: 2\r\n\r\nx\r\n") == {}
    srv.wait_sessions(0)
    (meta1, msg1), (meta2, msg2) = srv.sink.messages()
    assert meta1["sender"] == "a@example.org"
    assert [r["address"] for r in meta1["recipients"]] == ["b@example.net", "c@example.net"]
    assert meta1["helo_name"] == "client.example" and meta1["protocol_name"] == "ESMTP"
    assert msg1.startswith(b"Received: from client.example (unknown [127.0.0.1])\r\n"
                           b"\tby mx.fastpost.test (fastpost) with ESMTP id ")
    # smtplib dot-stuffed ".leading dot"; the server removed the stuffing again.
    assert msg1.endswith(MSG)
    assert meta2["sender"] == ""
    lines = srv.log_lines()
    assert lines[0] == "fastpost/smtpd: connect from unknown[127.0.0.1]"
    assert lines[-1] == ("fastpost/smtpd: disconnect from unknown[127.0.0.1] "
                         "ehlo=1 mail=2 rcpt=3 data=2 quit=1 commands=9")


def test_relay_refused_from_outside(smtpd):
    srv = smtpd()
    with client(srv, source_address=("127.0.0.2", 0)) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            s.sendmail("a@example.org", ["victim@elsewhere.example"], MSG)
        code, text = exc.value.recipients["victim@elsewhere.example"]
        assert (code, text) == (454, b"4.7.1 <victim@elsewhere.example>: Relay access denied")
        assert s.sendmail("a@example.org", ["postmaster@mx.fastpost.test"], MSG) == {}
    srv.wait_sessions(0)
    assert len(srv.sink.messages()) == 1


def test_message_size_limit(smtpd):
    srv = smtpd("message_size_limit = 1000")
    with client(srv) as s:
        s.ehlo()
        assert s.esmtp_features["size"] == "1000"
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            s.sendmail("a@example.org", ["b@example.net"], b"x" * 2000)  # SIZE=2000
        assert exc.value.smtp_code == 552
        # Without SIZE the server reads the whole message, then refuses it.
        s.rset()
        s.mail("a@example.org")
        s.rcpt("b@example.net")
        code, text = s.data(b"Subject: big\r\n\r\n" + b"y" * 5000 + b"\r\n")
        assert (code, text) == (552, b"5.3.4 Error: message file too big")
        assert s.noop()[0] == 250  # the session goes on
    srv.wait_sessions(0)
    assert srv.sink.messages() == []


def test_starttls(smtpd, certificate):
    key, cert = certificate
    srv = smtpd(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_security_level = may\nsmtpd_tls_received_header = yes\n"
                "smtpd_tls_loglevel = 1")
    ctx = tls_context(cert)
    with client(srv) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        s.starttls(context=ctx)
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert s.sendmail("a@example.org", ["b@example.net"], MSG) == {}
    srv.wait_sessions(0)
    (meta, msg), = srv.sink.messages()
    head = msg.split(b"\r\n")
    assert head[0] == b"Received: from client.example (unknown [127.0.0.1])"
    assert head[1].startswith(b"\t(using TLSv1.3 with cipher ")
    assert head[2] == b"\t(No client certificate requested)"
    assert b"with ESMTPS id" in head[3]
    logs = srv.log_lines()
    assert any("Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3" in line
               for line in logs)
    assert logs[-1].endswith("ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7")


def test_starttls_discards_pipelined_plaintext(smtpd, certificate):
    # RFC 3207 5 / CVE-2011-0411: commands injected after STARTTLS must not run.
    key, cert = certificate
    srv = smtpd(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_security_level = may")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    sock.sendall(b"EHLO client.example\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    sock.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
    assert f.readline() == b"220 2.0.0 Ready to start TLS\r\n"
    tls = tls_context(cert).wrap_socket(sock)
    tf = tls.makefile("rb")
    tls.sendall(b"RCPT TO:<b@example.net>\r\n")
    # Had the injected MAIL run, this RCPT would be accepted.
    assert tf.readline() == b"503 5.5.1 Error: need MAIL command\r\n"
    tls.sendall(b"QUIT\r\n")
    assert tf.readline() == b"221 2.0.0 Bye\r\n"
    tls.close()
    srv.wait_sessions(0)
    assert any("plaintext pipelined after STARTTLS discarded" in line for line in srv.log_lines())


def test_tls_required(smtpd, certificate):
    key, cert = certificate
    srv = smtpd(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_security_level = encrypt")
    with client(srv) as s:
        s.ehlo()
        code, text = s.mail("a@example.org")
        assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first")
        s.starttls(context=tls_context(cert))
        s.ehlo()
        assert s.mail("a@example.org")[0] == 250


def test_wrapper_mode(smtpd, certificate):
    key, cert = certificate
    srv = smtpd(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_wrappermode = yes\nsmtpd_tls_security_level = encrypt")
    ctx = tls_context(cert)
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, local_hostname="client.example",
                          context=ctx, timeout=30) as s:
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.sendmail("a@example.org", ["b@example.net"], MSG) == {}
    srv.wait_sessions(0)
    (meta, msg), = srv.sink.messages()
    assert b"with ESMTPS id" in msg.split(b"\r\n")[1]


def test_auth(smtpd):
    srv = smtpd("smtpd_sasl_auth_enable = yes",
                authenticator=StaticAuthenticator({"joe": "secret"}))
    with client(srv) as s:
        s.ehlo()
        assert s.esmtp_features["auth"] == " PLAIN LOGIN"
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login("joe", "wrong")
        assert exc.value.smtp_code == 535
        s.user, s.password = "joe", "secret"
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235
        assert s.sendmail("a@example.org", ["b@example.net"], MSG) == {}
    with client(srv) as s:
        s.login("joe", "secret")  # PLAIN with an initial response
        code, text = s.docmd("AUTH", "PLAIN")
        assert (code, text) == (503, b"5.5.1 Error: already authenticated")
    srv.wait_sessions(0)
    assert any(", sasl_method=LOGIN, sasl_username=joe" in line for line in srv.log_lines())


def test_auth_exchange_cancel(smtpd):
    srv = smtpd("smtpd_sasl_auth_enable = yes",
                authenticator=StaticAuthenticator({"joe": "secret"}))
    with client(srv) as s:
        s.ehlo()
        assert s.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
        assert s.docmd("*") == (501, b"5.7.0 Authentication aborted")
        assert s.docmd("AUTH", "PLAIN not-base64!") == (501, b"5.5.2 Cannot decode response")
        assert s.docmd("AUTH", "CRAM-MD5")[0] == 535


class GatedPolicy(Policy):
    """A policy whose RCPT answer for one address waits for the test to release it."""

    def __init__(self):
        self.gate = None
        self.waiting = threading.Event()

    def check(self, request):
        if request.stage == "RCPT" and request.recipient == "slow@example.net":
            async def wait():
                self.gate = asyncio.Event()
                self.waiting.set()
                await self.gate.wait()
                return Decision(replies.rejected(550, "5.7.1", "<slow@example.net>: go away"))
            return wait()
        return None


def test_slow_policy_blocks_only_its_session(smtpd):
    policy = GatedPolicy()
    srv = smtpd(policy=policy)
    slow = client(srv)
    slow.ehlo()
    slow.mail("a@example.org")
    slow.send(b"RCPT TO:<slow@example.net>\r\n")
    assert policy.waiting.wait(30)
    # Meanwhile another client gets a whole message through.
    with client(srv) as fast:
        assert fast.sendmail("a@example.org", ["b@example.net"], MSG) == {}
    srv.call(lambda: policy.gate.set())
    assert slow.getreply() == (550, b"5.7.1 <slow@example.net>: go away")
    slow.quit()
    srv.wait_sessions(0)
    assert len(srv.sink.messages()) == 1


class GatedSink(FileTestSink):
    """A file sink whose commit waits for the test (a slow durable write)."""

    def __init__(self, directory):
        super().__init__(directory)
        self.release = threading.Event()
        self.committing = threading.Event()

    def begin(self, client, envelope):
        txn = super().begin(client, envelope)
        finish = txn.finish

        def gated_finish():
            loop = asyncio.get_running_loop()

            def commit():
                self.committing.set()
                self.release.wait(30)
                return finish()
            return loop.run_in_executor(None, commit)

        txn.finish = gated_finish
        return txn


def test_queued_only_after_the_sink_is_durable(smtpd, tmp_path):
    sink = GatedSink(str(tmp_path / "gated"))
    srv = smtpd(sink=sink)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    f = sock.makefile("rb")
    f.readline()
    for cmd in (b"HELO c.example\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<b@example.net>\r\n",
                b"DATA\r\n"):
        sock.sendall(cmd)
        f.readline()
    sock.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    assert sink.committing.wait(30)
    # The commit is in progress: the client has been told nothing yet.
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(100)
    assert sink.messages() == []
    sock.setblocking(True)
    sink.release.set()
    assert f.readline() == b"250 2.0.0 Ok: queued as 00000000001\r\n"
    assert len(sink.messages()) == 1
    sock.close()


class FailingSink(FileTestSink):
    def begin(self, client, envelope):
        raise SinkError(log="the queue is on fire")


class LateIdSink(FileTestSink):
    """A sink that gives the queue ID some time after begin(), as CleanupSink does
    (id_pending), or refuses then (cleanup answering OPEN with 452: full disk)."""

    def __init__(self, directory, refuse=False):
        super().__init__(directory)
        self.refuse = refuse

    def begin(self, client, envelope):
        txn = super().begin(client, envelope)
        qid, txn.queue_id = txn.queue_id, ""
        loop = asyncio.get_running_loop()
        txn.id_pending = loop.create_future()

        def answer():
            if self.refuse:
                txn.id_pending.set_exception(SinkError(replies.INSUFFICIENT_STORAGE))
            else:
                txn.queue_id = qid
                txn.id_pending.set_result(qid)
        loop.call_later(0.05, answer)
        return txn


def test_rcpt_does_not_wait_for_the_queue_id(smtpd, tmp_path):
    srv = smtpd(sink=LateIdSink(str(tmp_path / "late")))
    with client(srv) as s:
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("b@example.net") == (250, b"2.1.5 Ok")
        code, text = s.data(b"Subject: late\r\n\r\nbody\r\n")
        assert code == 250
        qid = text.decode().rsplit(" ", 1)[-1]
    srv.wait_sessions(0)
    (meta, content), = srv.sink.messages()
    assert meta["queue_id"] == qid and f"id {qid}".encode() in content  # Received: header
    assert any(f"{qid}: client=" in line for line in srv.log_lines())


def test_queue_id_refused_after_rcpt_answers_data(smtpd, tmp_path):
    srv = smtpd(sink=LateIdSink(str(tmp_path / "refusing"), refuse=True))
    with client(srv) as s:
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("b@example.net") == (250, b"2.1.5 Ok")
        assert s.docmd("DATA") == (452, b"4.3.1 Insufficient system storage")
        assert s.docmd("DATA") == (452, b"4.3.1 Insufficient system storage")  # still
        assert s.rset()[0] == 250
        assert s.mail("a@example.org")[0] == 250
    srv.wait_sessions(0)
    assert srv.sink.messages() == []


def test_sink_failure_is_a_temporary_error(smtpd, tmp_path):
    srv = smtpd(sink=FailingSink(str(tmp_path / "f")))
    with client(srv) as s:
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("b@example.net") == (451, b"4.3.0 Error: queue file write error")
    srv.wait_sessions(0)
    assert any("warning: NOQUEUE: the queue is on fire" in line for line in srv.log_lines())


def test_timeouts(smtpd):
    srv = smtpd("smtpd_timeout = 1s")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    # A client that says nothing is told off and disconnected.
    assert f.readline() == b"421 4.4.2 mx.fastpost.test Error: timeout exceeded\r\n"
    assert f.readline() == b""
    sock.close()
    # A client that stalls in the middle of DATA: nothing is queued.
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    f = sock.makefile("rb")
    f.readline()
    for cmd in (b"HELO c.example\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<b@example.net>\r\n",
                b"DATA\r\n"):
        sock.sendall(cmd)
        f.readline()
    sock.sendall(b"Subject: never finished\r\n")
    assert f.readline() == b"421 4.4.2 mx.fastpost.test Error: timeout exceeded\r\n"
    sock.close()
    srv.wait_sessions(0)
    lines = srv.log_lines()
    assert "fastpost/smtpd: timeout after CONNECT from unknown[127.0.0.1]" in lines
    assert "fastpost/smtpd: timeout after DATA (25 bytes) from unknown[127.0.0.1]" in lines
    assert srv.sink.messages() == []


def test_stress_timeout_default(tmp_path):
    from fastpost.daemons.smtpd.settings import SmtpdSettings
    from fastpost.mail.config import Config

    assert SmtpdSettings.from_config(Config(str(tmp_path))).timeout == 300
    stressed = SmtpdSettings.from_config(Config(str(tmp_path), {"stress": "yes"}))
    assert (stressed.timeout, stressed.hard_error_limit, stressed.junk_command_limit) == (10, 1, 1)


def test_error_sleep(smtpd):
    # After smtpd_soft_error_limit errors each error reply is delayed; the reply still comes.
    srv = smtpd("smtpd_soft_error_limit = 1\nsmtpd_error_sleep_time = 1s")
    with client(srv) as s:
        assert s.docmd("FOO")[0] == 500
        assert s.docmd("BAR")[0] == 500  # after the sleep
        assert s.noop()[0] == 250


def test_connection_count_limit(smtpd):
    srv = smtpd("smtpd_client_connection_count_limit = 2\n"
                "smtpd_client_event_limit_exceptions =")
    a, b = client(srv), client(srv)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    assert sock.makefile("rb").readline() == (
        b"421 4.7.0 mx.fastpost.test Error: too many connections from 127.0.0.1\r\n")
    sock.close()
    a.quit()
    b.quit()
    srv.wait_sessions(0)
    assert any("Connection concurrency limit exceeded: 3 from unknown[127.0.0.1]" in line
               for line in srv.log_lines())


def test_queue_minfree(smtpd):
    srv = smtpd("queue_minfree = 999999999999999")
    with client(srv) as s:
        s.ehlo()
        assert s.mail("a@example.org") == (452, b"4.3.1 Insufficient system storage")


def test_peername_lookup(smtpd):
    srv = smtpd("smtpd_peername_lookup = yes")
    with client(srv) as s:
        s.noop()
    srv.wait_sessions(0)
    name = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0]
    lines = srv.log_lines()
    assert lines[0] in (f"fastpost/smtpd: connect from {name}[127.0.0.1]",
                        "fastpost/smtpd: connect from unknown[127.0.0.1]")


def test_pipelined_with_smtplib(smtpd):
    # smtplib has no pipelining of its own: send the envelope in one write and read
    # the replies after, as a PIPELINING client does (RFC 2920).
    srv = smtpd()
    with client(srv) as s:
        s.ehlo()
        assert s.has_extn("pipelining")
        s.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               b"RCPT TO:<c@example.net>\r\nDATA\r\n")
        assert [s.getreply()[0] for _ in range(4)] == [250, 250, 250, 354]
        s.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\n")
        assert [s.getreply()[0] for _ in range(3)] == [250, 250, 250]
    srv.wait_sessions(0)
    assert len(srv.sink.messages()) == 1
    assert not any("improper command pipelining" in line for line in srv.log_lines())


def test_tls_session_resumption(smtpd, certificate):
    key, cert = certificate
    srv = smtpd(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_security_level = may")
    ctx = tls_context(cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # session IDs/tickets without TLS 1.3 timing

    def session_once(session=None):
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO c.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sock.sendall(b"STARTTLS\r\n")
        f.readline()
        tls = ctx.wrap_socket(sock, session=session)
        tf = tls.makefile("rb")
        tls.sendall(b"QUIT\r\n")
        tf.readline()
        result = (tls.session, tls.session_reused)
        tls.close()
        return result

    first, reused = session_once()
    assert not reused
    second, reused = session_once(first)
    assert reused


def test_tls_chain_file(smtpd, certificate, tmp_path):
    key, cert = certificate
    chain = tmp_path / "chain.pem"
    chain.write_bytes(open(key, "rb").read() + open(cert, "rb").read())
    srv = smtpd(f"smtpd_tls_chain_files = {chain}\nsmtpd_tls_security_level = may")
    with client(srv) as s:
        s.ehlo()
        s.starttls(context=tls_context(cert))
        s.ehlo()
        assert s.noop()[0] == 250


def test_tls_without_certificate_is_not_offered(smtpd):
    srv = smtpd("smtpd_tls_security_level = may")
    with client(srv) as s:
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.docmd("STARTTLS") == (502, b"5.5.1 Error: command not implemented")
    srv.wait_sessions(0)
    assert any("No server certs available. TLS won't be enabled" in line
               for line in srv.log_lines())


def test_lookup_tables_in_host_and_domain_lists(smtpd, tmp_path):
    # mynetworks and relay_domains may name tables (here: cidr and texthash files).
    nets = tmp_path / "mynetworks.cidr"
    nets.write_text("127.0.0.3/32 OK\n")
    domains = tmp_path / "relay_domains"
    domains.write_text("relayed.example OK\n")
    srv = smtpd(f"mynetworks = 127.0.0.1/32, cidr:{nets}\n"
                f"relay_domains = texthash:{domains}\n"
                "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination")
    with client(srv, source_address=("127.0.0.3", 0)) as s:   # trusted through the table
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("anyone@elsewhere.example")[0] == 250
    with client(srv, source_address=("127.0.0.2", 0)) as s:
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("anyone@elsewhere.example")[0] == 554
        assert s.rcpt("user@relayed.example")[0] == 250
        assert s.rcpt("user@sub.relayed.example")[0] == 250  # relay_domains: parent matching


def test_table_that_cannot_answer_is_a_temporary_failure(smtpd, tmp_path):
    srv = smtpd(f"mynetworks = 127.0.0.1/32, hash:{tmp_path}/missing")
    with client(srv, source_address=("127.0.0.2", 0)) as s:
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("anyone@elsewhere.example") == (451, b"4.3.5 Server configuration error")


class _QuickPolicy(Policy):
    """Refuses RCPT TO:<no@...> in check(); quick_rcpt set per test; counts check()s."""

    def __init__(self, quick):
        self.quick_rcpt = quick
        self.checked: list[str] = []

    def check(self, request):
        if request.stage != "RCPT":
            return None
        self.checked.append(request.recipient)
        if request.recipient.startswith("no@"):
            return Decision(replies.Reply(550, "5.7.1", "<no@example.net>: refused"))
        return None


def test_quick_rcpt_true_skips_check_false_or_failing_asks_it(smtpd):
    """The session's RCPT shortcut (Policy.quick_rcpt): True answers 250 without
    check(); False, or an exception inside it, leaves the decision to check()."""
    def failing(client, envelope, recipient):
        raise RuntimeError("bug in a shortcut")

    for quick, asked in ((lambda c, e, r: r.startswith("yes@"), ["no@example.net"]),
                         (failing, ["yes@example.net", "no@example.net"])):
        policy = _QuickPolicy(quick)
        srv = smtpd(policy=policy)
        with client(srv) as s:
            s.ehlo()
            s.mail("a@example.org")
            assert s.rcpt("yes@example.net")[0] == 250
            assert s.rcpt("no@example.net")[0] == 550
        srv.wait_sessions(0)
        assert policy.checked == asked
