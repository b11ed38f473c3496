"""smtpd's TLS: the server SSLContext built from smtpd_tls_* parameters.

Postfix counterpart: src/tls/tls_server.c (tls_server_init, tls_server_start),
src/smtpd/smtpd.c (tls_reset / STARTTLS), tls_proxy's logging.

The context is built once per process with the stdlib ssl module and used through
``loop.start_tls`` (STARTTLS) or ``create_server(ssl=...)`` (wrapper mode), so
handshakes run inside the event loop without holding up other sessions. Build it
before the master forks workers (the daemon's pre_init): the children then share
OpenSSL's session-ticket keys, and a client resumes its session on any worker.

Parameters: smtpd_tls_security_level (+ the older smtpd_use_tls/smtpd_enforce_tls),
smtpd_tls_cert_file, smtpd_tls_key_file, smtpd_tls_eccert_file,
smtpd_tls_eckey_file, smtpd_tls_chain_files, smtpd_tls_protocols,
smtpd_tls_mandatory_protocols, smtpd_tls_ciphers, smtpd_tls_mandatory_ciphers,
smtpd_tls_exclude_ciphers, smtpd_tls_mandatory_exclude_ciphers,
tls_{high,medium,low,export,null}_cipherlist, smtpd_tls_CAfile, smtpd_tls_CApath,
smtpd_tls_ask_ccert, smtpd_tls_req_ccert, smtpd_tls_always_issue_session_ids,
smtpd_tls_fingerprint_digest (client certificate and public-key fingerprints, for
permit_tls_clientcerts / relay_clientcerts and check_ccert_access).
The mandatory_* variants apply when the level is "encrypt", as in Postfix.

Differences from Postfix, because of what Python's ssl module exposes: TLS 1.0 and
1.1 are never offered (Postfix's default ">=TLSv1" starts at TLS 1.2 here); a client
certificate is requested only when a CA file or directory is configured (Python
cannot request one without verifying it); log lines and the Received: header do
not show the key-exchange group and signature algorithm.

Diagnostics: ConfigError for an unknown protocol name or cipher grade, or for
"encrypt" without a usable certificate; with "may" and no certificate the context
is None and ``problem`` says why (the session logs it and offers no STARTTLS).
"""

from __future__ import annotations

import hashlib
import ssl

from fastpost.daemons.smtpd.info import TlsInfo
from fastpost.mail.config import Config, ConfigError

__all__ = ["ServerTls", "parse_protocols", "tls_info", "describe"]

_VERSIONS = [
    ("SSLv2", None),
    ("SSLv3", ssl.TLSVersion.SSLv3),
    ("TLSv1", ssl.TLSVersion.TLSv1),
    ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
    ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
    ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
]
_NAMES = [name for name, _ in _VERSIONS]


def parse_protocols(text: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """Return (minimum, maximum) TLS version for a Postfix protocol list.

    Both syntaxes: ``>=TLSv1.2``, ``<=TLSv1.3`` (Postfix 3.6+) and exclusions
    ``!SSLv2, !SSLv3, !TLSv1``. Excluding a version in the middle of the range is
    not possible with OpenSSL's min/max; the range from the lowest to the highest
    allowed version is used.
    """
    allowed = set(_NAMES)
    included: set[str] = set()
    for word in text.replace(",", " ").replace(":", " ").split():
        if word.startswith(">="):
            name = _canon(word[2:])
            allowed = {n for n in allowed if _NAMES.index(n) >= _NAMES.index(name)}
        elif word.startswith("<="):
            name = _canon(word[2:])
            allowed = {n for n in allowed if _NAMES.index(n) <= _NAMES.index(name)}
        elif word.startswith("!"):
            allowed.discard(_canon(word[1:]))
        else:
            included.add(_canon(word))
    if included:
        allowed &= included
    usable = [n for n in _NAMES if n in allowed and dict(_VERSIONS)[n] is not None]
    if not usable:
        raise ConfigError(f"no TLS protocol version left in \"{text}\"")
    return dict(_VERSIONS)[usable[0]], dict(_VERSIONS)[usable[-1]]


def _canon(name: str) -> str:
    for known in _NAMES:
        if known.lower() == name.strip().lower():
            return known
    raise ConfigError(f"unknown TLS protocol name \"{name}\"")


def tls_info(ssl_object, digest: str = "sha256") -> TlsInfo:
    """Return the TlsInfo of an established TLS session. A client certificate is
    only ever received after it verified (the context asks for one only with a CA,
    and Python's ssl then refuses the handshake for a certificate it cannot verify),
    so a certificate here is a verified one: its fingerprints (``digest``,
    smtpd_tls_fingerprint_digest) and CommonNames are filled in."""
    cipher = ssl_object.cipher() or ("unknown", "", 0)
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, AttributeError):
        der = None
    info = TlsInfo(protocol=ssl_object.version() or "unknown", cipher=cipher[0],
                   bits=int(cipher[2] or 0), peer_cert=bool(der))
    if der:
        info.peer_verified = True
        info.peer_fingerprint = fingerprint(der, digest)
        try:
            info.peer_pubkey_fingerprint = fingerprint(public_key_info(der), digest)
        except ValueError:
            info.peer_pubkey_fingerprint = ""
        try:
            decoded = ssl_object.getpeercert() or {}
        except ValueError:
            decoded = {}
        info.peer_subject = _common_name(decoded.get("subject", ()))
        info.peer_issuer = _common_name(decoded.get("issuer", ()))
    return info


