"""Address resolving: where does a recipient go? trivial-rewrite's ``resolve`` request.

Postfix counterpart: src/trivial-rewrite/resolve.c, transport.c, src/global/resolve_local.c,
resolve_clnt.h (the flag values, kept identical).

``Resolver(cfg).resolve(sender, address) -> Resolved(transport, nexthop, recipient,
flags)`` (internal-form addresses). Steps:

 1. The empty address is ``empty_address_recipient`` (MAILER-DAEMON). An address
    without a domain gets ``@$myhostname`` (not myorigin: ``user`` is always this
    machine's user); an explicit domain is taken as written (no ``.$mydomain``), less
    one trailing dot. A source route is kept (``@a,@b:user@c`` resolves to ``c`` with
    the ROUTED flag).
 2. While the domain is local (resolve_local: ``mydestination``, or an address literal
    of ``inet_interfaces``/``proxy_interfaces``) and the local part holds an address
    operator (``@``; ``!`` with swap_bangpath; ``%`` with allow_percent_hack), the local
    domain is stripped, the local part rewritten as in rewrite.py's ``local`` context
    (so ``a!b`` becomes ``b@a``, then ``b@a.$mydomain`` with append_dot_mydomain) and
    resolved again (``a%b@localhost`` is ``a@b``). ``resolve_dequoted_address = yes``
    (the default) looks for operators in the raw local part; ``no`` treats a local
    part that needs quotes as opaque.
 3. Flags: ROUTED when the final local part still holds ``@``, ``%`` or ``!``; ERROR
    for a domain that is not a valid host name or address literal (``user@x..``,
    ``user@[321.1.2.3]``, an all-numeric name unless ``resolve_numeric_domain``, which
    turns ``user@1.2.3.4`` into ``user@[1.2.3.4]``; ``user@`` unless
    ``resolve_null_domain``) and for a local part starting with ``-``; FAIL when a
    table lookup failed (the caller defers: 4.3.0).
 4. The address class, first match wins, and its transport and next hop:

      local    resolve_local             local_transport      (nexthop: its own, else the domain)
      alias    virtual_alias_domains     error:5.1.1 User unknown in virtual alias table
      virtual  virtual_mailbox_domains   virtual_transport    (nexthop: its own, else the domain)
      relay    relay_domains             relay_transport      (nexthop: see below)
      default  everything else           sender_dependent_default_transport_maps(sender),
                                         else default_transport

    For relay and default: the transport's own next hop (``smtp:[host]``), else
    ``sender_dependent_relayhost_maps(sender)``, else ``relayhost`` (any of its forms,
    a list included, passed on as written), else the recipient domain. The null sender
    is looked up as ``empty_address_relayhost_maps_lookup_key`` /
    ``empty_address_default_transport_maps_lookup_key`` (``<>``).
 5. ``transport_maps`` (not for the alias class): keys ``user+ext@domain``,
    ``user@domain``, ``domain``, parent domains (``.parent``, or bare when listed in
    parent_domain_matches_subdomains), ``*``. The value ``transport:nexthop``: an empty
    transport keeps the class's; a transport with an empty next hop delivers to the
    recipient domain; ``:`` alone changes nothing; for ``error``/``retry`` the next hop
    is the text of the bounce or deferral.
 6. ``relocated_maps`` (address lookup: ``user@domain``, ``user`` for local domains,
    ``@domain``): ``error:5.1.6 User has moved to <value>``.

``verify`` requests (address probes) use the ``address_verify_*`` variants of the
transports, relayhost and maps.

Everything was checked against Postfix 3.7's trivial-rewrite over its own socket
(tests/delivery/test_resolve_vs_postfix.py), addresses and configurations alike.

Parameters: the ones named above, plus myhostname, myorigin, mydomain,
append_at_myorigin, append_dot_mydomain, swap_bangpath, allow_percent_hack,
resolve_dequoted_address, resolve_null_domain, resolve_numeric_domain,
recipient_delimiter, show_user_unknown_table_name, parent_domain_matches_subdomains.
Diagnostics: never raises for an address; table failures become the FAIL flag (logged
by the daemon).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass

from fastpost.mail.address import needs_quoting
from fastpost.mail.domain_list import DomainList, LocalDomains, literal_address
from fastpost.mail.maps import MapList, MapRetry
from fastpost.mail.maps import search
from fastpost.mail.rewrite import RewriteRules, canonicalize, split_route

# Flags, with Postfix's values (resolve_clnt.h), so they can be logged and compared.
FLAG_FINAL = 1 << 0
FLAG_ROUTED = 1 << 1  # user@a@b, a%b@c, a!b@c, @route:user@c
FLAG_ERROR = 1 << 2  # malformed address: bounce 5.1.3
FLAG_FAIL = 1 << 3  # a table lookup failed: defer 4.3.0
CLASS_LOCAL = 1 << 8
CLASS_ALIAS = 1 << 9
CLASS_VIRTUAL = 1 << 10
CLASS_RELAY = 1 << 11
CLASS_DEFAULT = 1 << 12
CLASS_MASK = CLASS_LOCAL | CLASS_ALIAS | CLASS_VIRTUAL | CLASS_RELAY | CLASS_DEFAULT
#: Classes whose mail this machine delivers itself (smtpd: not relaying).
CLASS_FINAL = CLASS_LOCAL | CLASS_ALIAS | CLASS_VIRTUAL
CLASS_NAMES = {CLASS_LOCAL: "local", CLASS_ALIAS: "alias", CLASS_VIRTUAL: "virtual",
               CLASS_RELAY: "relay", CLASS_DEFAULT: "default"}

_LIST_PUNCT = re.compile(r",\s*")
#: Loop guard for ``a%b%c@localhost`` chains.
_MAX_PASSES = 100

_LABEL = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff]([A-Za-z0-9_\x80-\U0010ffff-]*[A-Za-z0-9_\x80-\U0010ffff])?")


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a recipient goes."""

    transport: str  # master.cf service (smtp, relay, local, virtual, error, retry, ...)
    nexthop: str  # destination for that transport; for error/retry the reason text
    recipient: str  # the address in standard form (internal)
    flags: int  # CLASS_* | FLAG_*

    @property
    def address_class(self) -> str:
        return CLASS_NAMES.get(self.flags & CLASS_MASK, "")

    @property
    def failed(self) -> bool:
        return bool(self.flags & FLAG_FAIL)

    @property
    def error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)

    @property
    def routed(self) -> bool:
        return bool(self.flags & FLAG_ROUTED)

    def to_attrs(self) -> dict:
        return {"transport": self.transport, "nexthop": self.nexthop,
                "recipient": self.recipient, "flags": self.flags}

    @classmethod
    def from_attrs(cls, a: dict) -> "Resolved":
        try:
            return cls(str(a["transport"]), str(a["nexthop"]), str(a["recipient"]), int(a["flags"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed resolve reply: {exc}") from None


def valid_domain(domain: str) -> bool:
    """A host name Postfix accepts (letters, digits, ``-``, ``_``, 8-bit; not all numeric)
    or an address literal."""
    if domain.startswith("["):
        return literal_address(domain) is not None
    if not domain or len(domain) > 255:
        return False
    labels = domain.split(".")
    for label in labels:
        if len(label) > 63 or not _LABEL.fullmatch(label):
            return False
    return not all(label.isdigit() for label in labels)


def split_nexthop(spec: str) -> tuple[str, str]:
    """``transport:nexthop`` -> (transport, nexthop); a bare word is a transport."""
    transport, colon, nexthop = spec.partition(":")
    return transport.strip(), nexthop.strip() if colon else ""


class _Params:
    """The parameter names of a resolve or a verify request."""

    def __init__(self, verify: bool):
        pfx = "address_verify_" if verify else ""
        self.local_transport = pfx + "local_transport"
        self.virtual_transport = pfx + "virtual_transport"
        self.relay_transport = pfx + "relay_transport"
        self.default_transport = pfx + "default_transport"
        self.relayhost = pfx + "relayhost"
        self.transport_maps = pfx + "transport_maps"
        self.sd_relayhost = pfx + "sender_dependent_relayhost_maps"
        self.sd_transport = pfx + "sender_dependent_default_transport_maps"


class Resolver:
    """Resolve requests for one configuration (tables opened once, here)."""

    def __init__(self, cfg, *, verify: bool = False):
        p = _Params(verify)
        self.cfg = cfg
        self.myhostname = cfg.get("myhostname").strip()
        self.empty_recipient = cfg.get("empty_address_recipient").strip() or "MAILER-DAEMON"
        self.rules = RewriteRules(
            cfg.get("myorigin").strip() if cfg.get_bool("append_at_myorigin") else "",
            cfg.get("mydomain").strip() if cfg.get("append_dot_mydomain").strip().lower() == "yes" else "",
            cfg.get_bool("swap_bangpath"), cfg.get_bool("allow_percent_hack"))
        self.dequoted = cfg.get_bool("resolve_dequoted_address")
        self.null_domain = cfg.get_bool("resolve_null_domain")
        self.numeric_domain = cfg.get_bool("resolve_numeric_domain")
        self.delimiters = cfg.get("recipient_delimiter")
        self.local = LocalDomains(cfg)
        self.alias_domains = DomainList.string_list(cfg, "virtual_alias_domains")
        self.virtual_domains = DomainList.string_list(cfg, "virtual_mailbox_domains")
        self.relay_domains = DomainList.from_param(cfg, "relay_domains")
        self.local_transport = split_nexthop(cfg.get(p.local_transport))
        self.virtual_transport = split_nexthop(cfg.get(p.virtual_transport))
        self.relay_transport = split_nexthop(cfg.get(p.relay_transport))
        self.default_transport = split_nexthop(cfg.get(p.default_transport))
        self.relayhost = cfg.get(p.relayhost).strip()
        self.transport_maps = MapList.from_param(cfg, p.transport_maps)
        self.transport_parent = search.parent_matches_subdomains(cfg, "transport_maps")
        self.sd_relayhost = MapList.from_param(cfg, p.sd_relayhost)
        self.sd_transport = MapList.from_param(cfg, p.sd_transport)
        self.relayhost_null_key = cfg.get("empty_address_relayhost_maps_lookup_key")
        self.transport_null_key = cfg.get("empty_address_default_transport_maps_lookup_key")
        self.relocated = MapList.from_param(cfg, "relocated_maps")
        unknown = "User unknown in virtual alias table" \
            if cfg.get_bool("show_user_unknown_table_name") else "User unknown"
        self.alias_error = ("error", f"5.1.1 {unknown}")

    @property
    def inline(self) -> bool:
        """True when no table of the resolver waits (domain lists, transport_maps,
        the sender-dependent maps, relocated_maps: all in memory or local files):
        resolve() then completes without the event loop and without waiting."""
        v = self.__dict__.get("_inline")
        if v is None:
            v = self._inline = (
                self.local.inline and self.alias_domains.inline
                and self.virtual_domains.inline and self.relay_domains.inline
                and self.transport_maps.inline and self.sd_relayhost.inline
                and self.sd_transport.inline and self.relocated.inline)
        return v

    def tables(self) -> list | None:
        """Every table the resolver may consult (for TableRevisions); None when a
        domain list names a ``/file``, which is re-read at each match."""
        out = []
        for dl in (self.local.destinations, self.alias_domains, self.virtual_domains,
                   self.relay_domains):
            for _neg, kind, value in dl.items:
                if kind == "file":
                    return None
                if kind == "table":
                    out.extend(value.maps)
        for ml in (self.transport_maps, self.sd_relayhost, self.sd_transport, self.relocated):
            out.extend(ml.maps)
        return out

    # -- the synchronous entry point (tests, commands): runs the coroutine inline -----

    def resolve(self, sender: str, address: str) -> Resolved:
        """resolve() without an event loop (tables that need one get their own)."""
        coro = self.aresolve(sender, address)
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value
        coro.close()
        return asyncio.run(self.aresolve(sender, address))

    # -- the work ---------------------------------------------------------------------

    def _visible(self, local: str) -> bool:
        return self.dequoted or not needs_quoting(local)

    def _has_operator(self, local: str) -> bool:
        if not self._visible(local):
            return False
        return "@" in local or (self.rules.bang and "!" in local) or \
            (self.rules.percent and "%" in local)

    async def _is_local(self, domain: str) -> bool:
        return await self.local.amatch(domain)

    async def aresolve(self, sender: str, address: str) -> Resolved:
        """Resolve ``address`` (internal form) for mail from ``sender``."""
        try:
            return await self._resolve(sender, address)
        except MapRetry:
            return Resolved("", "", address, FLAG_FAIL)
        except _Failed as f:
            return f.resolved

    async def _resolve(self, sender: str, address: str) -> Resolved:
        # With every table inline (self.inline) the plain calls stand for the awaited
        # ones: same answers, no coroutine per lookup.
        inline = self.inline
        flags = 0
        if address in ("", "@"):  # the null address
            address = self.empty_recipient + address
        route, rest = split_route(address)
        if route:
            if "@" not in rest:
                return Resolved("", "", address, CLASS_DEFAULT | FLAG_ERROR)
            recipient = ", ".join(r.strip() for r in route.split(",")) + ":" + rest
            domain = rest[rest.rfind("@") + 1:]
            local = rest[:rest.rfind("@")]
            flags |= FLAG_ROUTED
            is_local = False
        else:
            addr = address
            is_local = False
            for _ in range(_MAX_PASSES):
                at = addr.rfind("@")
                if at < 0:  # no domain: this machine's (myorigin is not appended here)
                    addr = f"{addr}@{self.myhostname}"
                    at = addr.rfind("@")
                local, domain = addr[:at], addr[at + 1:]
                if domain == "" and self.null_domain:
                    domain = self.myhostname
                    addr = f"{local}@{domain}"
                if domain.endswith(".") and not domain.endswith("..") and len(domain) > 1:
                    domain = domain[:-1]
                    addr = f"{local}@{domain}"
                if self.numeric_domain and _numeric_v4(domain):
                    domain = f"[{domain}]"
                    addr = f"{local}@{domain}"
                if not valid_domain(domain):
                    # Postfix's tokenizer writes list punctuation back as ", ".
                    shown = local + "@" + _LIST_PUNCT.sub(", ", domain)
                    return Resolved("", "", shown, CLASS_DEFAULT | FLAG_ERROR)
                is_local = self.local.match(domain) if inline else await self._is_local(domain)
                if is_local and self._has_operator(local):
                    # Strip the local domain; what is left is rewritten as in the local
                    # context (bang path, percent hack, .mydomain) and resolved again.
                    addr = canonicalize(local, self.rules, opaque_quoted=not self.dequoted)
                    continue
                break
            recipient = addr
            if any(c in local for c in "@%!"):
                flags |= FLAG_ROUTED
        if local.startswith("-"):
            flags |= FLAG_ERROR
        if is_local:
            flags |= CLASS_LOCAL
            transport, nexthop = self.local_transport
            nexthop = nexthop or domain
        elif (self.alias_domains.match(domain) if inline
              else await self.alias_domains.amatch(domain)):
            r = Resolved(*self.alias_error, recipient, flags | CLASS_ALIAS)
            return await self._relocated(r) if self.relocated else r
        elif (self.virtual_domains.match(domain) if inline
              else await self.virtual_domains.amatch(domain)):
            flags |= CLASS_VIRTUAL
            transport, nexthop = self.virtual_transport
            nexthop = nexthop or domain
        else:
            if (self.relay_domains.match(domain) if inline
                    else await self.relay_domains.amatch(domain)):
                flags |= CLASS_RELAY
                transport, nexthop = self.relay_transport
            else:
                flags |= CLASS_DEFAULT
                transport, nexthop = self.default_transport
                if self.sd_transport:
                    found = await self._sender_lookup(self.sd_transport, sender,
                                                      self.transport_null_key)
                    if found:
                        t, n = split_nexthop(found)
                        transport, nexthop = t or transport, n
            if not nexthop:
                if self.sd_relayhost:
                    nexthop = await self._sender_lookup(self.sd_relayhost, sender,
                                                        self.relayhost_null_key) or ""
                nexthop = nexthop or self.relayhost or domain
        if self.transport_maps:
            try:
                if inline:
                    found = search.find_transport(
                        self.transport_maps, recipient, delimiters=self.delimiters,
                        parent_style=self.transport_parent)
                else:
                    found = await search.afind_transport(
                        self.transport_maps, recipient, delimiters=self.delimiters,
                        parent_style=self.transport_parent)
            except MapRetry:
                raise _Failed(Resolved(transport, nexthop, recipient, flags | FLAG_FAIL)) from None
            if found is not None:
                t, n = split_nexthop(found.value)
                if t:
                    transport = t
                    nexthop = n or domain
                elif n:
                    nexthop = n
        r = Resolved(transport, nexthop, recipient, flags)
        return await self._relocated(r) if self.relocated else r

    async def _sender_lookup(self, maps: MapList, sender: str, null_key: str) -> str | None:
        if sender == "":
            return await maps.aget(null_key)
        return await search.afind_address(maps, sender, delimiters=self.delimiters,
                                          is_local=self.local.match)

    async def _relocated(self, r: Resolved) -> Resolved:
        if not self.relocated:
            return r
        try:
            where = await search.afind_address(self.relocated, r.recipient, delimiters=self.delimiters,
                                               is_local=self.local.match)
        except MapRetry:
            return Resolved(r.transport, r.nexthop, r.recipient, r.flags | FLAG_FAIL)
        if where is None:
            return r
        return Resolved("error", f"5.1.6 User has moved to {where}", r.recipient, r.flags)


class _Failed(Exception):
    def __init__(self, resolved: Resolved):
        super().__init__("lookup failed")
        self.resolved = resolved


def _numeric_v4(domain: str) -> bool:
    try:
        ipaddress.IPv4Address(domain)
        return True
    except ValueError:
        return False


__all__ = [
    "CLASS_ALIAS", "CLASS_DEFAULT", "CLASS_FINAL", "CLASS_LOCAL", "CLASS_MASK", "CLASS_NAMES",
    "CLASS_RELAY", "CLASS_VIRTUAL", "FLAG_ERROR", "FLAG_FAIL", "FLAG_FINAL", "FLAG_ROUTED",
    "Resolved", "Resolver", "split_nexthop", "valid_domain",
]
