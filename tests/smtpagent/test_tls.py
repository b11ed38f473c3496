"""The agent's TLS client levels against a STARTTLS server (fastpost's smtpd stand-alone).

Certificates: a test CA signed the server's (names mx.tls.test); another CA did not.
Each level runs as its own master.cf service with -o overrides, in one instance.
"""

import re
import tempfile

import pytest

from smtpagent.agent import MASTER_CF, AgentSite
from smtpagent.sink import Sink
from smtpagent.tlspeer import TlsServer, make_ca, make_cert


@pytest.fixture(scope="module")
def env():
    from conftest import need_root

    need_root()
    d = tempfile.mkdtemp(prefix="tls-certs-")
    ca = make_ca(d)
    other = make_ca(d, "other CA")
    cert, key = make_cert(d, ca, ["mx.tls.test"])
    with TlsServer(cert, key) as srv:
        policy = f"{d}/policy"
        with open(policy, "w") as fh:
            fh.write(f"[127.0.0.1]:{srv.port} secure match=mx.tls.test\n")

        def svc(name, *opts):
            return f"{name} unix - - n - - smtp\n" + "".join(f"  -o {o}\n" for o in opts)

        master_cf = MASTER_CF + "".join([
            svc("tmay", "smtp_tls_security_level=may", "smtp_tls_loglevel=1"),
            svc("tmayca", "smtp_tls_security_level=may", "smtp_tls_loglevel=1",
                f"smtp_tls_CAfile={ca[2]}"),
            svc("tenc", "smtp_tls_security_level=encrypt", "smtp_tls_loglevel=1"),
            svc("tver", "smtp_tls_security_level=verify", "smtp_tls_loglevel=1",
                f"smtp_tls_CAfile={ca[2]}", "smtp_tls_verify_cert_match=mx.tls.test"),
            svc("tvername", "smtp_tls_security_level=verify", f"smtp_tls_CAfile={ca[2]}",
                "smtp_tls_verify_cert_match=other.tls.test"),
            svc("tverca", "smtp_tls_security_level=verify", f"smtp_tls_CAfile={other[2]}",
                "smtp_tls_verify_cert_match=mx.tls.test"),
            svc("tpol", f"smtp_tls_policy_maps=texthash:{policy}", "smtp_tls_loglevel=1",
                f"smtp_tls_CAfile={ca[2]}"),
            svc("tresume", "smtp_tls_security_level=encrypt", "smtp_tls_loglevel=2",
                "smtp_connection_cache_time_limit=0"),
            svc("tmay13", "smtp_tls_security_level=may",
                "{smtp_tls_protocols=!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.2}"),
        ])
        with AgentSite(master_cf=master_cf) as site:
            site.start()
            yield site, srv, (cert, key)


def deliver(site, srv, transport, nexthop=None):
    qid = site.submit(["x@example.net"], "Subject: tls\n\nsecret\n")
    res = site.deliver(qid, nexthop or f"[127.0.0.1]:{srv.port}", transport=transport)
    return qid, res


def tls_line(site, since: int) -> str:
    text = site.inst.log_text()[since:]
    m = re.search(r"(\w+ TLS connection established to [^\n]*)", text)
    return m.group(1) if m else ""


@pytest.mark.parametrize("transport, kind", [
    ("tmay", "Untrusted"), ("tmayca", "Trusted"), ("tenc", "Untrusted"), ("tver", "Verified"),
    ("tpol", "Verified"),
])
def test_levels_that_deliver(env, transport, kind):
    site, srv, _ = env
    before = len(site.inst.log_text())
    qid, res = deliver(site, srv, transport)
    assert [r.status for r in res.results] == ["sent"], res
    line = tls_line(site, before)
    assert re.fullmatch(rf"{kind} TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                        rf"{srv.port}: TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)", line), line
    assert b"ESMTPS" in srv.messages()[-1]  # the server saw the mail over TLS


def test_level_none_sends_in_plain_text(env):
    site, srv, _ = env
    qid, res = deliver(site, srv, "smtp")
    assert [r.status for r in res.results] == ["sent"]
    assert b"with ESMTP id" in srv.messages()[-1]


def test_encrypt_without_starttls_defers(env):
    site, _, _ = env
    with Sink() as sink:
        qid = site.submit(["x@example.net"])
        res = site.deliver(qid, sink.nexthop, transport="tenc")
        text = "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"
        assert [(r.status, r.dsn, r.text) for r in res.results] == [("deferred", "4.7.4", text)]
        assert sink.messages() == []


@pytest.mark.parametrize("transport, why", [
    ("tvername", "do not match"), ("tverca", "unable to get local issuer certificate"),
])
def test_verify_failures_defer(env, transport, why):
    site, srv, _ = env
    count = len(srv.messages())
    qid, res = deliver(site, srv, transport)
    assert [(r.status, r.dsn, r.text) for r in res.results] == \
        [("deferred", "4.7.5", "Server certificate not verified")]
    assert f"server certificate verification failed for 127.0.0.1[127.0.0.1]:{srv.port}" \
        in site.inst.log_text()
    assert why in site.inst.log_text()
    assert len(srv.messages()) == count  # nothing was sent


def test_may_retries_in_plain_text_after_a_failed_handshake(env):
    """The server speaks at most TLS 1.2, this client at least 1.3: no handshake."""
    site, _, (cert, key) = env
    with TlsServer(cert, key, "smtpd_tls_protocols = !SSLv2, !SSLv3, !TLSv1.3\n") as old:
        qid = site.submit(["x@example.net"])
        res = site.deliver(qid, f"[127.0.0.1]:{old.port}", transport="tmay13")
        assert [r.status for r in res.results] == ["sent"], res
        assert "trying again without TLS" in "\n".join(site.log_lines(qid))
        (msg,) = old.messages()
        assert b"with ESMTP id" in msg


def test_tls_session_resumed_on_the_next_connection(env):
    """No connection cache: each message a new connection, the second one resumes."""
    site, srv, _ = env
    qids = [deliver(site, srv, "tresume")[0] for _ in range(3)]
    text = site.inst.log_text()
    assert text.count(f"127.0.0.1[127.0.0.1]:{srv.port}: TLS session reused") >= 2
    for qid in qids:
        assert "status=sent" in site.log_lines(qid)[-1]
