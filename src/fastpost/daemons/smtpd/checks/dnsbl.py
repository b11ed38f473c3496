"""DNS block and allow lists: reject_rbl_client, reject_rhsbl_*, permit_dnswl_client,
permit_rhswl_client.

Postfix counterpart: reject_rbl_addr(), reject_rbl_domain(), permit_dnswl_addr(),
permit_dnswl_domain(), rbl_reject_reply() and the $rbl_* expansion of
src/smtpd/smtpd_check.c.

    reject_rbl_client LIST[=FILTER]           the client address, reversed
                                              (4.3.2.1.LIST; IPv6 by nibbles)
    reject_rhsbl_client LIST[=FILTER]         the client's verified name
    reject_rhsbl_reverse_client LIST[=FILTER] the client's PTR name
    reject_rhsbl_helo LIST[=FILTER]           the HELO name
    reject_rhsbl_sender LIST[=FILTER]         the sender's domain
    reject_rhsbl_recipient LIST[=FILTER]      the recipient's domain
    permit_dnswl_client LIST[=FILTER]         (allow) the client address
    permit_rhswl_client LIST[=FILTER]         (allow) the client's verified name

A name is listed when LIST has an A record for it (matching FILTER when given:
``=127.0.0.2``, or byte patterns ``=127.0.0.[2;4..6]``). A listed name is refused
with the reply of rbl_reply_maps (key: LIST) or default_rbl_reply, after
expansion of $rbl_code (maps_rbl_reject_code), $rbl_class, $rbl_what,
$rbl_domain, $rbl_reason (the TXT record), $rbl_txt, $client, $client_address,
$client_name, $reverse_client_name, $helo_name, $sender, $sender_name,
$sender_domain, $recipient, $recipient_name, $recipient_domain — with
``${name?text}`` / ``${name:text}`` — and smtpd_expansion_filter applied to the
values; its enhanced code is 5.7.1 unless the reply gives one.

A temporary DNS failure of a block list never accepts nor hard-rejects: it is a
deferral under reject_tempfail_action (defer_if_permit: 450 4.7.1 ... "Service
unavailable; ... RBL lookup error"). An allow list that cannot be asked answers
``450 4.7.1 <what>: Client host rejected: Service unavailable`` at once (as Postfix
does), and an allow list is ignored where it would
override reject_unauth_destination (a recipient we may not relay to).

Parameters: maps_rbl_reject_code, default_rbl_reply, rbl_reply_maps,
smtpd_expansion_filter, reject_tempfail_action, maps_rbl_domains
(reject_maps_rbl).
Diagnostics: a bad filter is a configuration error (451 4.3.5 at run time).
"""

from __future__ import annotations

import ipaddress
import re

from fastpost.daemons.smtpd.checks import reply as rp
from fastpost.daemons.smtpd.checks.registry import DUNNO, WORD, restriction
from fastpost.daemons.smtpd.checks.reply import split_dsn
from fastpost.mail import maps
from fastpost.mail.address import external
from fastpost.mail.dns import reverse_name
from fastpost.util import log

__all__ = ["ListSpec", "expand_reply"]


class ListSpec:
    """A DNS list domain with its optional reply filter."""

    __slots__ = ("domain", "filter", "text")

    def __init__(self, text: str):
        self.text = text
        domain, eq, flt = text.partition("=")
        self.domain = domain.lower().rstrip(".")
        if not self.domain:
            raise ValueError(f'restriction requires a DNS list domain: "{text}"')
        self.filter = _compile_filter(flt, text) if eq else None

    def matches(self, addresses: list[str]) -> list[str]:
        if self.filter is None:
            return addresses
        return [a for a in addresses if self.filter(a)]


_FILTER_PART = re.compile(r"\[[^\]]*\]|[0-9]+")


def _compile_filter(text: str, whole: str):
    """``127.0.0.2`` or byte patterns ``127.0.0.[2;4..6]`` -> predicate."""
    parts = []
    pos = 0
    while pos < len(text):
        m = _FILTER_PART.match(text, pos)
        if m is None:
            raise ValueError(f'bad DNS list filter "{whole}": expected d.d.d.d')
        parts.append(m.group(0))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ".":
                raise ValueError(f'bad DNS list filter "{whole}": expected d.d.d.d')
            pos += 1
    if len(parts) != 4:
        raise ValueError(f'bad DNS list filter "{whole}": expected d.d.d.d')
    sets = []
    for part in parts:
        if part.startswith("[") and part.endswith("]"):
            allowed = set()
            for item in re.split(r"[;,]", part[1:-1]):
                lo, dots, hi = item.partition("..")
                if not lo.isdigit() or (dots and not hi.isdigit()):
                    raise ValueError(f'bad DNS list filter "{whole}"')
                allowed.update(range(int(lo), int(hi or lo) + 1))
            sets.append(allowed)
        elif part.isdigit() and int(part) < 256:
            sets.append({int(part)})
        else:
            raise ValueError(f'bad DNS list filter "{whole}"')

    def match(addr: str) -> bool:
        try:
            octets = [int(x) for x in addr.split(".")]
        except ValueError:
            return False
        return len(octets) == 4 and all(o in s for o, s in zip(octets, sets))

    return match


