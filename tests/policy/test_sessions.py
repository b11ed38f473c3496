"""The access-policy session suite: every restriction and access action, reply for
reply and log line for log line, against the replies C Postfix 3.7 gave.

Each case of ``cases/*.cases`` (syntax in sessions.py) is played against fastpost's
smtpd and compared with ``refs/*.ref``, which was recorded from a private C Postfix
configured alike (same main.cf lines, same tables, same DNS server). The
``postfix``-marked test replays every case against C Postfix and checks that it
still gives the recorded answers, so the refs are Postfix's, not ours. Cases where
fastpost deliberately differs say so (``%differs``) and have a ``[fastpost]``
section with fastpost's expected output.

The DNS cases ask a real nsd serving the test zones (dnsserver.py) on a loopback
address; Postfix is pointed at it through a private mount namespace.

``FASTPOST_UPDATE_POLICY_REFS=1 .venv/bin/python -m pytest tests/policy/test_sessions.py``
(as root) rewrites the refs from Postfix (and the [fastpost] sections from fastpost).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import select
import tempfile
import time

import pytest

from policy import sessions
from policy.sessions import REFS, all_cases, read_refs, render, run_fastpost, write_refs

UPDATE = os.environ.get("FASTPOST_UPDATE_POLICY_REFS") == "1"
CASES = all_cases()

ZONE = """\
$TTL 300
@            SOA   ns.test. hostmaster.test. 1 3600 600 86400 60
@            NS    ns.test.
ns           A     127.0.0.1
; hosts and domains
helo-a.dns         A     192.0.2.10
helo-mx.dns        MX    10 mail.dns.test.
mail.dns           A     192.0.2.20
v6only.dns         AAAA  2001:db8::1
sender-mx.dns      MX    10 mail.dns.test.
sender-a.dns       A     192.0.2.30
nullmx.dns         MX    0 .
nodata.dns         TXT   "no address here"
badmx.dns          MX    10 mail.bad.dns.test.
mail.bad.dns       A     192.0.2.99
ns-host.dns        A     192.0.2.40
nsdomain.dns       NS    ns-host.dns.test.
nsdomain.dns       A     192.0.2.41
; backup MX: the primary elsewhere, us second
backup.dns         MX    10 primary.dns.test.
backup.dns         MX    20 us.dns.test.
primary.dns        A     192.0.2.50
us.dns             A     127.0.0.1
primary-us.dns     MX    10 us.dns.test.
; DNS lists
1.2.0.192.rbl.dns      A     127.0.0.2
1.2.0.192.rbl.dns      TXT   "client 192.0.2.1 is listed"
3.2.0.192.rbl.dns      A     127.0.0.4
5.2.0.192.wl.dns       A     127.0.15.1
spam.example.dbl.dns   A     127.0.1.2
spam.example.dbl.dns   TXT   "domain listed"
helo.spam.example.dbl.dns  A  127.0.1.2
client.spam.example.dbl.dns A 127.0.1.2
good.example.wl.dns    A     127.0.15.1
"""

#: A loopback address the resolver can find nothing at (nsd answers REFUSED for
#: names outside its zones, which is a temporary failure).
ZONES = {"test": ZONE}


@pytest.fixture(scope="session")
def dns_server():
    from policy.dnsserver import NsdServer

    base = tempfile.mkdtemp(prefix="fp-policy-nsd-")
    os.chmod(base, 0o755)
    server = NsdServer(base, ZONES)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def _dns_cf(dns) -> str:
    return f"fastpost_dns_servers = {dns.address}\nfastpost_dns_timeout = 4s\n"


@pytest.fixture(scope="session", autouse=True)
def tables():
    sessions.write_tables()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}:{c.name}" for c in CASES])
def test_fastpost_session(case, tmp_path, dns_server):
    """fastpost's replies and log lines are Postfix's (or the documented difference)."""
    got = run_fastpost(case, tmp_path, _dns_cf(dns_server))
    path = REFS / f"{case.file}.ref"
    refs = read_refs(path)
    key = f"{case.name} [fastpost]" if case.differs else case.name
    if UPDATE and case.differs:
        refs[key] = got.replace(f"== {case.name}\n", f"== {key}\n", 1)
        write_refs(path, refs)
        return
    if key not in refs:
        pytest.skip(f"no reference for {key} yet (record it from Postfix: see the module doc)")
    assert got.replace(f"== {case.name}\n", f"== {key}\n", 1) == refs[key]


# -- C Postfix ---------------------------------------------------------------------------

FILES = sorted({c.file for c in CASES})


def _start_postfix(dns_server, cases):
    """A private Postfix with one smtpd service per distinct configuration of ``cases``.

    One instance per case file: a few hundred services in one master run it out of
    descriptors (services then never answer), and a hundred start in about 4 s.
    """
    from policy.pfx import PolicyPostfix

    base = tempfile.mkdtemp(prefix="fp-policy-pfx-")
    os.chmod(base, 0o755)
    services: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for case in cases:
        key = case.config_key
        if key not in names:
            names[key] = f"s{len(names)}"
            services[names[key]] = case.main_cf
    pfx = PolicyPostfix(base, sessions.BASE + sessions.POSTFIX_ONLY, services,
                        resolv_conf=dns_server.resolv_conf)
    pfx.base_dir = base
    try:
        pfx.start()
    except BaseException:
        pfx.stop()
        subprocess.run(["rm", "-rf", base])
        raise
    pfx.service_of = names
    return pfx


def _play_postfix(pfx, case) -> str:
    from policy.pfx import read_reply

    import socket

    service = pfx.service_of[case.config_key]
    offset = pfx.log_size()
    sock = socket.socket()
    sock.settimeout(5)  # a refused configuration never greets
    if case.client:
        sock.bind((case.client, 0))
    sock.connect(("127.0.0.1", pfx.ports[service]))
    buf = bytearray()
    # A configuration smtpd refuses never greets: stop waiting once its fatal line is
    # in the log (or after 5 s) rather than always waiting the whole time.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.1)[0]:
            break
        if any(line.startswith("fatal:") for line in pfx.log_since(offset)):
            break
    replies = [read_reply(sock, buf) if select.select([sock], [], [], 0)[0] else b""]
    sock.settimeout(30)
    for step in case.steps:
        if not replies[-1]:
            break
        want = sessions.expected_replies(step, replies[-1])
        try:
            sock.sendall(step.data)
        except OSError:
            break
        got = b""
        for _ in range(want):
            one = read_reply(sock, buf)
            got += one
            if not one or one[:3] in (b"421", b"221", b"521"):
                break
        replies.append(got)
        if not got:
            break
    sock.close()
    logs = pfx.session_log(offset, timeout=20 if replies[0] else 3)
    return render(case, replies, logs)


@pytest.mark.postfix
@pytest.mark.timeout(600)
@pytest.mark.parametrize("file", FILES)
def test_postfix_gives_the_refs(file, dns_server):
    """C Postfix still answers every case of ``file`` as recorded (or, when updating,
    records it)."""
    if os.geteuid() != 0 or not shutil.which("postfix"):
        pytest.skip("needs root and Debian's postfix (tests/apt-packages.txt)")
    cases = [c for c in CASES if c.file == file]
    path = REFS / f"{file}.ref"
    refs = read_refs(path)
    mismatches = []
    pfx = _start_postfix(dns_server, cases)
    try:
        for case in cases:
            got = _play_postfix(pfx, case)
            if UPDATE:
                refs[case.name] = got
            elif refs.get(case.name) != got:
                mismatches.append(f"{file}:{case.name}\n--- recorded\n{refs.get(case.name)}"
                                  f"--- Postfix now\n{got}")
    finally:
        pfx.stop()
        subprocess.run(["rm", "-rf", pfx.base_dir])
    if UPDATE:
        ordered = {}
        for case in cases:
            ordered[case.name] = refs[case.name]
            if f"{case.name} [fastpost]" in refs:
                ordered[f"{case.name} [fastpost]"] = refs[f"{case.name} [fastpost]"]
        write_refs(path, ordered)
    assert not mismatches, "\n".join(mismatches[:10])
