"""Who may relay where: address classes, reject_unauth_destination and its relatives.

Postfix counterpart: reject_unauth_destination(), permit_auth_destination(),
permit_mx_backup() and check_relay_domains of src/smtpd/smtpd_check.c, and the
address classes of src/trivial-rewrite/resolve.c that they ask for.

await AddressClassifier(config).aclassify(address) -> Classified(klass, domain, routed) asks
fastpost.mail.resolve.Resolver (the code trivial-rewrite's resolve runs, in process: no
IPC per RCPT), after which the address class is the one of where the address really
goes: route operators on a local domain are followed first (``a%b@us`` and ``b!a@us``
are ``a@b``), which is what keeps nmap's smtp-open-relay tricks out when
allow_untrusted_routing = yes (tests/policy/test_openrelay.py):

    local    the domain is in mydestination (names or tables), or an address
             literal of inet_interfaces / proxy_interfaces; an address without a
             domain is local after @$myorigin is appended, as cleanup will
    alias    virtual_alias_domains
    virtual  virtual_mailbox_domains
    relay    relay_domains
    default  anything else

``routed`` is True when the local part still holds sender-specified routing
(``user@elsewhere``, ``user%elsewhere``, ``elsewhere!user``), which
permit_auth_destination does not trust unless allow_untrusted_routing = yes.
Domain lists take names (a name also matches its subdomains when the parameter is
in parent_domain_matches_subdomains; ``.name`` matches subdomains only), ``!``
exclusions, ``/file`` lists and ``type:table`` lookups (the domain, then its
parents when parent matching applies), first match wins.

Classes are remembered by domain for addresses whose class is their domain's (a
plain local part: no ``@``, ``%`` or ``!``; not an address literal), so a new
recipient at a known domain costs a dictionary lookup instead of a resolution (Postfix's
smtpd keeps a small cache of resolve answers for the same reason). The memo holds at
most DOMAIN_MEMO_LIMIT domains and is emptied whenever a table of the resolver's
lists or maps was re-read or cannot be read (maps.TableRevisions: each table is asked
when its own change check is due, so an answer is never staler than the table's own);
it is not kept at all when a table cannot promise its answers (network tables,
randmap, pipemap, ``/file`` lists, which are re-read at every match). A reload starts
new smtpd processes, with empty memos.

Replies: reject_unauth_destination ``relay_domains_reject_code 5.7.1 <rcpt>: Relay
access denied``; defer_unauth_destination the same with 4xx (code - 100, 4.7.1).
permit_mx_backup permits a domain whose MX hosts include this host (its
inet_interfaces / proxy_interfaces addresses, or a name in mydestination) at a
worse preference than the best, and whose best MX is not this host; with
permit_mx_backup_networks the primary MX hosts' addresses must also be in those
networks.

Parameters: mydestination, inet_interfaces, proxy_interfaces, myorigin,
virtual_alias_domains, virtual_mailbox_domains, relay_domains,
relay_domains_reject_code, allow_untrusted_routing, parent_domain_matches_subdomains,
permit_mx_backup_networks.
Diagnostics: a table in a domain list that fails raises MapRetry (the caller
answers 451 4.3.5); ``warnings`` lists what is accepted but ignored.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from fastpost.daemons.smtpd.checks.registry import DUNNO, restriction
from fastpost.daemons.smtpd.netmatch import HostList, parent_matching
from fastpost.mail import maps
from fastpost.mail.maps import search
from fastpost.smtp import replies

__all__ = ["AddressClassifier", "Classified", "DomainMatcher"]


class Classified(NamedTuple):
    klass: str  # local, alias, virtual, relay, default
    domain: str
    routed: bool


class DomainMatcher:
    """A domain list with tables (module docstring)."""

    def __init__(self, cfg, param: str, *, parent: bool | None = None):
        if parent is None:
            parent = parent_matching(param, cfg.get("parent_domain_matches_subdomains"))
        self.parent = parent
        self.rules: list[tuple[bool, str, object]] = []
        for element in self._expand(cfg.get_list(param)):
            negate = element.startswith("!")
            body = element[1:] if negate else element
            if not body:
                continue
            kind = body.split(":", 1)[0]
            if ":" in body and kind.replace("_", "").isalnum() and not body.startswith("["):
                self.rules.append((negate, "table", maps.open_map(body, cfg)))
            else:
                self.rules.append((negate, "name", body.lower().rstrip(".")))

    @staticmethod
    def _expand(elements):
        out = []
        for element in elements:
            negate = element.startswith("!")
            body = element[1:] if negate else element
            if body.startswith("/"):
                with open(body, encoding="utf-8") as fh:
                    for line in fh:
                        for word in line.split("#", 1)[0].replace(",", " ").split():
                            out.append(("!" if negate else "") + word)
            else:
                out.append(element)
        return out

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, domain: str) -> bool:
        name = domain.lower().rstrip(".")
        if not name:
            return False
        for negate, kind, value in self.rules:
            if kind == "name":
                if value.startswith("."):
                    hit = name.endswith(value)
                else:
                    hit = name == value or (self.parent and name.endswith("." + value))
            else:
                hit = self._table_match(value, name)
            if hit:
                return not negate
        return False

    def _table_match(self, table, name: str) -> bool:
        if table.get(name) is not None:
            return True
        labels = name.split(".")
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            key = parent if self.parent else "." + parent
            if table.get(key) is not None:
                return True
        return False


class AddressClassifier:
    """The address class of a recipient, as trivial-rewrite's resolve gives it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.is_local = search.local_domain_predicate(cfg)
        self.myorigin = cfg.get("myorigin").lower()
        self.alias = DomainMatcher(cfg, "virtual_alias_domains")
        self.virtual = DomainMatcher(cfg, "virtual_mailbox_domains")
        self.relay = DomainMatcher(cfg, "relay_domains")
        self.untrusted_routing = cfg.get_bool("allow_untrusted_routing")
        self.warnings: list[str] = []
        self.interfaces: set[str] = set()
        for word in cfg.get_list("inet_interfaces") + cfg.get_list("proxy_interfaces"):
            try:
                self.interfaces.add(str(ipaddress.ip_address(word.strip("[]"))))
            except ValueError:
                pass
        self.any_interface = "all" in [w.lower() for w in cfg.get_list("inet_interfaces")]
        from fastpost.mail.resolve import Resolver

        self.resolver = Resolver(cfg)
        #: classify() never waits (every table of the resolver answers inline): the
        #: engine then calls it instead of awaiting aclassify().
        self.inline = self.resolver.inline
        #: The last answer, as Postfix's resolve client keeps it: (address, server, result)
        self._last: tuple | None = None
        #: Classes by domain, for addresses with a plain local part (_memo_domain):
        #: kept while the resolver's tables answer as they did (TableRevisions), at
        #: most DOMAIN_MEMO_LIMIT domains; none when a table cannot promise that.
        tables = self.resolver.tables()
        self._revisions = maps.TableRevisions(tables) if tables is not None else None
        self._by_domain: dict[str, Classified] | None = (
            {} if self._revisions is not None and self._revisions.memoisable else None)

    #: The most domains the class memo holds; it starts again empty when full.
    DOMAIN_MEMO_LIMIT = 4096

    def _memo_domain(self, full: str) -> str | None:
        """The domain of ``full`` when its class depends on the domain alone, or None.

        With a local part that holds no address operator (``@``, ``%``, ``!``) and is
        not empty, resolve() follows no route: the class, the domain it reports and
        ``routed`` (False) come from the domain and the domain lists only; the
        transport_maps and relocated_maps lookups by the whole address change the
        transport, which a class does not show. Address literals are left out (the
        connection's server address takes part in their class)."""
        at = full.rfind("@")
        domain = full[at + 1:]
        if at <= 0 or not domain or domain[0] == "[":
            return None
        local = full[:at]
        if "@" in local or "%" in local or "!" in local:
            return None
        memo = self._by_domain
        if not self._revisions.current() and memo:
            memo.clear()
        return domain

    def _remember(self, domain: str, result: Classified) -> None:
        memo = self._by_domain
        if len(memo) >= self.DOMAIN_MEMO_LIMIT:
            memo.clear()
        memo[domain] = result

    async def aclassify(self, address: str, server_addr: str = "") -> Classified:
        """The class trivial-rewrite's resolve gives ``address`` (fastpost.mail.resolve,
        the same code the rewrite service runs): route operators on a local domain
        are followed (``a%b@us`` is ``a@b``, ``b!a@us`` is ``a@b``), so an address
        that only looks local is classified where it really goes. Awaits the
        resolver, so a network table in relay_domains, transport_maps or
        relocated_maps is asked off the event loop. MapRetry when a table failed."""
        last = self._last
        if last is not None and last[0] == address and last[1] == server_addr:
            return last[2]  # one RCPT asks several times (relay, recipient, unlisted)
        full = address if "@" in address else f"{address}@{self.myorigin}"
        domain = self._memo_domain(full) if self._by_domain is not None else None
        result = self._by_domain.get(domain) if domain is not None else None
        if result is None:
            result = self._classified(await self.resolver.aresolve("", full), full, server_addr)
            if domain is not None:
                self._remember(domain, result)
        self._last = (address, server_addr, result)
        return result

    def classify(self, address: str, server_addr: str = "") -> Classified:
        """aclassify() without an event loop (commands, tests): blocks on network tables."""
        last = self._last
        if last is not None and last[0] == address and last[1] == server_addr:
            return last[2]
        full = address if "@" in address else f"{address}@{self.myorigin}"
        domain = self._memo_domain(full) if self._by_domain is not None else None
        result = self._by_domain.get(domain) if domain is not None else None
        if result is None:
            result = self._classified(self.resolver.resolve("", full), full, server_addr)
            if domain is not None:
                self._remember(domain, result)
        self._last = (address, server_addr, result)
        return result

    def _classified(self, r, address: str, server_addr: str) -> Classified:
        if r.failed:
            raise maps.MapRetry(f"address resolution failed for {address}")
        domain = r.recipient.rpartition("@")[2].lower().rstrip(".")
        klass = r.address_class or "default"
        if klass == "default" and domain.startswith("[") and self._our_literal(domain, server_addr):
            klass = "local"  # the server address of this connection (inet_interfaces=all)
        return Classified(klass, domain, r.routed)

    def _our_literal(self, domain: str, server_addr: str) -> bool:
        inner = domain[1:-1]
        if inner[:5].lower() == "ipv6:":
            inner = inner[5:]
        try:
            ip = str(ipaddress.ip_address(inner))
        except ValueError:
            return False
        if self.is_local(domain) or ip in self.interfaces or (server_addr and ip == server_addr):
            return True
        return self.any_interface and ipaddress.ip_address(ip).is_loopback


    async def aauthorized(self, address: str, server_addr: str = "") -> bool:
        """permit_auth_destination's test: our domain, no sender-specified routing."""
        return self.authorized_class(await self.aclassify(address, server_addr))

    def authorized_class(self, c: Classified) -> bool:
        """aauthorized()'s test on a classified address."""
        if c.klass == "default":
            return False
        return self.untrusted_routing or not c.routed


