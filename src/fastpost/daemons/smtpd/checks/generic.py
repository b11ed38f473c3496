"""Restrictions that fit any list: permit, reject, defer, sleep, and the client-trust ones.

Postfix counterpart: the generic part of generic_checks() in src/smtpd/smtpd_check.c
(permit_all, reject_all, defer_all, defer_if_permit, defer_if_reject, sleep,
reject_unauth_pipelining, permit_mynetworks, permit_inet_interfaces,
permit_sasl_authenticated, permit_tls_clientcerts, permit_tls_all_clientcerts,
reject_plaintext_session).

Replies (NAME and Class are those of the list the restriction is in):

    reject                    reject_code  5.7.1  <NAME>: Class rejected: Access denied
    defer                     defer_code   4.3.2  <NAME>: Class rejected: Try again later
    defer_if_permit           defer_code   4.7.0  ... defer_if_permit requested  (if nothing refuses)
    defer_if_reject           defer_code   4.7.0  ... defer_if_reject requested  (instead of a 5xx)
    reject_unauth_pipelining  503          5.5.0  <NAME>: Class rejected: Improper use of SMTP
                                                  command pipelining
    reject_plaintext_session  plaintext_reject_code 4.7.1  Session encryption is required

permit_tls_clientcerts permits a verified client certificate whose fingerprint (or
public-key fingerprint) is a key of relay_clientcerts; permit_tls_all_clientcerts any
verified certificate. permit_inet_interfaces permits clients connecting from one of
the addresses in inet_interfaces or proxy_interfaces (``all``: any address of this
host's interfaces), judged by the real peer of the connection (XCLIENT does not
change it, as in Postfix). permit_mynetworks matches the client address only
(mynetworks is a list of addresses and networks).

Parameters: reject_code, defer_code, plaintext_reject_code, mynetworks,
inet_interfaces, relay_clientcerts.
Diagnostics: sleep with a bad argument is a configuration error (451 4.3.5).
"""

from __future__ import annotations

import asyncio
import ipaddress

from fastpost.daemons.smtpd.checks.registry import DUNNO, WORD, restriction
from fastpost.mail import maps
from fastpost.mail.config import parse_time


@restriction("permit")
def permit(ev, step, name, klass):
    return ev.permit("permit", name, klass)


@restriction("reject")
def reject(ev, step, name, klass):
    return ev.reject(ev.settings.reject_code, "5.7.1", f"<{name}>: {klass} rejected: Access denied")


@restriction("defer")
def defer(ev, step, name, klass):
    return ev.reject(ev.settings.defer_code, "4.3.2", f"<{name}>: {klass} rejected: Try again later")


@restriction("defer_if_permit")
def defer_if_permit(ev, step, name, klass):
    return ev.defer_if("permit", ev.settings.defer_code, "4.7.0",
                       f"<{name}>: {klass} rejected: defer_if_permit requested")


@restriction("defer_if_reject")
def defer_if_reject(ev, step, name, klass):
    return ev.defer_if("reject", ev.settings.defer_code, "4.7.0",
                       f"<{name}>: {klass} rejected: defer_if_reject requested")


def _seconds(word, engine):
    value = parse_time(word, "s") if word.isdigit() else None
    if value is None:
        raise ValueError("restriction sleep must be followed by number")
    return value


@restriction("sleep", arg=WORD, compile=_seconds)
async def sleep(ev, step, name, klass):
    await asyncio.sleep(step.arg)
    return DUNNO


@restriction("reject_unauth_pipelining")
def reject_unauth_pipelining(ev, step, name, klass):
    if ev.client.improper_pipelining:
        return ev.reject(503, "5.5.0",
                         f"<{name}>: {klass} rejected: Improper use of SMTP command pipelining")
    return DUNNO


@restriction("permit_mynetworks")
def permit_mynetworks(ev, step, name, klass):
    c = ev.client
    # mynetworks holds addresses and networks only: the client name plays no part.
    if ev.engine.mynetworks.match("", c.addr):
        return ev.permit("permit_mynetworks", c.text, "Client host")
    return DUNNO


def own_addresses(cfg) -> set[str]:
    """This host's addresses as inet_interfaces (and proxy_interfaces) name them."""
    addrs: set[str] = set()
    for word in cfg.get_list("inet_interfaces") + cfg.get_list("proxy_interfaces"):
        w = word.lower()
        if w == "all":
            from fastpost.util.ifaddrs import interface_addresses

            try:
                addrs.update(str(i.ip) for i in interface_addresses())
            except OSError:
                addrs.update({"127.0.0.1", "::1"})
        elif w in ("loopback-only", "localhost"):
            addrs.update({"127.0.0.1", "::1"})
        else:
            try:
                addrs.add(str(ipaddress.ip_address(w.strip("[]"))))
            except ValueError:
                pass
    return addrs


def _interfaces(engine) -> set[str]:
    cached = getattr(engine, "_inet_interfaces", None)
    if cached is None:
        cached = engine._inet_interfaces = own_addresses(engine.config)
    return cached


@restriction("permit_inet_interfaces")
def permit_inet_interfaces(ev, step, name, klass):
    # The real peer of the connection, as Postfix's (XCLIENT does not change it).
    c = ev.client
    if (c.peer_addr or c.addr) in _interfaces(ev.engine):
        return ev.permit("permit_inet_interfaces", c.text, "Client host")
    return DUNNO


@restriction("permit_sasl_authenticated")
def permit_sasl_authenticated(ev, step, name, klass):
    c = ev.client
    if c.sasl_username is not None and ev.settings.sasl_enable:
        return ev.permit("permit_sasl_authenticated", c.text, "Client host")
    return DUNNO


@restriction("permit_tls_all_clientcerts")
def permit_tls_all_clientcerts(ev, step, name, klass):
    tls = ev.client.tls
    if tls is not None and tls.peer_verified:
        return ev.permit("permit_tls_all_clientcerts", ev.client.text, "Client host")
    return DUNNO


def _relay_clientcerts(engine):
    ml = getattr(engine, "_relay_clientcerts", None)
    if ml is None:
        ml = engine._relay_clientcerts = maps.MapList.from_param(engine.config, "relay_clientcerts")
    return ml


@restriction("permit_tls_clientcerts")
async def permit_tls_clientcerts(ev, step, name, klass):
    tls = ev.client.tls
    if tls is None or not tls.peer_verified:
        return DUNNO
    ml = _relay_clientcerts(ev.engine)
    for key in (tls.peer_fingerprint, tls.peer_pubkey_fingerprint):
        if not key:
            continue
        try:
            found = await ml.aget(key)
        except maps.MapRetry as exc:
            from fastpost.util import log

            log.warn("relay_clientcerts: %s", exc)
            return ev.server_error()
        if found is not None:
            return ev.permit("permit_tls_clientcerts", ev.client.text, "Client host")
    return DUNNO


@restriction("reject_plaintext_session")
def reject_plaintext_session(ev, step, name, klass):
    if ev.client.tls is None:
        return ev.reject(ev.settings.plaintext_code, "4.7.1", "Session encryption is required")
    return DUNNO
