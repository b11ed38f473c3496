"""The restriction engine's two paths give the same decisions and log lines.

RestrictionPolicy.check runs a check as plain calls while no step waits and hands
over to a coroutine at the first step that does (engine.py, docs/policy.md); with
``sync_first = False`` the whole check runs as that coroutine from its first step,
and the lookup helpers (check_rcpt_maps, reject_unauth_destination and relatives)
take their awaited forms. This plays a table of restriction lists through both,
including steps that really wait on the event loop (``sleep 0``), tables that only
answer through the awaited path (``unionmap:``, whose aget is its own), a table that
fails, warn_if_reject, defer_if_permit/defer_if_reject, classes, access actions and
smtpd_delay_reject = no, and compares every decision and every log line.
"""

from __future__ import annotations

import asyncio
import io
import os

import pytest

from fastpost.daemons.smtpd.checks.engine import RestrictionPolicy
from fastpost.daemons.smtpd.info import ClientInfo, Envelope, PolicyRequest, Recipient
from fastpost.mail import maps
from fastpost.mail.config import Config
from fastpost.util import log

BASE = """\
compatibility_level = 3.6
myhostname = mx.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = $myhostname, example.com
relay_domains = relay.example
virtual_alias_domains = alias.example
virtual_mailbox_domains = vmail.example
virtual_mailbox_maps = texthash:{d}/vmail
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
local_recipient_maps = texthash:{d}/users
relay_recipient_maps = texthash:{d}/relayrcpt
smtpd_restriction_classes = strict
strict = reject_non_fqdn_sender, check_sender_access texthash:{d}/senders
"""

TABLES = {
    "users": "known OK\npostmaster OK\n",
    "vmail": "box@vmail.example OK\n",
    "relayrcpt": "r@relay.example OK\n",
    "clients": "192.0.2.66 REJECT go away\n192.0.2.67 DEFER_IF_PERMIT later\n"
               "192.0.2.68 HOLD held\n192.0.2.69 strict\n192.0.2.70 WARN noted\n",
    "senders": "bad@bad.example REJECT no\nsoft@bad.example DEFER_IF_REJECT soft\n"
               "ok@good.example OK\n",
    "recipients": "abuse@example.com OK\nblocked@example.com 550 5.7.1 blocked\n",
    "helos": "bad.helo REJECT helo\n",
}

U = "unionmap:{{texthash:{d}/recipients}}"  # answers only through its own aget

#: (name, main.cf lines after BASE)
CONFIGS = [
    ("defaults", ""),
    ("typical", """\
smtpd_client_restrictions = permit_mynetworks, check_client_access texthash:{d}/clients
smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname,
    check_helo_access texthash:{d}/helos
smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access texthash:{d}/senders
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = reject_non_fqdn_recipient,
    check_recipient_access texthash:{d}/recipients, reject_unlisted_recipient
smtpd_data_restrictions = reject_multi_recipient_bounce
"""),
    ("waits", """\
smtpd_client_restrictions = sleep 0, check_client_access texthash:{d}/clients
smtpd_relay_restrictions = permit_mynetworks, sleep 0, defer_unauth_destination
smtpd_recipient_restrictions = check_recipient_access """ + U + """, sleep 0,
    permit_auth_destination
smtpd_end_of_data_restrictions = sleep 0, check_client_access texthash:{d}/clients
"""),
    ("awaited-tables", """\
local_recipient_maps = """ + U + """, texthash:{d}/users
relay_domains = relay.example, """ + U + """
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access """ + U + """
"""),
    ("warn-and-defer", """\
smtpd_client_restrictions = warn_if_reject reject_unknown_client_hostname,
    check_client_access texthash:{d}/clients
smtpd_sender_restrictions = check_sender_access texthash:{d}/senders, warn_if_reject reject
smtpd_relay_restrictions = defer_if_reject, permit_mynetworks, warn_if_reject
    reject_unauth_destination, defer_unauth_destination
smtpd_recipient_restrictions = defer_if_permit, check_recipient_access texthash:{d}/recipients
"""),
    ("no-delay", """\
smtpd_delay_reject = no
smtpd_client_restrictions = check_client_access texthash:{d}/clients, sleep 0
smtpd_helo_restrictions = check_helo_access texthash:{d}/helos
smtpd_sender_restrictions = check_sender_access texthash:{d}/senders
smtpd_reject_unlisted_sender = yes
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
"""),
    ("failing-table", """\
smtpd_client_restrictions = check_client_access texthash:{d}/missing
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_alias_maps = fail:broken
"""),
]

