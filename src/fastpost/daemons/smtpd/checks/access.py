"""access(5) tables: check_*_access lookups and what their results mean.

Postfix counterpart: check_table_result(), check_access(), check_domain_access(),
check_addr_access(), check_namadr_access(), check_mail_access() and the
check_*_access branches of generic_checks() in src/smtpd/smtpd_check.c.

Lookups (key orders from fastpost.mail.maps.search; the first key a table knows
decides, DUNNO included):

    check_client_access                  the verified client name and its parent
                                         domains, then the address and its
                                         shortened forms; reply <name[addr]>
    check_reverse_client_hostname_access the same with the PTR name
    check_helo_access                    the HELO name and its parents
    check_sender_access                  the sender address (null sender:
    check_recipient_access               smtpd_null_access_lookup_key), its domain
                                         and parents, then ``local@``
    check_sasl_access                    the SASL login name, address-style
    check_ccert_access                   the client certificate fingerprint, then
                                         its public-key fingerprint

Results (case does not matter for the action word; TEXT is optional):

    OK, RELAY, all digits     permit (ends the list)
    4NN TEXT, 5NN TEXT        refuse with that code (and X.Y.Z if TEXT starts with
                              one, else 4.7.1/5.7.1); 421/521 also disconnect
    REJECT, DEFER             access_map_reject_code / _defer_code, 5.7.1 / 4.7.1,
                              TEXT or "Access denied"
    DEFER_IF_REJECT, DEFER_IF_PERMIT   as the restrictions, TEXT or "Service unavailable"
    DUNNO                     stop looking (no shorter key), go on with the list
    HOLD, DISCARD             hold / drop the whole message; logged
    FILTER t:d, REDIRECT a, BCC a, PREPEND hdr     message actions (last FILTER and
                              REDIRECT win; PREPEND headers go before Received:)
    WARN, INFO                log TEXT, go on
    HANGUP                    log, disconnect without a reply
    anything else             a restriction list (classes included), evaluated with
                              the table's reply name and class

Message actions are skipped with a warning in client and helo restrictions when
smtpd_delay_reject = no (there is no message yet), as in Postfix.

Parameters: access_map_reject_code, access_map_defer_code,
smtpd_null_access_lookup_key, parent_domain_matches_subdomains (smtpd_access_maps),
recipient_delimiter.
Diagnostics: a lookup failure logs ``TABLE lookup error for "KEY"`` and answers
``451 4.3.5 <NAME>: Class rejected: Server configuration error``; an empty result, a
lookup table inside a result, or an unknown restriction name log Postfix's warnings
and answer 451 4.3.5.
"""

from __future__ import annotations

import re

from fastpost.daemons.smtpd.checks import reply as rp
from fastpost.daemons.smtpd.checks.registry import DUNNO, OK, TABLE, restriction
from fastpost.daemons.smtpd.checks.reply import Rejected, dsn_fix, split_dsn
from fastpost.mail import maps
from fastpost.mail.address import external
from fastpost.mail.maps import search
from fastpost.mail.maps.search import Key
from fastpost.util import log

__all__ = ["lookup_keys", "interpret", "check_keys"]

_MESSAGE_ACTIONS = ("HOLD", "DISCARD", "FILTER", "REDIRECT", "BCC", "PREPEND")
_HEADER = re.compile(r"[\x21-\x39\x3b-\x7e]+:")


def _is_network(ml: maps.MapList) -> bool:
    flag = getattr(ml, "_fp_network", None)
    if flag is None:
        flag = ml._fp_network = any(m.flags & maps.NETWORK for m in ml.maps)
    return flag


def lookup_keys(ev, ml: maps.MapList, keys: list[Key]):
    """Return (value, key) of the first key found, None, or an awaitable of that.

    A table failure raises MapRetry with the key in ``.key``.
    """
    if _is_network(ml):
        return _alookup(ml, keys)
    for k in keys:
        try:
            value = ml.get(k.key, partial=k.partial)
        except maps.MapRetry as exc:
            exc.key = k.key
            raise
        if value is not None:
            return value, k.key
    return None


async def _alookup(ml, keys):
    for k in keys:
        try:
            value = await ml.aget(k.key, partial=k.partial)
        except maps.MapRetry as exc:
            exc.key = k.key
            raise
        if value is not None:
            return value, k.key
    return None


