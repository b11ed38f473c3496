"""anvil and smtpd's client limits: the counters alone, then real instances.

The instance tests run fastpost's master with smtpd and anvil in master.cf (and a
private Dovecot for AUTH), hit each smtpd_client_*_limit with real clients from
127.0.0.x (not in smtpd_client_event_limit_exceptions), and play the same sessions
against a private C Postfix configured the same way: the replies must match.
"""

import base64
import socket
import ssl
import time

import pytest

from fastpost.daemons.anvil import Anvil
from helpers.instance import Instance, free_port
from helpers.peers import Dovecot, PrivatePostfix


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_counts_rates_and_windows():
    clock = Clock()
    a = Anvil(60, clock=clock)
    ident = "smtp:192.0.2.1"
    assert a.handle({"request": "connect", "ident": ident}) == {"status": 0, "count": 1, "rate": 1}
    assert a.handle({"request": "connect", "ident": ident}) == {"status": 0, "count": 2, "rate": 2}
    assert a.handle({"request": "disconnect", "ident": ident}) == {"status": 0}
    for n in (1, 2, 3):
        assert a.handle({"request": "recipient", "ident": ident})["rate"] == n
    assert a.handle({"request": "newtls_report", "ident": ident})["rate"] == 0
    assert a.handle({"request": "newtls", "ident": ident})["rate"] == 1
    assert a.handle({"request": "lookup", "ident": ident}) == {
        "status": 0, "count": 1, "rate": 2, "message": 0, "recipient": 3, "newtls": 1, "auth": 0}
    clock.now += 60  # a new window: rates start again, the count stays
    assert a.handle({"request": "message", "ident": ident})["rate"] == 1
    assert a.handle({"request": "lookup", "ident": ident})["count"] == 1
    a.handle({"request": "disconnect", "ident": ident})
    a.expire()
    assert ident in a.clients  # its window is not over yet
    clock.now += 60
    a.expire()
    assert a.clients == {}
    assert a.handle({"request": "bogus", "ident": ident}) == {"status": 1}
    assert a.handle({"request": "connect"}) == {"status": 1}


def test_statistics_lines():
    clock = Clock()
    a = Anvil(60, clock=clock)
    for _ in range(3):
        a.handle({"request": "connect", "ident": "smtp:192.0.2.1"})
    a.handle({"request": "auth", "ident": "smtp:192.0.2.2"})
    lines = a.statistics()
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime(clock.now))
    assert lines == [
        f"statistics: max connection rate 3/60s for (smtp:192.0.2.1) at {stamp}",
        f"statistics: max connection count 3 for (smtp:192.0.2.1) at {stamp}",
        f"statistics: max auth rate 1/60s for (smtp:192.0.2.2) at {stamp}",
        f"statistics: max cache size 2 at {stamp}",
    ]
    assert a.statistics() == [f"statistics: max cache size 2 at {stamp}"]


def test_held_connections_are_given_back_when_the_client_goes():
    a = Anvil(60)
    held = {}
    a.handle({"request": "connect", "ident": "smtp:192.0.2.1"}, held)
    a.handle({"request": "connect", "ident": "smtp:192.0.2.1"}, held)
    a.handle({"request": "disconnect", "ident": "smtp:192.0.2.1"}, held)
    assert held == {"smtp:192.0.2.1": 1}
    a.disconnect("smtp:192.0.2.1")  # what the service does for each held one at close
    assert a.clients["smtp:192.0.2.1"].count == 0


# -- real instances ----------------------------------------------------------------------

