#!/usr/bin/env python3
"""The restriction engine alone: RestrictionPolicy.check per stage, in one process.

    .venv/bin/python benchmarks/policy_check.py [--config default|typical|all]
        [--stage RCPT|MAIL|...] [--count N] [--repeat 5] [--coroutines]
        [--rotate K] [--recipients N] [--distinct]

Why: smtpd asks its restriction engine at every command; with the benchmark's
main.cf only RCPT does work (smtpd_delay_reject = yes), and that check used to be a
chain of coroutines (docs/accept.md, "Session 9: restriction checks without
coroutines"). This builds the real RestrictionPolicy from a main.cf, a fresh
ClientInfo per session (as smtpd has), and calls check() for the stages a session
asks, ``--count`` sessions per round after ``--warmup`` (2000): microseconds per session
(median and range of ``--repeat`` rounds). ``--rotate K`` asks for K recipients in
turn instead of one, so the address classifier's one-entry cache misses as it does
with real mail (the recipient is then resolved at every RCPT). ``--recipients N``
asks N RCPTs per session (recipient j of session i is number i*N+j, modulo K with
``--rotate K``); ``--distinct`` never repeats an address (``rcpt<number>@`` the
configuration's domain: only the domain recurs). Instructions per extra recipient:
(Ir at --recipients 5 - Ir at --recipients 1) / 4 per session, each from the
difference of two counts as below.

Configurations:
  default   the benchmark harness's main.cf (smtpd_session_cpu.py): client in
            mynetworks, default restriction lists, no recipient tables
  typical   a typical MX: client outside mynetworks; client, helo, sender and
            recipient lists of check_*_access (texthash), reject_non_fqdn_*,
            reject_invalid_helo_hostname, reject_unauth_destination, and
            reject_unlisted_recipient against a local recipient table
``--coroutines`` evaluates every stage through the coroutine path from its first step
(the engine's ``sync_first = False``), for comparison.

For instruction counts: ``valgrind --tool=callgrind --callgrind-out-file=F
.venv/bin/python benchmarks/policy_check.py --count N --repeat 1`` at two counts N1,
N2; (Ir(N2) - Ir(N1)) / (N2 - N1) is the engine's instructions per session (the
warm-up and set-up cancel out). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from fastpost.daemons.smtpd.checks.engine import RestrictionPolicy  # noqa: E402
from fastpost.daemons.smtpd.info import ClientInfo, Envelope, PolicyRequest, Recipient  # noqa: E402
from fastpost.daemons.smtpd.policy import Decision as _Decision  # noqa: E402
from fastpost.mail.config import Config  # noqa: E402
from fastpost.util import log  # noqa: E402

# the main.cf smtpd_session_cpu.py measures sessions with (the benchmark's defaults)
from smtpd_session_cpu import MAIN_CF as DEFAULT_CF  # noqa: E402

TYPICAL_CF = """\
compatibility_level = 3.6
myhostname = mx.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = $myhostname, example.com, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
local_recipient_maps = texthash:{d}/users
smtpd_client_restrictions = permit_mynetworks, check_client_access texthash:{d}/clients
smtpd_helo_required = yes
smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname,
    reject_non_fqdn_helo_hostname, check_helo_access texthash:{d}/helos
smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access texthash:{d}/senders
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,
    reject_unauth_destination
smtpd_recipient_restrictions = reject_non_fqdn_recipient,
    check_recipient_access texthash:{d}/recipients, reject_unlisted_recipient
