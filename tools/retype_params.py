#!/usr/bin/env python3
"""One-off review of src/fastpost/mail/param_table.py row kinds and ranges.

Kept for the record of what the review changed (docs/configuration.md, "The
parameter table"); the table file stays the source of truth. Run from the repository
root: python3 tools/retype_params.py  (rewrites the table in place).
"""

import pathlib
import sys

sys.path.insert(0, "src")
from fastpost.mail import params  # noqa: E402
from fastpost.mail.param_table import TABLE  # noqa: E402

B, I, L, M, S, T = params.BOOL, params.INT, params.LIST, params.MAPS, params.STR, params.TIME

KIND = {
    # yes/no after expansion (compatibility-level or ${name?} expressions)
    "append_dot_mydomain": B, "respectful_logging": B, "smtputf8_enable": B,
    "smtpd_relay_before_recipient_restrictions": B, "smtpd_forbid_unauth_pipelining": B,
    "smtp_per_request_deadline": B, "lmtp_per_request_deadline": B,
    "smtpd_per_request_deadline": B,
    # levels such as 3.6 and ratios such as 1/concurrency are not integers
    "compatibility_level": S,
    "default_destination_concurrency_negative_feedback": S,
    "default_destination_concurrency_positive_feedback": S,
    # lists
    "alternate_config_directories": L, "known_tcp_ports": L, "lmtp_pix_workarounds": L,
    "smtp_pix_workarounds": L, "parent_domain_matches_subdomains": L,
    "prepend_delivered_header": L, "propagate_unmatched_extensions": L,
    "smtp_tls_secure_cert_match": L, "smtp_tls_verify_cert_match": L,
    "receive_override_options": L, "maillog_file_prefixes": L, "master_service_disable": L,
    "smtp_connection_cache_destinations": L, "lmtp_connection_cache_destinations": L,
    "smtpd_log_access_permit_actions": L, "smtpd_sasl_security_options": L,
    "tls_disable_workarounds": L, "lmtp_tcp_port": S, "smtp_tls_exclude_ciphers": L,
    "smtp_tls_mandatory_exclude_ciphers": L, "smtpd_tls_exclude_ciphers": L,
    "smtpd_tls_mandatory_exclude_ciphers": L, "smtp_tls_fingerprint_cert_match": L,
    # tables
    "smtpd_dns_reply_filter": M, "smtp_tls_per_site": M, "relay_clientcerts": M,
}

