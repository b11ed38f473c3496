"""The restriction engine never blocks the event loop on a slow network table.

reject_unauth_destination classifies the recipient through trivial-rewrite's resolve
(relay_domains, transport_maps, ...). With those in a *network* table (tcp:, here a
small server in the test) the engine must await the lookup, so other sessions of the
same smtpd go on while one waits. The table server holds its answer for any key
naming ``slow.example`` until the test releases it, after a second session has been
served from start to end: if the loop blocked, that second session would get no reply
(its socket times out and the test fails). No sleeps, no timing assertions.
"""

from __future__ import annotations

import select
import socket
import threading
from urllib.parse import unquote

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread


class SlowTable(threading.Thread):
    """A tcp_table(5) server: ``fast.example`` is listed, keys naming ``slow.example``
    wait for ``release`` and are then not found, everything else is not found."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.asked = threading.Event()
        self.release = threading.Event()
        self.keys: list[str] = []

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn, conn.makefile("rwb") as f:
            for line in f:
                key = unquote(line.decode().strip()[4:])
                self.keys.append(key)
                if "slow.example" in key:
                    self.asked.set()
                    self.release.wait(60)
                f.write(b"200 OK\n" if key == "fast.example" else b"500 not found\n")
                f.flush()

    def close(self):
        self.release.set()
        self.sock.close()


def _reply(f) -> bytes:
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line


def _cmd(sock, f, text: str) -> bytes:
    sock.sendall(text.encode() + b"\r\n")
    return _reply(f)


@pytest.mark.parametrize("param", ["relay_domains", "transport_maps"])
def test_slow_table_does_not_stall_other_sessions(tmp_path, param):
    table = SlowTable()
    table.start()
    spec = f"tcp:127.0.0.1:{table.port}"
    main_cf = (f"mynetworks = 192.0.2.0/24\nrelay_domains = {spec}\n"
               + (f"transport_maps = {spec}\n" if param == "transport_maps" else "")
               + "smtpd_relay_restrictions = reject_unauth_destination\n")
    try:
        with SmtpdThread(tmp_path, main_cf) as srv:
            a = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            fa = a.makefile("rb")
            assert _reply(fa).startswith(b"220")
            _cmd(a, fa, "EHLO a.example")
            assert _cmd(a, fa, "MAIL FROM:<x@a.example>").startswith(b"250")
            # relay_domains: the domain's own lookup waits. transport_maps: the
            # domain is a listed relay domain, the address key of transport_maps waits.
            rcpt = "u@slow.example" if param == "relay_domains" else "slow.example@fast.example"
            a.sendall(f"RCPT TO:<{rcpt}>\r\n".encode())
            assert table.asked.wait(30), f"the table was never asked; keys {table.keys}"
            # Session A waits on the table; session B must be served meanwhile.
            b = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            fb = b.makefile("rb")
            assert _reply(fb).startswith(b"220")
            assert _cmd(b, fb, "EHLO b.example").startswith(b"250")
            assert _cmd(b, fb, "MAIL FROM:<y@b.example>").startswith(b"250")
            assert _cmd(b, fb, "RCPT TO:<v@elsewhere.test>").startswith(b"554 5.7.1")
            assert _cmd(b, fb, "QUIT").startswith(b"221")
            b.close()
            # A is still waiting for its answer.
            assert select.select([a], [], [], 0)[0] == []
            table.release.set()
            reply = _reply(fa)
            if param == "relay_domains":
                assert reply.startswith(b"554 5.7.1 <u@slow.example>: Relay access denied")
            else:
                assert reply.startswith(b"250 2.1.5")
            assert _cmd(a, fa, "QUIT").startswith(b"221")
            a.close()
    finally:
        table.close()
