"""Inter-daemon IPC: attribute-list requests over UNIX sockets, and triggers.

Postfix counterpart: src/global/mail_connect.c, mail_proto.h, clnt_stream.c,
attr_clnt.c, mail_trigger.c, src/util/unix_trigger.c, fifo_trigger.c

Endpoints are ``$queue_directory/private/<service>`` and ``.../public/<service>``
(endpoint()). A conversation:

  * the server speaks first, one frame ``{"protocol": "<name>", ...}`` (anything else
    it wants the client to know, e.g. a queue id);
  * the client checks the protocol name, then sends request frames; the server answers
    each with one reply frame, in order. Requests may be pipelined: many in flight on
    one connection (``pipeline()``, or concurrent ``await request()`` calls);
  * frames are fastpost.mail.attr's (length-prefixed, bounded).

Clients:
  AttrClient         synchronous (commands, and daemons that block by design)
  AsyncAttrClient    for asyncio daemons; concurrent callers share one connection
Both connect lazily, time out connecting (connect_timeout) and waiting for a reply
(timeout: Postfix's ipc_timeout), close a connection idle longer than ``idle``
(ipc_idle) or older than ``ttl`` (ipc_ttl) before reusing it, so that servers can
retire and pick up a reload; and, when a reused connection turns out to be closed before
any of a reply arrived, reconnect and resend once (``retry=False`` for requests that
must not be repeated).

Servers: ``attr_service(protocol, handler)`` makes a protocol factory for
fastpost.server.multi_server_main. ``handler(request, conn)`` returns the reply dict,
None (no reply), or an awaitable of either; replies go out in request order.

Triggers (``mail_trigger``): connect, write a few bytes, close — to a UNIX stream
socket, a unix-dgram socket or a FIFO, whatever the endpoint is. qmgr understands
``W`` (wakeup), ``I`` (scan incoming), ``D`` (scan deferred), ``A`` (ignore deferred
time stamps), ``F`` (forget dead destinations); ``fastpost flush`` sends ``AFDI``.

Parameters: none read here; daemons pass ipc_timeout, ipc_idle, ipc_ttl,
trigger_timeout and queue_directory in.
Diagnostics: IPCError subclasses, each naming the endpoint: IPCConnectError (no such
service, refused, timeout connecting), IPCTimeout (no reply in time), IPCClosed (the
server went away), IPCProtocolError (wrong protocol name, malformed frame).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import inspect
import os
import socket
import stat
import time

from fastpost.mail import attr
from fastpost.mail.attrtype import DEFAULT_MAX_DEPTH, DEFAULT_MAX_FRAME, AttrError
from fastpost.server.lifecycle import describe_exception
from fastpost.util import log

PRIVATE = "private"
PUBLIC = "public"

TRIGGER_WAKEUP = b"W"
QMGR_SCAN_INCOMING = b"I"
QMGR_SCAN_DEFERRED = b"D"
QMGR_SCAN_ALL = b"A"
QMGR_FLUSH_DEAD = b"F"
#: What ``fastpost flush`` asks qmgr: ignore time stamps, forget dead sites, scan both.
QMGR_FLUSH = QMGR_SCAN_ALL + QMGR_FLUSH_DEAD + QMGR_SCAN_DEFERRED + QMGR_SCAN_INCOMING

_RECV_SIZE = 65536


class IPCError(Exception):
    """An IPC failure; ``path`` names the endpoint."""

    def __init__(self, path: str, text: str):
        super().__init__(f"{path}: {text}")
        self.path = path


class IPCConnectError(IPCError):
    """The endpoint does not exist, refuses, or does not answer the connect in time."""


class IPCTimeout(IPCError):
    """No (complete) reply within the timeout."""


class IPCClosed(IPCError):
    """The server closed the connection before replying."""


class IPCProtocolError(IPCError):
    """The peer broke the protocol (wrong name, malformed frame)."""


def endpoint(queue_directory: str, service: str, cls: str = PRIVATE) -> str:
    """Return the socket path of a service: $queue_directory/{private,public}/service."""
    if cls not in (PRIVATE, PUBLIC):
        raise ValueError(f"bad service class {cls!r}")
    return os.path.join(queue_directory, cls, service)


def queue_relative(path: str, queue_directory: str) -> str:
    """A path relative to queue_directory, usable from here.

    Daemons run in queue_directory (maybe chrooted there, where its absolute name does
    not exist): there the relative path is kept; elsewhere it is joined to it.
    """
    if os.path.isabs(path):
        return path
    try:
        if os.path.samefile(".", queue_directory):
            return path
    except OSError:
        return path  # chrooted: the queue directory is "/" now
    return os.path.join(queue_directory, path)


def _check_hello(path: str, frame: dict, protocol: str) -> dict:
    got = frame.get("protocol")
    if got != protocol:
        raise IPCProtocolError(path, f"unexpected protocol {got!r} (expected {protocol!r})")
    return frame


# -- synchronous client -----------------------------------------------------------------


class AttrClient:
    """A persistent, synchronous connection to one attribute-protocol service."""

    def __init__(self, path: str, protocol: str, *, connect_timeout: float = 10.0,
                 timeout: float = 3600.0, idle: float = 5.0, ttl: float = 1000.0,
                 max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = DEFAULT_MAX_DEPTH):
        self.path = path
        self.protocol = protocol
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.idle = idle
        self.ttl = ttl
        self.max_frame = max_frame
        self.max_depth = max_depth
        self.hello: dict | None = None  # the server's greeting on the current connection
        self._sock: socket.socket | None = None
        self._decoder = None
        self._opened = 0.0
        self._used = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> dict:
        """Open the connection (if needed) and return the server's greeting."""
        if self._sock is not None:
            return self.hello
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(self.path)
        except socket.timeout:
            sock.close()
            raise IPCConnectError(self.path, "timeout while connecting") from None
        except OSError as exc:
            sock.close()
            raise IPCConnectError(self.path, f"connect: {exc.strerror}") from None
        self._sock = sock
        self._decoder = attr.FrameDecoder(self.max_frame, self.max_depth)
        self._opened = self._used = time.monotonic()
        try:
            self.hello = _check_hello(self.path, self._read_frame(self.connect_timeout), self.protocol)
        except IPCError:
            self.close()
            raise
        return self.hello

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.hello = None

    def _read_frame(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self._decoder.next_frame()
            except AttrError as exc:
                self.close()
                raise IPCProtocolError(self.path, f"malformed reply: {exc}") from None
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise IPCTimeout(self.path, f"no reply within {timeout:g}s")
            self._sock.settimeout(left)
            try:
                n = self._sock.recv_into(self._decoder.get_buffer(_RECV_SIZE))
            except socket.timeout:
                self.close()
                raise IPCTimeout(self.path, f"no reply within {timeout:g}s") from None
            except OSError as exc:
                self.close()
                raise IPCClosed(self.path, f"read: {exc.strerror}") from None
            if n == 0:
                partial = self._decoder.buffered
                self.close()
                raise IPCClosed(self.path, "connection closed by server"
                                + (f" in the middle of a reply ({partial} bytes)" if partial else ""))
            self._decoder.buffer_updated(n)

    def _fresh(self) -> bool:
        """Make sure a usable connection exists; return True if it was just opened."""
        if self._sock is not None:
            now = time.monotonic()
            if now - self._used > self.idle or now - self._opened > self.ttl:
                self.close()
        if self._sock is None:
            self.connect()
            return True
        return False

    def pipeline(self, requests: list[dict], *, retry: bool = True) -> list[dict]:
        """Send several requests at once; return their replies in order."""
        data = attr.encode_many(requests)
        for attempt in (0, 1):
            fresh = self._fresh()
            got: list[dict] = []
            try:
                self._sock.settimeout(self.timeout)
                self._sock.sendall(data)
                for _ in requests:
                    got.append(self._read_frame(self.timeout))
                self._used = time.monotonic()
                return got
            except (OSError, IPCClosed) as exc:
                self.close()
                if attempt == 0 and retry and not fresh and not got:
                    continue  # a reused connection the server had closed: once more
                if isinstance(exc, IPCError):
                    raise
                raise IPCClosed(self.path, f"write: {exc.strerror}") from None
        raise AssertionError("unreachable")

    def request(self, attrs: dict, *, retry: bool = True) -> dict:
        """Send one request and return its reply."""
        return self.pipeline([attrs], retry=retry)[0]


# -- asyncio client ---------------------------------------------------------------------


class _ClientProtocol(asyncio.BufferedProtocol):
    def __init__(self, client: "AsyncAttrClient"):
        self.client = client
        self.decoder = attr.FrameDecoder(client.max_frame, client.max_depth)
        self.transport = None
        self.hello: asyncio.Future = client._loop.create_future()
        self.waiters: collections.deque = collections.deque()
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes):
        self.decoder.buffer_updated(nbytes)
        try:
            while (frame := self.decoder.next_frame()) is not None:
                if not self.hello.done():
                    self.hello.set_result(frame)
                elif self.waiters:
                    waiter = self.waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(frame)
                else:
                    raise AttrError("reply without a request")
        except AttrError as exc:
            self.fail(IPCProtocolError(self.client.path, f"malformed reply: {exc}"))

    def fail(self, exc: IPCError) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if not self.hello.done():
            self.hello.set_exception(exc)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    def connection_lost(self, exc):
        partial = self.decoder.buffered
        text = "connection closed by server"
        if partial:
            text += f" in the middle of a reply ({partial} bytes)"
        self.fail(IPCClosed(self.client.path, text))


