"""Test daemon: the line protocol on the multi skeleton, as a protocol factory.

It runs without the cycle collector, so that a reference cycle per session would keep
sessions alive: ``LIVE`` answers how many protocol instances this worker still holds
(the multi skeleton must let reference counting free a finished session)."""

import asyncio
import gc
import weakref

from fastpost.server import multi_server_main
from testdaemons.lines import answer, greeting


_live = weakref.WeakSet()


class EchoProtocol(asyncio.Protocol):
    def __init__(self, ctx):
        _live.add(self)
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
            if word == "LIVE":
                self.transport.write(f"{len(_live)}\n".encode())
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
    gc.disable()
    multi_server_main(argv, EchoProtocol)
