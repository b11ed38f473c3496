"""A small blocking socket client for line and netstring protocols (memcache,
socketmap, tcp tables), with a timeout on every operation.

Postfix counterpart: src/util/auto_clnt.c (reused connections), netstring.c.

Diagnostics: OSError (incl. socket.timeout) for any connection problem; ValueError
for a malformed reply. Callers turn both into MapRetry.
"""

from __future__ import annotations

import socket

from fastpost.mail.maps._netbase import split_hostport


class SockClient:
    def __init__(self, endpoint: str, timeout: float, default_port: int = 0):
        host, port = split_hostport(endpoint, default_port)
        if host == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(port)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def readline(self, limit: int = 65536) -> bytes:
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("reply line too long")
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def readexact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_netstring(self, limit: int = 100000) -> bytes:
        while b":" not in self.buf:
            if len(self.buf) > 12:
                raise ValueError("bad netstring length")
            self._fill()
        head, _, self.buf = self.buf.partition(b":")
        if not head.isdigit() or int(head) > limit:
            raise ValueError("bad netstring length")
        data = self.readexact(int(head) + 1)
        if data[-1:] != b",":
            raise ValueError("netstring not terminated by ','")
        return data[:-1]


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","