def _authorized(ev, rcpt: str):
    """True, False, None when a table failed; or an awaitable of that when the
    resolver's tables wait (sync first: no coroutine when they answer inline)."""
    engine = ev.engine
    ac = engine.address_class
    if engine.sync_first and engine.classify_inline:
        try:
            return ac.authorized_class(ac.classify(rcpt, ev.client.server_addr))
        except maps.MapRetry:
            return None
    return _aauthorized(ac, rcpt, ev.client.server_addr)


async def _aauthorized(ac, rcpt: str, server_addr: str):
    try:
        return await ac.aauthorized(rcpt, server_addr)
    except maps.MapRetry:
        return None


def _unauth_destination(ev, defer: bool):
    """reject_/defer_unauth_destination: refuse a recipient we neither host nor relay for."""
    rcpt = ev.recipient
    if rcpt is None:
        return DUNNO
    ok = _authorized(ev, rcpt)
    if ok is not None and ok.__class__ is not bool:
        return _unauth_verdict_later(ev, defer, rcpt, ok)
    return _unauth_verdict(ev, defer, rcpt, ok)


async def _unauth_verdict_later(ev, defer: bool, rcpt: str, pending):
    return _unauth_verdict(ev, defer, rcpt, await pending)


def _unauth_verdict(ev, defer: bool, rcpt: str, ok):
    if ok is None:
        return ev.server_error(rcpt, "Recipient address")
    if ok:
        return DUNNO
    if defer:
        code = ev.settings.relay_code - 100
        return ev.reject(code, "4.7.1", replies.relay_denied(rcpt, code).text)
    reply = replies.relay_denied(rcpt, ev.settings.relay_code)
    return ev.reject(reply.code, reply.enhanced, reply.text)


