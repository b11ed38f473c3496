"""Test double: a delivery agent that answers each recipient as the test says.

A real process on the real delivery protocol (fastpost.mail.deliver.delivery_service on
the multi skeleton), registered in master.cf by dotted name:

    smtp  unix  -  -  n  -  -  testdaemons.scripted_agent  RULES  ATTEMPTS

RULES is a JSON file (re-read when it changes; tests rewrite it in place) holding a list
of rules, the first match wins:

    {"rcpt": "regex", "nexthop": "regex",          both optional (search, any case)
     "status": "sent" | "deferred" | "bounced",   default sent
     "dsn": "4.4.1", "text": "...",               defaults by status
     "relay": "mx.example[192.0.2.1]:25",         the relay= field
     "delay": 0.5,                                 seconds before answering
     "mark": true,                                 when the request arrives, write
                                                   {"started": queue_id, "recipient": ...}
                                                   to ATTEMPTS (a delivery is under way)
     "hop": true,                                  report a destination failure too
     "crash": true}                                the process exits without answering

ATTEMPTS gets one JSON line per recipient answered: queue_id, recipient, orig, nexthop,
transport, status, dsn, pid, start, end (time.time()), and the request's recipient
count, and qmgr's request_time (when it sent the request), so tests can check
concurrency, recipient limits, rate delays and retries.
"""

import asyncio
import json
import os
import re
import time

from fastpost.mail import deliver as D
from fastpost.server import multi_server_main

DEFAULT_TEXT = {D.SENT: "250 2.0.0 Ok: delivered by the test agent",
                D.DEFERRED: "test agent says: try again later",
                D.BOUNCED: "test agent says: no such user"}
DEFAULT_DSN = {D.SENT: "2.0.0", D.DEFERRED: "4.0.0", D.BOUNCED: "5.1.1"}


class _State:
    rules_fd = -1
    attempts_fd = -1
    raw = b""
    rules: list = []


state = _State()


def pre_init(ctx):
    state.rules_fd = os.open(ctx.argv[0], os.O_RDONLY)
    state.attempts_fd = os.open(ctx.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)


def rules() -> list:
    size = os.fstat(state.rules_fd).st_size
    raw = os.pread(state.rules_fd, size, 0)
    if raw != state.raw:
        state.raw = raw
        state.rules = [dict(r, _rcpt=re.compile(r.get("rcpt", ""), re.I),
                            _hop=re.compile(r.get("nexthop", ""), re.I))
                       for r in json.loads(raw or b"[]")]
    return state.rules


def rule_for(rcpt: str, nexthop: str) -> dict:
    for r in rules():
        if r["_rcpt"].search(rcpt) and r["_hop"].search(nexthop):
            return r
    return {}


async def handle(request: D.DeliveryRequest, ctx):
    start = time.time()
    chosen = [rule_for(r.address, request.nexthop) for r in request.recipients]
    if any(r.get("crash") for r in chosen):
        os._exit(3)
    marks = [json.dumps({"started": request.queue_id, "recipient": r.address, "start": start})
             for r, rule in zip(request.recipients, chosen) if rule.get("mark")]
    if marks:
        os.write(state.attempts_fd, ("\n".join(marks) + "\n").encode())
    delay = max((float(r.get("delay", 0)) for r in chosen), default=0.0)
    if delay:
        await asyncio.sleep(delay)
    results = []
    hop = None
    for rcpt, rule in zip(request.recipients, chosen):
        status = rule.get("status", D.SENT)
        results.append(D.RecipientResult(
            rcpt.offset, status, rule.get("dsn", DEFAULT_DSN[status]),
            rule.get("text", DEFAULT_TEXT[status]),
            rule.get("relay") or ("none" if status != D.SENT else f"{request.nexthop}[127.0.0.1]:25")))
        if rule.get("hop"):
            hop = {"dsn": rule.get("dsn", "4.4.1"), "text": rule.get("text", DEFAULT_TEXT[D.DEFERRED])}
    D.log_results(request, results, conn_time=start)
    end = time.time()
    lines = [json.dumps({"queue_id": request.queue_id, "recipient": r.address, "orig": r.orig,
                         "nexthop": request.nexthop, "transport": request.transport,
                         "status": res.status, "dsn": res.dsn, "pid": os.getpid(), "start": start,
                         "end": end, "nrcpt": len(request.recipients), "sender": request.sender,
                         "request_time": request.request_time,
                         "notify": r.dsn_notify})
             for r, res in zip(request.recipients, results)]
    os.write(state.attempts_fd, ("\n".join(lines) + "\n").encode())
    return D.DeliveryResult(results, hop)


def main(argv):
    multi_server_main(argv, D.delivery_service(handle), name="smtp", pre_init=pre_init)
