"""Listening endpoints the master creates for its services.

Postfix counterpart: src/master/master_listen.c, src/util/inet_listen.c,
unix_listen.c, fifo_listen.c, src/global/inet_proto.c, own_inet_addr.c

    inet        TCP sockets: the address in the service name, or every address of
                inet_interfaces (all, loopback-only, or a list of addresses/host
                names) in the families of inet_protocols (all, ipv4, ipv6)
    unix        a UNIX stream socket {private,public}/<name>, mode 0666 (paths are
                relative to $queue_directory, the master's working directory)
                (the directory decides who may connect: private 0700, public 0710
                group setgid_group)
    unix-dgram  a UNIX datagram socket at the same place
    fifo        a named pipe at the same place, mode 0622, opened read-write so that
                it never reports end-of-file

Every listener is non-blocking and listens with LISTEN_BACKLOG. Stale UNIX-domain
sockets and FIFOs from an earlier run are replaced. As root, UNIX-domain endpoints are
made with mail_owner's effective ids (their directories belong to mail_owner), as
Postfix's master does.

Parameters: inet_interfaces, inet_protocols (passed in by the caller).
Diagnostics: ListenError naming the address or path and the system error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass

from fastpost.server.lifecycle import LISTEN_BACKLOG


class ListenError(Exception):
    """An endpoint could not be created (the text names it)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a service listens: ("inet", (host, port)) or (type, path)."""

    kind: str  # inet, unix, unix-dgram, fifo
    address: tuple  # inet: (ip, port); others: (path,)

    def describe(self) -> str:
        if self.kind == "inet":
            host, port = self.address
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self.address[0]


def inet_families(protocols: list[str]) -> list[int]:
    """Return the address families that inet_protocols enables."""
    words = {p.strip().lower() for p in protocols if p.strip()}
    if not words or "all" in words:
        fams = [socket.AF_INET]
        if socket.has_ipv6 and _ipv6_works():
            fams.append(socket.AF_INET6)
        return fams
    fams = []
    for word in words:
        if word == "ipv4":
            fams.append(socket.AF_INET)
        elif word == "ipv6":
            fams.append(socket.AF_INET6)
        else:
            raise ListenError(f'bad inet_protocols value "{word}" (use all, ipv4 or ipv6)')
    return sorted(set(fams))


def _ipv6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def resolve_port(port: str) -> int:
    """Return a TCP port number from digits or a service name (/etc/services)."""
    if port.isdigit():
        value = int(port)
        if 0 < value < 65536:
            return value
        raise ListenError(f"bad port number: {port}")
    try:
        return socket.getservbyname(port, "tcp")
    except OSError:
        raise ListenError(f"unknown service: {port}/tcp") from None


def resolve_hosts(host: str, families: list[int]) -> list[str]:
    """Return the IP addresses of host (a literal or a name) in the given families."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenError(f"host not found: {host}: {exc.strerror}") from None
    out = []
    for fam, _, _, _, sockaddr in infos:
        if fam in families and sockaddr[0] not in out:
            out.append(sockaddr[0])
    if not out:
        raise ListenError(f"host {host} has no address in the enabled inet_protocols")
    return out


def inet_endpoints(host: str, port: str, interfaces: list[str],
                   protocols: list[str]) -> list[Endpoint]:
    """Return the TCP endpoints of an inet service ``[host:]port``."""
    families = inet_families(protocols)
    number = resolve_port(port)
    if host:
        addrs = resolve_hosts(host, families)
    else:
        words = [w for w in interfaces if w.strip()] or ["all"]
        lowered = [w.lower() for w in words]
        if "all" in lowered:
            addrs = ["0.0.0.0" if f == socket.AF_INET else "::" for f in families]
        elif "loopback-only" in lowered:
            addrs = ["127.0.0.1" if f == socket.AF_INET else "::1" for f in families]
        else:
            addrs = []
            for word in words:
                for addr in resolve_hosts(word.strip("[]"), families):
                    if addr not in addrs:
                        addrs.append(addr)
    return [Endpoint("inet", (addr, number)) for addr in addrs]


@contextlib.contextmanager
def _effective_ids(owner: tuple[int, int] | None):
    """Run the block with effective uid/gid = owner (root only), then switch back.

    private/ and public/ belong to mail_owner: root creating (and chmod'ing) entries
    there could be tricked by a symlink swapped in by that user; as the user, the
    worst it can do is to itself.
    """
    if owner is None or os.geteuid() != 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([owner[1]])
    os.setegid(owner[1])
    os.seteuid(owner[0])
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def open_endpoint(ep: Endpoint, owner: tuple[int, int] | None = None):
    """Create and return the listener for ep: a socket, or an int for a FIFO.

    ``owner`` (uid, gid) of mail_owner: UNIX sockets and FIFOs are created with these
    effective ids when the master runs as root, and so belong to mail_owner.
    """
    if ep.kind == "inet":
        return _open_inet(*ep.address)
    path = ep.address[0]
    with _effective_ids(owner):
        _remove_stale(path)
        try:
            if ep.kind == "fifo":
                os.mkfifo(path, 0o622)
                os.chmod(path, 0o622)
                return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            stype = socket.SOCK_DGRAM if ep.kind == "unix-dgram" else socket.SOCK_STREAM
            sock = socket.socket(socket.AF_UNIX, stype)
            try:
                sock.bind(path)
                os.chmod(path, 0o666)
                if stype == socket.SOCK_STREAM:
                    sock.listen(LISTEN_BACKLOG)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            return sock
        except OSError as exc:
            raise ListenError(f"{ep.kind} listener {path}: {exc.strerror}") from None


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenError(f"{path}: {exc.strerror}") from None
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        os.unlink(path)
    else:
        raise ListenError(f"{path} exists and is not a socket or FIFO")


def _open_inet(addr: str, port: int) -> socket.socket:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((addr, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"[{addr}]" if fam == socket.AF_INET6 else addr
        raise ListenError(f"bind {where} port {port}: {exc.strerror}") from None
    return sock


def close_listener(ep: Endpoint, listener, unlink: bool = True) -> None:
    """Close a listener and remove its socket or FIFO from the file system."""
    try:
        if isinstance(listener, int):
            os.close(listener)
        else:
            listener.close()
    except OSError:
        pass
    if unlink and ep.kind != "inet":
        try:
            os.unlink(ep.address[0])
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                pass
