"""discard: claim delivery of every recipient, logging the next-hop text as the reason.

Postfix counterpart: src/discard/discard.c (discard(8))

    discard   unix  -       -       n       -       -       discard

What a transport table routes to ``discard:text`` is dropped: each recipient is logged
``relay=none, ... status=sent (text)`` and reported delivered. An RFC 3463 code in
front of the text is the status code (default 2.0.0). No message content is read.

Runs unprivileged and chrooted as master.cf allows (it touches nothing).

Parameters: delay_logging_resolution_limit.
Diagnostics: none beyond the status lines.
"""

from __future__ import annotations

import time

from fastpost.mail.agent import Outcome, log_outcome, split_dsn, summarize
from fastpost.mail.deliver import SENT, delivery_service
from fastpost.server import multi_server_main


async def handle(request, ctx):
    started = time.time()
    dsn, text = split_dsn(request.nexthop.strip(), "2.0.0")
    results = []
    for rcpt in request.recipients:
        out = Outcome(rcpt.address, rcpt.orig, SENT, dsn, text, relay="none")
        log_outcome(request, rcpt.offset, out, started=started,
                    resolution=int(ctx.p["delay_logging_resolution_limit"]))
        results.append(summarize(rcpt.offset, [out], "none"))
    return results


def main(argv: list[str]) -> None:
    multi_server_main(argv, delivery_service(handle), name="discard",
                      params=("delay_logging_resolution_limit",))
