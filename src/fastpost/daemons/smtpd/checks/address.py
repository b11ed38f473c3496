"""Sender and recipient address restrictions.

Postfix counterpart: reject_non_fqdn_address(), reject_unknown_address(),
reject_unknown_mailhost(), check_rcpt_maps() (reject_unlisted_sender /
reject_unlisted_recipient and their implicit forms), reject_auth_sender_login_mismatch(),
reject_unauth_sender_login_mismatch() and the multi-recipient bounce check of
src/smtpd/smtpd_check.c.

    reject_non_fqdn_sender / _recipient     non_fqdn_reject_code 5.5.2
        <addr>: Sender address rejected: need fully-qualified address
    reject_unknown_sender_domain / _recipient_domain
        unknown_address_reject_code 4.1.8 (sender) / 4.1.2 (recipient)
        <addr>: Sender address rejected: Domain not found
        null MX: 550 5.7.27 (sender) / 556 5.1.10 (recipient)
        <addr>: ... rejected: Domain D does not accept mail (nullMX)
        DNS trouble: unknown_address_tempfail_action (defer_if_permit), 450 4.1.8/4.1.2
    reject_unlisted_sender / _recipient     (also implied at the end of RCPT by
        smtpd_reject_unlisted_sender / smtpd_reject_unlisted_recipient)
        550 5.1.1 <addr>: Recipient address rejected: User unknown in local
        recipient table (virtual alias / virtual mailbox / relay recipient table);
        codes unknown_local_recipient_reject_code, unknown_virtual_alias_reject_code,
        unknown_virtual_mailbox_reject_code, unknown_relay_recipient_reject_code
    reject_multi_recipient_bounce           multi_recipient_bounce_reject_code 5.5.3
        <NAME>: Class rejected: Multi-recipient bounce
    reject_sender_login_mismatch (= the authenticated and unauthenticated forms),
    reject_known_sender_login_mismatch, reject_authenticated_sender_login_mismatch,
    reject_unauthenticated_sender_login_mismatch      553 5.7.1
        <sender>: Sender address rejected: not owned by user LOGIN  |  not logged in

Which table a recipient must be in follows its address class (relay.py): a key
of virtual_alias_maps is always enough; local domains need local_recipient_maps
(when not empty), virtual alias domains virtual_alias_maps, virtual mailbox domains
virtual_mailbox_maps, relay domains relay_recipient_maps (when not empty); other
domains are not checked. Lookups use the address-map key order (user@domain,
user@domain without extension, then for local domains the local part, then @domain).

Parameters: the codes above, local_recipient_maps, virtual_alias_maps,
virtual_mailbox_maps, relay_recipient_maps, show_user_unknown_table_name,
smtpd_sender_login_maps, recipient_delimiter, unknown_address_tempfail_action.
Diagnostics: a table failure answers ``451 4.3.0 <addr>: Temporary lookup failure``
(login maps: 451 4.3.5 ... Server configuration error) and logs a warning.
"""

from __future__ import annotations

from fastpost.daemons.smtpd.checks import reply as rp
from fastpost.daemons.smtpd.checks.hostname import valid_hostname
from fastpost.daemons.smtpd.checks.registry import DUNNO, restriction
from fastpost.daemons.smtpd.checks.reply import dsn_fix
from fastpost.mail import maps
from fastpost.mail.address import external
from fastpost.mail.maps import search
from fastpost.util import log

__all__ = ["check_recipient_maps", "check_sender_maps"]


