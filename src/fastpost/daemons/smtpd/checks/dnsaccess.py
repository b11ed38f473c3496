"""Access tables keyed by what DNS says: check_*_{a,mx,ns}_access.

Postfix counterpart: check_server_access() and the check_*_a_access,
check_*_mx_access, check_*_ns_access branches of src/smtpd/smtpd_check.c.

    check_{client,reverse_client_hostname,helo,sender,recipient}_a_access  TABLE
        the IP addresses of the host (client/helo) or domain (sender/recipient)
    ..._mx_access  TABLE   the mail exchangers of the name (the name itself when it
                           has none), by name and by address
    ..._ns_access  TABLE   the name servers of the name (or of the nearest parent
                           domain that has NS records), by name and by address

Each server found is looked up in the table as a host name (and its parents), then
each of its addresses as an address (and its networks), in DNS order; the first
key a table knows decides, and the result means what access(5) says, with the
reply name and class of the check (``<sender>: Sender address rejected: ...``).
A temporary DNS failure is logged (``Unable to look up MX host for NAME: Host not
found, try again``) and the check goes on with what it has, as Postfix does. Address literals and names that are not host
names are not looked up.

Parameters: those of access.py.
Diagnostics: table failures as in access.py.
"""

from __future__ import annotations

from fastpost.daemons.smtpd.checks import access
from fastpost.daemons.smtpd.checks import reply as rp
from fastpost.daemons.smtpd.checks.hostname import valid_hostname
from fastpost.daemons.smtpd.checks.registry import DUNNO, TABLE, restriction
from fastpost.mail.address import external
from fastpost.mail.maps import search
from fastpost.util import log

__all__: list[str] = []

_TYPE_NAMES = {"A": "A", "MX": "MX", "NS": "NS"}


async def _servers(ev, name: str, rdtype: str, what: str, klass: str):
    """Return host names to check, or None after a temporary failure (noted)."""
    dns = ev.engine.dns
    if rdtype == "A":
        return [name]
    if rdtype == "MX":
        r = await dns.lookup(name, "MX")
        if r.status == "retry":
            _temp(ev, rdtype, name, what, klass)
            return None
        if r.status != "ok":
            return [name]
        hosts = [rec.split(" ", 1)[1] for rec in sorted(r.records, key=lambda x: int(x.split()[0]))]
        return [h for h in hosts if h and h != "."]
    # NS: the name, then its parents, until one has name servers.
    labels = name.split(".")
    for i in range(len(labels)):
        domain = ".".join(labels[i:])
        r = await dns.lookup(domain, "NS")
        if r.status == "retry":
            _temp(ev, rdtype, domain, what, klass)
            return None
        if r.status == "ok" and r.records:
            return r.records
    return []


def _temp(ev, rdtype, name, what, klass):
    # As Postfix: a warning, and the check goes on as if nothing was found.
    log.warn("Unable to look up %s host for %s: Host not found, try again",
             _TYPE_NAMES[rdtype], name)


async def _check_server(ev, ml, name: str, rdtype: str, what: str, klass: str):
    name = name.rstrip(".").lower()
    if not name or name.startswith("[") or not valid_hostname(name):
        return DUNNO
    hosts = await _servers(ev, name, rdtype, what, klass)
    if not hosts:
        return DUNNO
    dns = ev.engine.dns
    for host in hosts:
        if rdtype != "A":
            keys = search.access_domain_keys(host.lower(), parent_style=ev.settings.parent_style)
            found, result = await _lookup(ev, ml, keys, what, klass)
            if found:
                return result
        addrs = []
        for t in ("A", "AAAA"):
            r = await dns.lookup(host, t)
            if r.status == "retry":
                _temp(ev, "A", host, what, klass)
            elif r.status == "ok":
                addrs += r.records
        for addr in addrs:
            found, result = await _lookup(ev, ml, search.access_hostaddr_keys(addr), what, klass)
            if found:
                return result
    return DUNNO


async def _lookup(ev, ml, keys, what, klass):
    """(True, result) when a key was found (a DUNNO result ends the search too)."""
    try:
        hit = access.lookup_keys(ev, ml, keys)
        if hit is not None and hit.__class__ is not tuple:
            hit = await hit
    except access.maps.MapRetry as exc:
        return True, access._failed(ev, ml, exc, what, klass)
    if hit is None:
        return False, DUNNO
    result = access.interpret(ev, ml.title, hit[0], hit[1], what, klass)
    if result.__class__ is not int:
        result = await result
    return True, result


def _subject(ev, which: str):
    """(name to look up, reply name, reply class) for a check, or None."""
    c = ev.client
    if which == "client":
        return (c.name, c.text, rp.CLIENT) if c.name != "unknown" else None
    if which == "reverse_client_hostname":
        return (c.reverse_name, c.reverse_name, rp.REV_CLIENT) if c.reverse_name != "unknown" else None
    if which == "helo":
        return (ev.helo, ev.helo, rp.HELO) if ev.helo else None
    addr = ev.sender if which == "sender" else ev.recipient
    if not addr or "@" not in addr:
        return None
    return (addr.rpartition("@")[2], addr, rp.SENDER if which == "sender" else rp.RECIPIENT)


def _make(which: str, rdtype: str):
    async def check(ev, step, name, klass):
        subject = _subject(ev, which)
        if subject is None:
            return DUNNO
        host, what, klass_ = subject
        return await _check_server(ev, step.arg, host, rdtype, what, klass_)
    return check


for _which in ("client", "reverse_client_hostname", "helo", "sender", "recipient"):
    for _rdtype in ("A", "MX", "NS"):
        restriction(f"check_{_which}_{_rdtype.lower()}_access", arg=TABLE)(_make(_which, _rdtype))