#: client addresses, then (helo, sender, [recipients]) of one transaction each
CLIENTS = ["127.0.0.1", "198.51.100.7", "192.0.2.66", "192.0.2.67", "192.0.2.68",
           "192.0.2.69", "192.0.2.70"]
TRANSACTIONS = [
    ("client.example.org", "ok@good.example",
     ["known@example.com", "nobody@example.com", "abuse@example.com", "x@elsewhere.example",
      "box@vmail.example", "nobox@vmail.example", "a@alias.example", "r@relay.example",
      "q@relay.example", "blocked@example.com", "user", "known@[127.0.0.1]"]),
    ("bad.helo", "bad@bad.example", ["known@example.com", "x@elsewhere.example"]),
    ("nodots", "soft@bad.example", ["nobody@example.com", "postmaster"]),
    ("client.example.org", "", ["known@example.com", "postmaster@example.com"]),
    ("client.example.org", "unqualified", ["x@elsewhere.example"]),
]


def _write_tables(d: str) -> None:
    for name, body in TABLES.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(body)


def _show(result):
    if result is None:
        return None
    return (str(result.reply) if result.reply is not None else None, result.logged,
            result.hangup)


async def _play(policy) -> list:
    """Every stage of a session per client and transaction: what each check answered."""
    out = []

    async def ask(req):
        try:
            result = policy.check(req)
            if result is not None and not hasattr(result, "reply"):
                result = await result
        except Exception as exc:  # noqa: BLE001 - compared as such
            return ("raised", type(exc).__name__, str(exc))
        return _show(result)

    for addr in CLIENTS:
        client = ClientInfo(name="unknown", addr=addr, port="40000",
                            server_addr="127.0.0.1", protocol="ESMTP")
        out.append(("CONNECT", addr, await ask(PolicyRequest("CONNECT", client))))
        for helo, sender, rcpts in TRANSACTIONS:
            out.append(("EHLO", helo, await ask(PolicyRequest("EHLO", client, helo=helo))))
            client.helo = helo
            env = Envelope(sender)
            out.append(("MAIL", sender, await ask(PolicyRequest("MAIL", client, env))))
            for rcpt in rcpts:
                d = await ask(PolicyRequest("RCPT", client, env, recipient=rcpt))
                out.append(("RCPT", rcpt, d))
                if d is None or (d[0] is None and d[0].__class__ is not tuple):
                    env.recipients.append(Recipient(rcpt))
            out.append(("VRFY", await ask(PolicyRequest("VRFY", client, None,
                                                         recipient="known@example.com"))))
            out.append(("DATA", await ask(PolicyRequest("DATA", client, env))))
            out.append(("EOD", await ask(PolicyRequest("END-OF-MESSAGE", client, env,
                                                       size=1000))))
        out.append(("ETRN", await ask(PolicyRequest("ETRN", client, etrn_domain="example.com"))))
    return out


def _run(cf: str, sync_first: bool) -> tuple[list, list[str]]:
    stream = io.StringIO()
    log.init("smtpd", stream=stream, use_syslog=False)
    try:
        policy = RestrictionPolicy(Config(os.path.dirname(cf), text=open(cf).read()))
        policy.sync_first = sync_first
        answers = asyncio.run(_play(policy))
    finally:
        log.init("test", stream=None, use_syslog=False)
    # "Mon dd hh:mm:ss host postfix/smtpd[pid]: text" -> text
    lines = [line.split("]: ", 1)[-1] for line in stream.getvalue().splitlines()]
    return answers, lines


