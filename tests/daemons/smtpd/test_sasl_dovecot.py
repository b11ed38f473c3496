"""SMTP AUTH through a real Dovecot (smtpd_sasl_type = dovecot), compared with C Postfix.

A private Dovecot (auth service only, passwd-file users, its client socket in a temp
directory) serves both fastpost's smtpd and a private C Postfix configured the same
way; scripted sessions must get the same replies from both, and the warning lines
must say the same. Failed logins come from different 127.0.0.x addresses: Dovecot
delays a client address's repeated failures (its auth penalty).
"""

import base64
import smtplib
import socket

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread
from helpers.peers import Dovecot, PrivatePostfix

USERS = {"alice": "secret", "bob": "hunter2"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sasl_cf(dv, extra: str = "") -> str:
    return ("smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
            f"smtpd_sasl_path = {dv.socket}\n" + extra)


def session(port: int, lines: list[str], source: str = "127.0.0.1") -> list[str]:
    """Send each line, collect each whole reply (multi-line replies joined by |)."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        f = s.makefile("rb")

        def reply():
            out = []
            while True:
                line = f.readline().decode().rstrip("\r\n")
                out.append(line)
                if not line or line[3:4] != "-":
                    return "|".join(out)

        got = [reply()]
        for line in lines:
            s.sendall(line.encode() + b"\r\n")
            got.append(reply())
        return got


@pytest.fixture(scope="module")
def dovecot():
    with Dovecot(USERS) as dv:
        yield dv


@pytest.fixture(scope="module")
def fastpost(dovecot, tmp_path_factory):
    with SmtpdThread(tmp_path_factory.mktemp("sasl"),
                     sasl_cf(dovecot, "broken_sasl_auth_clients = yes\n"
                                      "smtpd_sasl_authenticated_header = yes\n")) as srv:
        yield srv


@pytest.fixture(scope="module")
def postfix(dovecot):
    cf = {"smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "dovecot",
          "smtpd_sasl_path": dovecot.socket, "broken_sasl_auth_clients": "yes"}
    with PrivatePostfix(cf) as pfx:
        yield pfx


def test_plain_and_login_with_smtplib(fastpost):
    srv = fastpost
    for mechanism, user, password in (("PLAIN", "alice", "secret"), ("LOGIN", "bob", "hunter2")):
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.example",
                          timeout=30) as s:
            s.ehlo()  # smtplib joins the AUTH and AUTH= lines
            assert set(s.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
            s.user, s.password = user, password
            auth = s.auth_plain if mechanism == "PLAIN" else s.auth_login
            assert s.auth(mechanism, auth, initial_response_ok=mechanism == "PLAIN")[0] == 235
            assert s.sendmail(f"{user}@example.org", ["out@elsewhere.example"],
                              b"Subject: authenticated\r\n\r\nhi\r\n") == {}
    srv.wait_sessions(0)
    messages = srv.sink.messages()[-2:]
    assert [m[0]["sender"] for m in messages] == ["alice@example.org", "bob@example.org"]
    # As Postfix writes it with smtpd_sasl_authenticated_header = yes:
    assert messages[0][1].startswith(
        b"Received: from client.example (unknown [127.0.0.1])\r\n"
        b"\t(Authenticated sender: alice)\r\n"
        b"\tby mx.fastpost.test (fastpost) with ESMTPA id ")
    log = "\n".join(srv.log_lines())
    assert "client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice" in log
    assert "client=unknown[127.0.0.1], sasl_method=LOGIN, sasl_username=bob" in log


def test_wrong_password_with_smtplib(fastpost):
    with smtplib.SMTP("127.0.0.1", fastpost.port, source_address=("127.0.0.21", 0),
                      timeout=30) as s:
        s.ehlo()
        s.user, s.password = "alice", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.auth("PLAIN", s.auth_plain)
        assert exc.value.smtp_code == 535
        assert exc.value.smtp_error == b"5.7.8 Error: authentication failed: (reason unavailable)"


SCRIPTS = {
    # name: (source address, lines); at most one failure judged by Dovecot per
    # address, and last (Dovecot delays the next request from that address).
    "failures": ("127.0.0.31", [
        "EHLO client.example",
        "AUTH FOO",
        "AUTH",
        "AUTH LOGIN",
        "*",
        "AUTH PLAIN " + b64(b"\0alice\0wrong"),
        "QUIT"]),
    "login": ("127.0.0.32", [
        "EHLO client.example",
        "AUTH LOGIN " + b64(b"alice"),
        b64(b"secret"),
        "AUTH PLAIN " + b64(b"\0alice\0secret"),
        "MAIL FROM:<alice@example.org>",
        "AUTH LOGIN",
        "QUIT"]),
    "before_ehlo": ("127.0.0.33", [
        "AUTH PLAIN " + b64(b"\0bob\0hunter2"),
        "EHLO client.example",
        "AUTH LOGIN",
        "QUIT"]),
    "plain_challenge": ("127.0.0.34", [
        "EHLO client.example",
        "AUTH PLAIN",
        b64(b"\0bob\0hunter2"),
        "QUIT"]),
    "login_unknown_user": ("127.0.0.35", [
        "EHLO client.example",
        "AUTH LOGIN",
        b64(b"nobody"),
        b64(b"x"),
        "QUIT"]),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_same_replies_as_postfix(name, fastpost, postfix):
    source, lines = SCRIPTS[name]
    ours = session(fastpost.port, lines, source)
    theirs = session(postfix.port, lines, source.replace("127.0.0.", "127.0.1."))
    # Only the greeting names the software.
    assert ours[1:] == theirs[1:]


def test_undecodable_response_deliberate_difference(fastpost):
    # The protocol core decodes base64 before the SASL seam, so fastpost answers as
    # Postfix does with Cyrus; Postfix with Dovecot passes the text on and relays
    # Dovecot's "535 5.7.8 Error: authentication failed: Invalid base64 data in
    # initial response" (docs/policy-services.md).
    got = session(fastpost.port, ["EHLO x", "AUTH PLAIN not-base64!", "QUIT"], "127.0.0.36")
    assert got[2] == "501 5.5.2 Cannot decode response"


def test_same_warnings_as_postfix(fastpost, postfix):
    import time

    scripts = [["EHLO client.example", "AUTH PLAIN " + b64(b"\0alice\0wrong"), "QUIT"],
               ["EHLO client.example", "AUTH LOGIN", b64(b"nobody"), b64(b"x"), "QUIT"],
               ["EHLO client.example", "AUTH LOGIN", b64(b"alice"), "*", "QUIT"]]
    for i, lines in enumerate(scripts):
        session(fastpost.port, lines, f"127.0.0.{41 + i}")
        session(postfix.port, lines, f"127.0.1.{41 + i}")
    fastpost.wait_sessions(0)

    def warnings(text, net):
        return [line.split("warning: ", 1)[1].replace(net, "127.0.x.")
                for line in text.splitlines() if "warning:" in line and net + "4" in line]

    ours = warnings("\n".join(fastpost.log_lines()), "127.0.0.")
    deadline = time.monotonic() + 10
    while len(warnings(postfix.log_text(), "127.0.1.")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    theirs = warnings(postfix.log_text(), "127.0.1.")
    assert ours == theirs == [
        "unknown[127.0.x.41]: SASL PLAIN authentication failed: (reason unavailable), "
        "sasl_username=alice",
        "unknown[127.0.x.42]: SASL LOGIN authentication failed: (reason unavailable), "
        "sasl_username=nobody",
        "unknown[127.0.x.43]: SASL LOGIN authentication aborted"]


def test_ehlo_offers_what_dovecot_offers(fastpost):
    ehlo = session(fastpost.port, ["EHLO client.example", "QUIT"])[1].split("|")
    assert "250-AUTH PLAIN LOGIN" in ehlo and "250-AUTH=PLAIN LOGIN" in ehlo


def test_security_options_filter_mechanisms(dovecot, tmp_path):
    # Both of Dovecot's mechanisms are plaintext ones: nothing is left to offer.
    with SmtpdThread(tmp_path, sasl_cf(dovecot, "smtpd_sasl_security_options = "
                                                "noanonymous, noplaintext\n")) as srv:
        got = session(srv.port, ["EHLO client.example", "AUTH PLAIN " + b64(b"\0a\0b"),
                                 "QUIT"])
    assert "AUTH" not in got[1]
    assert got[2] == "503 5.5.1 Error: authentication not enabled"


def test_sasl_exceptions_networks_hide_auth(dovecot, tmp_path):
    # As Postfix: no AUTH in EHLO for those clients, but the command still works.
    with SmtpdThread(tmp_path, sasl_cf(dovecot, "smtpd_sasl_exceptions_networks = "
                                                "127.0.0.51\n")) as srv:
        hidden = session(srv.port, ["EHLO x", "AUTH PLAIN " + b64(b"\0bob\0hunter2"), "QUIT"],
                         "127.0.0.51")
        shown = session(srv.port, ["EHLO x", "QUIT"], "127.0.0.52")
    assert "AUTH" not in hidden[1] and "250-AUTH PLAIN LOGIN" in shown[1]
    assert hidden[2] == "235 2.7.0 Authentication successful"


def test_tls_auth_only(dovecot, tmp_path, certificate):
    import ssl

    key, cert = certificate
    cf = sasl_cf(dovecot, f"smtpd_tls_auth_only = yes\nsmtpd_tls_security_level = may\n"
                          f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n")
    with SmtpdThread(tmp_path / "srv", cf) as srv:
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as s:
            s.ehlo()
            assert not s.has_extn("auth")
            assert s.docmd("AUTH", "PLAIN " + b64(b"\0alice\0secret")) == (
                503, b"5.5.1 Error: authentication not enabled")
            s.starttls(context=ctx)
            s.ehlo()
            assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            s.login("alice", "secret")
            assert s.sendmail("alice@example.org", ["x@elsewhere.example"], b"s: 1\r\n\r\nx\r\n") == {}
        srv.wait_sessions(0)
        assert b"with ESMTPSA id" in srv.sink.messages()[0][1]


def test_dovecot_stopped_mid_run(tmp_path):
    with Dovecot(USERS) as dv, SmtpdThread(tmp_path / "srv", sasl_cf(dv)) as srv:
        login = ["EHLO client.example", "AUTH PLAIN " + b64(b"\0alice\0secret"), "QUIT"]
        assert session(srv.port, login)[2] == "235 2.7.0 Authentication successful"
        dv.stop()
        assert session(srv.port, login)[2] == (
            "454 4.7.0 Temporary authentication failure: (reason unavailable)")
        dv.start()
        assert session(srv.port, login)[2] == "235 2.7.0 Authentication successful"
        srv.wait_sessions(0)
        log = "\n".join(srv.log_lines())
        assert f"warning: SASL: Connect to Dovecot auth socket '{dv.socket}' failed" in log
        assert ("SASL PLAIN authentication failed: (reason unavailable), "
                "sasl_username=(unavailable)") in log


def test_anonymous_mechanism_filtered_by_default(tmp_path):
    with Dovecot(USERS, mechanisms="plain login anonymous") as dv:
        with SmtpdThread(tmp_path / "a", sasl_cf(dv)) as srv:
            default = session(srv.port, ["EHLO x", "AUTH ANONYMOUS", "QUIT"])
        with SmtpdThread(tmp_path / "b", sasl_cf(dv, "smtpd_sasl_security_options =\n")) as srv:
            allowed = session(srv.port, ["EHLO x", "AUTH ANONYMOUS " + b64(b"trace"), "QUIT"])
    assert "250-AUTH PLAIN LOGIN|" in default[1]
    assert default[2] == ("535 5.7.8 Error: authentication failed: "
                          "Invalid authentication mechanism")
    assert "250-AUTH PLAIN LOGIN ANONYMOUS|" in allowed[1]
    assert allowed[2] == "235 2.7.0 Authentication successful"


def test_dovecot_flags_and_escaping():
    from fastpost.daemons.smtpd.sasl_dovecot import _escape, _unescape, mechanism_allowed

    assert mechanism_allowed({"plaintext"}, ["noanonymous"])
    assert not mechanism_allowed({"plaintext"}, ["noanonymous", "noplaintext"])
    assert not mechanism_allowed({"anonymous"}, ["noanonymous"])
    assert not mechanism_allowed({"private"}, [])
    assert not mechanism_allowed(set(), ["mutual_auth"])
    assert mechanism_allowed({"mutual-auth", "dictionary"}, ["mutual_auth"])
    for text in ("plain", "a\tb\nc\x01d\re", "\x01\x01t"):
        assert _unescape(_escape(text)) == text
    assert "\t" not in _escape("a\tb") and "\n" not in _escape("a\nb")


def test_dovecot_over_tcp(tmp_path):
    with Dovecot(USERS, inet=True) as dv:
        cf = ("smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
              f"smtpd_sasl_path = inet:127.0.0.1:{dv.port}\n")
        with SmtpdThread(tmp_path, cf) as srv:
            got = session(srv.port, ["EHLO x", "AUTH PLAIN " + b64(b"\0alice\0secret"), "QUIT"])
    assert "250-AUTH PLAIN LOGIN" in got[1]
    assert got[2] == "235 2.7.0 Authentication successful"
