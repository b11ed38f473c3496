"""Host name restrictions: the HELO name's syntax and DNS, the client's name lookups.

Postfix counterpart: reject_invalid_hostaddr(), reject_invalid_hostname(),
reject_non_fqdn_hostname(), reject_unknown_hostname(), reject_unknown_client(),
reject_unknown_reverse_client() in src/smtpd/smtpd_check.c; valid_hostname() and
valid_hostaddr() of src/util/valid_hostname.c.

    reject_invalid_helo_hostname   invalid_hostname_reject_code 5.5.2
                                   <helo>: Helo command rejected: Invalid name
    reject_non_fqdn_helo_hostname  non_fqdn_reject_code 5.5.2
                                   <helo>: Helo command rejected: need fully-qualified hostname
    reject_unknown_helo_hostname   unknown_hostname_reject_code 4.7.1
                                   <helo>: Helo command rejected: Host not found
                                   (a temporary DNS failure: 450 4.7.1, the same text,
                                   under unknown_helo_hostname_tempfail_action)
    reject_unknown_client_hostname 4.7.25 Client host rejected: cannot find your
                                   hostname, [addr]
    reject_unknown_reverse_client_hostname
                                   4.7.1 Client host rejected: cannot find your
                                   reverse hostname, [addr]

A HELO name is valid when it is a host name (labels of letters, digits, ``-`` and
``_``, no label starting or ending with ``-``, at most 63 characters a label and 255
in all, not all digits, one trailing dot allowed) or an IP address, bare or as an
address literal. It is fully qualified when it is a valid host name with a dot, or
an address literal (a bare IP address is not). An address literal that holds no
address gets ``invalid_hostname_reject_code 5.5.2 <helo>: Helo command rejected:
invalid ip address`` from both checks. It is known
when DNS has an A, AAAA or MX record for it (address literals and bare addresses
are not looked up). The client name checks use the outcome of the connection's
lookups: a temporary failure always answers 450, a permanent one (or a name that
does not resolve back) unknown_client_reject_code.

Parameters: invalid_hostname_reject_code, non_fqdn_reject_code,
unknown_hostname_reject_code, unknown_helo_hostname_tempfail_action,
unknown_client_reject_code.
Diagnostics: none beyond the replies.
"""

from __future__ import annotations

import ipaddress
import re

from fastpost.daemons.smtpd.checks import reply as rp
from fastpost.daemons.smtpd.checks.registry import DUNNO, restriction
from fastpost.daemons.smtpd.info import NAME_OK, NAME_TEMP

__all__ = ["valid_hostname", "valid_hostaddr", "is_fqdn_hostname"]

_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def valid_hostname(name: str) -> bool:
    """Postfix's valid_hostname() (module docstring); one trailing dot is allowed."""
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    if not name or len(name) > 255:
        return False
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return False
    return not all(ch.isdigit() or ch == "." for ch in name)


def valid_hostaddr(text: str) -> bool:
    """An IPv4 address, or an IPv6 address (``IPv6:`` prefix allowed)."""
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _literal(name: str) -> str | None:
    if len(name) > 2 and name[0] == "[" and name[-1] == "]":
        return name[1:-1]
    return None


def is_fqdn_hostname(name: str) -> bool:
    inner = _literal(name)
    if inner is not None:
        return valid_hostaddr(inner)
    return valid_hostname(name) and "." in name.rstrip(".")


def _bad_literal(ev, helo: str):
    """An address literal HELO that is not an address: the same answer in both checks."""
    return ev.reject(ev.settings.invalid_hostname_code, "5.5.2",
                     f"<{helo}>: {rp.HELO} rejected: invalid ip address")


@restriction("reject_invalid_helo_hostname")
def reject_invalid_helo_hostname(ev, step, name, klass):
    helo = ev.helo
    if helo is None:
        return DUNNO
    inner = _literal(helo)
    if inner is not None:
        return DUNNO if valid_hostaddr(inner) else _bad_literal(ev, helo)
    if valid_hostname(helo) or valid_hostaddr(helo):
        return DUNNO
    return ev.reject(ev.settings.invalid_hostname_code, "5.5.2",
                     f"<{helo}>: {rp.HELO} rejected: Invalid name")


@restriction("reject_non_fqdn_helo_hostname")
def reject_non_fqdn_helo_hostname(ev, step, name, klass):
    helo = ev.helo
    if helo is None:
        return DUNNO
    inner = _literal(helo)
    if inner is not None:
        return DUNNO if valid_hostaddr(inner) else _bad_literal(ev, helo)
    if is_fqdn_hostname(helo):
        return DUNNO
    return ev.reject(ev.settings.non_fqdn_code, "5.5.2",
                     f"<{helo}>: {rp.HELO} rejected: need fully-qualified hostname")


async def known_host(ev, host: str) -> str:
    """"ok" when DNS has A, AAAA or MX for host; "notfound"; "retry"."""
    dns = ev.engine.dns
    retry = False
    for rdtype in ("A", "AAAA", "MX"):
        r = dns.cached(host, rdtype)
        if r is None:
            r = await dns.lookup(host, rdtype)
        if r.status == "ok" and r.records:
            return "ok"
        if r.status == "retry":
            retry = True
        elif r.nxdomain:
            break  # no such name: no other type will exist either
    return "retry" if retry else "notfound"


@restriction("reject_unknown_helo_hostname")
async def reject_unknown_helo_hostname(ev, step, name, klass):
    helo = ev.helo
    if helo is None or _literal(helo) is not None:
        return DUNNO
    host = helo.rstrip(".")
    # A bare address is looked up as a name, as Postfix does.
    if not valid_hostname(host) and not valid_hostaddr(host):
        return DUNNO
    status = await known_host(ev, host)
    if status == "ok":
        return DUNNO
    s = ev.settings
    if status == "retry":
        return ev.tempfail(s.unknown_helo_tempfail_action, 450, "4.7.1",
                           f"<{helo}>: {rp.HELO} rejected: Host not found")
    return ev.reject(s.unknown_hostname_code, "4.7.1",
                     f"<{helo}>: {rp.HELO} rejected: Host not found")


def _name_status(c, which: str) -> str:
    name = c.name if which == "name" else c.reverse_name
    status = c.name_status if which == "name" else c.reverse_name_status
    if name == "unknown" and status == NAME_OK:
        return "perm"
    return status


@restriction("reject_unknown_client_hostname")
def reject_unknown_client_hostname(ev, step, name, klass):
    c = ev.client
    status = _name_status(c, "name")
    if status == NAME_OK:
        return DUNNO
    code = 450 if status == NAME_TEMP else ev.settings.unknown_client_code
    return ev.reject(code, "4.7.25", f"Client host rejected: cannot find your hostname, [{c.addr}]")


@restriction("reject_unknown_reverse_client_hostname")
def reject_unknown_reverse_client_hostname(ev, step, name, klass):
    c = ev.client
    status = _name_status(c, "reverse")
    if status == NAME_OK:
        return DUNNO
    code = 450 if status == NAME_TEMP else ev.settings.unknown_client_code
    return ev.reject(code, "4.7.1",
                     f"Client host rejected: cannot find your reverse hostname, [{c.addr}]")
