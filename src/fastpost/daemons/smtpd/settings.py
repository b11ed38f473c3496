"""smtpd's configuration: every main.cf value it uses, read and checked once.

Postfix counterpart: the CONFIG_*_TABLE arrays of src/smtpd/smtpd.c main().

SmtpdSettings.from_config(config) reads everything up front (a bad value is a
ConfigError naming the file and line, which the daemon turns into ``fatal:``), so the
per-connection code never parses configuration.

Parameters honoured: myhostname, mail_name, smtpd_banner, line_length_limit,
message_size_limit, smtpd_recipient_limit, smtpd_recipient_overshoot_limit,
smtpd_timeout, smtpd_starttls_timeout, smtpd_error_sleep_time,
smtpd_soft_error_limit, smtpd_hard_error_limit, smtpd_junk_command_limit,
smtpd_helo_required, disable_vrfy_command, smtpd_discard_ehlo_keywords,
smtpd_forbid_bare_newline, smtpd_forbid_bare_newline_exclusions,
smtpd_forbid_bare_newline_reject_code, smtpd_forbid_unauth_pipelining,
smtpd_forbidden_commands, smtputf8_enable, strict_rfc821_envelopes,
smtpd_authorized_xclient_hosts, smtpd_authorized_xforward_hosts,
smtpd_peername_lookup, smtpd_client_connection_count_limit, queue_minfree,
queue_directory, smtpd_sasl_auth_enable, smtpd_sasl_response_limit,
smtpd_tls_auth_only, broken_sasl_auth_clients, smtpd_sasl_authenticated_header,
smtpd_sasl_exceptions_networks, stress (through
the ${stress?...} defaults), and the TLS parameters read by fastpost.daemons.smtpd.tls.

Not yet honoured, and reported by ``unsupported`` when set:
smtpd_discard_ehlo_keyword_address_maps, smtpd_reject_footer,
smtpd_client_port_logging, smtpd_milters, smtpd_proxy_filter.

Diagnostics: ConfigError (fastpost.mail.config) for bad values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fastpost.daemons.smtpd.netmatch import HostList, parent_matching
from fastpost.mail.config import Config, ConfigError, strip_braces
from fastpost.smtp.server import BARE_LF_MODES, ServerOptions

__all__ = ["SmtpdSettings", "EHLO_ORDER"]

#: EHLO keywords in the order Postfix 3.7 announces them.
EHLO_ORDER = ("PIPELINING", "SIZE", "VRFY", "ETRN", "STARTTLS", "AUTH", "XCLIENT",
              "XFORWARD", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING")

XCLIENT_KEYWORD = "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT"
XFORWARD_KEYWORD = "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT"

_UNSUPPORTED = ("smtpd_discard_ehlo_keyword_address_maps", "smtpd_reject_footer",
                "smtpd_client_port_logging", "smtpd_milters", "smtpd_proxy_filter")


def _forbidden(elements: list[str]) -> tuple[frozenset, list[re.Pattern], list[str]]:
    """Split smtpd_forbidden_commands into verbs, inline regexps and unsupported tables."""
    verbs = set()
    patterns: list[re.Pattern] = []
    unsupported = []
    for element in elements:
        if element.lower().startswith("regexp:{") or element.lower().startswith("pcre:{"):
            body = strip_braces(element.split(":", 1)[1])
            for rule in re.findall(r"\{\s*(.*?)\s*\}", body) or [body]:
                m = re.match(r"(.)(.*)\1([a-zA-Z]*)\s*(.*)", rule)
                if not m:
                    unsupported.append(element)
                    continue
                flags = 0 if "i" in m.group(3) else re.IGNORECASE  # regexp: i is on by default
                patterns.append(re.compile(m.group(2), flags))
        elif ":" in element:
            unsupported.append(element)
        else:
            verbs.add(element.upper())
    return frozenset(verbs), patterns, unsupported


@dataclass
class SmtpdSettings:
    """Typed smtpd configuration (see the module docstring for the parameters)."""

    hostname: str = "localhost"
    mail_name: str = "fastpost"
    banner: str = "localhost ESMTP fastpost"
    line_length_limit: int = 2048
    message_size_limit: int = 10240000
    recipient_limit: int = 1000
    recipient_overshoot_limit: int = 1000
    timeout: float = 300.0
    starttls_timeout: float = 300.0
    error_sleep_time: float = 1.0
    soft_error_limit: int = 10
    hard_error_limit: int = 20
    junk_command_limit: int = 100
    helo_required: bool = False
    vrfy: bool = True
    discard_ehlo: frozenset = frozenset()
    silent_discard: bool = False
    bare_lf: str = "normalize"
    bare_lf_exclusions: HostList = field(default_factory=lambda: HostList([]))
    bare_lf_reject_code: int = 550
    forbid_unauth_pipelining: bool = True
    forbidden_verbs: frozenset = frozenset(["CONNECT", "GET", "POST"])
    forbidden_patterns: list = field(default_factory=list)
    smtputf8: bool = True
    strict_rfc821: bool = False
    xclient_hosts: HostList = field(default_factory=lambda: HostList([]))
    xforward_hosts: HostList = field(default_factory=lambda: HostList([]))
    peername_lookup: bool = True
    connection_count_limit: int = 50
    queue_minfree: int = 0
    queue_directory: str = "/var/spool/fastpost"
    sasl_enable: bool = False
    sasl_response_limit: int = 12288
    tls_auth_only: bool = False
    broken_sasl_auth_clients: bool = False
    sasl_authenticated_header: bool = False
    sasl_exceptions: HostList = field(default_factory=lambda: HostList([]))
    tls_received_header: bool = False
    tls_loglevel: int = 0
    tls_security_level: str = ""  # "", none, may, encrypt
    wrappermode: bool = False
    unsupported: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config) -> "SmtpdSettings":
        """Read every smtpd parameter from ``config`` (ConfigError on bad values)."""
        g = config.get
        parent = g("parent_domain_matches_subdomains")
        discard = set()
        silent = False
        for word in config.get_list("smtpd_discard_ehlo_keywords"):
            w = word.lower()
            if w == "silent-discard":
                silent = True
            else:
                discard.add(w.upper())
        bare = g("smtpd_forbid_bare_newline").strip().lower()
        if bare == "yes":
            bare = "normalize"
        if bare not in BARE_LF_MODES:
            raise ConfigError(f"{config.where('smtpd_forbid_bare_newline')}: bad "
                              f"smtpd_forbid_bare_newline value: {bare}")
        verbs, patterns, unsupported = _forbidden(config.get_list("smtpd_forbidden_commands"))
        unsupported = [f"smtpd_forbidden_commands: {u}" for u in unsupported]
        unsupported += [f"{name} = {g(name)}" for name in _UNSUPPORTED if g(name).strip()
                        and config.is_set(name)]
        level = g("smtpd_tls_security_level").strip().lower()
        if not level:
            if config.get_bool("smtpd_enforce_tls"):
                level = "encrypt"
            elif config.get_bool("smtpd_use_tls"):
                level = "may"
            else:
                level = "none"
        if level not in ("none", "may", "encrypt"):
            raise ConfigError(f"{config.where('smtpd_tls_security_level')}: invalid TLS "
                              f"security level: {level}")
        try:
            bare_excl = HostList(config.get_list("smtpd_forbid_bare_newline_exclusions"),
                                 parent=parent_matching("mynetworks", parent), cfg=config)
            xclient = HostList(config.get_list("smtpd_authorized_xclient_hosts"), cfg=config)
            xforward = HostList(config.get_list("smtpd_authorized_xforward_hosts"), cfg=config)
            sasl_exceptions = HostList(config.get_list("smtpd_sasl_exceptions_networks"),
                                       cfg=config)
        except (ValueError, OSError) as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            hostname=g("myhostname"),
            mail_name=g("mail_name"),
            banner=g("smtpd_banner"),
            line_length_limit=config.get_int("line_length_limit"),
            message_size_limit=config.get_int("message_size_limit"),
            recipient_limit=config.get_int("smtpd_recipient_limit"),
            recipient_overshoot_limit=config.get_int("smtpd_recipient_overshoot_limit"),
            timeout=float(config.get_time("smtpd_timeout")),
            starttls_timeout=float(config.get_time("smtpd_starttls_timeout")),
            error_sleep_time=float(config.get_time("smtpd_error_sleep_time")),
            soft_error_limit=config.get_int("smtpd_soft_error_limit"),
            hard_error_limit=config.get_int("smtpd_hard_error_limit"),
            junk_command_limit=config.get_int("smtpd_junk_command_limit"),
            helo_required=config.get_bool("smtpd_helo_required"),
            vrfy=not config.get_bool("disable_vrfy_command"),
            discard_ehlo=frozenset(discard),
            silent_discard=silent,
            bare_lf=bare,
            bare_lf_exclusions=bare_excl,
            bare_lf_reject_code=config.get_int("smtpd_forbid_bare_newline_reject_code"),
            forbid_unauth_pipelining=config.get_bool("smtpd_forbid_unauth_pipelining"),
            forbidden_verbs=verbs,
            forbidden_patterns=patterns,
            smtputf8=config.get_bool("smtputf8_enable"),
            strict_rfc821=config.get_bool("strict_rfc821_envelopes"),
            xclient_hosts=xclient,
            xforward_hosts=xforward,
            peername_lookup=config.get_bool("smtpd_peername_lookup"),
            connection_count_limit=config.get_int("smtpd_client_connection_count_limit"),
            queue_minfree=config.get_int("queue_minfree"),
            queue_directory=g("queue_directory"),
            sasl_enable=config.get_bool("smtpd_sasl_auth_enable"),
            sasl_response_limit=config.get_int("smtpd_sasl_response_limit"),
            tls_auth_only=config.get_bool("smtpd_tls_auth_only"),
            broken_sasl_auth_clients=config.get_bool("broken_sasl_auth_clients"),
            sasl_authenticated_header=config.get_bool("smtpd_sasl_authenticated_header"),
            sasl_exceptions=sasl_exceptions,
            tls_received_header=config.get_bool("smtpd_tls_received_header"),
            tls_loglevel=config.get_int("smtpd_tls_loglevel"),
            tls_security_level=level,
            wrappermode=config.get_bool("smtpd_tls_wrappermode"),
            unsupported=unsupported,
        )

    def server_options(self, *, xclient: bool, xforward: bool, bare_lf_excluded: bool,
                       starttls: bool, auth: bool) -> ServerOptions:
        """Return the protocol core's options for one client."""
        return ServerOptions(
            hostname=self.hostname,
            line_length_limit=self.line_length_limit,
            message_size_limit=self.message_size_limit,
            recipient_limit=self.recipient_limit,
            bare_lf="no" if bare_lf_excluded else self.bare_lf,
            bare_lf_reject_code=self.bare_lf_reject_code,
            helo_required=self.helo_required,
            smtputf8=self.smtputf8,
            strict_rfc821=self.strict_rfc821,
            vrfy=self.vrfy,
            chunking="CHUNKING" not in self.discard_ehlo,
            starttls=starttls and "STARTTLS" not in self.discard_ehlo,
            tls_required=self.tls_security_level == "encrypt",
            auth=auth and "AUTH" not in self.discard_ehlo,
            auth_response_limit=self.sasl_response_limit,
            xclient=xclient and "XCLIENT" not in self.discard_ehlo,
            xforward=xforward and "XFORWARD" not in self.discard_ehlo,
            forbidden=self.forbidden_verbs,
            forbidden_patterns=tuple(self.forbidden_patterns),
        )

    def ehlo_keywords(self, *, starttls: bool, auth_mechanisms: str, xclient: bool,
                      xforward: bool) -> list[str]:
        """Return the EHLO keyword lines for one client, in Postfix's order."""
        out = []
        for kw in EHLO_ORDER:
            if kw in self.discard_ehlo:
                continue
            if kw == "PIPELINING":
                out.append(kw)
            elif kw == "SIZE":
                out.append(f"SIZE {self.message_size_limit}" if self.message_size_limit else "SIZE")
            elif kw == "VRFY":
                if self.vrfy:
                    out.append(kw)
            elif kw == "STARTTLS":
                if starttls:
                    out.append(kw)
            elif kw == "AUTH":
                if auth_mechanisms:
                    out.append(f"AUTH {auth_mechanisms}")
                    if self.broken_sasl_auth_clients:
                        out.append(f"AUTH={auth_mechanisms}")
            elif kw == "XCLIENT":
                if xclient:
                    out.append(XCLIENT_KEYWORD)
            elif kw == "XFORWARD":
                if xforward:
                    out.append(XFORWARD_KEYWORD)
            elif kw == "SMTPUTF8":
                if self.smtputf8:
                    out.append(kw)
            else:
                out.append(kw)
        return out