def _compile(word, engine):
    return ListSpec(word)


# -- reply expansion -----------------------------------------------------------------

_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?:([?:])((?:[^{}]|\{[^{}]*\})*))?\}|\(([A-Za-z0-9_]+)\)"
                  r"|([A-Za-z0-9_]+)|(\$))")


def expand_reply(template: str, values: dict[str, str], allowed: str) -> str:
    """Expand $name, ${name}, ${name?text}, ${name:text} (text expanded in turn)."""

    def clean(value: str) -> str:
        return "".join(c if c in allowed else "_" for c in value)

    def sub(m: re.Match) -> str:
        if m.group(6):
            return "$"
        name = m.group(1) or m.group(4) or m.group(5)
        value = values.get(name, "")
        op = m.group(2)
        if op == "?":
            return expand_reply(m.group(3), values, allowed) if value else ""
        if op == ":":
            return "" if value else expand_reply(m.group(3), values, allowed)
        return clean(value)

    return _VAR.sub(sub, template)


def _filter_chars(engine) -> str:
    chars = getattr(engine, "_expansion_filter", None)
    if chars is None:
        raw = engine.config.get("smtpd_expansion_filter")
        chars = engine._expansion_filter = (raw.replace("\\t", "\t").replace("\\40", " ")
                                            .replace("\\\\", "\\"))
    return chars


def _reply_maps(engine):
    ml = getattr(engine, "_rbl_reply_maps", None)
    if ml is None:
        ml = engine._rbl_reply_maps = maps.MapList.from_param(engine.config, "rbl_reply_maps")
    return ml


async def _refuse(ev, spec: ListSpec, klass: str, what: str, query: str):
    s = ev.settings
    engine = ev.engine
    template = None
    try:
        template = _reply_maps(engine).get(spec.domain) if _reply_maps(engine) else None
    except maps.MapRetry as exc:
        log.warn("rbl_reply_maps: %s", exc)
        return ev.server_error()
    if template is None:
        template = engine.config.get("default_rbl_reply")
    reason = ""
    if "rbl_reason" in template or "rbl_txt" in template:
        txt = await engine.dns.lookup(query, "TXT")
        if txt.status == "ok" and txt.records:
            reason = txt.records[0]
    c = ev.client
    sender = ev.sender or ""
    rcpt = ev.recipient or ""
    values = {
        "rbl_code": str(s.maps_rbl_code), "rbl_class": klass, "rbl_what": what,
        "rbl_domain": spec.domain, "rbl_reason": reason, "rbl_txt": reason,
        "client": c.text, "client_address": c.addr, "client_name": c.name,
        "reverse_client_name": c.reverse_name, "helo_name": ev.helo or "",
        "sender": external(sender), "sender_name": sender.rpartition("@")[0] if "@" in sender else sender,
        "sender_domain": sender.rpartition("@")[2] if "@" in sender else "",
        "recipient": external(rcpt), "recipient_name": rcpt.rpartition("@")[0] if "@" in rcpt else rcpt,
        "recipient_domain": rcpt.rpartition("@")[2] if "@" in rcpt else "",
    }
    text = expand_reply(template, values, _filter_chars(engine)).strip()
    m = re.match(r"([45]\d\d)\s+(.*)", text)
    if m is None:
        log.warn('rbl reply "%s" does not start with a 4xx or 5xx code', text)
        return ev.server_error()
    code = int(m.group(1))
    dsn, rest = split_dsn(m.group(2), f"{m.group(1)[0]}.7.1")
    return ev.reject(code, dsn, rest)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


async def _listed(ev, name: str, spec: ListSpec):
    """Return (status, addresses that pass the filter)."""
    r = await ev.engine.dns.lookup(name, "A")
    if r.status == "retry":
        return "retry", []
    if r.status != "ok":
        return "notfound", []
    return "ok", spec.matches(r.records)


def _lookup_warning(query: str) -> None:
    log.warn("%s: RBL lookup error: Host or domain name not found. Name service error "
             "for name=%s type=A: Host not found, try again", query, query)


