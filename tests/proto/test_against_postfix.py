"""The golden transcripts played against C Postfix 3.7: same client bytes, same replies.

For every script in goldens/, a private Postfix instance (own config, queue and
ports; needs root and Debian's postfix) configured like the test smtpd - same host
name and banner, same networks, fastpost's 3.9-style smuggling and pipelining
defaults, no local recipient table - answers the same steps as fastpost's smtpd.
Queue IDs are masked; every reply must otherwise be byte-identical. Postfix starts
once, with one smtpd service per distinct %main.cf block (its lines as -o
overrides), so no reload is needed between scripts.
"""

import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread, parse_script, run_transcript

pytestmark = pytest.mark.postfix

HERE = pathlib.Path(__file__).parent / "goldens"
SCRIPTS = sorted(HERE.glob("*.in"))

BASE = """compatibility_level = 3.7
myhostname = mx.fastpost.test
mydomain = fastpost.test
mydestination = $myhostname, localhost
mynetworks = 127.0.0.1/32
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP fastpost
smtpd_forbid_bare_newline = normalize
smtpd_forbid_unauth_pipelining = yes
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
default_transport = discard
relay_transport = discard
local_transport = discard
syslog_name = postfix
# trivial-rewrite, not smtpd, classifies relay domains: a -o on the smtpd service
# would not reach it, so relay.in's relay_domains is set for the whole instance.
relay_domains = relay.example
"""

_QID = re.compile(rb"queued as [0-9A-Za-z]+")


def _final_lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\r\n") if re.match(rb"\d{3} ", line))


def _free_ports(n: int) -> list[int]:
    """n distinct free ports: the sockets stay bound until all are chosen (one at a
    time, the kernel may hand out a port twice, and two services of one master.cf on
    the same port would answer with one block's settings for both)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Postfix:
    """One private Postfix with an smtpd service (port) per main.cf block."""

    def __init__(self, base: str, blocks: list[str]):
        self.base = base
        self.etc = os.path.join(base, "etc")
        os.makedirs(self.etc)
        for d in ("spool", "data"):
            os.makedirs(os.path.join(base, d))
        shutil.chown(os.path.join(base, "data"), "postfix")
        self.ports = dict(zip(blocks, _free_ports(len(blocks))))
        lines = []
        with open("/etc/postfix/master.cf", encoding="utf-8") as fh:
            for line in fh.read().splitlines():
                words = line.split()
                if words and not line.startswith((" ", "\t", "#")) and len(words) >= 8:
                    if words[0] == "smtp" and words[1] == "inet":
                        continue  # replaced by the services below
                    if words[4] in ("y", "-"):
                        words[4] = "n"  # no chroot
                    line = "  ".join(words)
                lines.append(line)
        for block, port in self.ports.items():
            opts = "".join(f" -o {{ {line.strip()} }}" for line in block.splitlines() if line.strip())
            lines.append(f"{port}  inet  n  -  n  -  -  smtpd{opts}")
        with open(os.path.join(self.etc, "master.cf"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(os.path.join(self.etc, "main.cf"), "w", encoding="utf-8") as fh:
            fh.write(BASE + f"queue_directory = {base}/spool\ndata_directory = {base}/data\n"
                     f"maillog_file = {base}/maillog\nmaillog_file_prefixes = {base}\n")
        subprocess.run(["postfix", "-c", self.etc, "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "Postfix did not start"
                    time.sleep(0.05)
        # each probe above is one session in the log ("connect", "lost connection after
        # CONNECT", "disconnect"): wait for them all, or a test's log window (which
        # starts at the log's size) may catch the last of them
        maillog = os.path.join(base, "maillog")
        while sum(line.startswith("disconnect from") for line in
                  (_smtpd_lines(maillog, 0) if os.path.exists(maillog) else [])) < len(self.ports):
            assert time.monotonic() < deadline, "Postfix did not log its probe sessions"
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)

    def play(self, port, steps, expected_counts, source=None, half_close=False):
        sock = socket.socket()
        if source:
            sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.settimeout(10)
        out = []
        buf = b""
        closed = False

        def read(want):
            nonlocal buf, closed
            got = b""
            while _final_lines(got) < want and not closed:
                if b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    got += line + b"\r\n"
                    continue
                try:
                    chunk = sock.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not chunk:
                    closed = True
                    break
                buf += chunk
            return got

        out.append(read(expected_counts[0]))
        for i, step in enumerate(steps):
            if closed:
                break
            sock.sendall(step)
            if half_close and i == len(steps) - 1:
                sock.shutdown(socket.SHUT_WR)
            out.append(read(expected_counts[i + 1]))
        sock.close()
        return out


@pytest.fixture(scope="module")
def postfix():
    if os.geteuid() != 0 or not shutil.which("postfix"):
        pytest.skip("needs root and Debian's postfix (tests/apt-packages.txt)")
    base = tempfile.mkdtemp(prefix="fp-golden-pfx-")
    os.chmod(base, 0o755)
    blocks = sorted({parse_script(p)[0] for p in SCRIPTS})
    pfx = Postfix(base, blocks)
    yield pfx
    pfx.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_same_replies_as_postfix(script, postfix, tmp_path):
    main_cf, steps, opts = parse_script(script)
    with SmtpdThread(tmp_path, main_cf) as srv:
        ours = [server for _, server, _ in
                run_transcript(srv, steps, source=opts["client"], half_close=opts["halfclose"])]
    theirs = postfix.play(postfix.ports[main_cf], steps[: len(ours) - 1],
                          [_final_lines(o) for o in ours],
                          source=opts["client"], half_close=opts["halfclose"])
    assert [_QID.sub(b"queued as ID", t) for t in theirs] == \
        [_QID.sub(b"queued as ID", o) for o in ours]



_LOG_QID = re.compile(r"\b[0-9A-F]{10,12}\b")


def _smtpd_lines(maillog: str, start: int) -> list[str]:
    with open(maillog, encoding="utf-8", errors="replace") as fh:
        fh.seek(start)
        text = fh.read()
    out = []
    for line in text.splitlines():
        tag, _, rest = line.split(" ", 4)[4].partition(": ")
        if tag.split("[", 1)[0].endswith("/smtpd"):
            out.append(_LOG_QID.sub("QUEUEID", rest))
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_same_log_lines_as_postfix(script, postfix, tmp_path):
    """smtpd's log lines (connect, client=, reject, warnings, disconnect with the
    command counts) match Postfix's, for log tools such as pflogsumm and fail2ban."""
    main_cf, steps, opts = parse_script(script)
    with SmtpdThread(tmp_path, main_cf) as srv:
        result = run_transcript(srv, steps, source=opts["client"], half_close=opts["halfclose"])
    ours = [_LOG_QID.sub("QUEUEID", line.split(": ", 1)[1]) for _, _, lines in result
            for line in lines]
    maillog = os.path.join(postfix.base, "maillog")
    start = os.path.getsize(maillog)
    postfix.play(postfix.ports[main_cf], steps[: len(result) - 1],
                 [_final_lines(server) for _, server, _ in result],
                 source=opts["client"], half_close=opts["halfclose"])
    deadline = time.monotonic() + 20
    while not any(line.startswith("disconnect from") for line in _smtpd_lines(maillog, start)):
        assert time.monotonic() < deadline, "Postfix logged no disconnect"
        time.sleep(0.05)
    theirs = _smtpd_lines(maillog, start)
    assert theirs == ours
