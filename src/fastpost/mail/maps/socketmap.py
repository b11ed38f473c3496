"""``socketmap:`` tables: the Sendmail socketmap protocol over TCP or UNIX sockets.

Postfix counterpart: src/util/dict_sockmap.c.

    socketmap:inet:host:port:mapname     socketmap:unix:/path:mapname

A request is the netstring ``mapname key``; the reply is a netstring ``OK value``
(found), ``NOTFOUND `` (not found), or ``TEMP``/``TIMEOUT``/``PERM`` with a reason,
which are failures (MapRetry) here as in Postfix. The connection is reused; a
broken connection is reopened once per lookup.

Diagnostics: MapError for a malformed name; MapRetry for failures and bad replies.
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import MapError, MapRetry
from fastpost.mail.maps._netbase import NetworkMap
from fastpost.mail.maps._sock import SockClient, netstring

TIMEOUT = 100.0


class SocketMap(NetworkMap):
    type = "socketmap"

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS):
        endpoint, _, mapname = name.rpartition(":")
        if not endpoint.startswith(("inet:", "unix:")) or not mapname:
            raise MapError(f'socketmap:{name}: need "inet:host:port:name" or '
                           f'"unix:path:name"')
        self.mapname = mapname
        super().__init__(name, flags, [endpoint])

    def connect(self, host: str):
        return SockClient(host, TIMEOUT)

    def disconnect(self, conn) -> None:
        conn.close()

    def query(self, conn, key: str) -> str | None:
        conn.send(netstring(f"{self.mapname} {key}".encode("utf-8", "surrogateescape")))
        reply = conn.read_netstring().decode("utf-8", "surrogateescape")
        status, _, text = reply.partition(" ")
        if status == "OK":
            return text
        if status == "NOTFOUND":
            return None
        if status in ("TEMP", "TIMEOUT", "PERM"):
            raise MapRetry(f"{self.spec}: {status} {text}".rstrip())
        raise ValueError(f"malformed reply: {reply[:100]!r}")
