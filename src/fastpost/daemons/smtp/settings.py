"""The smtp/lmtp agent's parameters, read and checked once per process.

Postfix counterpart: the parameter tables of src/smtp/smtp.c (smtp_* in SMTP mode,
lmtp_* in LMTP mode: the same program reads one set or the other).

``Settings.from_config(cfg, lmtp)`` reads every parameter the agent honours through
the typed Config accessors; ``param_names(lmtp)`` lists them for the skeleton, which
type-checks them at start (a bad value is fatal with file and line before any
delivery). In LMTP mode the names are ``lmtp_*`` (``lmtp_lhlo_name``,
``lmtp_lhlo_timeout`` for the HELO ones) and the defaults differ where Postfix's do
(port 24).

Parameters (P = smtp_ or lmtp_): P{helo,lhlo}_name, P{connect,helo,lhlo,mail,rcpt,
data_init,data_xfer,data_done,rset,quit,starttls}_timeout, Palways_send_ehlo,
Pnever_send_ehlo, Pskip_5xx_greeting, Pskip_quit_response, Phost_lookup,
Pdns_support_level, disable_dns_lookups, Pmx_address_limit, Pmx_session_limit,
Prandomize_addresses, Paddress_preference, Pbalance_inet_protocols, inet_protocols,
Ptcp_port, Pconnection_cache_on_demand, Pconnection_cache_destinations,
Pconnection_cache_time_limit, Pconnection_reuse_time_limit,
Pconnection_reuse_count_limit, Pdefer_if_no_mx_address_found, Pfallback_relay,
Pbind_address, Pbind_address6, Pline_length_limit, Pquote_rfc821_envelope,
P{discard_ehlo,discard_lhlo}_keywords, Psend_xforward_command, Pxforward_timeout,
the TLS ones (fastpost.daemons.smtp.tls), disable_mime_output_conversion,
line_length_limit, myhostname, inet_interfaces, proxy_interfaces, smtputf8_enable,
fastpost_dns_servers, fastpost_dns_timeout.

Diagnostics: ConfigError (fatal at start) for a value the agent cannot use, naming
the parameter: an unknown smtp_host_lookup method, smtp_address_preference value or
smtp_dns_support_level.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastpost.mail.config import Config, ConfigError
from fastpost.mail.mynetworks import protocols

__all__ = ["Settings", "param_names", "TLS_NAMES"]

#: Per-mode names, without the smtp_/lmtp_ prefix (HELO ones are mapped for LMTP).
_NAMES = (
    "helo_name", "connect_timeout", "helo_timeout", "mail_timeout", "rcpt_timeout",
    "data_init_timeout", "data_xfer_timeout", "data_done_timeout", "rset_timeout",
    "quit_timeout", "starttls_timeout", "skip_5xx_greeting", "skip_quit_response",
    "host_lookup", "dns_support_level", "mx_address_limit", "mx_session_limit",
    "randomize_addresses", "address_preference", "balance_inet_protocols", "tcp_port",
    "connection_cache_on_demand", "connection_cache_destinations",
    "connection_cache_time_limit", "connection_reuse_time_limit",
    "connection_reuse_count_limit", "defer_if_no_mx_address_found", "fallback_relay",
    "bind_address", "bind_address6", "line_length_limit", "quote_rfc821_envelope",
    "discard_ehlo_keywords", "send_xforward_command", "xforward_timeout",
)
_SMTP_ONLY = ("always_send_ehlo", "never_send_ehlo")

#: TLS parameter names without the prefix (fastpost.daemons.smtp.tls reads them).
TLS_NAMES = (
    "tls_security_level", "use_tls", "enforce_tls", "tls_enforce_peername",
    "tls_CAfile", "tls_CApath", "tls_policy_maps", "tls_loglevel", "tls_protocols",
    "tls_mandatory_protocols", "tls_ciphers", "tls_mandatory_ciphers",
    "tls_exclude_ciphers", "tls_mandatory_exclude_ciphers", "tls_verify_cert_match",
    "tls_secure_cert_match", "tls_servername", "tls_cert_file", "tls_key_file",
    "tls_fingerprint_cert_match", "tls_fingerprint_digest", "tls_connection_reuse",
    "tls_note_starttls_offer", "tls_scert_verifydepth", "tls_session_cache_timeout",
    "tls_wrappermode",
)

_GLOBAL = (
    "disable_dns_lookups", "disable_mime_output_conversion", "line_length_limit",
    "myhostname", "inet_interfaces", "proxy_interfaces", "inet_protocols",
    "smtputf8_enable", "fastpost_dns_servers", "fastpost_dns_timeout",
    "tls_high_cipherlist", "tls_medium_cipherlist", "tls_low_cipherlist",
    "tls_export_cipherlist", "tls_null_cipherlist",
)

HOST_LOOKUP_METHODS = ("dns", "native")
ADDRESS_PREFERENCES = ("any", "ipv4", "ipv6")
DNS_SUPPORT_LEVELS = ("", "disabled", "enabled", "dnssec")


def _name(prefix: str, name: str) -> str:
    if prefix == "lmtp_":
        name = name.replace("helo", "lhlo").replace("ehlo_keywords", "lhlo_keywords")
    return prefix + name


def param_names(lmtp: bool) -> tuple[str, ...]:
    """Every parameter the agent reads in this mode (for the skeleton's check)."""
    prefix = "lmtp_" if lmtp else "smtp_"
    names = [_name(prefix, n) for n in _NAMES + TLS_NAMES]
    if not lmtp:
        names += [prefix + n for n in _SMTP_ONLY]
    return tuple(names) + _GLOBAL


@dataclass(slots=True)
class Settings:
    """What the agent needs, typed (module docstring)."""

    lmtp: bool
    prefix: str  # "smtp_" or "lmtp_": parameter names in messages
    program: str  # "smtp" or "lmtp"
    helo_name: str
    myhostname: str
    connect_timeout: int
    helo_timeout: int
    mail_timeout: int
    rcpt_timeout: int
    data_init_timeout: int
    data_xfer_timeout: int
    data_done_timeout: int
    rset_timeout: int
    quit_timeout: int
    starttls_timeout: int
    always_send_ehlo: bool
    never_send_ehlo: bool
    skip_5xx_greeting: bool
    skip_quit_response: bool
    dns_lookups: bool  # MX/A/AAAA through DNS
    native_lookups: bool  # getaddrinfo (after DNS when both)
    mx_address_limit: int
    mx_session_limit: int
    randomize_addresses: bool
    address_preference: str
    families: frozenset  # socket families from inet_protocols (4, 6)
    tcp_port: str
    cache_on_demand: bool
    cache_destinations: tuple
    cache_time_limit: int
    reuse_time_limit: int
    reuse_count_limit: int
    defer_if_no_mx_address_found: bool
    fallback_relay: tuple
    bind_address: str
    bind_address6: str
    fold_limit: int  # smtp_line_length_limit (0 = no folding)
    reply_line_limit: int  # line_length_limit: longest reply line kept
    quote_envelope: bool
    send_xforward: bool  # Psend_xforward_command
    xforward_timeout: int
    discard_ehlo_keywords: frozenset
    mime_downgrade: bool  # not disable_mime_output_conversion
    smtputf8_enable: bool
    dns_servers: tuple
    dns_timeout: int
    inet_interfaces: tuple
    proxy_interfaces: tuple

    @classmethod
    def from_config(cls, cfg: Config, lmtp: bool) -> "Settings":
        prefix = "lmtp_" if lmtp else "smtp_"

        def p(name):
            return _name(prefix, name)

        lookup = [m.strip().lower() for m in cfg.get_list(p("host_lookup"))]
        for method in lookup:
            if method not in HOST_LOOKUP_METHODS:
                raise ConfigError(f"{cfg.where(p('host_lookup'))}: unknown "
                                  f"{p('host_lookup')} method \"{method}\" (dns or native)")
        level = cfg.get(p("dns_support_level")).strip().lower()
        if level not in DNS_SUPPORT_LEVELS:
            raise ConfigError(f"{cfg.where(p('dns_support_level'))}: invalid "
                              f"{p('dns_support_level')} value \"{level}\"")
        dns_ok = "dns" in lookup and level != "disabled" and not cfg.get_bool("disable_dns_lookups")
        native = "native" in lookup or not dns_ok
        pref = cfg.get(p("address_preference")).strip().lower()
        if pref not in ADDRESS_PREFERENCES:
            raise ConfigError(f"{cfg.where(p('address_preference'))}: invalid "
                              f"{p('address_preference')} value \"{pref}\" (any, ipv4 or ipv6)")
        families = frozenset(protocols(cfg.get_list("inet_protocols")))
        fold = cfg.get_int(p("line_length_limit"))
        if fold == 1:
            fold = 2  # a continuation line must hold more than its space
        return cls(
            lmtp=lmtp, prefix=prefix, program="lmtp" if lmtp else "smtp",
            helo_name=cfg.get(p("helo_name")).strip() or cfg.get("myhostname"),
            myhostname=cfg.get("myhostname"),
            connect_timeout=cfg.get_time(p("connect_timeout")),
            helo_timeout=cfg.get_time(p("helo_timeout")),
            mail_timeout=cfg.get_time(p("mail_timeout")),
            rcpt_timeout=cfg.get_time(p("rcpt_timeout")),
            data_init_timeout=cfg.get_time(p("data_init_timeout")),
            data_xfer_timeout=cfg.get_time(p("data_xfer_timeout")),
            data_done_timeout=cfg.get_time(p("data_done_timeout")),
            rset_timeout=cfg.get_time(p("rset_timeout")),
            quit_timeout=cfg.get_time(p("quit_timeout")),
            starttls_timeout=cfg.get_time(p("starttls_timeout")),
            always_send_ehlo=lmtp or cfg.get_bool("smtp_always_send_ehlo"),
            never_send_ehlo=(not lmtp) and cfg.get_bool("smtp_never_send_ehlo"),
            skip_5xx_greeting=cfg.get_bool(p("skip_5xx_greeting")),
            skip_quit_response=cfg.get_bool(p("skip_quit_response")),
            dns_lookups=dns_ok, native_lookups=native,
            mx_address_limit=cfg.get_int(p("mx_address_limit")),
            mx_session_limit=cfg.get_int(p("mx_session_limit")),
            randomize_addresses=cfg.get_bool(p("randomize_addresses")),
            address_preference=pref, families=families,
            tcp_port=cfg.get(p("tcp_port")).strip() or ("24" if lmtp else "25"),
            cache_on_demand=cfg.get_bool(p("connection_cache_on_demand")),
            cache_destinations=tuple(cfg.get_list(p("connection_cache_destinations"))),
            cache_time_limit=cfg.get_time(p("connection_cache_time_limit")),
            reuse_time_limit=cfg.get_time(p("connection_reuse_time_limit")),
            reuse_count_limit=cfg.get_int(p("connection_reuse_count_limit")),
            defer_if_no_mx_address_found=cfg.get_bool(p("defer_if_no_mx_address_found")),
            fallback_relay=tuple(cfg.get_list(p("fallback_relay"))),
            bind_address=cfg.get(p("bind_address")).strip(),
            bind_address6=cfg.get(p("bind_address6")).strip(),
            fold_limit=fold,
            reply_line_limit=cfg.get_int("line_length_limit"),
            quote_envelope=cfg.get_bool(p("quote_rfc821_envelope")),
            send_xforward=cfg.get_bool(p("send_xforward_command")),
            xforward_timeout=cfg.get_time(p("xforward_timeout")),
            discard_ehlo_keywords=frozenset(k.upper() for k in cfg.get_list(p("discard_ehlo_keywords"))),
            mime_downgrade=not cfg.get_bool("disable_mime_output_conversion"),
            smtputf8_enable=cfg.get_bool("smtputf8_enable"),
            dns_servers=tuple(cfg.get_list("fastpost_dns_servers")),
            dns_timeout=cfg.get_time("fastpost_dns_timeout"),
            inet_interfaces=tuple(cfg.get_list("inet_interfaces")),
            proxy_interfaces=tuple(cfg.get_list("proxy_interfaces")),
        )

    def timeout_for(self, stage: str) -> int:
        """The reply timeout of a protocol stage (see fastpost.daemons.smtp.session)."""
        return {
            "greeting": self.helo_timeout, "helo": self.helo_timeout, "lhlo": self.helo_timeout,
            "auth": self.helo_timeout, "xforward": self.xforward_timeout,
            "starttls": self.starttls_timeout, "mail": self.mail_timeout,
            "rcpt": self.rcpt_timeout, "data": self.data_init_timeout,
            "body": self.data_xfer_timeout, "dot": self.data_done_timeout,
            "rset": self.rset_timeout, "quit": self.quit_timeout,
        }[stage]
