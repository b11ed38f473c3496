"""SMTP AUTH in the smtp/lmtp client: logging in to a relay host or a smart host.

Postfix counterpart: src/smtp/smtp_sasl_glue.c, smtp_sasl_proto.c (the client side of
RFC 4954, there through Cyrus SASL). fastpost speaks the mechanisms itself: PLAIN,
LOGIN (plaintext) and CRAM-MD5 (a challenge, open to dictionary attacks); no library.

After the EHLO (and STARTTLS and the second EHLO, when TLS is used) of a new session:

1. the username:password comes from ``P_sasl_password_maps`` (P = smtp or lmtp), looked
   up by, in order: the sender address and then ``@domain`` (only with
   ``smtp_sender_dependent_authentication = yes``, not in LMTP, not for the null
   sender), the server's host name, the next-hop destination as written
   (``[mail.isp.example]:587``, ``example.com``). Nothing found: no AUTH;
2. the server must offer AUTH; otherwise the mail goes out unauthenticated, as with
   Postfix (the server decides what that means);
3. the mechanism: those the server offers, less those ``P_sasl_mechanism_filter``
   leaves out (a list of names; empty: no filter), less those the security options
   forbid — ``P_sasl_security_options`` (default ``noplaintext, noanonymous``: PLAIN
   and LOGIN are not allowed until the administrator says ``noanonymous`` only, as
   with Postfix), ``P_sasl_tls_security_options`` over TLS,
   ``P_sasl_tls_verified_security_options`` over a verified TLS session. Of those left,
   CRAM-MD5 wins, then PLAIN, then LOGIN, whatever the server's order (what Postfix
   with Cyrus SASL picks here: tests/smtpagent/test_sasl_client.py). None left: the
   session fails 4.7.0
   "SASL authentication failed; cannot authenticate to server HOST[ADDR]: no mechanism
   available" (and the next server is tried, as for any session failure);
4. a refusal (not 235) fails the session with the server's reply: "SASL
   authentication failed; server HOST[ADDR] said: 535 5.7.8 ...", its status code made
   4.X.X when ``P_sasl_auth_soft_bounce = yes`` (the default): a wrong password must not
   bounce mail.

A session that logged in is cached as any other, except with sender-dependent
authentication (the next sender may need another login): then it is closed after use.

Parameters: P_sasl_auth_enable, P_sasl_password_maps, P_sasl_security_options,
P_sasl_tls_security_options, P_sasl_tls_verified_security_options,
P_sasl_mechanism_filter, P_sasl_auth_soft_bounce, smtp_sender_dependent_authentication,
P_sasl_type (``cyrus``, the default, is taken to mean this built-in client; anything else
is a configuration error at start).
Not done: P_sasl_path, P_sasl_auth_cache_name/_time (Postfix's cache of failed logins),
mechanisms that need a library (SCRAM, DIGEST-MD5, GSSAPI).
Diagnostics: SiteError for every failure (above); a password table that cannot be read
defers with 4.3.0 "SASL password lookup for KEY: ..." and a warning.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from fastpost.daemons.smtp.session import SiteError, reply_dsn
from fastpost.mail.config import ConfigError
from fastpost.util import log

__all__ = ["SaslClient", "MECHANISMS", "choose", "param_names"]

#: built-in mechanisms, preferred first, with the security properties options can forbid
MECHANISMS = {
    "CRAM-MD5": {"nodictionary"},
    "PLAIN": {"noplaintext", "nodictionary"},
    "LOGIN": {"noplaintext", "nodictionary"},
}
#: the option words Postfix accepts (noactive and mutual_auth: no built-in mechanism
#: resists active attacks or authenticates the server, so they forbid all three)
OPTIONS = {"noplaintext", "noactive", "nodictionary", "noanonymous", "mutual_auth"}

_NAMES = ("sasl_auth_enable", "sasl_password_maps", "sasl_security_options",
          "sasl_tls_security_options", "sasl_tls_verified_security_options",
          "sasl_mechanism_filter", "sasl_auth_soft_bounce", "sasl_type")


def param_names(lmtp: bool) -> tuple[str, ...]:
    prefix = "lmtp_" if lmtp else "smtp_"
    return tuple(prefix + n for n in _NAMES) + ("smtp_sender_dependent_authentication",)


def _options(cfg, name: str) -> frozenset:
    words = frozenset(w.lower() for w in cfg.get(name).replace(",", " ").split())
    unknown = words - OPTIONS
    if unknown:
        raise ConfigError(f"{cfg.where(name)}: unknown {name} value \"{sorted(unknown)[0]}\"")
    return words


def choose(offered, options: frozenset, mechanism_filter=()) -> str | None:
    """The mechanism to use, or None (module docstring, step 3)."""
    offered = {m.upper() for m in offered}
    wanted = {m.upper() for m in mechanism_filter}
    for mech, properties in MECHANISMS.items():
        if mech not in offered or (wanted and mech not in wanted):
            continue
        if options & properties or options & {"noactive", "mutual_auth"}:
            continue
        return mech
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class SaslClient:
    """The client's SASL settings and the login (module docstring)."""

    def __init__(self, prefix: str, maps, options, tls_options, verified_options,
                 mechanism_filter, soft_bounce: bool, sender_dependent: bool):
        self.prefix = prefix
        self.maps = maps
        self.options = options
        self.tls_options = tls_options
        self.verified_options = verified_options
        self.mechanism_filter = tuple(mechanism_filter)
        self.soft_bounce = soft_bounce
        self.sender_dependent = sender_dependent

    @classmethod
    def from_config(cls, cfg, lmtp: bool) -> "SaslClient | None":
        """None when P_sasl_auth_enable is off (or no password table is given)."""
        p = "lmtp_" if lmtp else "smtp_"
        if not cfg.get_bool(p + "sasl_auth_enable"):
            return None
        kind = cfg.get(p + "sasl_type").strip().lower()
        if kind not in ("cyrus", "fastpost", ""):
            raise ConfigError(f"{cfg.where(p + 'sasl_type')}: unsupported SASL client "
                              f"implementation \"{kind}\" (the built-in client is used for cyrus)")
        if not cfg.get(p + "sasl_password_maps").strip():
            log.warn("%ssasl_auth_enable = yes but %ssasl_password_maps is empty: "
                     "no logins", p, p)
            return None
        from fastpost.mail import maps

        return cls(p, maps.MapList.from_param(cfg, p + "sasl_password_maps"),
                   _options(cfg, p + "sasl_security_options"),
                   _options(cfg, p + "sasl_tls_security_options"),
                   _options(cfg, p + "sasl_tls_verified_security_options"),
                   [m for m in cfg.get(p + "sasl_mechanism_filter").replace(",", " ").split()],
                   cfg.get_bool(p + "sasl_auth_soft_bounce"),
                   cfg.get_bool("smtp_sender_dependent_authentication") and not lmtp)

    # -- the password table ----------------------------------------------------------

    def _keys(self, sender: str, sess, dest) -> list[str]:
        keys = []
        if self.sender_dependent and sender:
            keys.append(sender)
            local, at, domain = sender.rpartition("@")
            if at and domain:
                keys.append("@" + domain)
        keys += [sess.target.host, dest.text]
        return keys

    async def credentials(self, sender: str, sess, dest) -> tuple[str, str] | None:
        """(username, password) for this session, or None."""
        from fastpost.mail import maps

        for key in self._keys(sender, sess, dest):
            try:
                value = await self.maps.aget(key)
            except maps.MapRetry as exc:
                log.warn("%ssasl_password_maps: lookup of %s: %s", self.prefix, key, exc)
                raise SiteError("4.3.0", f"SASL password lookup for {key}: {exc}",
                                stage="auth") from None
            if value is not None:
                user, _, password = value.partition(":")
                return user, password
        return None

    # -- the login -------------------------------------------------------------------

    def _allowed(self, sess) -> frozenset:
        if sess.tls:
            return self.verified_options if sess.tls[0] == "Verified" else self.tls_options
        return self.options

    async def login(self, sess, sender: str, dest) -> str | None:
        """Log in on a new session when a password is known; the username, or None.

        SiteError when the login fails (module docstring).
        """
        found = await self.credentials(sender, sess, dest)
        if found is None or not sess.conn.offers("AUTH"):
            return None
        user, password = found
        offered = sess.conn.extensions.get("AUTH", "").split()
        mech = choose(offered, self._allowed(sess), self.mechanism_filter)
        if mech is None:
            log.warn("SASL authentication failure: no mechanism offered by %s is allowed "
                     "(offered: %s; %ssasl_security_options, %ssasl_mechanism_filter)",
                     sess.name_addr, " ".join(offered) or "none", self.prefix, self.prefix)
            raise SiteError("4.7.0", "SASL authentication failed; cannot authenticate to "
                            f"server {sess.name_addr}: no mechanism available",
                            stage="auth", connected=True)
        reply = await self._exchange(sess, mech, user, password)
        if reply.code != 235:
            dsn = reply_dsn(reply)
            if self.soft_bounce and dsn.startswith("5"):
                dsn = "4" + dsn[1:]
            raise SiteError(dsn, f"SASL authentication failed; server {sess.name_addr} "
                            f"said: {reply}", stage="auth", reply=reply, connected=True)
        sess.sasl_username = user
        return user

    async def _exchange(self, sess, mech: str, user: str, password: str):
        """Run one mechanism; the server's last reply (235 when it worked)."""
        u = user.encode("utf-8")
        pw = password.encode("utf-8")
        if mech == "PLAIN":
            reply = await sess.auth_step("AUTH PLAIN " + _b64(b"\0" + u + b"\0" + pw))
            steps = []
        elif mech == "LOGIN":
            reply = await sess.auth_step("AUTH LOGIN")
            steps = [lambda _c: _b64(u), lambda _c: _b64(pw)]
        else:  # CRAM-MD5: HMAC-MD5 of the server's challenge, keyed by the password
            reply = await sess.auth_step("AUTH CRAM-MD5")
            steps = [lambda c: _b64(u + b" " + hmac.new(pw, c, hashlib.md5).hexdigest().encode())]
        for step in steps:
            if reply.code != 334:
                return reply
            try:
                challenge = base64.b64decode(reply.text.strip() or b"", validate=True)
            except ValueError:
                return await sess.auth_step("*")  # a garbled challenge: cancel
            reply = await sess.auth_step(step(challenge))
        if reply.code == 334:  # more than the mechanism has to say: cancel
            reply = await sess.auth_step("*")
            if reply.code == 235:
                return reply
        return reply
