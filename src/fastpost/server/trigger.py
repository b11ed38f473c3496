"""The trigger skeleton: wake-up requests of a few bytes, one at a time.

Postfix counterpart: src/master/trigger_server.c

    trigger_server_main(argv, service, *, name=None, params=(), pre_init=None,
                        post_init=None, on_exit=None, resident=False, solitary=False)

``service`` is ``service(data: bytes, ctx)`` (plain or async), called once per
trigger: the bytes a client wrote to a UNIX stream socket before closing it (at most
1024, read within ``trigger_timeout``), one read from a FIFO, or one datagram of a
unix-dgram service. Triggers are handled one at a time (TAKEN while busy). The master
sends ``W`` on its own every ``wakeup`` seconds (master.cf column 6). qmgr and pickup
are trigger servers; qmgr passes ``resident=True`` and ``solitary=True``.

Parameters: trigger_timeout, plus lifecycle's.
Diagnostics: a trigger that does not arrive within trigger_timeout is dropped with a
warning; an exception in ``service`` is logged as an error.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

from fastpost.server.lifecycle import STATUS_AVAIL, STATUS_TAKEN, BaseServer, _maybe_await
from fastpost.util import log

#: Largest trigger read from a stream connection or FIFO (Postfix reads 1024 too).
MAX_TRIGGER = 1024
#: Largest datagram accepted on a unix-dgram service.
MAX_DATAGRAM = 65536


class TriggerServer(BaseServer):
    """Read a trigger, run the service with it, wait for the next."""

    extra_params = ("trigger_timeout",)
    _accepting = False

    def _fd(self, lst) -> int:
        return lst if isinstance(lst, int) else lst.fileno()

    def _start_accepting(self) -> None:
        if self.retiring or self._accepting:
            return
        self._accepting = True
        for lst in self.listeners:
            self.loop.add_reader(self._fd(lst), self._readable, lst)
        self.notify(STATUS_AVAIL)

    def _stop_accepting(self, final: bool) -> None:
        if self._accepting:
            self._accepting = False
            for lst in self.listeners:
                self.loop.remove_reader(self._fd(lst))
        if final:
            self._close_listeners()

    def _begin(self) -> None:
        self._stop_accepting(final=False)
        self.notify(STATUS_TAKEN)
        self.client_arrived()

    def _readable(self, lst) -> None:
        try:
            if isinstance(lst, int):
                data = os.read(lst, MAX_TRIGGER)
                if not data:
                    return
                self._begin()
                self.loop.create_task(self._deliver(data))
            elif lst.type == socket.SOCK_DGRAM:
                data = lst.recv(MAX_DATAGRAM)
                self._begin()
                self.loop.create_task(self._deliver(data))
            else:
                conn, _ = lst.accept()
                self._begin()
                self.loop.create_task(self._read_then_deliver(conn))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in (errno.ECONNABORTED, errno.EPROTO):
                log.warn("read trigger: %s", exc.strerror)

    async def _read_then_deliver(self, conn) -> None:
        data = bytearray()
        try:
            conn.setblocking(False)
            async with asyncio.timeout(int(self.ctx.p["trigger_timeout"]) or None):
                while len(data) < MAX_TRIGGER:
                    chunk = await self.loop.sock_recv(conn, MAX_TRIGGER - len(data))
                    if not chunk:
                        break
                    data += chunk
        except TimeoutError:
            log.warn("trigger from a client: timeout after %ss", self.ctx.p["trigger_timeout"])
            data.clear()
        except OSError as exc:
            log.warn("read trigger: %s", exc.strerror)
            data.clear()
        finally:
            conn.close()
        await self._deliver(bytes(data))

    async def _deliver(self, data: bytes) -> None:
        try:
            if data:
                await _maybe_await(self.service(data, self.ctx))
        except Exception as exc:
            self.report_exception("service", exc)
        finally:
            self.client_gone()
            self._start_accepting()


def trigger_server_main(argv, service, **options):
    """Run a trigger daemon (see the module docstring); never returns."""
    TriggerServer(argv, service, **options).run()