def _domain(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return domain if at else ""


# -- fully qualified -------------------------------------------------------------------

def _non_fqdn(ev, address: str, klass: str):
    domain = _domain(address)
    if domain.startswith("["):
        return DUNNO
    test = domain[:-1] if domain.endswith(".") and not domain.endswith("..") else domain
    if test and valid_hostname(test) and "." in test:
        return DUNNO
    return ev.reject(ev.settings.non_fqdn_code, "5.5.2",
                     f"<{address}>: {klass} rejected: need fully-qualified address")


@restriction("reject_non_fqdn_sender")
def reject_non_fqdn_sender(ev, step, name, klass):
    if not ev.sender:
        return DUNNO
    return _non_fqdn(ev, ev.sender, rp.SENDER)


@restriction("reject_non_fqdn_recipient")
def reject_non_fqdn_recipient(ev, step, name, klass):
    if not ev.recipient:
        return DUNNO
    return _non_fqdn(ev, ev.recipient, rp.RECIPIENT)


# -- the domain exists -------------------------------------------------------------------

async def _unknown_domain(ev, address: str, klass: str):
    domain = _domain(address).rstrip(".")
    if not domain or domain.startswith("["):
        return DUNNO
    try:
        c = await ev.engine.address_class.aclassify(address, ev.client.server_addr)
    except maps.MapRetry:
        return ev.server_error(address, klass)
    if c.klass in ("local", "alias", "virtual"):
        return DUNNO
    dns = ev.engine.dns
    shown = address
    sender = klass == rp.SENDER
    s = ev.settings
    mx = await dns.lookup(domain, "MX")
    if mx.status == "ok" and mx.records:
        for rec in mx.records:
            pref, _, host = rec.partition(" ")
            if host in ("", ".") and len(mx.records) == 1:
                return ev.reject(550 if sender else 556, "5.7.27" if sender else "5.1.10",
                                 f"<{shown}>: {klass} rejected: Domain {domain} "
                                 f"does not accept mail (nullMX)")
        return DUNNO
    retry = mx.status == "retry"
    if not mx.nxdomain:
        for rdtype in ("A", "AAAA"):
            r = await dns.lookup(domain, rdtype)
            if r.status == "ok" and r.records:
                return DUNNO
            if r.status == "retry":
                retry = True
    if retry:
        return ev.tempfail(s.unknown_address_tempfail_action, 450,
                           "4.1.8" if sender else "4.1.2",
                           f"<{shown}>: {klass} rejected: Domain not found")
    return ev.reject(s.unknown_address_code, "4.1.8" if sender else "4.1.2",
                     f"<{shown}>: {klass} rejected: Domain not found")


@restriction("reject_unknown_sender_domain")
def reject_unknown_sender_domain(ev, step, name, klass):
    if not ev.sender:
        return DUNNO
    return _unknown_domain(ev, ev.sender, rp.SENDER)


@restriction("reject_unknown_recipient_domain")
def reject_unknown_recipient_domain(ev, step, name, klass):
    if not ev.recipient:
        return DUNNO
    return _unknown_domain(ev, ev.recipient, rp.RECIPIENT)


# -- listed in the recipient tables --------------------------------------------------

class _Tables:
    """The recipient tables, opened on first use."""

    def __init__(self, cfg):
        self.virtual_alias = maps.MapList.from_param(cfg, "virtual_alias_maps")
        self.local = maps.MapList.from_param(cfg, "local_recipient_maps")
        self.virtual_mailbox = maps.MapList.from_param(cfg, "virtual_mailbox_maps")
        self.relay = maps.MapList.from_param(cfg, "relay_recipient_maps")
        self.login = maps.MapList.from_param(cfg, "smtpd_sender_login_maps")
        self.show_table = cfg.get_bool("show_user_unknown_table_name")
        #: check_rcpt_maps never waits: its tables answer inline (MapList.inline)
        self.rcpt_inline = (self.virtual_alias.inline and self.local.inline
                            and self.virtual_mailbox.inline and self.relay.inline)
        #: The address classes for which check_rcpt_maps asks no table and refuses
        #: nothing (made by silent_classes from _rcpt_plan's answers).
        self.silent: frozenset | None = None


def _tables(engine) -> _Tables:
    t = getattr(engine, "_rcpt_tables", None)
    if t is None:
        t = engine._rcpt_tables = _Tables(engine.config)
    return t


class _Logged(Exception):
    """A table failure already logged (as Postfix words it)."""


def _find_failed(ml, address: str, exc: maps.MapRetry) -> _Logged:
    # Name the table that failed (not the parameter), as Postfix does.
    text = str(exc)
    name = next((m.spec for m in ml.maps if text.startswith(m.spec)), ml.title)
    log.warn('%s lookup error for "%s"', name, address)
    return _Logged()


def _find(ev, ml, address: str) -> bool:
    """Is address in the tables ml (which answer inline)? _Logged on a failure."""
    try:
        return search.find_address(ml, address, delimiters=ev.settings.delimiters,
                                   is_local=ev.engine.address_class.is_local) is not None
    except maps.MapRetry as exc:
        raise _find_failed(ml, address, exc) from exc


async def _afind(ev, ml, address: str) -> bool:
    """_find() for tables that may wait."""
    try:
        return await search.afind_address(ml, address, delimiters=ev.settings.delimiters,
                                          is_local=ev.engine.address_class.is_local) is not None
    except maps.MapRetry as exc:
        raise _find_failed(ml, address, exc) from exc


def _rcpt_plan(t: _Tables, s, address: str, c) -> tuple:
    """What check_rcpt_maps asks for an address of class ``c``: (the address to look
    up, the tables to ask in turn - a hit in any permits -, then the refusal when no
    table knows it: None (DUNNO) or (code, table))."""
    if not address.rpartition("@")[1]:
        address = f"{address}@{c.domain}"
    asks = [t.virtual_alias] if t.virtual_alias else []
    k = c.klass
    if k == "local":
        if not t.local:
            return address, asks, None
        asks.append(t.local)
        return address, asks, (s.unknown_local_code, "local recipient table")
    if k == "alias":
        return address, asks, (s.unknown_alias_code, "virtual alias table")
    if k == "virtual":
        asks.append(t.virtual_mailbox)
        return address, asks, (s.unknown_mailbox_code, "virtual mailbox table")
    if k == "relay":
        if not t.relay:
            return address, asks, None
        asks.append(t.relay)
        return address, asks, (s.unknown_relay_code, "relay recipient table")
    return address, asks, None


def _rcpt_refusal(ev, t: _Tables, shown: str, klass: str, refusal):
    if refusal is None:
        return DUNNO
    code, table = refusal
    # Postfix names the virtual alias table whatever show_user_unknown_table_name says.
    if t.show_table or table == "virtual alias table":
        text = f"User unknown in {table}"
    else:
        text = "User unknown"
    return ev.reject(code, _unknown_dsn(code, klass, table),
                     f"<{shown}>: {klass} rejected: {text}")


def _rcpt_failed(ev, shown: str, exc: Exception):
    if isinstance(exc, maps.MapRetry):
        log.warn("%s", exc)
    return ev.reject(451, "4.3.0", f"<{shown}>: Temporary lookup failure")


def _rcpt_maps(ev, address: str, klass: str):
    """check_rcpt_maps: DUNNO, or a refusal; MapRetry becomes 451 4.3.0. Plain calls
    when the tables and the address classifier answer inline, else an awaitable."""
    if not address:
        return DUNNO
    engine = ev.engine
    t = engine.__dict__.get("_rcpt_tables") or _tables(engine)
    ac = engine.address_class
    if not (engine.sync_first and engine.classify_inline and t.rcpt_inline):
        return _arcpt_maps(ev, address, klass)
    try:
        full, asks, refusal = _rcpt_plan(t, ev.settings, address,
                                         ac.classify(address, ev.client.server_addr))
        for ml in asks:
            if _find(ev, ml, full):
                return DUNNO
    except (maps.MapRetry, _Logged) as exc:
        return _rcpt_failed(ev, address, exc)
    return DUNNO if refusal is None else _rcpt_refusal(ev, t, address, klass, refusal)


def _silent_classes(t: _Tables, s) -> frozenset:
    """The classes _rcpt_plan sends to no table and no refusal, whatever the address."""
    from fastpost.daemons.smtpd.checks.relay import Classified

    return frozenset(k for k in ("local", "alias", "virtual", "relay", "default")
                     if _rcpt_plan(t, s, "u@d", Classified(k, "d", False))[1:] == ([], None))


def silent_classes(engine):
    """The address classes whose recipients check_rcpt_maps passes without asking a
    table or logging (a frozenset), or False when the classifier or a recipient
    table may wait (then every check is check()'s): engine._quick_rcpt."""
    t = engine.__dict__.get("_rcpt_tables") or _tables(engine)
    if not (engine.classify_inline and t.rcpt_inline):
        return False
    silent = t.silent
    if silent is None:
        silent = t.silent = _silent_classes(t, engine.settings)
    return silent


def rcpt_maps_pass(engine, address: str, server_addr: str) -> bool:
    """True when check_rcpt_maps would pass ``address`` (DUNNO) with nothing logged,
    asked with plain calls; False when it would refuse, a table fails, or an answer
    would wait (the caller then runs the real check, which decides and logs).
    RestrictionPolicy's RCPT shortcut (engine._quick_rcpt)."""
    silent = silent_classes(engine)
    if silent is False:
        return False
    t = engine._rcpt_tables
    ac = engine.address_class
    try:
        c = ac.classify(address, server_addr)
        if c.klass in silent:
            return True
        full, asks, refusal = _rcpt_plan(t, engine.settings, address, c)
        for ml in asks:
            if search.find_address(ml, full, delimiters=engine.settings.delimiters,
                                   is_local=ac.is_local) is not None:
                return True
    except maps.MapRetry:
        return False
    return refusal is None


def rcpt_maps(ev, address: str):
    """check_rcpt_maps for a recipient (the caller sets ev.rcpt_maps_checked)."""
    return _rcpt_maps(ev, address, rp.RECIPIENT)


async def _arcpt_maps(ev, address: str, klass: str):
    """_rcpt_maps() when a table may wait."""
    t = _tables(ev.engine)
    try:
        c = await ev.engine.address_class.aclassify(address, ev.client.server_addr)
        full, asks, refusal = _rcpt_plan(t, ev.settings, address, c)
        for ml in asks:
            if await _afind(ev, ml, full):
                return DUNNO
    except (maps.MapRetry, _Logged) as exc:
        return _rcpt_failed(ev, address, exc)
    return _rcpt_refusal(ev, t, address, klass, refusal)


def _unknown_dsn(code: int, klass: str, table: str) -> str:
    """X.1.1 (mapped to the sender's X.1.7 like any table result); a sender unknown
    in the local recipient, virtual mailbox or relay recipient table gets X.1.0 as it
    stands (as Postfix 3.7 answers: `550 5.1.0 <a>: Sender address rejected: User
    unknown in relay recipient table`); only the virtual alias table's X.1.1 becomes
    X.1.7 for a sender."""
    if klass == rp.SENDER and table in ("local recipient table", "virtual mailbox table",
                                        "relay recipient table"):
        return f"{str(code)[0]}.1.0"
    return dsn_fix(f"{str(code)[0]}.1.1", klass)


def check_recipient_maps(ev, address: str):
    """The implicit reject_unlisted_recipient at the end of RCPT checks."""
    ev.rcpt_maps_checked = True
    return _rcpt_maps(ev, address, rp.RECIPIENT)


def check_sender_maps(ev, address: str):
    """The implicit reject_unlisted_sender after the sender list."""
    ev.sender_maps_checked = True
    return _rcpt_maps(ev, address, rp.SENDER)


@restriction("reject_unlisted_recipient")
def reject_unlisted_recipient(ev, step, name, klass):
    if ev.recipient is None or ev.rcpt_maps_checked:
        return DUNNO
    return check_recipient_maps(ev, ev.recipient)


@restriction("check_recipient_maps")
def check_recipient_maps_restriction(ev, step, name, klass):
    return reject_unlisted_recipient(ev, step, name, klass)


@restriction("reject_unlisted_sender")
def reject_unlisted_sender(ev, step, name, klass):
    if not ev.sender or ev.sender_maps_checked:
        return DUNNO
    return check_sender_maps(ev, ev.sender)


# -- bounces ------------------------------------------------------------------------------

@restriction("reject_multi_recipient_bounce")
def reject_multi_recipient_bounce(ev, step, name, klass):
    env = ev.envelope
    if env is None or env.sender != "":
        return DUNNO
    accepted = len(env.recipients)
    limit = 1 if ev.stage in ("DATA", "BDAT", "END-OF-MESSAGE") else 0
    if accepted > limit:
        return ev.reject(ev.settings.multi_bounce_code, "5.5.3",
                         f"<{name}>: {klass} rejected: Multi-recipient bounce")
    return DUNNO


# -- sender login maps ------------------------------------------------------------------

async def _owners(ev, sender: str):
    """The login names that own sender (a list, or None when it has no owner). Awaited:
    login maps are often SQL or LDAP tables, asked off the loop."""
    t = _tables(ev.engine)
    ac = ev.engine.address_class
    value = await search.afind_address(t.login, sender, delimiters=ev.settings.delimiters,
                                       is_local=ac.is_local)
    if value is None:
        return None
    return [w.lower() for w in value.replace(",", " ").split()]


async def _login_mismatch(ev, authenticated: bool, unauthenticated: bool, known_only: bool):
    sender = ev.sender
    if not sender:
        # The null sender is never checked: Postfix 3.7 accepts MAIL FROM:<> from any
        # login, even with an owner listed for "<>" (tests/policy/test_sasl_compare.py).
        return DUNNO
    t = _tables(ev.engine)
    if not t.login:
        log.warn("restriction requires smtpd_sender_login_maps; none is configured")
        return ev.server_error()
    user = ev.client.sasl_username
    try:
        owners = await _owners(ev, sender)
    except maps.MapRetry as exc:
        log.warn("%s", exc)
        return ev.server_error(sender, rp.SENDER)
    shown = sender
    if user is not None and authenticated:
        if owners is None:
            if known_only:
                return DUNNO
            return ev.reject(553, "5.7.1",
                             f"<{shown}>: {rp.SENDER} rejected: not owned by user {user}")
        if user.lower() not in owners:
            return ev.reject(553, "5.7.1",
                             f"<{shown}>: {rp.SENDER} rejected: not owned by user {user}")
        return DUNNO
    if user is None and unauthenticated and owners is not None:
        return ev.reject(553, "5.7.1", f"<{shown}>: {rp.SENDER} rejected: not logged in")
    return DUNNO


@restriction("reject_sender_login_mismatch")
def reject_sender_login_mismatch(ev, step, name, klass):
    if not ev.settings.sasl_enable:
        ev.no_sasl("reject_authenticated_sender_login_mismatch")
        ev.no_sasl("reject_unauthenticated_sender_login_mismatch")
        return DUNNO
    return _login_mismatch(ev, True, True, False)


@restriction("reject_known_sender_login_mismatch")
def reject_known_sender_login_mismatch(ev, step, name, klass):
    if ev.no_sasl("reject_known_sender_login_mismatch"):
        return DUNNO
    return _login_mismatch(ev, True, True, True)


@restriction("reject_authenticated_sender_login_mismatch")
def reject_authenticated_sender_login_mismatch(ev, step, name, klass):
    if ev.no_sasl("reject_authenticated_sender_login_mismatch"):
        return DUNNO
    return _login_mismatch(ev, True, False, False)


@restriction("reject_unauthenticated_sender_login_mismatch")
def reject_unauthenticated_sender_login_mismatch(ev, step, name, klass):
    if ev.no_sasl("reject_unauthenticated_sender_login_mismatch"):
        return DUNNO
    return _login_mismatch(ev, False, True, False)
