#!/usr/bin/env python3
"""Seed src/fastpost/mail/param_table.py from `postconf -d` of Debian's Postfix 3.7.

Run once, by hand, to create the table; afterwards the table file is the source of
truth and is edited directly. Kept so that the origin of the defaults is documented:

    postconf -c EMPTYDIR -d > d.txt     # EMPTYDIR has empty main.cf and master.cf
    python3 tools/seed_params.py d.txt > src/fastpost/mail/param_table.py

Types are inferred from names and default values; parameters whose feature fastpost
does not implement are marked unsupported so that `fastpost check` names them.
"""

import re
import sys

# Machine- or installation-dependent defaults: computed at run time by params.py.
COMPUTED = {
    "myhostname", "mydomain", "mynetworks", "process_id", "process_name",
    "config_directory", "daemon_directory", "command_directory", "queue_directory",
    "data_directory", "meta_directory", "shlib_directory", "sample_directory",
    "html_directory", "manpage_directory", "readme_directory", "sendmail_path",
    "newaliases_path", "mailq_path", "mail_version", "mail_release_date",
}

UNSUPPORTED_PREFIXES = (
    "postscreen_", "dnsblog_", "tlsproxy_", "milter_", "smtpd_milter", "non_smtpd_milter",
    "qmqpd_", "cyrus_sasl", "lmtp_sasl_", "smtp_sasl_", "tlsmgr_", "tls_dane",
    "smtp_tls_dane", "lmtp_tls_dane", "address_verify_", "unverified_", "fast_flush_",
    "multi_instance_", "postmulti_", "nis_", "debug_peer", "sendmail_fix_line_endings",
    "postlog_", "postlogd_", "smtputf8_autodetect", "enable_idna", "internal_mail_filter",
    "connection_cache_", "smtp_connection_cache_protocol", "lmtp_connection_cache_protocol",
    "scache_", "smtpd_proxy_", "proxy_read_maps", "proxy_write_maps", "proxymap_",
    "tls_eecdh", "tls_dh", "tls_fast_shutdown", "tls_ssl_options", "tls_preempt",
    "tls_wildcard", "tls_server_sni", "smtpd_tls_eecdh", "smtpd_tls_dh", "lmtp_tls_",
    "smtp_dns_", "lmtp_dns_", "smtp_sender_dependent_authentication",
    "lmtp_sender_dependent_authentication", "detect_8bit_encoding_header",
    "smtpd_sasl_local_domain", "smtpd_sasl_service", "smtpd_sasl_tls_security_options",
    "smtp_tls_session_cache", "lmtp_tls_session_cache", "smtpd_tls_session_cache",
    "trigger_timeout", "verp_", "disable_verp", "smtpd_authorized_verp", "default_verp",
    "delay_logging", "undisclosed", "execution_directory_expansion", "frozen_delivered",
    "lmdb_map_size", "berkeley_db", "dynamicmaps", "import_environment_x",
    "qmgr_clog", "qmgr_daemon_timeout", "qmgr_ipc_timeout", "authorized_flush",
    "authorized_mailq", "authorized_submit", "smtpd_client_port_logging",
    "smtp_send_dummy_mail_auth", "lmtp_send_dummy_mail_auth", "smtp_cname_overrides",
    "lmtp_cname_overrides", "smtpd_command_filter", "smtp_reply_filter", "lmtp_reply_filter",
    "smtp_header_checks", "smtp_body_checks", "smtp_mime_header_checks",
    "smtp_nested_header_checks", "lmtp_header_checks", "lmtp_body_checks",
    "lmtp_mime_header_checks", "lmtp_nested_header_checks", "smtpd_reject_footer",
    "smtpd_reject_footer_maps", "meta_directory", "shlib_directory", "openssl_path",
)

# yes/no-looking defaults that accept other words too.
ENUMS = {"smtpd_forbid_bare_newline", "smtpd_forbid_unauth_pipelining", "smtpd_tls_wrappermode_x"}

TIME_RE = re.compile(r"^(\d+)([smhdw])$")


def kind_of(name, value):
    if name in ENUMS:
        return "STR", ""
    if value in ("yes", "no"):
        return "BOOL", ""
    m = TIME_RE.match(value)
    if m:
        return "TIME", m.group(2)
    if value.startswith("${stress?{") and value.endswith("s"):
        return "TIME", "s"
    if name.endswith(("_maps", "_checks")) or name in ("alias_database",):
        return "MAPS", ""
    if name.endswith("_restrictions") or name.endswith("_classes"):
        return "LIST", ""
    if re.fullmatch(r"\d+", value):
        return "INT", ""
    if name.endswith(("_limit", "_count", "_size", "_slots", "_cost", "_loan", "_discount")) \
            and (value.startswith("$") or re.fullmatch(r"\d+", value)):
        return "INT", ""
    if name.endswith(("_time", "_timeout", "_delay", "_interval", "_ttl")) and value.startswith("$"):
        return "TIME", "s"
    if name.endswith(("_domains", "_networks", "_interfaces", "_clients", "_hosts",
                      "_keywords", "_exceptions", "_headers", "_transports", "_list",
                      "_protocols", "_mechanism_filter", "_lock", "_files", "_environment",
                      "mydestination", "_ciphers_x", "_names", "_commands")):
        return "LIST", ""
    return "STR", ""


def main(path):
    print('"""Every main.cf parameter fastpost knows: name, type, default.')
    print()
    print("Seeded from Debian Postfix 3.7.11 `postconf -d` by tools/seed_params.py, then")
    print("maintained by hand: this file is the single source of truth (see params.py).")
    print("Defaults are Postfix 3.7's unless a comment says fastpost deliberately differs.")
    print("Rows marked unsupported=True are accepted in main.cf but fastpost does not act")
    print('on them; `fastpost check` names them when main.cf sets them.')
    print('"""')
    print()
    print("from fastpost.mail.params import BOOL, INT, LIST, MAPS, STR, TIME, Param as P")
    print()
    print("TABLE = (")
    for line in open(path):
        name, _, value = line.rstrip("\n").partition(" =")
        value = value.strip()
        if name in COMPUTED:
            continue
        kind, unit = kind_of(name, value)
        extra = ""
        if unit:
            extra += f", unit={unit!r}"
        if name.startswith(UNSUPPORTED_PREFIXES):
            extra += ", supported=False"
        print(f"    P({name!r}, {kind}, {value!r}{extra}),")
    print(")")


if __name__ == "__main__":
    main(sys.argv[1])
