"""smtpd_floor.py's modes ``raw``, ``rawep`` and ``rawc``: the floor without uvloop's transports.

Benchmark code only (not part of fastpost): the same precomputed replies as
smtpd_floor.py's ``bare`` mode, served without uvloop's TCPTransport. The listening
socket is non-blocking; on readiness accept() runs until EAGAIN (the peer address
comes with it; TCP_NODELAY is inherited from the listening socket on Linux when it is
set before the connection arrives). Each connection is read with ``recv_into`` one
reused buffer and answered with ``send`` directly (MSG_DONTWAIT on both, so no fcntl
per connection); what a short or refused send leaves waits for writability. Close on
EOF or after QUIT.

- ``raw``: every descriptor watched with the loop's ``add_reader``. uvloop makes a
  poll handle per call: ioctl(FIONBIO) and, with remove_reader, epoll_ctl ADD/MOD/DEL
  around every read (6 epoll_ctl per session measured), so this is the naive version.
- ``rawep``: the descriptors sit in an epoll set of this server's own; the loop
  watches only that set's descriptor (one add_reader per process). A connection costs
  one epoll_ctl (ADD; close() takes it out of the set).
- ``rawc``: ``rawep`` with this very file compiled by Cython (smtpd_floor.py compiles
  a copy in its temporary directory): the per-descriptor callbacks as C functions.

Python's socket.accept() makes a getsockname() on the new descriptor (the socket
object's constructor), 1 system call per connection that a compiled accept4 would not.
"""

from __future__ import annotations

import select
import socket
import sys

BANNER = b"220 fastpost.localdomain ESMTP Postfix\r\n"
EHLO = (b"250-fastpost.localdomain\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
        b"250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
        b"250 CHUNKING\r\n")
OK_MAIL = b"250 2.1.0 Ok\r\n"
OK_RCPT = b"250 2.1.5 Ok\r\n"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
BYE = b"221 2.0.0 Bye\r\n"
DONTWAIT = socket.MSG_DONTWAIT
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT

buf = bytearray(65536)
state = {"counter": 0, "checked": False}


class Server:
    """One process's listener and connections; ``own_epoll`` picks rawep over raw."""

    def __init__(self, loop, sock: socket.socket, own_epoll: bool):
        self.loop = loop
        self.sock = sock
        self.own_epoll = own_epoll
        self.handlers: dict = {}
        self.ep = select.epoll() if own_epoll else None
        sock.setblocking(False)
        self.add_reader(sock.fileno(), self.on_accept)
        if own_epoll:
            loop.add_reader(self.ep.fileno(), self.on_events)

    def add_reader(self, fd, cb):
        if self.own_epoll:
            self.handlers[fd] = cb
            self.ep.register(fd, EPOLLIN)
        else:
            self.loop.add_reader(fd, cb)

    def remove_reader(self, fd):
        if self.own_epoll:
            del self.handlers[fd]  # close() takes the descriptor out of the set
        else:
            self.loop.remove_reader(fd)

    def on_events(self):
        handlers = self.handlers
        for fd, ev in self.ep.poll(0):
            cb = handlers.get(fd)
            if cb is None:
                continue
            if ev & EPOLLOUT:
                cb.__self__.on_writable()
            else:
                cb()

    def on_accept(self):
        sock = self.sock
        while True:
            try:
                s, peer = sock.accept()
            except BlockingIOError:
                return
            if not state["checked"]:  # once: is TCP_NODELAY inherited?
                state["checked"] = True
                if not s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
                    print("raw: TCP_NODELAY not inherited (connection queued before "
                          "it was set?)", file=sys.stderr)
            c = Conn(self, s, peer)
            self.add_reader(c.fd, c.on_readable)
            c.write(BANNER)


class Conn:
    __slots__ = ("srv", "s", "fd", "data", "peer", "out", "closing")

    def __init__(self, srv, s, peer):
        self.srv = srv
        self.s = s
        self.fd = s.fileno()
        self.data = False
        self.peer = peer
        self.out = b""
        self.closing = False

    def write(self, data):
        if self.out:
            self.out += data
            return
        try:
            n = self.s.send(data, DONTWAIT)
        except BlockingIOError:
            n = 0
        if n < len(data):
            self.out = data[n:]
            if self.srv.own_epoll:
                self.srv.ep.modify(self.fd, EPOLLIN | EPOLLOUT)
            else:
                self.srv.loop.add_writer(self.fd, self.on_writable)

    def on_writable(self):
        try:
            n = self.s.send(self.out, DONTWAIT)
        except BlockingIOError:
            return
        self.out = self.out[n:]
        if not self.out:
            if self.srv.own_epoll:
                self.srv.ep.modify(self.fd, EPOLLIN)
            else:
                self.srv.loop.remove_writer(self.fd)
            if self.closing:
                self.close()

    def close(self):
        if self.out:
            self.closing = True
            return
        self.srv.remove_reader(self.fd)
        self.s.close()

    def on_readable(self):
        try:
            n = self.s.recv_into(buf, 0, DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n == 0:
            self.close()
            return
        if self.data:
            if buf.endswith(b"\r\n.\r\n", 0, n):
                self.data = False
                state["counter"] += 1
                self.write(b"250 2.0.0 Ok: queued as 4Qx%08X\r\n" % state["counter"])
            return
        verb = bytes(buf[:4]).upper()
        if verb == b"EHLO":
            self.write(EHLO)
        elif verb == b"MAIL":
            self.write(OK_MAIL)
        elif verb == b"RCPT":
            self.write(OK_RCPT)
        elif verb == b"DATA":
            self.data = True
            self.write(GO_AHEAD)
        elif verb == b"QUIT":
            self.write(BYE)
            self.close()
        else:
            self.write(b"250 2.0.0 Ok\r\n")


def serve(sock: socket.socket, own_epoll: bool) -> None:
    import asyncio

    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    Server(loop, sock, own_epoll)
    loop.run_forever()
