"""smtpd with swaks (Debian's SMTP test tool) as the client.

swaks's exit status is the verdict: 0 sent, 24 no recipient accepted, 28 AUTH
failed, 29 TLS failed. swaks is in tests/apt-packages.txt.
"""

import shutil
import subprocess

import pytest

from fastpost.daemons.smtpd.sasl import StaticAuthenticator


def swaks(srv, *args, source=None):
    exe = shutil.which("swaks")
    if exe is None:
        pytest.skip("swaks not installed (./dev test installs tests/apt-packages.txt as root)")
    cmd = [exe, "--server", "127.0.0.1", "--port", str(srv.port), "--helo", "client.example",
           "--from", "a@example.org", "--to", "b@example.net", "--timeout", "30", *args]
    if source:
        cmd += ["--local-interface", source]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


def test_plain(smtpd):
    srv = smtpd()
    r = swaks(srv, "--header", "Subject: swaks plain", "--body", "hello\n.\nstill here\n")
    assert r.returncode == 0, r.stdout.decode()
    srv.wait_sessions(0)
    (meta, msg), = srv.sink.messages()
    assert b"Subject: swaks plain" in msg
    # swaks sends the body line "." as "..": it comes back as one dot, inside the message.
    assert b"\r\n.\r\nstill here\r\n" in msg


def test_pipelining(smtpd):
    srv = smtpd()
    r = swaks(srv, "--pipeline", "--to", "b@example.net,c@example.net")
    assert r.returncode == 0, r.stdout.decode()
    out = r.stdout.decode()
    # The envelope went out in one group and the replies came back in one.
    assert " -> MAIL FROM:<a@example.org>\n -> RCPT TO:<b@example.net>\n" in out
    srv.wait_sessions(0)
    (meta, msg), = srv.sink.messages()
    assert [r["address"] for r in meta["recipients"]] == ["b@example.net", "c@example.net"]
    assert not any("improper command pipelining" in line for line in srv.log_lines())


def test_relay_refused(smtpd):
    srv = smtpd()
    r = swaks(srv, "--to", "victim@elsewhere.example", source="127.0.0.2")
    assert r.returncode == 24, r.stdout.decode()
    assert b"454 4.7.1 <victim@elsewhere.example>: Relay access denied" in r.stdout


def test_starttls(smtpd, certificate):
    key, cert = certificate
    srv = smtpd(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_security_level = may")
    r = swaks(srv, "--tls")
    assert r.returncode == 0, r.stdout.decode()
    assert b"TLS started with cipher" in r.stdout
    srv.wait_sessions(0)
    (meta, msg), = srv.sink.messages()
    assert b"with ESMTPS id" in msg


def test_tls_on_connect(smtpd, certificate):
    key, cert = certificate
    srv = smtpd(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_wrappermode = yes")
    r = swaks(srv, "--tls-on-connect")
    assert r.returncode == 0, r.stdout.decode()
    srv.wait_sessions(0)
    assert len(srv.sink.messages()) == 1


def test_auth(smtpd):
    srv = smtpd("smtpd_sasl_auth_enable = yes",
                authenticator=StaticAuthenticator({"joe": "secret"}))
    assert swaks(srv, "--auth", "PLAIN", "--auth-user", "joe", "--auth-password", "secret").returncode == 0
    assert swaks(srv, "--auth", "LOGIN", "--auth-user", "joe", "--auth-password", "secret").returncode == 0
    assert swaks(srv, "--auth", "PLAIN", "--auth-user", "joe", "--auth-password", "nope").returncode == 28
    srv.wait_sessions(0)
    assert len(srv.sink.messages()) == 2
