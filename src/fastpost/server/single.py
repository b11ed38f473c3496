"""The single-client skeleton: one client at a time per process.

Postfix counterpart: src/master/single_server.c

    single_server_main(argv, service, *, name=None, params=(), pre_init=None,
                       post_init=None, on_exit=None, resident=False, solitary=False)

``service`` is ``async def service(reader, writer, ctx)`` (asyncio streams), called for
each accepted connection; the skeleton closes the connection when it returns. While a
client is served the process reports TAKEN to the master and does not accept; the
master forks another process when a connection waits and none is free. Everything
else (argv, configuration, privileges, retirement) is fastpost.server.lifecycle's.

Use it for daemons whose clients do long, stateful work (delivery agents, bounce);
use the multi skeleton when one process should serve many clients at once.

Diagnostics: an exception escaping ``service`` is logged as an error and only that
client is dropped; log.fatal() in it ends the process (exit 1).
"""

from __future__ import annotations

import asyncio
import errno

from fastpost.server.lifecycle import STATUS_AVAIL, STATUS_TAKEN, BaseServer
from fastpost.util import log

_ACCEPT_TRANSIENT = (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN)


class SingleServer(BaseServer):
    """Accept one connection, serve it to the end, accept the next."""

    _accepting = False

    def _start_accepting(self) -> None:
        if self.retiring or self._accepting:
            return
        self._accepting = True
        for lst in self.listeners:
            self.loop.add_reader(lst.fileno(), self._acceptable, lst)
        self.notify(STATUS_AVAIL)

    def _stop_accepting(self, final: bool) -> None:
        if self._accepting:
            self._accepting = False
            for lst in self.listeners:
                self.loop.remove_reader(lst.fileno())
        if final:
            self._close_listeners()

    def _acceptable(self, lst) -> None:
        try:
            conn, _ = lst.accept()
        except (BlockingIOError, InterruptedError):
            return  # another process took it
        except OSError as exc:
            if exc.errno not in _ACCEPT_TRANSIENT:
                log.warn("accept connection: %s", exc.strerror)
            return
        self._stop_accepting(final=False)
        self.notify(STATUS_TAKEN)
        self.client_arrived()
        self.loop.create_task(self._serve(conn))

    async def _serve(self, conn) -> None:
        try:
            conn.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=conn)
            try:
                await self.service(reader, writer, self.ctx)
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except (OSError, asyncio.CancelledError):
                    pass
        except Exception as exc:
            self.report_exception("service", exc)
        finally:
            self.client_gone()
            self._start_accepting()


def single_server_main(argv, service, **options):
    """Run a single-client daemon (see the module docstring); never returns."""
    SingleServer(argv, service, **options).run()