def fingerprint(data: bytes, digest: str) -> str:
    """Postfix's fingerprint form: upper-case hex bytes joined by colons."""
    return ":".join(f"{b:02X}" for b in hashlib.new(digest, data).digest())


def _common_name(rdns) -> str:
    for rdn in rdns:
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at pos."""
    if pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag, n = der[pos], der[pos + 1]
    pos += 2
    if n & 0x80:
        count = n & 0x7F
        if not 0 < count <= 4 or pos + count > len(der):
            raise ValueError("bad DER length")
        n = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + n > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + n


def public_key_info(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a DER X.509 certificate (what Postfix's
    public-key fingerprint digests)."""
    tag, start, _ = _tlv(der, 0)  # Certificate
    tag, start, end = _tlv(der, start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    pos = start
    tag, _, after = _tlv(der, pos)
    if tag == 0xA0:  # [0] version
        pos = after
    # serialNumber, signature, issuer, validity, subject: then the key.
    for _ in range(5):
        _, _, pos = _tlv(der, pos)
    tag, _, after = _tlv(der, pos)
    if tag != 0x30 or after > end:
        raise ValueError("no subjectPublicKeyInfo")
    return der[pos:after]


def describe(info: TlsInfo) -> str:
    """Return ``TLSv1.3 with cipher X (256/256 bits)`` for log lines."""
    return f"{info.protocol} with cipher {info.cipher} ({info.bits}/{info.bits} bits)"


class ServerTls:
    """The server TLS context and what the session needs to know about it."""

    def __init__(self, context: ssl.SSLContext | None, level: str, problem: str = "",
                 ask_ccert: bool = False, digest: str = "sha256"):
        self.context = context
        self.digest = digest  # smtpd_tls_fingerprint_digest
        self.level = level  # none, may, encrypt
        self.problem = problem
        self.ask_ccert = ask_ccert

    @property
    def offered(self) -> bool:
        """True when STARTTLS can be offered."""
        return self.context is not None and self.level in ("may", "encrypt")

    @classmethod
    def from_config(cls, config: Config, level: str) -> "ServerTls":
        """Build the context for ``level`` (none, may, encrypt) from main.cf."""
        if level == "none" and not config.get_bool("smtpd_tls_wrappermode"):
            return cls(None, level)
        g = config.get
        pairs = []
        chain = config.get_list("smtpd_tls_chain_files")
        for path in chain:
            pairs.append((path, None))
        for cert_p, key_p in (("smtpd_tls_cert_file", "smtpd_tls_key_file"),
                              ("smtpd_tls_eccert_file", "smtpd_tls_eckey_file")):
            cert = g(cert_p).strip()
            if cert:
                pairs.append((cert, g(key_p).strip() or cert))
        if not pairs:
            problem = "No server certs available. TLS won't be enabled"
            if level == "encrypt":
                raise ConfigError(f"{problem} (smtpd_tls_security_level = encrypt)")
            return cls(None, level, problem)
        mandatory = level == "encrypt"
        prefix = "smtpd_tls_mandatory_" if mandatory else "smtpd_tls_"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        lo, hi = parse_protocols(g(prefix + "protocols"))
        # Python deprecates TLS 1.0/1.1 and OpenSSL 3 refuses them at its default
        # security level: the floor is TLS 1.2 whatever the list allows.
        lo = max(lo, ssl.TLSVersion.TLSv1_2)
        hi = max(hi, lo)
        try:
            ctx.minimum_version = lo
            ctx.maximum_version = hi
        except ValueError as exc:
            raise ConfigError(f"{prefix}protocols: {exc}") from None
        grade = g(prefix + "ciphers").strip().lower()
        if grade not in ("high", "medium", "low", "export", "null"):
            raise ConfigError(f"invalid {prefix}ciphers value \"{grade}\"")
        ciphers = g(f"tls_{grade}_cipherlist")
        excludes = config.get_list("smtpd_tls_exclude_ciphers")
        if mandatory:
            excludes += config.get_list("smtpd_tls_mandatory_exclude_ciphers")
        ciphers += "".join(f":!{x}" for x in excludes)
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"{prefix}ciphers: bad cipher list \"{ciphers}\": {exc}") from None
        loaded = 0
        for cert, key in pairs:
            try:
                ctx.load_cert_chain(cert, key)
                loaded += 1
            except (OSError, ssl.SSLError) as exc:
                problem = f"cannot load certificate from {cert}: {exc}"
                if mandatory:
                    raise ConfigError(problem) from None
                return cls(None, level, problem + ". TLS won't be enabled")
        ask = config.get_bool("smtpd_tls_ask_ccert") or config.get_bool("smtpd_tls_req_ccert")
        cafile = g("smtpd_tls_CAfile").strip() or None
        capath = g("smtpd_tls_CApath").strip() or None
        if ask and (cafile or capath):
            try:
                ctx.load_verify_locations(cafile=cafile, capath=capath)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"smtpd_tls_CAfile/CApath: {exc}") from None
            ctx.verify_mode = (ssl.CERT_REQUIRED if config.get_bool("smtpd_tls_req_ccert")
                               else ssl.CERT_OPTIONAL)
        else:
            ask = False
        if not config.get_bool("smtpd_tls_always_issue_session_ids"):
            ctx.options |= ssl.OP_NO_TICKET
        digest = g("smtpd_tls_fingerprint_digest").strip().lower() or "sha256"
        if digest not in hashlib.algorithms_available:
            raise ConfigError(f"smtpd_tls_fingerprint_digest: unknown digest \"{digest}\"")
        return cls(ctx, level, "", ask, digest)
