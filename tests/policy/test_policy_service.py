"""check_policy_service in the restriction engine, against C Postfix: a policy server
in this test (a real TCP server on loopback) answers each request with the action the
test chose for the recipient's local part; fastpost and a private Postfix 3.7 are given
the same sessions, and must give the same replies and send the same attributes.

Runs only when the policy client (fastpost.daemons.smtpd.policy_client, branch
``authpol``) is present; the Postfix half needs root and Debian's postfix.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from policy import sessions

policy_client = pytest.importorskip("fastpost.daemons.smtpd.policy_client",
                                    reason="the policy client (branch authpol) is not merged")

#: Local part of the recipient -> the policy server's answer.
ACTIONS = {
    "dunno": "DUNNO",
    "ok": "OK",
    "reject": "REJECT go away",
    "code": "554 5.7.2 policy code",
    "defer": "DEFER_IF_PERMIT Greylisted, try later",
    "hold": "HOLD policy hold",
    "warn": "WARN policy warning",
    "prepend": "PREPEND X-Policy: yes",
    "bogus": "NONSENSE action",
}

#: Attributes whose values depend on the process or the run, compared by name only.
VOLATILE = {"instance", "client_port", "server_port", "queue_id", "policy_context",
            "compatibility_level", "mail_version", "size"}


class PolicyServer:
    """A policy server: reads requests, answers from ACTIONS, keeps every request."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[list[tuple[str, str]]] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\n\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                block, buf = buf.split(b"\n\n", 1)
                attrs = [tuple(line.split("=", 1)) for line in block.decode().split("\n")]
                self.requests.append(attrs)
                rcpt = dict(attrs).get("recipient", "")
                action = ACTIONS.get(rcpt.partition("@")[0], "DUNNO")
                conn.sendall(f"action={action}\n\n".encode())

    def close(self):
        self._stop = True
        self.sock.close()


SESSION = [b"XCLIENT NAME=client.example.com ADDR=192.0.2.1 HELO=helo.example.com\r\n",
           b"EHLO helo.example.com\r\n", b"MAIL FROM:<s@example.com> SIZE=100\r\n"]


def _rcpts():
    return [f"RCPT TO:<{name}@relay.example>\r\n".encode() for name in ACTIONS]


def _main_cf(port: int, extra: str = "") -> str:
    return (f"smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{port}, "
            f"permit_mynetworks, reject_unauth_destination\n{extra}")


def _fastpost(tmp_path, main_cf: str):
    from fastpost.daemons.smtpd.testing import SmtpdThread, run_transcript

    with SmtpdThread(tmp_path, sessions.BASE + main_cf) as srv:
        result = run_transcript(srv, SESSION + _rcpts() + [b"QUIT\r\n"])
    return [server for _, server, _ in result]


def _postfix(main_cf: str):
    from policy.pfx import PolicyPostfix

    base = tempfile.mkdtemp(prefix="fp-policysvc-pfx-")
    os.chmod(base, 0o755)
    lines = [line for line in main_cf.splitlines() if line.strip()]
    pfx = PolicyPostfix(base, sessions.BASE + sessions.POSTFIX_ONLY, {"s": lines})
    try:
        pfx.start()
        return pfx.play("s", SESSION + _rcpts() + [b"QUIT\r\n"])
    finally:
        pfx.stop()
        subprocess.run(["rm", "-rf", base])


def _need_postfix():
    if os.geteuid() != 0 or not shutil.which("postfix"):
        pytest.skip("needs root and Debian's postfix (tests/apt-packages.txt)")


@pytest.fixture
def server():
    s = PolicyServer()
    yield s
    s.close()


@pytest.fixture(scope="module", autouse=True)
def tables():
    sessions.write_tables()


@pytest.mark.postfix
def test_policy_actions_answer_as_postfix(tmp_path, server):
    _need_postfix()
    ours = _fastpost(tmp_path, _main_cf(server.port))
    our_requests = list(server.requests)
    server.requests.clear()
    theirs = _postfix(_main_cf(server.port))
    assert ours == theirs
    # Same attributes, in the same order, with the same values (but the volatile ones).
    assert len(our_requests) == len(server.requests) == len(ACTIONS)
    for mine, postfix in zip(our_requests, server.requests):
        assert [k for k, _ in mine] == [k for k, _ in postfix]
        assert {k: v for k, v in mine if k not in VOLATILE} == \
               {k: v for k, v in postfix if k not in VOLATILE}


@pytest.mark.postfix
def test_unreachable_policy_server_gets_the_default_action(tmp_path):
    _need_postfix()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    extra = "smtpd_policy_service_try_limit = 1\nsmtpd_policy_service_timeout = 2s\n"
    ours = _fastpost(tmp_path, _main_cf(port, extra))
    theirs = _postfix(_main_cf(port, extra))
    assert ours == theirs
    assert ours[4] == (b"451 4.3.5 <dunno@relay.example>: Recipient address rejected: "
                       b"Server configuration problem\r\n")