@restriction("reject_unauth_destination")
def reject_unauth_destination(ev, step, name, klass):
    return _unauth_destination(ev, defer=False)


@restriction("defer_unauth_destination")
def defer_unauth_destination(ev, step, name, klass):
    return _unauth_destination(ev, defer=True)


@restriction("permit_auth_destination")
def permit_auth_destination(ev, step, name, klass):
    rcpt = ev.recipient
    if rcpt is None:
        return DUNNO
    ok = _authorized(ev, rcpt)
    if ok is not None and ok.__class__ is not bool:
        return _permit_auth_later(ev, rcpt, ok)
    return _permit_auth_verdict(ev, rcpt, ok)


async def _permit_auth_later(ev, rcpt: str, pending):
    return _permit_auth_verdict(ev, rcpt, await pending)


def _permit_auth_verdict(ev, rcpt: str, ok):
    if ok is None:
        return ev.server_error(rcpt, "Recipient address")
    if ok:
        return ev.permit("permit_auth_destination", rcpt, "Recipient address")
    return DUNNO


@restriction("check_relay_domains")
async def check_relay_domains(ev, step, name, klass):
    ev.note_once('support for restriction "check_relay_domains" will be removed from Postfix; '
                 'use "reject_unauth_destination" instead')
    rcpt = ev.recipient
    if rcpt is None:
        return DUNNO
    c = ev.client
    relay = ev.engine.address_class.relay
    if c.name != "unknown" and relay.match(c.name):
        return ev.permit("check_relay_domains", c.text, "Client host")
    ok = _authorized(ev, rcpt)
    if ok is not None and ok.__class__ is not bool:
        ok = await ok
    if ok:
        return ev.permit("check_relay_domains", rcpt, "Recipient address")
    reply = replies.relay_denied(rcpt, ev.settings.relay_code)
    return ev.reject(reply.code, reply.enhanced, reply.text)


