"""The default value of mynetworks, computed from mynetworks_style.

Postfix counterpart: src/global/mynetworks.c

When main.cf does not set mynetworks, its value is derived from the addresses of this
host's interfaces (fastpost.util.ifaddrs), keeping the address families that
inet_protocols enables:

    host    each interface address alone: 192.0.2.2/32, [fd00::2]/128
    subnet  the network each address is in: 192.0.2.0/24, [fd00::]/64
    class   IPv4: the whole class A, B or C network of each address (192.0.2.0/24 for
            192.0.2.2, 10.0.0.0/8 for 10.1.2.3); class D/E addresses alone. IPv6: as
            subnet

IPv6 networks are written in brackets, as Postfix writes them, so that the value can
be pasted into a main.cf list unchanged.

Parameters honoured: mynetworks_style, inet_protocols.

Diagnostics: ValueError naming the bad value for an unknown style or protocol; the
caller (fastpost.mail.config) turns it into a ConfigError.
"""

from __future__ import annotations

import ipaddress
import socket

from fastpost.util.ifaddrs import interface_addresses

STYLES = ("host", "subnet", "class")


def protocols(inet_protocols: list[str]) -> set[int]:
    """Return the IP versions {4, 6} that an inet_protocols list enables."""
    out: set[int] = set()
    for word in inet_protocols:
        word = word.lower()
        if word == "all":
            out.add(4)
            if socket.has_ipv6:
                out.add(6)
        elif word == "ipv4":
            out.add(4)
        elif word == "ipv6":
            out.add(6)
        else:
            raise ValueError(f'bad inet_protocols value "{word}"')
    return out


def _class_network(addr: ipaddress.IPv4Address) -> str:
    first = int(addr) >> 24
    if first < 128:
        prefix = 8
    elif first < 192:
        prefix = 16
    elif first < 224:
        prefix = 24
    else:
        prefix = 32
    return str(ipaddress.ip_network((addr, prefix), strict=False))


def _format(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if net.version == 6:
        return f"[{net.network_address}]/{net.prefixlen}"
    return str(net)


def compute(style: str, inet_protocols: list[str]) -> str:
    """Return the mynetworks value for a style and an inet_protocols list."""
    style = style.strip().lower()
    if style not in STYLES:
        raise ValueError(f'unknown mynetworks mask style value "{style}" in "{style}"')
    versions = protocols(inet_protocols)
    out: list[str] = []
    for iface in interface_addresses():
        if iface.version not in versions:
            continue
        if style == "host":
            text = _format(ipaddress.ip_network((iface.ip, iface.max_prefixlen)))
        elif style == "class" and iface.version == 4:
            text = _class_network(iface.ip)
        else:
            text = _format(iface.network)
        if text not in out:
            out.append(text)
    return " ".join(out)
