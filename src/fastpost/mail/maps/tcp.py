"""``tcp:host:port`` tables: Postfix's simple request/reply text protocol.

Postfix counterpart: src/util/dict_tcp.c; tcp_table(5).

Request ``get SPACE key NEWLINE``; reply ``200 SPACE value``, ``500 SPACE text`` (not
found) or ``400 SPACE text`` (temporary failure). Keys and values are %XX-encoded for
characters at or below space, above ``~``, and ``%`` itself.

Diagnostics: MapRetry for 400 replies, malformed replies and connection failures.
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import MapRetry
from fastpost.mail.maps._netbase import NetworkMap
from fastpost.mail.maps._sock import SockClient

TIMEOUT = 10.0


def encode(text: str) -> bytes:
    out = bytearray()
    for b in text.encode("utf-8", "surrogateescape"):
        if b <= 32 or b > 126 or b == 0x25:
            out += b"%%%02X" % b
        else:
            out.append(b)
    return bytes(out)


def decode(data: bytes) -> str:
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x25 and i + 3 <= len(data):
            try:
                out.append(int(data[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(data[i])
        i += 1
    return bytes(out).decode("utf-8", "surrogateescape")


class TcpMap(NetworkMap):
    type = "tcp"

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS):
        super().__init__(name, flags, [name])

    def connect(self, host: str):
        return SockClient(host, TIMEOUT)

    def disconnect(self, conn) -> None:
        conn.close()

    def query(self, conn, key: str) -> str | None:
        conn.send(b"get " + encode(key) + b"\n")
        line = conn.readline()
        code, _, text = line.partition(b" ")
        if code == b"200":
            return decode(text)
        if code == b"500":
            return None
        if code == b"400":
            raise MapRetry(f"{self.spec}: {decode(text)}")
        raise ValueError(f"malformed reply: {line[:100]!r}")