# -- permit_mx_backup -----------------------------------------------------------------

def _mx_networks(engine):
    nets = getattr(engine, "_mx_backup_networks", None)
    if nets is None:
        cfg = engine.config
        nets = engine._mx_backup_networks = HostList(
            cfg.get_list("permit_mx_backup_networks"),
            parent=parent_matching("permit_mx_backup_networks",
                                   cfg.get("parent_domain_matches_subdomains")))
    return nets


async def _is_me(ev, host: str) -> bool | None:
    """True when an MX host name is this host (by address); None on DNS failure."""
    ac = ev.engine.address_class
    if ac.is_local(host.lower()):
        return True
    addrs = []
    for rdtype in ("A", "AAAA"):
        r = await ev.engine.dns.lookup(host, rdtype)
        if r.status == "retry":
            return None
        addrs += r.records
    for a in addrs:
        if a in ac.interfaces or (ev.client.server_addr and a == ev.client.server_addr):
            return True
        if ac.any_interface and ipaddress.ip_address(a).is_loopback:
            return True
    return False


@restriction("permit_mx_backup")
async def permit_mx_backup(ev, step, name, klass):
    rcpt = ev.recipient
    if rcpt is None:
        return DUNNO
    ac = ev.engine.address_class
    try:
        c = await ac.aclassify(rcpt, ev.client.server_addr)
    except maps.MapRetry:
        return ev.server_error(rcpt, "Recipient address")
    if c.klass != "default":
        # Our own domains: permit as permit_auth_destination does.
        if ac.untrusted_routing or not c.routed:
            return ev.permit("permit_mx_backup", rcpt, "Recipient address")
        return DUNNO
    if c.routed or c.domain.startswith("["):
        return DUNNO
    r = await ev.engine.dns.lookup(c.domain, "MX")
    if r.status == "retry":
        # As Postfix: a later reject becomes this deferral.
        return ev.defer_if("reject", 450, "4.4.4",
                           f"<{rcpt}>: Recipient address rejected: Unable to look up mail "
                           f"exchanger information: Host not found, try again")
    if not r.records:
        return DUNNO
    mx = sorted((int(p), h) for p, h in (rec.split(" ", 1) for rec in r.records))
    best = mx[0][0]
    mine = None
    for pref, host in mx:
        me = await _is_me(ev, host)
        if me is None:
            return DUNNO
        if me:
            mine = pref
            break
    if mine is None or mine == best:
        return DUNNO
    nets = _mx_networks(ev.engine)
    if nets:
        for pref, host in mx:
            if pref >= mine:
                break
            res = await ev.engine.dns.lookup(host, "A")
            if not any(nets.match("", a) for a in res.records):
                return DUNNO
    return ev.permit("permit_mx_backup", rcpt, "Recipient address")
