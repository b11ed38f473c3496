"""The multi-client skeleton: many concurrent clients on one event loop per process.

Postfix counterpart: src/master/multi_server.c

    multi_server_main(argv, service, *, name=None, params=(), pre_init=None,
                      post_init=None, on_exit=None, resident=False, solitary=False,
                      max_use_scale=1, accept_handles=1, self_counting=False)

``service`` is either

  * a protocol factory ``service(ctx) -> asyncio.Protocol`` (or BufferedProtocol),
    called once per accepted connection — the fast path smtpd uses: the loop (uvloop)
    accepts in C and calls the protocol's callbacks directly, no task and no coroutine
    per connection or per line, and a BufferedProtocol lets a Cython parser receive
    straight into its own buffer; or
  * ``async def service(reader, writer, ctx)``: asyncio streams and one task per
    connection, for daemons where convenience beats the last microsecond.

The process reports AVAIL to the master while it has fewer than
``fastpost_multi_client_limit`` clients; at the limit it stops accepting and reports
TAKEN, so the master forks another worker when connections wait (up to maxproc). It
counts connections toward ``max_use`` (Postfix's multi_server does the same: with
persistent connections, as from trivial-rewrite's clients, that is rare; a daemon with
many short connections sets ``-o max_use`` high or ``resident=True``).

``accept_handles=N`` watches each listening socket through N descriptors (dups of it),
each with its own server handle. The loop (libuv, as bundled with uvloop 0.23)
accepts at most one connection per handle per loop iteration, so with one handle a
burst of k connections waits k iterations of a busy loop before the last one is
accepted; with N handles up to N are accepted per iteration (a handle that finds the
queue empty costs one accept4 that returns EAGAIN). smtpd uses it: under load its
greeting otherwise waits for the accept queue (docs/accept.md, "Session 5").

The skeleton wraps each protocol instance's connection_made/connection_lost to count
clients; nothing is added on the data path. A service whose protocols count
themselves passes ``self_counting=True``: its connection_made calls
``ctx.connected()`` and its connection_lost ``ctx.disconnected()`` (smtpd does: two
closures, two instance attributes and their removal per connection less).

Parameters: fastpost_multi_client_limit, plus lifecycle's.
Diagnostics: exceptions in protocol callbacks are logged by the loop's exception
handler (an error line with the location); the loop closes that transport.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket

from fastpost.server.lifecycle import LISTEN_BACKLOG, STATUS_AVAIL, STATUS_TAKEN, BaseServer


class MultiServer(BaseServer):
    """Serve many clients concurrently; pause accepting at the client limit."""

    extra_params = ("fastpost_multi_client_limit",)

    def __init__(self, argv, service, *, accept_handles: int = 1, self_counting: bool = False,
                 **options):
        super().__init__(argv, service, **options)
        #: Server handles per listening socket (module docstring).
        self.accept_handles = max(1, int(accept_handles))
        #: The protocols call ctx.connected()/ctx.disconnected() themselves.
        self.self_counting = self_counting

    def _prepare(self) -> None:
        self.client_limit = max(1, int(self.ctx.p["fastpost_multi_client_limit"]))
        self._servers: list = []
        self._accepting = False
        if inspect.iscoroutinefunction(self.service):
            self._factory = self._stream_factory
        elif self.self_counting:
            self._factory = functools.partial(self.service, self.ctx)
        else:
            self._factory = self._protocol_factory

    # -- accepting ------------------------------------------------------------------

    def _start_accepting(self) -> None:
        if self.retiring or self._accepting:
            return
        self._accepting = True
        self.notify(STATUS_AVAIL)
        self.loop.create_task(self._open_servers())

    async def _open_servers(self) -> None:
        for lst in list(self.listeners):
            for _ in range(self.accept_handles):
                if not self._accepting:
                    return
                sock = lst.dup()
                if sock.family == socket.AF_UNIX:
                    srv = await self.loop.create_unix_server(self._factory, sock=sock,
                                                             backlog=LISTEN_BACKLOG)
                else:
                    srv = await self.loop.create_server(self._factory, sock=sock,
                                                        backlog=LISTEN_BACKLOG)
                if not self._accepting:
                    srv.close()
                    return
                self._servers.append(srv)

    def _stop_accepting(self, final: bool) -> None:
        self._accepting = False
        for srv in self._servers:
            srv.close()
        self._servers = []
        if final:
            self._close_listeners()

    def _connected(self) -> None:
        self.client_arrived()
        if self.clients >= self.client_limit and self._accepting:
            self._stop_accepting(final=False)
            self.notify(STATUS_TAKEN)

    def _disconnected(self) -> None:
        self.client_gone()
        if self.clients < self.client_limit:
            self._start_accepting()

    # -- connection set-up ------------------------------------------------------------

    def _protocol_factory(self):
        proto = self.service(self.ctx)
        made = proto.connection_made
        lost = proto.connection_lost
        server = self

        def connection_made(transport):
            server._connected()
            made(transport)

        def connection_lost(exc):
            try:
                lost(exc)
            finally:
                # The two wrappers, stored on the instance, hold its bound methods: a
                # reference cycle per connection that only the cycle collector would
                # free. Dropping them lets reference counting free the session now.
                for name in ("connection_made", "connection_lost"):
                    try:
                        delattr(proto, name)
                    except AttributeError:  # called twice: gone already
                        pass
                server._disconnected()

        proto.connection_made = connection_made
        proto.connection_lost = connection_lost
        return proto

    def _stream_factory(self):
        reader = asyncio.StreamReader(loop=self.loop)
        return asyncio.StreamReaderProtocol(reader, self._stream_client, loop=self.loop)

    async def _stream_client(self, reader, writer) -> None:
        self._connected()
        try:
            await self.service(reader, writer, self.ctx)
        except Exception as exc:
            self.report_exception("service", exc)
        finally:
            writer.close()
            self._disconnected()


def multi_server_main(argv, service, **options):
    """Run a multi-client daemon (see the module docstring); never returns."""
    MultiServer(argv, service, **options).run()