def check_keys(ev, ml, keys, name, klass):
    """Look the keys up in ml and act on the result (sync or awaitable)."""
    try:
        found = lookup_keys(ev, ml, keys)
    except maps.MapRetry as exc:
        return _failed(ev, ml, exc, name, klass)
    if found is None:
        return DUNNO
    if found.__class__ is tuple:
        return interpret(ev, ml.title, found[0], found[1], name, klass)
    return _finish(ev, ml, found, name, klass)


async def _finish(ev, ml, pending, name, klass):
    try:
        found = await pending
    except maps.MapRetry as exc:
        return _failed(ev, ml, exc, name, klass)
    if found is None:
        return DUNNO
    result = interpret(ev, ml.title, found[0], found[1], name, klass)
    if result.__class__ is not int:
        result = await result
    return result


def _failed(ev, ml, exc, name, klass):
    log.warn('%s lookup error for "%s"', ml.title, getattr(exc, "key", ""))
    return ev.server_error(name, klass)


# -- what a result means -------------------------------------------------------------

def interpret(ev, table: str, value: str, key: str, name: str, klass: str):
    """Act on an access-table result (check_table_result; module docstring)."""
    s = ev.settings
    text = value.strip()
    if not text:
        log.warn("%s lookup of %s returns an empty string result", table, key)
        log.warn("%s should return NO RESULT in case of NOT FOUND", table)
        return ev.server_error(name, klass)
    word, _, rest = text.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = (more + " " + rest).strip()
    rest = rest.strip()
    cmd = word.upper()
    if cmd in ("OK", "RELAY") or text.isdigit():
        return ev.permit(word if not text.isdigit() else text, name, klass, table)
    if len(word) == 3 and word.isdigit() and word[0] in "45" and rest:
        code = int(word)
        dsn, msg = split_dsn(rest, f"{word[0]}.7.1")
        dsn = dsn_fix(dsn, klass)
        return ev.reject(code, dsn, f"<{name}>: {klass} rejected: {msg or 'Access denied'}")
    if cmd == "REJECT":
        dsn, msg = split_dsn(rest, "5.7.1")
        dsn = dsn_fix(dsn, klass)
        return ev.reject(s.access_map_reject_code, dsn,
                         f"<{name}>: {klass} rejected: {msg or 'Access denied'}")
    if cmd == "DEFER":
        dsn, msg = split_dsn(rest, "4.7.1")
        dsn = dsn_fix(dsn, klass)
        return ev.reject(s.access_map_defer_code, dsn,
                         f"<{name}>: {klass} rejected: {msg or 'Access denied'}")
    if cmd in ("DEFER_IF_REJECT", "DEFER_IF_PERMIT"):
        dsn, msg = split_dsn(rest, "4.7.1")
        dsn = dsn_fix(dsn, klass)
        return ev.defer_if("reject" if cmd == "DEFER_IF_REJECT" else "permit",
                           s.access_map_defer_code, dsn,
                           f"<{name}>: {klass} rejected: {msg or 'Service unavailable'}")
    if cmd == "DUNNO":
        return DUNNO
    if cmd == "WARN":
        ev.log("warn", rest)
        return DUNNO
    if cmd == "INFO":
        ev.log("info", rest)
        return DUNNO
    if cmd == "HANGUP":
        ev.log("hangup", rest)
        raise Rejected(None, hangup=True)
    if cmd in _MESSAGE_ACTIONS:
        return _message_action(ev, table, text, cmd, rest, name, klass, key)
    # A restriction list (or class) in the result.
    steps = ev.engine.value_steps(text, table)
    return ev.run_list(steps, name, klass)


