"""error / retry: bounce or defer every recipient, with the next-hop text as the reason.

Postfix counterpart: src/error/error.c (error(8))

    error     unix  -       -       n       -       -       error
    retry     unix  -       -       n       -       -       error

The queue manager sends here what a transport table or trivial-rewrite routed to
``error:text`` or ``retry:text`` (``error:5.1.1 User unknown in virtual alias table``):
the next hop *is* the reason. An RFC 3463 code in front of it is the status code (its
class decides: 4 defers, 5 bounces); without one the service name decides: ``retry``
defers with 4.0.0, anything else bounces with 5.0.0. Every recipient of the request
gets the same answer, logged ``relay=none``. No message content is read.

Runs unprivileged and chrooted as master.cf allows (it touches nothing).

Parameters: delay_logging_resolution_limit.
Diagnostics: none beyond the status lines.
"""

from __future__ import annotations

import time

from fastpost.mail.agent import Outcome, log_outcome, split_dsn, status_of, summarize
from fastpost.mail.deliver import delivery_service
from fastpost.server import multi_server_main

RETRY_SERVICE = "retry"


def verdict(service: str, nexthop: str) -> tuple[str, str]:
    """Return (dsn, text) for a request to the error or retry service."""
    default = "4.0.0" if service == RETRY_SERVICE else "5.0.0"
    return split_dsn(nexthop.strip(), default)


async def handle(request, ctx):
    started = time.time()
    service = ctx.service_name or "error"
    dsn, text = verdict(service, request.nexthop)
    results = []
    for rcpt in request.recipients:
        out = Outcome(rcpt.address, rcpt.orig, status_of(dsn), dsn, text, relay="none")
        log_outcome(request, rcpt.offset, out, started=started,
                    resolution=int(ctx.p["delay_logging_resolution_limit"]))
        results.append(summarize(rcpt.offset, [out], "none"))
    return results


def main(argv: list[str]) -> None:
    multi_server_main(argv, delivery_service(handle), name="error",
                      params=("delay_logging_resolution_limit",))
