"""TLS for the smtp/lmtp agent: security levels, policy table, contexts, log lines.

Postfix counterpart: src/smtp/smtp_tls_policy.c (levels, smtp_tls_policy_maps),
src/tls/tls_client.c (the handshake, certificate checks and the "... TLS
connection established to ..." line), TLS_README's client section.

    policies = Policies.from_config(cfg, settings)      # pre_init: CA files read now
    policy = await policies.policy(dest, target)        # per new session
    await policy.negotiate(session)                     # after EHLO; SiteError on failure

Levels (smtp_tls_security_level; empty: smtp_enforce_tls -> encrypt, smtp_use_tls
-> may, else none):

    none     never STARTTLS
    may      STARTTLS when offered, certificate not checked; a failed handshake is
             retried once in plain text on a new connection (the engine does this)
    encrypt  STARTTLS required ("TLS is required, but was not offered by host X",
             4.7.4), certificate not checked
    verify   required, the chain must verify against smtp_tls_CAfile/CApath and a
             name match smtp_tls_verify_cert_match (default: the server's host name)
    secure   the same with smtp_tls_secure_cert_match (default: nexthop, dot-nexthop)

A certificate that fails at verify/secure defers with 4.7.5 "Server certificate not
verified" after a warning saying why. smtp_tls_policy_maps may set the level per
destination: the key is the next hop as written (``[mx.example.com]:587``), then the
domain, then its parents as ``.parent``; the value ``level [match=a:b]
[protocols=...] [ciphers=...]``.

With smtp_tls_loglevel >= 1 each session logs ``Trusted|Untrusted|Verified|Anonymous
TLS connection established to host[addr]:port: TLSv1.3 with cipher NAME (256/256
bits)``: Trusted when the chain verifies against the CAs, Verified when in addition
the name matched at verify/secure, Untrusted otherwise, Anonymous without a server
certificate. The chain of an unverified handshake is checked afterwards with
pyOpenSSL against the same CA store (leaf against the CAs).

TLS sessions are resumed: the session of a full handshake is kept per server endpoint
and level for smtp_tls_session_cache_timeout and offered on the next new connection
(asyncio's start_tls takes no session argument, so the client contexts are a subclass
whose wrap_bio() offers the one in the connection's TlsOffer box, see session.py); with
smtp_tls_loglevel >= 2 a resumed one logs "H[A]:P: TLS session reused".

Not done: DANE and fingerprint levels (they defer with 4.7.5 "unsupported"),
smtp_tls_ciphers grades beyond OpenSSL's defaults.

Parameters: smtp_tls_security_level, smtp_use_tls, smtp_enforce_tls,
smtp_tls_policy_maps, smtp_tls_CAfile, smtp_tls_CApath, smtp_tls_loglevel,
smtp_tls_protocols, smtp_tls_mandatory_protocols, smtp_tls_verify_cert_match,
smtp_tls_secure_cert_match, smtp_tls_servername, smtp_tls_cert_file,
smtp_tls_key_file, smtp_tls_session_cache_timeout (lmtp_* in LMTP mode).
Diagnostics: ConfigError at start for an unknown level or an unreadable CA or
certificate file; a policy table that fails is a 4.3.0 deferral (MapRetry).
"""

from __future__ import annotations

import ssl
import time

from fastpost.daemons.smtp.session import TLS_OFFER, SiteError
from fastpost.mail.config import ConfigError
from fastpost.util import log

__all__ = ["Policies", "Policy", "LEVELS"]

#: Sessions kept per process at most (oldest dropped first).
SESSION_CACHE_SIZE = 1000


class _ResumingContext(ssl.SSLContext):
    """A client context whose connections offer the session in their TlsOffer box."""

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None,
                 session=None):
        box = TLS_OFFER.get()
        offer = session if session is not None else (box.session if box is not None else None)
        try:
            return super().wrap_bio(incoming, outgoing, server_side=server_side,
                                    server_hostname=server_hostname, session=offer)
        except ValueError:  # a session of another context: start afresh
            return super().wrap_bio(incoming, outgoing, server_side=server_side,
                                    server_hostname=server_hostname)