class AsyncAttrClient:
    """A persistent asyncio connection to one attribute-protocol service."""

    def __init__(self, path: str, protocol: str, *, connect_timeout: float = 10.0,
                 timeout: float = 3600.0, idle: float = 5.0, ttl: float = 1000.0,
                 max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = DEFAULT_MAX_DEPTH):
        self.path = path
        self.protocol = protocol
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.idle = idle
        self.ttl = ttl
        self.max_frame = max_frame
        self.max_depth = max_depth
        self.hello: dict | None = None
        self._loop = None
        self._proto: _ClientProtocol | None = None
        self._connecting: asyncio.Future | None = None
        self._opened = 0.0
        self._idle_timer = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    def _usable(self) -> bool:
        proto = self._proto
        if proto is None or proto.closed:
            return False
        if not proto.waiters and time.monotonic() - self._opened > self.ttl:
            self.close()
            return False
        return True

    async def connect(self) -> dict:
        """Open the connection (if needed) and return the server's greeting."""
        if self._usable():
            return self.hello
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            return self.hello
        self._loop = asyncio.get_running_loop()
        self._connecting = self._loop.create_future()
        try:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, proto = await self._loop.create_unix_connection(
                        lambda: _ClientProtocol(self), self.path)
                    hello = await proto.hello
            except TimeoutError:
                raise IPCConnectError(self.path, "timeout while connecting") from None
            except IPCError:
                raise
            except OSError as exc:
                raise IPCConnectError(self.path, f"connect: {exc.strerror}") from None
            try:
                self.hello = _check_hello(self.path, hello, self.protocol)
            except IPCError:
                proto.transport.close()
                raise
            self._proto = proto
            self._opened = time.monotonic()
            self._connecting.set_result(None)
            return self.hello
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # mark retrieved
            raise
        finally:
            self._connecting = None

    def close(self) -> None:
        """Close the connection; requests in flight fail with IPCClosed."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._proto is not None:
            self._proto.fail(IPCClosed(self.path, "connection closed by client"))
            self._proto = None
            self.hello = None

    def _arm_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        proto = self._proto
        if proto is not None and not proto.waiters and self.idle > 0:
            self._idle_timer = self._loop.call_later(self.idle, self._idle_close, proto)

    def _idle_close(self, proto) -> None:
        self._idle_timer = None
        if self._proto is proto and not proto.waiters:
            self.close()

    async def _exchange(self, data: bytes, count: int) -> list[dict]:
        proto = self._proto
        waiters = [self._loop.create_future() for _ in range(count)]
        proto.waiters.extend(waiters)
        proto.transport.write(data)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            async with asyncio.timeout(self.timeout):
                return [await w for w in waiters]
        except TimeoutError:
            # Replies are positional: a late one would answer the wrong request.
            proto.fail(IPCTimeout(self.path, f"no reply within {self.timeout:g}s"))
            if self._proto is proto:
                self._proto = None
            raise IPCTimeout(self.path, f"no reply within {self.timeout:g}s") from None
        finally:
            self._arm_idle()

    async def pipeline(self, requests: list[dict], *, retry: bool = True) -> list[dict]:
        """Send several requests at once; return their replies in order."""
        data = attr.encode_many(requests)
        for attempt in (0, 1):
            fresh = not self._usable()
            await self.connect()
            try:
                return await self._exchange(data, len(requests))
            except IPCClosed:
                if attempt == 0 and retry and not fresh:
                    continue
                raise
        raise AssertionError("unreachable")

    async def request(self, attrs: dict, *, retry: bool = True) -> dict:
        """Send one request and return its reply."""
        return (await self.pipeline([attrs], retry=retry))[0]


# -- server side ------------------------------------------------------------------------


class AttrServerProtocol(asyncio.BufferedProtocol):
    """One client connection of an attribute-protocol service (see attr_service)."""

    #: Requests whose replies are outstanding before reading pauses (back-pressure).
    max_pending = 1024

    def __init__(self, ctx, protocol: str, handler, *, hello_extra=None,
                 max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = DEFAULT_MAX_DEPTH):
        self.ctx = ctx
        self.protocol = protocol
        self.handler = handler
        self.hello_extra = hello_extra
        self.decoder = attr.FrameDecoder(max_frame, max_depth)
        self.transport = None
        self.state: dict = {}  # per-connection data for the handler
        self.pending: collections.deque = collections.deque()
        self.paused = False

    def connection_made(self, transport):
        self.transport = transport
        hello = {"protocol": self.protocol}
        if self.hello_extra is not None:
            extra = self.hello_extra(self) if callable(self.hello_extra) else self.hello_extra
            hello.update(extra)
        transport.write(attr.encode(hello))

    def get_buffer(self, sizehint):
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes):
        self.decoder.buffer_updated(nbytes)
        while True:
            try:
                request = self.decoder.next_frame()
            except AttrError as exc:
                log.warn("%s: malformed request: %s", self.protocol, exc)
                self.transport.close()
                return
            if request is None:
                return
            self._dispatch(request)
            if self.transport.is_closing():
                return

    def _dispatch(self, request: dict) -> None:
        try:
            result = self.handler(request, self)
        except Exception as exc:
            self._handler_failed(exc)
            return
        if inspect.isawaitable(result):
            fut = asyncio.ensure_future(result)
            self.pending.append(fut)
            fut.add_done_callback(self._flush)
            if len(self.pending) >= self.max_pending and not self.paused:
                self.paused = True
                self.transport.pause_reading()
        elif self.pending:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(result)
            self.pending.append(fut)
        elif result is not None:
            self.transport.write(attr.encode(result))

    def _flush(self, _fut=None) -> None:
        out = []
        while self.pending and self.pending[0].done():
            fut = self.pending.popleft()
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is not None:
                self._handler_failed(exc)
                return
            if fut.result() is not None:
                out.append(fut.result())
        if out and not self.transport.is_closing():
            self.transport.write(attr.encode_many(out))
        if self.paused and len(self.pending) < self.max_pending // 2:
            self.paused = False
            self.transport.resume_reading()

    def _handler_failed(self, exc: BaseException) -> None:
        log.error("%s: request handler: %s", self.protocol, describe_exception(exc))
        self.transport.close()

    def connection_lost(self, exc):
        for fut in self.pending:
            fut.cancel()
        self.pending.clear()


def attr_service(protocol: str, handler, *, hello_extra=None,
                 max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = DEFAULT_MAX_DEPTH):
    """Return a multi_server protocol factory serving ``protocol`` with ``handler``."""

    def factory(ctx):
        return AttrServerProtocol(ctx, protocol, handler, hello_extra=hello_extra,
                                  max_frame=max_frame, max_depth=max_depth)

    return factory


# -- triggers -----------------------------------------------------------------------------


def _trigger_kind(path: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise IPCConnectError(path, "no such service endpoint (is fastpost running?)") from None
    except OSError as exc:
        raise IPCConnectError(path, exc.strerror) from None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    raise IPCConnectError(path, "not a socket or FIFO")


def trigger(path: str, data: bytes, *, timeout: float = 10.0) -> None:
    """Write a trigger to the endpoint at path (stream, datagram or FIFO)."""
    kind = _trigger_kind(path)
    if kind == "fifo":
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            what = "nobody is reading it" if exc.errno == errno.ENXIO else exc.strerror
            raise IPCConnectError(path, f"open: {what}") from None
        try:
            os.write(fd, data)
        except OSError as exc:
            raise IPCError(path, f"write: {exc.strerror}") from None
        finally:
            os.close(fd)
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:
                raise IPCConnectError(path, f"connect: {exc.strerror}") from None
            sock.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.settimeout(timeout)
            sock.sendto(data, path)
            return
        sock.sendall(data)
    except socket.timeout:
        raise IPCTimeout(path, f"trigger not accepted within {timeout:g}s") from None
    except OSError as exc:
        raise IPCError(path, f"write: {exc.strerror}") from None
    finally:
        sock.close()


def mail_trigger(queue_directory: str, service: str, data: bytes, *, cls: str = PUBLIC,
                 timeout: float = 10.0) -> None:
    """Send a trigger to a service by name (public/ by default, as Postfix's)."""
    trigger(endpoint(queue_directory, service, cls), data, timeout=timeout)


async def async_trigger(path: str, data: bytes, *, timeout: float = 10.0) -> None:
    """trigger() for asyncio daemons (the connect and write never block the loop)."""
    loop = asyncio.get_running_loop()
    kind = _trigger_kind(path)
    if kind == "fifo":
        trigger(path, data, timeout=timeout)  # O_NONBLOCK: never blocks
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            try:
                await loop.sock_connect(sock, path)
            except OSError as exc:
                if exc.errno != errno.EPROTOTYPE:
                    raise IPCConnectError(path, f"connect: {exc.strerror}") from None
                sock.close()
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                try:
                    sock.sendto(data, path)  # a datagram goes whole or not at all
                except BlockingIOError:
                    raise IPCTimeout(path, "the service's datagram queue is full") from None
                return
            await loop.sock_sendall(sock, data)
    except TimeoutError:
        raise IPCTimeout(path, f"trigger not accepted within {timeout:g}s") from None
    except IPCError:
        raise
    except OSError as exc:
        raise IPCError(path, f"write: {exc.strerror}") from None
    finally:
        sock.close()


async def async_mail_trigger(queue_directory: str, service: str, data: bytes, *,
                             cls: str = PUBLIC, timeout: float = 10.0) -> None:
    """mail_trigger() for asyncio daemons."""
    await async_trigger(endpoint(queue_directory, service, cls), data, timeout=timeout)
