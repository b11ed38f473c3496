"""discard: the delivery agent that claims delivery and throws the mail away.

Postfix counterpart: src/discard/discard.c.

master.cf: ``discard  unix  -  -  n  -  -  discard``. Every recipient of a request is
reported delivered; the next hop is the text logged (``discard:silently dropped`` ->
``status=sent (silently dropped)``), after an optional RFC 3463 detail code of class 2
(default 2.0.0). With an empty next hop trivial-rewrite puts the recipient's domain
there, as for Postfix. Log line: ``ID: to=<rcpt>, relay=none, delay=..., delays=...,
dsn=2.0.0, status=sent (text)``.

Parameters: none of its own.
Diagnostics: the per-recipient log lines.
"""

from __future__ import annotations

from fastpost.mail import deliver as D
from fastpost.mail.dsn_text import split_dsn, with_class
from fastpost.server import multi_server_main


def handle(request: D.DeliveryRequest, ctx) -> list[D.RecipientResult]:
    dsn, text = split_dsn(request.nexthop, "2.0.0")
    dsn = with_class(dsn, "2")
    results = [D.RecipientResult(r.offset, D.SENT, dsn, text or "discarded", "none")
               for r in request.recipients]
    D.log_results(request, results)
    return results


def main(argv):
    multi_server_main(argv, D.delivery_service(handle), name="discard")
