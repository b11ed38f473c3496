"""Test daemon: the line protocol on the multi skeleton, as a protocol factory."""

import asyncio

from fastpost.server import multi_server_main
from testdaemons.lines import answer, greeting


class EchoProtocol(asyncio.Protocol):
    def __init__(self, ctx):
        self.ctx = ctx
        self.buf = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(greeting(self.ctx))

    def data_received(self, data):
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            word, _, arg = line.decode().strip().partition(" ")
            if word == "SLEEP":
                asyncio.get_running_loop().call_later(float(arg), self._slept)
                continue
            reply, close = answer(line, self.ctx)
            self.transport.write(reply)
            if close:
                self.transport.close()
                return

    def _slept(self):
        if not self.transport.is_closing():
            self.transport.write(b"slept\n")

    def connection_lost(self, exc):
        pass


def main(argv):
    multi_server_main(argv, EchoProtocol)