@pytest.mark.parametrize("name,extra", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_sync_first_and_coroutine_paths_agree(name, extra, tmp_path):
    d = str(tmp_path)
    _write_tables(d)
    cf = os.path.join(d, "main.cf")
    with open(cf, "w") as f:
        f.write((BASE + extra).format(d=d))
    maps.close_all()
    fast, fast_log = _run(cf, True)
    slow, slow_log = _run(cf, False)
    assert fast == slow
    assert fast_log == slow_log
    # The table exercises what it should: refusals and log lines exist.
    refused = [a for a in fast if a[-1] is not None and a[-1][0] is not None]
    assert refused, "no check refused anything: the table tests nothing"
    if name == "typical":
        assert any("User unknown in local recipient table" in a[-1][0] for a in refused)
        assert any("Relay access denied" in a[-1][0] for a in refused)
    if name == "waits":
        assert any(line.startswith("NOQUEUE: reject:") for line in fast_log)


# -- RCPT's shortcut (RestrictionPolicy.quick_rcpt) ------------------------------------------

#: (name, main.cf lines after BASE, whether the shortcut applies)
QUICK_CONFIGS = [
    ("defaults", "", True),
    ("failing-alias-table", "virtual_alias_maps = fail:broken\n", True),
    ("reject-unauth", "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
     True),
    ("no-unlisted", "smtpd_reject_unlisted_recipient = no\n", True),
    ("networks-table", "mynetworks = texthash:{d}/clients\n", False),
    ("logs-permits", "smtpd_log_access_permit_actions = permit_mynetworks\n", False),
    ("recipient-list", "smtpd_recipient_restrictions = check_recipient_access texthash:{d}/recipients\n",
     False),
    ("sasl-first", "smtpd_relay_restrictions = permit_sasl_authenticated, permit_mynetworks,"
                   " defer_unauth_destination\n", True),
    ("sasl-on", "smtpd_sasl_auth_enable = yes\n", True),
    ("recipient-list-only", "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions ="
                            " permit_mynetworks, permit_auth_destination, reject\n", False),
    ("old-style", "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions ="
                  " permit_mynetworks, permit_auth_destination, reject_unauth_destination\n",
     True),
    ("both-lists", "smtpd_recipient_restrictions = permit_sasl_authenticated,"
                   " reject_unauth_destination\n", True),
    ("warn-if-reject", "smtpd_relay_restrictions = permit_mynetworks, warn_if_reject"
                       " reject_unauth_destination, defer_unauth_destination\n", False),
    ("no-delay", "smtpd_delay_reject = no\n", False),
    ("client-list", "smtpd_client_restrictions = permit_mynetworks\n", False),
]


@pytest.mark.parametrize("name,extra,applies", QUICK_CONFIGS, ids=[c[0] for c in QUICK_CONFIGS])
def test_quick_rcpt_only_where_check_permits_silently(name, extra, applies, tmp_path):
    """quick_rcpt answers True only for RCPTs that check() answers None without a log
    line; it logs nothing itself; it is built only for the RCPT plans it knows."""
    d = str(tmp_path)
    _write_tables(d)
    maps.close_all()
    stream = io.StringIO()
    log.init("smtpd", stream=stream, use_syslog=False)
    try:
        policy = RestrictionPolicy(Config(d, text=(BASE + extra).format(d=d)))
        quick = policy.quick_rcpt
        assert (quick is not None) == applies
        if quick is None:
            return
        answers = {True: 0, False: 0}
        for addr, login in [(a, None) for a in CLIENTS] + [("198.51.100.7", "user")]:
            client = ClientInfo(name="unknown", addr=addr, port="40000",
                                server_addr="127.0.0.1", protocol="ESMTP",
                                sasl_method="PLAIN" if login else None, sasl_username=login)
            for helo, sender, rcpts in TRANSACTIONS:
                client.helo = helo
                for discard in (None, "discarded"):
                    env = Envelope(sender, discard=discard)
                    for rcpt in rcpts + [""]:
                        before = stream.tell()
                        q = quick(client, env, rcpt)
                        assert stream.tell() == before, "quick_rcpt logged"
                        answers[q] += 1
                        decision = policy.check(PolicyRequest("RCPT", client, env,
                                                              recipient=rcpt))
                        if q:
                            assert decision is None, (addr, rcpt, discard)
                            assert stream.tell() == before, (addr, rcpt, "check logged")
    finally:
        log.init("test", stream=None, use_syslog=False)
    assert answers[False]
    if name != "failing-alias-table":  # (there every recipient asks the failing table)
        assert answers[True]
