"""error and retry: the delivery agents that always bounce, or always defer.

Postfix counterpart: src/error/error.c.

master.cf (one program, two services; the service name decides):

    error  unix  -  -  n  -  -  error      bounce every recipient
    retry  unix  -  -  n  -  -  error      defer every recipient

The next hop of the request is the reason (``error:5.1.1 User unknown in virtual alias
table``, ``retry:4.3.0 try again later``). A leading RFC 3463 detail code is used, with
its class forced to 5 (error) or 4 (retry); without one the code is 5.0.0 or 4.0.0. The
log line is Postfix's: ``ID: to=<rcpt>, relay=none, delay=..., delays=..., dsn=5.1.1,
status=bounced (User unknown in virtual alias table)``. qmgr records the outcome (the
bounce or defer log) and asks the bounce service for notices.

Parameters: none of its own (the skeleton's). The service name (``-n``) is ``retry`` to
defer, anything else bounces.
Diagnostics: the per-recipient log lines; malformed requests are refused by
fastpost.mail.deliver.delivery_service.
"""

from __future__ import annotations

from fastpost.mail import deliver as D
from fastpost.mail.dsn_text import split_dsn, with_class
from fastpost.server import multi_server_main


def outcome(service: str, nexthop: str) -> tuple[str, str, str]:
    """(status, dsn, text) for every recipient of a request to this service."""
    if service == "retry":
        dsn, text = split_dsn(nexthop, "4.0.0")
        return D.DEFERRED, with_class(dsn, "4"), text or "delivery temporarily suspended"
    dsn, text = split_dsn(nexthop, "5.0.0")
    return D.BOUNCED, with_class(dsn, "5"), text or "delivery not possible"


def handle(request: D.DeliveryRequest, ctx) -> list[D.RecipientResult]:
    status, dsn, text = outcome(ctx.service_name or "error", request.nexthop)
    results = [D.RecipientResult(r.offset, status, dsn, text, "none") for r in request.recipients]
    D.log_results(request, results)
    return results


def main(argv):
    multi_server_main(argv, D.delivery_service(handle), name="error")
