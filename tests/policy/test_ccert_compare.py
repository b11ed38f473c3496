"""TLS client certificates in the restriction engine, compared with C Postfix.

The test makes its own CA with openssl (a server certificate and two client
certificates it signs). Both MTAs ask for client certificates (smtpd_tls_ask_ccert,
smtpd_tls_CAfile = the test CA) and play the same sessions: plaintext, TLS without a
certificate, TLS with client one (its certificate fingerprint listed in
relay_clientcerts and check_ccert_access), TLS with client two (listed by its
public-key fingerprint); each relays or sends to a relay domain. The MAIL/RCPT
replies and the ``reject:`` log lines must be the same: permit_tls_clientcerts,
permit_tls_all_clientcerts, check_ccert_access (certificate and public-key
fingerprints, sha256), and the ccert_*/encryption_* attributes of a
check_policy_service request.

Known difference, not played here: a certificate that does not verify against the
CA ends the handshake in fastpost (Python's ssl cannot ask for a certificate without
verifying it), while Postfix goes on with an untrusted certificate (docs/policy.md).
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import subprocess
import time

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread
from fastpost.daemons.smtpd.tls import public_key_info
from helpers.instance import free_port
from helpers.peers import PrivatePostfix, need
from policy.test_policy_service import PolicyServer

CONFIGS = {
    "clientcerts": {"smtpd_relay_restrictions": "permit_tls_clientcerts, reject_unauth_destination"},
    "allcerts": {"smtpd_relay_restrictions": "permit_tls_all_clientcerts, reject_unauth_destination"},
    "ccert_access": {"smtpd_recipient_restrictions": "check_ccert_access texthash:{dir}/ccert, permit"},
    "policy": {"smtpd_recipient_restrictions":
               "check_policy_service inet:127.0.0.1:{policy}, permit"},
}

#: The policy request attributes that describe the TLS session and its certificate.
TLS_ATTRS = ("ccert_subject", "ccert_issuer", "ccert_fingerprint", "ccert_pubkey_fingerprint",
             "encryption_protocol", "encryption_cipher", "encryption_keysize")

#: (client certificate or None, use STARTTLS, recipient) per session.
SESSIONS = [
    (None, False, "x@elsewhere.example"),
    (None, True, "x@elsewhere.example"),
    ("one", True, "x@elsewhere.example"),
    ("two", True, "x@elsewhere.example"),
    ("one", True, "r@relay.test"),
    ("two", True, "r@relay.test"),
    (None, True, "r@relay.test"),
]


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(d):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=fastpost test CA", cwd=d)
    for name in ("server", "one", "two"):
        cn = "two client (test)" if name == "two" else f"{name}.client.test"  # text to encode
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", cwd=d)


def _der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def _fp(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(data).digest())


def _play(port: int, d, cert, tls: bool, rcpt: str) -> list[str]:
    out = []
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = sock.makefile("rb")

    def reply() -> str:
        lines = []
        while True:
            line = f.readline()
            lines.append(line.decode().rstrip("\r\n"))
            if not line or line[3:4] != b"-":
                return "\n".join(lines)

    def cmd(text: str) -> str:
        sock.sendall(text.encode() + b"\r\n")
        return reply()

    try:
        assert reply().startswith("220")
        assert cmd("EHLO client.example").startswith("250")
        if tls:
            assert cmd("STARTTLS").startswith("220")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if cert:
                ctx.load_cert_chain(d / f"{cert}.crt", d / f"{cert}.key")
            f.close()
            sock = ctx.wrap_socket(sock)
            f = sock.makefile("rb")
            assert cmd("EHLO client.example").startswith("250")
        out.append(cmd("MAIL FROM:<s@example.com>"))
        out.append(cmd(f"RCPT TO:<{rcpt}>"))
        cmd("QUIT")
    finally:
        f.close()
        sock.close()
    return out


_REJECT = re.compile(r"(NOQUEUE: reject: .*)")


def _rejects(lines) -> list[str]:
    return [m.group(1) for m in map(_REJECT.search, lines) if m]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need("openssl")
    d = tmp_path_factory.mktemp("pki")
    d.chmod(0o755)
    _make_pki(d)
    for name in ("server", "one", "two", "ca"):
        (d / f"{name}.key").chmod(0o644)
    one_fp = _fp(_der(d / "one.crt"))
    two_pk = _fp(public_key_info(_der(d / "two.crt")))
    (d / "relaycerts").write_text(f"{one_fp} one\n{two_pk} two\n")
    (d / "ccert").write_text(f"{one_fp} REJECT cert one refused\n"
                             f"{two_pk} 451 4.7.1 cert two deferred\n")
    common = {
        "mynetworks": "192.0.2.0/24",
        "relay_domains": "relay.test",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": str(d / "server.crt"),
        "smtpd_tls_key_file": str(d / "server.key"),
        "smtpd_tls_CAfile": str(d / "ca.crt"),
        "smtpd_tls_ask_ccert": "yes",
        "smtpd_tls_fingerprint_digest": "sha256",
        "relay_clientcerts": f"texthash:{d}/relaycerts",
        "smtpd_error_sleep_time": "0",
    }
    policy = PolicyServer()
    configs = {name: {k: v.format(dir=d, policy=policy.port) for k, v in over.items()}
               for name, over in CONFIGS.items()}
    ports, extra = {}, ""
    for name, over in configs.items():
        ports[name] = free_port()
        extra += f"127.0.0.1:{ports[name]} inet n - n - - smtpd\n" + "".join(
            f"  -o {k}={v.replace(', ', ',').replace(' ', ',')}\n" for k, v in over.items())
    with PrivatePostfix(common, extra) as pfx:
        yield d, common, configs, ports, pfx, policy
    policy.close()


def test_public_key_info_is_openssls(world):
    d = world[0]
    theirs = subprocess.run(["openssl", "x509", "-in", str(d / "two.crt"), "-noout", "-pubkey"],
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=theirs,
                         capture_output=True, check=True).stdout
    assert public_key_info(_der(d / "two.crt")) == der


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_as_postfix(world, name, tmp_path):
    d, common, configs, ports, pfx, _policy = world
    main_cf = "".join(f"{k} = {v}\n" for k, v in {**common, **configs[name]}.items())
    before = len(pfx.log_text().splitlines())
    theirs = [_play(ports[name], d, *s) for s in SESSIONS]
    with SmtpdThread(tmp_path, main_cf) as srv:
        ours = [_play(srv.port, d, *s) for s in SESSIONS]
        our_log = srv.log_lines()
    for session, a, b in zip(SESSIONS, ours, theirs):
        assert a == b, (name, session)
    want = sum(1 for replies in theirs if replies[-1][:1] in "45")
    deadline = time.monotonic() + 20
    while True:  # Postfix's log may lag its last reply a moment
        their_rejects = _rejects(pfx.log_text().splitlines()[before:])
        if len(their_rejects) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert _rejects(our_log) == their_rejects


def test_policy_request_describes_the_certificate(world, tmp_path):
    """check_policy_service gets the same ccert_* and encryption_* attributes."""
    d, common, configs, ports, pfx, policy = world
    main_cf = "".join(f"{k} = {v}\n" for k, v in {**common, **configs["policy"]}.items())
    got = {}
    for who in ("postfix", "fastpost"):
        for cert in ("one", "two", None):
            del policy.requests[:]
            if who == "postfix":
                replies = _play(ports["policy"], d, cert, True, "r@relay.test")
            else:
                with SmtpdThread(tmp_path / str(cert), main_cf) as srv:
                    replies = _play(srv.port, d, cert, True, "r@relay.test")
            assert replies[-1].startswith("250 2.1.5"), (who, replies)
            attrs = dict(policy.requests[-1])
            got[who, cert] = {k: attrs.get(k) for k in TLS_ATTRS}
    for cert in ("one", "two", None):
        assert got["fastpost", cert] == got["postfix", cert], cert
    assert got["fastpost", "one"]["ccert_subject"] == "one.client.test"
    assert got["fastpost", "one"]["ccert_issuer"] == "fastpost+20test+20CA"  # xtext
    assert got["fastpost", "one"]["ccert_fingerprint"] == _fp(_der(d / "one.crt"))
