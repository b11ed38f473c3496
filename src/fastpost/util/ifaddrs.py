"""The addresses and netmasks of this host's network interfaces.

Postfix counterpart: src/util/inet_addr_local.c (which uses getifaddrs(3) or
SIOCGIFCONF).

interface_addresses() calls the C library's getifaddrs(3) through ctypes and returns
each IPv4 and IPv6 address with its netmask, in the order the kernel lists them
(Linux: all IPv4 addresses, then all IPv6 ones), duplicates removed. Knows nothing of
mail: fastpost.mail.mynetworks turns the list into a mynetworks value, and
inet_interfaces = all uses it too.

Diagnostics: OSError when getifaddrs(3) fails (it does not on Linux unless memory runs
out); an unknown address family is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import ipaddress
import os
import socket


class _SockAddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_ubyte * 14)]


class _SockAddrIn(ctypes.Structure):
    _fields_ = [("sin_family", ctypes.c_ushort), ("sin_port", ctypes.c_uint16),
                ("sin_addr", ctypes.c_ubyte * 4), ("sin_zero", ctypes.c_ubyte * 8)]


class _SockAddrIn6(ctypes.Structure):
    _fields_ = [("sin6_family", ctypes.c_ushort), ("sin6_port", ctypes.c_uint16),
                ("sin6_flowinfo", ctypes.c_uint32), ("sin6_addr", ctypes.c_ubyte * 16),
                ("sin6_scope_id", ctypes.c_uint32)]


class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.POINTER(_SockAddr)),
    ("ifa_netmask", ctypes.POINTER(_SockAddr)),
    ("ifa_ifu", ctypes.POINTER(_SockAddr)),
    ("ifa_data", ctypes.c_void_p),
]


def _address(sa) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not sa:
        return None
    family = sa.contents.sa_family
    if family == socket.AF_INET:
        raw = ctypes.cast(sa, ctypes.POINTER(_SockAddrIn)).contents.sin_addr
        return ipaddress.IPv4Address(bytes(raw))
    if family == socket.AF_INET6:
        raw = ctypes.cast(sa, ctypes.POINTER(_SockAddrIn6)).contents.sin6_addr
        return ipaddress.IPv6Address(bytes(raw))
    return None


@functools.cache
def interface_addresses() -> tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]:
    """Return every interface address with its netmask (cached for the process)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    head = ctypes.POINTER(_IfAddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getifaddrs: {os.strerror(err)}")
    out: list = []
    try:
        node = head
        while node:
            ifa = node.contents
            addr = _address(ifa.ifa_addr)
            if addr is not None:
                mask = _address(ifa.ifa_netmask)
                if mask is None or mask.version != addr.version:
                    prefix = addr.max_prefixlen
                else:
                    prefix = bin(int(mask)).count("1")
                iface = ipaddress.ip_interface((addr, prefix))
                if iface not in out:
                    out.append(iface)
            node = ifa.ifa_next
    finally:
        libc.freeifaddrs(head)
    v4 = [i for i in out if i.version == 4]
    v6 = [i for i in out if i.version == 6]
    return tuple(v4 + v6)