smtpd_data_restrictions = reject_unauth_pipelining
"""

TABLES = {
    "users": "rcpt OK\nother OK\n" + "".join(f"rcpt{i} OK\n" for i in range(100)),
    "clients": "192.0.2.66 REJECT\n",
    "helos": "bad.example REJECT\n",
    "senders": "spammer@bad.example REJECT\n",
    "recipients": "abuse@example.com OK\n",
}

#: (config, client address, helo, sender, recipient)
CONFIGS = {
    "default": (DEFAULT_CF, "127.0.0.1", "client.example.com", "sender@example.com",
                "rcpt@example.net"),
    "typical": (TYPICAL_CF, "198.51.100.7", "client.example.org", "sender@example.org",
                "rcpt@example.com"),
}


def make_policy(name: str, tmp: str, sync_first: bool = True):
    text, addr, helo, sender, rcpt = CONFIGS[name]
    for fname, body in TABLES.items():
        with open(os.path.join(tmp, fname), "w") as f:
            f.write(body)
    cfg = Config(tmp, text=text.format(d=tmp))
    policy = RestrictionPolicy(cfg)
    policy.sync_first = sync_first
    return policy, (addr, helo, sender, rcpt)


def session(policy, who, stages, rcpts=None) -> None:
    """The checks of one session: CONNECT, EHLO, MAIL, RCPT (once per recipient),
    DATA, END-OF-MESSAGE."""
    addr, helo, sender, rcpt0 = who
    rcpts = rcpts or (rcpt0,)
    client = ClientInfo(name="unknown", addr=addr, port="40000", server_addr="127.0.0.1",
                        protocol="ESMTP")
    idle = policy.idle_stages
    check = policy.check
    env = None
    for stage in stages:
        if stage == "MAIL":
            env = Envelope(sender)
        elif stage == "EHLO":
            client.helo = helo
        if stage in idle:
            continue
        if stage == "CONNECT":
            req = PolicyRequest(stage, client)
        elif stage == "EHLO":
            req = PolicyRequest(stage, client, helo=helo)
        elif stage == "MAIL":
            req = PolicyRequest(stage, client, env)
        elif stage == "RCPT":
            for rcpt in rcpts:
                d = check(PolicyRequest(stage, client, env, recipient=rcpt))
                verdict(stage, d)
                env.recipients.append(Recipient(rcpt))
            continue
        else:
            req = PolicyRequest(stage, client, env)
        verdict(stage, check(req))


def verdict(stage: str, d) -> None:
    """Stop the benchmark when a check waited or refused (not the case measured)."""
    if d is not None and d.__class__ is not _Decision:
        raise SystemExit(f"{stage}: the check waited ({d!r}): not a memory-only config")
    if d is not None and d.reply is not None:
        raise SystemExit(f"{stage}: refused: {d.reply}")

STAGES = ("CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    ap.add_argument("--stage", action="append", help="only these stages (default: a session)")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2000, help="sessions before timing")
    ap.add_argument("--coroutines", action="store_true")
    ap.add_argument("--rotate", type=int, default=0,
                    help="K recipients in turn (rcptI@...), not one: the address "
                         "classifier's one-entry cache then misses, as with real mail")
    ap.add_argument("--recipients", type=int, default=1, help="RCPTs per session")
    ap.add_argument("--distinct", action="store_true",
                    help="every RCPT a new address (only the domain recurs)")
    args = ap.parse_args()
    stages = tuple(args.stage) if args.stage else STAGES
    names = list(CONFIGS) if args.config == "all" else [args.config]
    with tempfile.TemporaryDirectory(prefix="fp-policy-check-") as tmp:
        log.init("smtpd", maillog_file=os.path.join(tmp, "maillog"), use_syslog=False)
        for name in names:
            policy, who = make_policy(name, tmp, sync_first=not args.coroutines)
            local, _, domain = who[3].partition("@")
            n = args.recipients
            if args.distinct:
                def rcpts_of(i, local=local, domain=domain, n=n):
                    return [f"{local}{i * n + j}@{domain}" for j in range(n)]
            elif args.rotate or n > 1:
                k = args.rotate or n
                names = [f"{local}{i}@{domain}" for i in range(k)]

                def rcpts_of(i, names=names, k=k, n=n):
                    return [names[(i * n + j) % k] for j in range(n)]
            else:
                def rcpts_of(i):
                    return None
            for i in range(args.warmup):
                session(policy, who, stages, rcpts_of(i))
            gc.collect()
            gc.freeze()  # the import-time heap out of the collector's way: steadier counts
            times = []
            first = args.warmup
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                for i in range(first, first + args.count):
                    session(policy, who, stages, rcpts_of(i))
                first += args.count
                times.append((time.perf_counter() - t0) / args.count * 1e6)
            print(f"{name:8s} {'coroutines' if args.coroutines else 'sync-first'}: "
                  f"{statistics.median(times):.2f} us/session "
                  f"(range {min(times):.2f}-{max(times):.2f}, {args.repeat} rounds of "
                  f"{args.count}; stages {','.join(s for s in stages if s not in policy.idle_stages)})")


if __name__ == "__main__":
    main()