async def _block(ev, spec: ListSpec, klass: str, what: str, query: str):
    status, hits = await _listed(ev, query, spec)
    if status == "retry":
        _lookup_warning(query)
        return ev.tempfail(ev.settings.reject_tempfail_action, 450, "4.7.1",
                           f"<{what}>: {klass} rejected: Service unavailable; "
                           f"{klass} [{what}] blocked using {spec.domain}; RBL lookup error")
    if not hits:
        return DUNNO
    return await _refuse(ev, spec, klass, what, query)


@restriction("reject_rbl_client", arg=WORD, compile=_compile)
async def reject_rbl_client(ev, step, name, klass):
    addr = ev.client.addr
    if not addr or not _is_ip(addr):
        return DUNNO
    return await _block(ev, step.arg, rp.CLIENT, addr, reverse_name(addr, step.arg.domain))


def _domain_block(which):
    async def check(ev, step, name, klass):
        spec = step.arg
        c = ev.client
        if which == "client":
            what, klass_ = (c.name if c.name != "unknown" else ""), rp.CLIENT
        elif which == "reverse":
            what, klass_ = (c.reverse_name if c.reverse_name != "unknown" else ""), rp.REV_CLIENT
        elif which == "helo":
            what, klass_ = ev.helo or "", rp.HELO
            if what.startswith("["):
                what = ""
        elif which == "sender":
            what, klass_ = (ev.sender or "").rpartition("@")[2] if ev.sender and "@" in ev.sender else "", rp.SENDER
        else:
            what, klass_ = (ev.recipient or "").rpartition("@")[2] if ev.recipient and "@" in ev.recipient else "", rp.RECIPIENT
        domain = what.rstrip(".").lower()
        if not domain or domain.startswith("["):
            return DUNNO
        if which in ("sender", "recipient"):
            # The reply names the whole address; the list is asked about its domain.
            what = ev.sender if which == "sender" else ev.recipient
        else:
            what = domain
        return await _block(ev, spec, klass_, what, f"{domain}.{spec.domain}")
    return check


for _which, _name in (("client", "reject_rhsbl_client"), ("reverse", "reject_rhsbl_reverse_client"),
                      ("helo", "reject_rhsbl_helo"), ("sender", "reject_rhsbl_sender"),
                      ("recipient", "reject_rhsbl_recipient")):
    restriction(_name, arg=WORD, compile=_compile)(_domain_block(_which))


async def _would_relay(ev) -> bool:
    rcpt = ev.recipient
    if rcpt is None or ev.list_kind not in ("relay", "recipient") and ev.stage not in ("RCPT", "VRFY"):
        return False
    if rcpt is None:
        return False
    try:
        return not await ev.engine.address_class.aauthorized(rcpt, ev.client.server_addr)
    except maps.MapRetry:
        return True


async def _allow(ev, spec: ListSpec, query: str, action: str, what: str):
    if await _would_relay(ev):
        return DUNNO
    status, hits = await _listed(ev, query, spec)
    if status == "retry":
        # As Postfix: an allow list that cannot be asked defers at once.
        _lookup_warning(query)
        return ev.reject(450, "4.7.1", f"<{what}>: {rp.CLIENT} rejected: Service unavailable")
    if hits:
        return ev.permit(action, ev.client.text, rp.CLIENT)
    return DUNNO


@restriction("permit_dnswl_client", arg=WORD, compile=_compile)
async def permit_dnswl_client(ev, step, name, klass):
    addr = ev.client.addr
    if not addr or not _is_ip(addr):
        return DUNNO
    return await _allow(ev, step.arg, reverse_name(addr, step.arg.domain), "permit_dnswl_client",
                        addr)


@restriction("permit_rhswl_client", arg=WORD, compile=_compile)
async def permit_rhswl_client(ev, step, name, klass):
    c = ev.client
    if c.name == "unknown":
        return DUNNO
    return await _allow(ev, step.arg, f"{c.name.lower()}.{step.arg.domain}", "permit_rhswl_client",
                        c.name)


@restriction("reject_maps_rbl", deprecated='support for restriction "reject_maps_rbl" will be '
             'removed from Postfix; use "reject_rbl_client domain-name" instead')
async def reject_maps_rbl(ev, step, name, klass):
    addr = ev.client.addr
    if not addr or not _is_ip(addr):
        return DUNNO
    for domain in ev.engine.config.get_list("maps_rbl_domains"):
        spec = ListSpec(domain)
        result = await _block(ev, spec, rp.CLIENT, addr, reverse_name(addr, spec.domain))
        if result:
            return result
    return DUNNO