#: Explicit ranges (min, max); None = unbounded. Every other INT and TIME row gets
#: min 0 (Postfix rejects negative numbers for all of them).
RANGE = {
    # smtpd
    "smtpd_timeout": (1, None), "smtpd_starttls_timeout": (1, None),
    "smtpd_recipient_limit": (1, None), "smtpd_hard_error_limit": (1, None),
    "smtpd_junk_command_limit": (1, None), "smtpd_policy_service_timeout": (1, None),
    "smtpd_policy_service_max_idle": (1, None), "smtpd_policy_service_max_ttl": (1, None),
    "smtpd_policy_service_try_limit": (1, None), "smtpd_upstream_proxy_timeout": (1, None),
    "smtpd_sasl_response_limit": (1, None), "smtpd_history_flush_threshold": (1, None),
    "smtpd_recipient_overshoot_limit": (1, None),
    "line_length_limit": (1, None), "header_size_limit": (1, None),
    "header_address_token_limit": (1, None), "mime_boundary_length_limit": (1, None),
    "mime_nesting_limit": (1, None), "queue_file_attribute_count_limit": (1, None),
    "hopcount_limit": (1, None), "smtp_line_length_limit": (0, None),
    # qmgr
    "qmgr_message_active_limit": (1, None), "qmgr_message_recipient_limit": (1, None),
    "qmgr_message_recipient_minimum": (1, None), "qmgr_fudge_factor": (10, 100),
    "initial_destination_concurrency": (1, None),
    "default_destination_concurrency_limit": (0, None),
    "default_destination_recipient_limit": (0, None), "default_recipient_limit": (1, None),
    "default_extra_recipient_limit": (1, None), "default_recipient_refill_limit": (1, None),
    "default_recipient_refill_delay": (1, None), "default_minimum_delivery_slots": (0, None),
    "default_delivery_slot_discount": (0, 100),
    "queue_run_delay": (1, None), "minimal_backoff_time": (1, None),
    "maximal_backoff_time": (1, None), "transport_retry_time": (1, None),
    "local_destination_concurrency_limit": (0, None),
    "local_destination_recipient_limit": (0, None),
    # master and daemons
    "default_process_limit": (1, None), "max_use": (1, None), "max_idle": (1, None),
    "ipc_timeout": (1, None), "ipc_idle": (1, None), "ipc_ttl": (1, None),
    "daemon_timeout": (1, None), "service_throttle_time": (1, None),
    "command_time_limit": (1, None), "hash_queue_depth": (1, 10),
    "fork_attempts": (1, None), "deliver_lock_attempts": (1, None),
    "duplicate_filter_limit": (0, None), "anvil_rate_time_unit": (1, None),
    "anvil_status_update_time": (1, None), "stale_lock_time": (1, None),
    # smtp/lmtp clients
    "smtp_helo_timeout": (1, None), "smtp_mail_timeout": (1, None),
    "smtp_rcpt_timeout": (1, None), "smtp_data_init_timeout": (1, None),
    "smtp_data_xfer_timeout": (1, None), "smtp_data_done_timeout": (1, None),
    "smtp_quit_timeout": (1, None), "smtp_rset_timeout": (1, None),
    "smtp_starttls_timeout": (1, None), "smtp_xforward_timeout": (1, None),
    "lmtp_lhlo_timeout": (1, None), "lmtp_mail_timeout": (1, None),
    "lmtp_rcpt_timeout": (1, None), "lmtp_data_init_timeout": (1, None),
    "lmtp_data_xfer_timeout": (1, None), "lmtp_data_done_timeout": (1, None),
    "lmtp_quit_timeout": (1, None), "lmtp_rset_timeout": (1, None),
    "lmtp_starttls_timeout": (1, None), "lmtp_xforward_timeout": (1, None),
    "smtp_mx_address_limit": (0, None), "smtp_mx_session_limit": (0, None),
    "smtp_tcp_port": (None, None),
    "smtp_tls_loglevel": (0, 4), "smtpd_tls_loglevel": (0, 4), "lmtp_tls_loglevel": (0, 4),
    "fault_injection_code": (0, None),
}


def reply_code(name):
    return name.endswith("_code") and name != "fault_injection_code"


def row(p):
    args = [repr(p.name), {B: "BOOL", I: "INT", L: "LIST", M: "MAPS", S: "STR", T: "TIME"}[p.kind],
            repr(p.default)]
    if p.unit:
        args.append(f"unit={p.unit!r}")
    if p.min is not None:
        args.append(f"min={p.min}")
    if p.max is not None:
        args.append(f"max={p.max}")
    if not p.supported:
        args.append("supported=False")
    return f"    P({', '.join(args)}),"


def main():
    path = pathlib.Path("src/fastpost/mail/param_table.py")
    text = path.read_text()
    head, _, _ = text.partition("TABLE = (\n")
    rows = []
    for p in TABLE:
        kind = KIND.get(p.name, p.kind)
        lo, hi = p.min, p.max
        if kind in (I, T):
            if p.name in RANGE:
                lo, hi = RANGE[p.name]
            elif reply_code(p.name):
                lo, hi = 400, 599
            elif lo is None:
                lo = 0
        else:
            lo = hi = None
        unit = p.unit if kind == T else ""
        rows.append(row(params.Param(p.name, kind, p.default, unit, lo, hi, p.supported)))
    path.write_text(head + "TABLE = (\n" + "\n".join(rows) + "\n)\n")


if __name__ == "__main__":
    main()