LEVELS = ("none", "may", "encrypt", "verify", "secure", "dane", "dane-only", "fingerprint")
_VERSIONS = (("TLSv1", ssl.TLSVersion.TLSv1), ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
             ("TLSv1.2", ssl.TLSVersion.TLSv1_2), ("TLSv1.3", ssl.TLSVersion.TLSv1_3))


def min_version(spec: str) -> ssl.TLSVersion:
    """The lowest protocol a Postfix protocol list allows (``!SSLv3, !TLSv1`` / ``>=TLSv1.2``)."""
    items = [i.strip() for i in spec.replace(",", " ").replace(":", " ").split() if i.strip()]
    excluded = set()
    floor = None
    for item in items:
        if item.startswith(">="):
            floor = item[2:]
        elif item.startswith("!"):
            excluded.add(item[1:])
    names = [n for n, _ in _VERSIONS]
    for name, version in _VERSIONS:
        if floor and floor in names and names.index(name) < names.index(floor):
            continue
        if name not in excluded:
            return version
    return ssl.TLSVersion.TLSv1_3


def _names_of(cert: dict) -> list[str]:
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    if not names:
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    names.append(value)
    return [n.lower().rstrip(".") for n in names]


def _match(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        head, dot, rest = name.partition(".")
        return bool(head) and dot == "." and rest == pattern[2:]
    return pattern == name


def names_match(cert_names: list[str], strategies: list[str], host: str, nexthop: str) -> bool:
    """Does a certificate name satisfy the match strategies (Postfix's match= list)?"""
    host, nexthop = host.lower().rstrip("."), nexthop.lower().rstrip(".")
    for strategy in strategies:
        s = strategy.lower()
        for cname in cert_names:
            if s == "hostname" and _match(cname, host):
                return True
            if s == "nexthop" and _match(cname, nexthop):
                return True
            if s == "dot-nexthop" and (cname.endswith("." + nexthop) or
                                       (cname.startswith("*.") and cname[2:].endswith(nexthop))):
                return True
            if s not in ("hostname", "nexthop", "dot-nexthop"):
                want = s[1:] if s.startswith(".") else s
                if _match(cname, want) or (s.startswith(".") and cname.endswith(s)):
                    return True
    return False


class Policy:
    """The TLS decision for one session (module docstring)."""

    def __init__(self, owner: "Policies", level: str, match: list[str], dest, target):
        self.owner = owner
        self.level = level
        self.match = match
        self.dest = dest
        self.target = target

    async def negotiate(self, sess) -> None:
        level = self.level
        if level == "none":
            return
        if level in ("dane", "dane-only", "fingerprint"):
            raise SiteError("4.7.5", f"TLS security level \"{level}\" is not supported by "
                            "fastpost", stage="starttls", connected=True)
        if not sess.conn.offers("STARTTLS"):
            if level == "may":
                return
            raise SiteError("4.7.4", f"TLS is required, but was not offered by host "
                            f"{sess.name_addr}", stage="starttls", connected=True)
        owner = self.owner
        ctx = owner.context(level)
        sni = owner.servername(self.dest, self.target)
        key = (sess.target.endpoint, level)
        sess.tls_offer.session = owner.session_for(key)
        try:
            await sess.starttls(ctx, sni)
        except SiteError as exc:
            if getattr(exc, "verify_failed", False):
                log.warn("server certificate verification failed for %s: %s",
                         sess.relay, getattr(exc, "reason", exc.text))
                raise SiteError("4.7.5", "Server certificate not verified", stage="starttls",
                                connected=True) from None
            exc.tls_level = level
            raise
        finally:
            sess.tls_offer.session = None
        obj = sess.writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if obj is not None else None
        trusted = level in ("verify", "secure") or owner.chain_trusted(der)
        verified = False
        if level in ("verify", "secure"):
            names = _names_of(obj.getpeercert() or {})
            if not names_match(names, self.match, self.target.host, self.dest.host):
                log.warn("server certificate verification failed for %s: certificate "
                         "names %s do not match %s", sess.relay, ", ".join(names) or "(none)",
                         ":".join(self.match))
                raise SiteError("4.7.5", "Server certificate not verified", stage="starttls",
                                connected=True)
            verified = True
        if obj is not None:
            if obj.session_reused:
                if owner.loglevel >= 2:
                    log.info("%s: TLS session reused", sess.relay)
            elif obj.session is not None:
                owner.remember(key, obj.session)
        kind = ("Verified" if verified else "Trusted" if trusted else
                "Untrusted" if der else "Anonymous")
        cipher = obj.cipher() if obj is not None else None
        version = obj.version() if obj is not None else "?"
        sess.tls = (kind, version, cipher[0] if cipher else "?")
        if owner.loglevel >= 1:
            bits = f"{cipher[2]}/{cipher[2]}" if cipher else "?"
            log.info("%s TLS connection established to %s: %s with cipher %s (%s bits)",
                     kind, sess.relay, version, cipher[0] if cipher else "?", bits)


class Policies:
    """TLS settings of the process (module docstring)."""

    def __init__(self, prefix: str, level: str, *, cafile="", capath="", loglevel=0,
                 protocols="", mandatory_protocols="", verify_match=("hostname",),
                 secure_match=("nexthop", "dot-nexthop"), servername="", cert_file="",
                 key_file="", maps=None, session_timeout=3600):
        self.prefix = prefix
        self.level = level
        self.cafile = cafile
        self.capath = capath
        self.loglevel = loglevel
        self.verify_match = list(verify_match)
        self.secure_match = list(secure_match)
        self.servername_param = servername
        self.maps = maps
        self.session_timeout = session_timeout
        self._sessions: dict = {}  # (endpoint, level) -> (expiry, ssl.SSLSession)
        self._contexts = {}
        self._store = None
        opportunistic = self._make(ssl.CERT_NONE, min_version(protocols), cert_file, key_file)
        mandatory = self._make(ssl.CERT_NONE, min_version(mandatory_protocols), cert_file,
                               key_file)
        self._contexts = {"may": opportunistic, "encrypt": mandatory}
        if cafile or capath:
            checked = self._make(ssl.CERT_REQUIRED, min_version(mandatory_protocols),
                                 cert_file, key_file)
            self._contexts["verify"] = self._contexts["secure"] = checked
            self._store = self._openssl_store()
        self._no_ca = None

    def _make(self, mode, minimum, cert_file, key_file) -> ssl.SSLContext:
        ctx = _ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = mode
        try:
            ctx.minimum_version = minimum
        except ValueError:
            pass
        if mode != ssl.CERT_NONE:
            try:
                ctx.load_verify_locations(cafile=self.cafile or None, capath=self.capath or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{self.prefix}tls_CAfile/{self.prefix}tls_CApath: cannot "
                                  f"load CA certificates: {exc}") from None
        if cert_file:
            try:
                ctx.load_cert_chain(cert_file, key_file or cert_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{self.prefix}tls_cert_file: cannot load {cert_file}: "
                                  f"{exc}") from None
        return ctx

    def _openssl_store(self):
        try:
            from OpenSSL import crypto
        except ImportError:
            return None
        store = crypto.X509Store()
        if self.cafile:
            store.load_locations(self.cafile, self.capath or None)
        elif self.capath:
            store.load_locations(None, self.capath)
        return store

    def session_for(self, key):
        """A TLS session kept for (endpoint, level) that has not expired, or None."""
        item = self._sessions.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._sessions[key]
            return None
        return item[1]

    def remember(self, key, session) -> None:
        if self.session_timeout <= 0:
            return
        if len(self._sessions) >= SESSION_CACHE_SIZE:
            self._sessions.pop(next(iter(self._sessions)))
        self._sessions[key] = (time.monotonic() + self.session_timeout, session)

    def chain_trusted(self, der: bytes | None) -> bool:
        """Does the server's (leaf) certificate verify against our CAs?"""
        if not der or self._store is None:
            return False
        from OpenSSL import crypto

        try:
            cert = crypto.load_certificate(crypto.FILETYPE_ASN1, der)
            crypto.X509StoreContext(self._store, cert).verify_certificate()
            return True
        except Exception:  # noqa: BLE001 - X509StoreContextError and friends: not trusted
            return False

    def context(self, level: str) -> ssl.SSLContext:
        ctx = self._contexts.get(level)
        if ctx is None:
            if self._no_ca is None:
                # verify/secure without any CA: nothing can verify (Postfix likewise).
                self._no_ca = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._no_ca.check_hostname = False
                self._no_ca.verify_mode = ssl.CERT_REQUIRED
            ctx = self._no_ca
        return ctx

    def servername(self, dest, target) -> str | None:
        value = self.servername_param.strip()
        if not value:
            return None
        if value == "hostname":
            return target.host
        if value == "nexthop":
            return dest.host
        return value

    async def policy(self, dest, target) -> Policy:
        """The Policy for a new session to ``target`` for ``dest``; SiteError 4.3.0 on MapRetry."""
        level = self.level
        match = None
        if self.maps is not None and not dest.unix:
            found = await self._lookup(dest)
            if found:
                words = found.split()
                level = words[0].lower()
                for word in words[1:]:
                    key, _, value = word.partition("=")
                    if key.lower() == "match":
                        match = [m for m in value.split(":") if m]
                if level not in LEVELS:
                    log.warn("%stls_policy_maps: unknown security level \"%s\" for %s",
                             self.prefix, level, dest.text)
                    raise SiteError("4.7.5", f"TLS policy lookup for {dest.text}: invalid "
                                    f"security level \"{level}\"", stage="starttls")
        if match is None:
            match = self.secure_match if level == "secure" else self.verify_match
        return Policy(self, level, match, dest, target)

    async def _lookup(self, dest) -> str | None:
        from fastpost.mail import maps

        keys = [dest.text]
        if dest.mx:
            keys.append(dest.host)
            parts = dest.host.split(".")
            keys += ["." + ".".join(parts[i:]) for i in range(1, len(parts))]
        elif dest.text.lower().startswith("inet:"):
            keys.append(dest.text[5:])
        try:
            for key in keys:
                value = await self.maps.aget(key)
                if value is not None:
                    return value
        except maps.MapRetry as exc:
            raise SiteError("4.3.0", f"TLS policy lookup for {dest.text}: {exc}",
                            stage="starttls") from None
        return None

    @classmethod
    def from_config(cls, cfg, settings) -> "Policies":
        p = settings.prefix
        level = cfg.get(p + "tls_security_level").strip().lower()
        if not level:
            if cfg.get_bool(p + "enforce_tls"):
                level = "encrypt"
            elif cfg.get_bool(p + "use_tls"):
                level = "may"
            else:
                level = "none"
        if level not in LEVELS:
            raise ConfigError(f"{cfg.where(p + 'tls_security_level')}: unknown TLS security "
                              f"level \"{level}\"")
        maps_obj = None
        if cfg.get(p + "tls_policy_maps").strip():
            from fastpost.mail import maps

            maps_obj = maps.MapList.from_param(cfg, p + "tls_policy_maps")

        def match(name):
            return [m for m in cfg.get(name).replace(",", " ").replace(":", " ").split() if m]

        return cls(p, level, cafile=cfg.get(p + "tls_CAfile").strip(),
                   capath=cfg.get(p + "tls_CApath").strip(),
                   loglevel=cfg.get_int(p + "tls_loglevel"),
                   protocols=cfg.get(p + "tls_protocols"),
                   mandatory_protocols=cfg.get(p + "tls_mandatory_protocols"),
                   verify_match=match(p + "tls_verify_cert_match"),
                   secure_match=match(p + "tls_secure_cert_match"),
                   servername=cfg.get(p + "tls_servername"),
                   cert_file=cfg.get(p + "tls_cert_file").strip(),
                   key_file=cfg.get(p + "tls_key_file").strip(), maps=maps_obj,
                   session_timeout=cfg.get_time(p + "tls_session_cache_timeout"))