def _message_action(ev, table, text, cmd, rest, name, klass, key):
    if not ev.settings.delay_reject and ev.list_kind in ("client", "helo") and ev.stage in (
            "CONNECT", "XCLIENT", "HELO", "EHLO"):
        log.warn("access table %s: with smtpd_delay_reject=no, action %s is always skipped "
                 "in Client host or Helo command restrictions", table, cmd)
        return DUNNO
    env = ev.envelope
    if cmd == "HOLD":
        if env is None or env.hold is None:
            if env is not None:
                env.hold = rest or "triggers HOLD action"
            ev.log("hold", f"<{name}>: {klass} {rest or 'triggers HOLD action'}")
        return DUNNO
    if cmd == "DISCARD":
        if env is not None:
            env.discard = rest or "triggers DISCARD action"
        ev.log("discard", f"<{name}>: {klass} {rest or 'triggers DISCARD action'}")
        return OK
    if not rest:
        log.warn('access table %s entry "%s" has %s entry without value', table, key, cmd)
        return DUNNO
    if cmd == "FILTER":
        if ":" not in rest:
            log.warn('access table %s entry "%s" requires transport:destination', table, key)
            return DUNNO
        if env is not None:
            env.filter = rest
        ev.log("filter", f"<{name}>: {klass} triggers FILTER {rest}")
        return DUNNO
    if cmd == "REDIRECT":
        if env is not None:
            env.redirect = rest
        ev.log("redirect", f"<{name}>: {klass} triggers REDIRECT {rest}")
        return DUNNO
    if cmd == "BCC":
        if env is not None:
            env.bcc = [rest]
        ev.log("bcc", f"<{name}>: {klass} triggers BCC {rest}")
        return DUNNO
    # PREPEND
    if ev.stage == "END-OF-MESSAGE":
        log.warn("access table %s: action %s must be used before smtpd_end_of_data_restrictions",
                 table, cmd)
        return DUNNO
    if not _HEADER.match(rest):
        log.warn('access table %s entry "%s" requires header: text', table, key)
        return DUNNO
    if env is not None:
        env.prepend.append(rest)
    return DUNNO


# -- the check_*_access restrictions --------------------------------------------------

def _hostname_keys(ev, hostname: str) -> list[Key]:
    return search.access_domain_keys(hostname.lower(), parent_style=ev.settings.parent_style)


def _namaddr(ev, ml, hostname: str, addr: str, name: str, klass: str):
    """Host name (and parents), then address (and networks): check_namadr_access."""
    keys = _hostname_keys(ev, hostname) if hostname else []
    if addr:
        keys = keys + search.access_hostaddr_keys(addr)
    return check_keys(ev, ml, keys, name, klass)


@restriction("check_client_access", arg=TABLE)
def check_client_access(ev, step, name, klass):
    c = ev.client
    return _namaddr(ev, step.arg, c.name, c.addr, c.text, rp.CLIENT)


@restriction("check_reverse_client_hostname_access", arg=TABLE)
def check_reverse_client_hostname_access(ev, step, name, klass):
    c = ev.client
    return _namaddr(ev, step.arg, c.reverse_name, c.addr, c.reverse_name, rp.REV_CLIENT)


@restriction("check_helo_access", arg=TABLE)
def check_helo_access(ev, step, name, klass):
    helo = ev.helo
    if helo is None:
        return DUNNO
    return check_keys(ev, step.arg, _hostname_keys(ev, helo), helo, rp.HELO)


def address_keys(ev, address: str) -> list[Key]:
    """check_mail_access keys for an internal-form address."""
    s = ev.settings
    if address:
        local, at, domain = address.rpartition("@")
        if at:
            address = f"{local}@{domain.lower().rstrip('.')}" if domain else address
    return search.access_address_keys(external(address) if address else address,
                                      delimiters=s.delimiters, parent_style=s.parent_style,
                                      null_key=s.null_key)


@restriction("check_sender_access", arg=TABLE)
def check_sender_access(ev, step, name, klass):
    sender = ev.sender
    if sender is None:
        return DUNNO
    return check_keys(ev, step.arg, address_keys(ev, sender), sender, rp.SENDER)


@restriction("check_recipient_access", arg=TABLE)
def check_recipient_access(ev, step, name, klass):
    rcpt = ev.recipient
    if rcpt is None:
        return DUNNO
    return check_keys(ev, step.arg, address_keys(ev, rcpt), rcpt, rp.RECIPIENT)


@restriction("check_sasl_access", arg=TABLE)
def check_sasl_access(ev, step, name, klass):
    if ev.no_sasl("check_sasl_access"):
        return DUNNO
    user = ev.client.sasl_username
    if user is None:
        return DUNNO
    return check_keys(ev, step.arg, address_keys(ev, user), user, rp.SASL)


@restriction("check_ccert_access", arg=TABLE)
def check_ccert_access(ev, step, name, klass):
    tls = ev.client.tls
    if tls is None or not tls.peer_verified:
        return DUNNO
    keys = [Key(k, False) for k in (tls.peer_fingerprint, tls.peer_pubkey_fingerprint) if k]
    # The reply names the certificate by its subject CommonName, as Postfix does.
    return check_keys(ev, step.arg, keys, tls.peer_subject, rp.CCERT)


@restriction("check_etrn_access", arg=TABLE)
def check_etrn_access(ev, step, name, klass):
    domain = ev.req.etrn_domain
    if not domain:
        return DUNNO
    return check_keys(ev, step.arg, _hostname_keys(ev, domain), domain, rp.ETRN)
