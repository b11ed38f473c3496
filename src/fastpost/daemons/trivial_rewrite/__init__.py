"""trivial-rewrite: the address rewriting and resolving daemon.

Postfix counterpart: src/trivial-rewrite/trivial-rewrite.c (the daemon; the logic is in
fastpost.mail.rewrite and fastpost.mail.resolve).

master.cf:  ``rewrite  unix  -  -  n  -  -  trivial-rewrite`` (a multi-client daemon:
one process serves every client; clients keep their connection).

Protocol ``trivial_rewrite_protocol`` (attribute frames, fastpost.mail.ipc), one reply
per request, in order; addresses in internal form:

    {request: "rewrite", rule: "local"|"remote", address}  -> {status: 0, address}
    {request: "resolve", sender, address}                   -> {status: 0, transport,
                                                                nexthop, recipient, flags}
    {request: "verify", sender, address}                    -> the same, with the
                                                                address_verify_* settings
    anything else                                            -> {status: -1, error: text}

``flags`` are fastpost.mail.resolve's (Postfix's values): the address class, ROUTED,
ERROR (malformed: bounce) and FAIL (a table lookup failed: defer). Clients use
fastpost.mail.rewrite_clnt.RewriteClient, which caches answers.

Tables are opened in pre_init (before chroot and privilege drop); file tables reload
when they change. A changed main.cf takes effect at ``fastpost reload`` (new workers).

Parameters: everything fastpost.mail.rewrite and fastpost.mail.resolve read.
Diagnostics: ``warning: <address>: <parameter> lookup failure`` (the reply has FAIL);
``warning: trivial_rewrite_protocol: bad request`` for a malformed request (answered
with status -1, the connection stays).
"""

from __future__ import annotations

from fastpost.mail.ipc import attr_service
from fastpost.mail.resolve import FLAG_FAIL, Resolver
from fastpost.mail.rewrite import CONTEXTS, Rewriter
from fastpost.server import multi_server_main
from fastpost.util import log

PROTOCOL = "trivial_rewrite_protocol"


class _State:
    rewriter: Rewriter
    resolver: Resolver
    verifier: Resolver


_state = _State()


def pre_init(ctx) -> None:
    _state.rewriter = Rewriter(ctx.cfg)
    _state.resolver = Resolver(ctx.cfg)
    _state.verifier = Resolver(ctx.cfg, verify=True)


def _bad(text: str) -> dict:
    log.warn("%s: bad request: %s", PROTOCOL, log.printable(text))
    return {"status": -1, "error": text}


async def _resolve(resolver: Resolver, request: str, sender: str, address: str) -> dict:
    r = await resolver.aresolve(sender, address)
    if r.flags & FLAG_FAIL:
        log.warn("%s: %s: table lookup failure; the client will defer",
                 log.printable(address), request)
    if log.verbose():
        log.info("%s: sender=<%s> address=<%s>: transport=%s nexthop=%s recipient=<%s> flags=%d",
                 request, log.printable(sender), log.printable(address), r.transport,
                 log.printable(r.nexthop), log.printable(r.recipient), r.flags)
    return {"status": 0, **r.to_attrs()}


def handle(request: dict, conn):
    kind = request.get("request")
    address = request.get("address")
    if not isinstance(address, str):
        return _bad("no address")
    if kind == "rewrite":
        rule = request.get("rule")
        if rule not in CONTEXTS:
            return _bad(f"unknown rewrite rule {rule!r}")
        return {"status": 0, "address": _state.rewriter.rewrite(rule, address)}
    if kind in ("resolve", "verify"):
        sender = request.get("sender", "")
        if not isinstance(sender, str):
            return _bad("sender is not text")
        resolver = _state.resolver if kind == "resolve" else _state.verifier
        return _resolve(resolver, kind, sender, address)
    return _bad(f"unknown request {kind!r}")


def main(argv):
    multi_server_main(argv, attr_service(PROTOCOL, handle), name="trivial-rewrite",
                      pre_init=pre_init)