LIMITS = {
    "smtpd_client_connection_rate_limit": "3",
    "smtpd_client_message_rate_limit": "1",
    "smtpd_client_recipient_rate_limit": "2",
    "smtpd_client_auth_rate_limit": "1",
    "smtpd_client_event_limit_exceptions": "",
    "mynetworks": "127.0.0.1/32",
    "smtpd_peername_lookup": "no",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_sasl_type": "dovecot",
    "smtpd_authorized_xclient_hosts": "127.0.0.65, 127.0.0.66",
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def session(port, lines, source):
    """Replies (last line of each) to the greeting and each line; stops when closed."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline().decode().rstrip("\r\n")
                if not line or line[3:4] != "-":
                    return line

        got = [reply()]
        for line in lines:
            if not got[-1] or got[-1].startswith("421"):
                break
            s.sendall(line.encode() + b"\r\n")
            got.append(reply())
        return got


@pytest.fixture(scope="module")
def dovecot():
    with Dovecot({"alice": "secret"}) as dv:
        yield dv


@pytest.fixture(scope="module")
def fastpost(tmp_path_factory, dovecot):
    port = free_port()
    inst = Instance(tmp_path_factory.mktemp("anvil"),
                    master_cf=f"127.0.0.1:{port} inet n - n - - smtpd\n"
                              "anvil unix - - n - 1 anvil\n"
                              "cleanup unix n - n - 0 cleanup\n"  # smtpd's sink
                              "rewrite unix - - n - - trivial-rewrite\n",
                    main_cf={**LIMITS, "smtpd_sasl_path": dovecot.socket,
                             "myhostname": "mx.fastpost.test",
                             # the default includes hash:/etc/aliases, which is not built
                             # for fastpost here (a lookup would be a temporary failure)
                             "local_recipient_maps": "",
                             "anvil_status_update_time": "1s"})
    inst.port = port
    inst.start()
    yield inst
    inst.cleanup()


@pytest.fixture(scope="module")
def postfix(dovecot):
    with PrivatePostfix({**LIMITS, "smtpd_sasl_path": dovecot.socket}) as pfx:
        yield pfx


TRANSACTION = ["EHLO client.example", "MAIL FROM:<a@example.org>",
               "RCPT TO:<postmaster@mx.fastpost.test>", "RCPT TO:<postmaster@mx.fastpost.test>",
               "RCPT TO:<postmaster@mx.fastpost.test>", "RSET", "MAIL FROM:<a@example.org>",
               "AUTH PLAIN " + b64(b"\0alice\0secret"), "QUIT"]
# Not compared: an authenticated client over its AUTH rate gets "503 5.5.1 Error:
# already authenticated" from fastpost (the protocol core says so before the anvil
# hook runs) and 450 from Postfix (docs/policy-services.md).


def test_rate_limits_same_replies_as_postfix(fastpost, postfix):
    ours = [session(fastpost.port, TRANSACTION if i == 0 else ["QUIT"], "127.0.0.61")
            for i in range(4)]
    theirs = [session(postfix.port, TRANSACTION if i == 0 else ["QUIT"], "127.0.0.62")
              for i in range(4)]
    norm = [[line.replace("127.0.0.61", "ADDR") for line in s] for s in ours]
    pnorm = [[line.replace("127.0.0.62", "ADDR") for line in s] for s in theirs]
    assert [s[1:] for s in norm] == [s[1:] for s in pnorm]
    assert norm[0][5:8] == ["450 4.7.1 Error: too many recipients from ADDR", "250 2.0.0 Ok",
                            "450 4.7.1 Error: too much mail from ADDR"]
    # The fourth connection within the minute: over the connection rate limit.
    assert norm[3] == pnorm[3] == [
        "421 4.7.0 mx.fastpost.test Error: too many connections from ADDR"]
    log = fastpost.wait_log(r"Connection rate limit exceeded: 4 from unknown\[127\.0\.0\.61\] "
                            rf"for service 127\.0\.0\.1:{fastpost.port}")
    assert "warning: Recipient address rate limit exceeded: 3 from unknown[127.0.0.61]" in log
    assert "warning: Message delivery request rate limit exceeded: 2 from unknown[127.0.0.61]" in log
    stats = fastpost.wait_log(r"anvil\[\d+\]: statistics: max cache size")
    assert f"statistics: max connection rate 4/60s for (127.0.0.1:{fastpost.port}:127.0.0.61)" in stats


def test_xclient_client_is_counted(fastpost, postfix):
    """A client allowed to send XCLIENT is not limited itself (Postfix does not tell
    anvil about it); after XCLIENT the limits are the new client's, connection count
    and rate included."""
    lines = ["XCLIENT ADDR=198.51.100.{n}", "EHLO client.example", "MAIL FROM:<a@example.org>",
             "RCPT TO:<postmaster@mx.fastpost.test>", "QUIT"]
    plain = ["EHLO client.example", "MAIL FROM:<a@example.org>", "RSET",
             "MAIL FROM:<a@example.org>", "QUIT"]
    ours = [session(fastpost.port, plain, "127.0.0.65")] + [
        session(fastpost.port, [x.format(n=61) for x in lines], "127.0.0.65") for _ in range(4)]
    theirs = [session(postfix.port, plain, "127.0.0.66")] + [
        session(postfix.port, [x.format(n=62) for x in lines], "127.0.0.66") for _ in range(4)]
    norm = [[line.replace("198.51.100.61", "ADDR").replace("ESMTP fastpost", "ESMTP")
             for line in s] for s in ours]
    pnorm = [[line.replace("198.51.100.62", "ADDR").replace("ESMTP Postfix", "ESMTP")
              for line in s] for s in theirs]
    assert norm == pnorm
    assert norm[0][2:5] == ["250 2.1.0 Ok", "250 2.0.0 Ok", "250 2.1.0 Ok"]  # not limited
    norm = norm[1:]
    assert norm[1][3] == "450 4.7.1 Error: too much mail from ADDR"
    # The fourth XCLIENT names a client over the connection rate limit; the real
    # client (127.0.0.65, allowed to send XCLIENT) was never counted.
    assert norm[3] == ["220 mx.fastpost.test ESMTP",
                       "421 4.7.0 mx.fastpost.test Error: too many connections from ADDR"]
    fastpost.wait_log(r"Connection rate limit exceeded: 4 from unknown\[198\.51\.100\.61\]")


def test_auth_rate_limit(fastpost, postfix):
    lines = ["EHLO client.example", "AUTH PLAIN " + b64(b"\0alice\0wrong"),
             "AUTH PLAIN " + b64(b"\0alice\0secret"), "QUIT"]
    ours = session(fastpost.port, lines, "127.0.0.63")
    theirs = session(postfix.port, lines, "127.0.0.64")
    assert ours[2:] == [r.replace("127.0.0.64", "127.0.0.63") for r in theirs[2:]]
    assert ours[3] == "450 4.7.1 Error: too many AUTH commands from 127.0.0.63"
    fastpost.wait_log(r"warning: AUTH command rate limit exceeded: 2 from unknown\[127\.0\.0\.63\]")


def test_connection_count_limit_counts_across_workers(tmp_path):
    # Two smtpd processes (maxproc 2, one client each): only anvil sees both clients.
    port = free_port()
    inst = Instance(tmp_path, master_cf=f"127.0.0.1:{port} inet n - n - 2 smtpd\n"
                                        "  -o fastpost_multi_client_limit=1\n"
                                        "anvil unix - - n - 1 anvil\n",
                    main_cf={"smtpd_client_connection_count_limit": "1",
                             "smtpd_client_event_limit_exceptions": "",
                             "smtpd_peername_lookup": "no"})
    try:
        inst.start()
        first = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert first.makefile("rb").readline().startswith(b"220 ")
        second = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert second.makefile("rb").readline() == (
            b"421 4.7.0 test.localdomain Error: too many connections from 127.0.0.1\r\n")
        second.close()
        first.close()
        inst.wait_log(r"Connection concurrency limit exceeded: 2 from unknown\[127\.0\.0\.1\]")
        # The first one's disconnect reached anvil: a new client is welcome.
        inst.wait_log(r"disconnect from unknown\[127\.0\.0\.1\]", count=2)
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as third:
                if third.makefile("rb").readline().startswith(b"220 "):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        inst.cleanup()


def test_anvil_unreachable_means_no_limits(tmp_path):
    port = free_port()
    inst = Instance(tmp_path, master_cf=f"127.0.0.1:{port} inet n - n - - smtpd\n",
                    main_cf={"smtpd_client_message_rate_limit": "1",
                             "smtpd_client_event_limit_exceptions": "",
                             "smtpd_peername_lookup": "no"})
    try:
        inst.start()
        got = session(port, ["EHLO x", "MAIL FROM:<a@example.org>", "RSET",
                             "MAIL FROM:<a@example.org>", "QUIT"], "127.0.0.65")
        assert got[2] == got[4] == "250 2.1.0 Ok"
        inst.wait_log(r"warning: problem talking to service private/anvil: ")
    finally:
        inst.cleanup()


def test_new_tls_session_rate_limit(tmp_path):
    from fastpost.cli.tls import new_server_files

    port = free_port()
    inst = Instance(tmp_path, master_cf=f"127.0.0.1:{port} inet n - n - - smtpd\n"
                                        "anvil unix - - n - 1 anvil\n",
                    main_cf={"smtpd_client_new_tls_session_rate_limit": "1",
                             "smtpd_client_event_limit_exceptions": "",
                             "smtpd_tls_security_level": "may",
                             "smtpd_peername_lookup": "no"})
    key, cert = new_server_files(str(inst.etc), ["test.localdomain"], algorithm="ecdsa")
    inst.update_main_cf(smtpd_tls_cert_file=cert, smtpd_tls_key_file=key)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    import smtplib
    try:
        inst.start()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            assert s.starttls(context=ctx)[0] == 220
            s.ehlo()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            assert s.docmd("STARTTLS") == (
                454, b"4.7.0 Error: too many new TLS sessions from 127.0.0.1")
        inst.wait_log(r"warning: New TLS session rate limit exceeded: 2 from unknown\[127\.0\.0\.1\]")
    finally:
        inst.cleanup()
