"""check_policy_service: delegate a decision to a policy server (SMTPD_POLICY_README).

Postfix counterpart: check_policy_service() of src/smtpd/smtpd_check.c (the request it
builds and what it does with the answer); the protocol client itself is
fastpost.daemons.smtpd.policy_client (branch ``authpol``), called as

    action = await policy_client.query(spec, attrs, config)

The request is built here, one ``name=value`` per attribute, in this order (what a
Postfix 3.7 smtpd sends; the client appends policy_context):

    request=smtpd_access_policy, protocol_state (CONNECT, EHLO, HELO, MAIL, RCPT,
    VRFY, DATA, BDAT, END-OF-MESSAGE, ETRN), protocol_name (SMTP/ESMTP...),
    client_address, client_name, client_port, reverse_client_name, server_address,
    server_port, helo_name, sender, recipient, recipient_count, queue_id, instance,
    size, etrn_domain, stress, sasl_method, sasl_username, sasl_sender,
    ccert_subject, ccert_issuer, ccert_fingerprint, ccert_pubkey_fingerprint,
    encryption_protocol, encryption_cipher, encryption_keysize

``instance`` is the same for every request of one mail transaction (a policy server
uses it to tell transactions apart), ``recipient_count`` counts accepted recipients
from DATA on (0 before), addresses are in external form. The answer is an access(5)
action and means exactly what it would in an access table (access.interpret), with
the name and class of the list the check stands in. A server that cannot be asked
(policy_client.PolicyUnavailable, after its own retries) gets the spec's
default_action (smtpd_policy_service_default_action, ``451 4.3.5 Server configuration
problem``), interpreted the same way. A bad spec is a configuration error: 451 4.3.5
Server configuration error.

Parameters: those of policy_client (smtpd_policy_service_*); smtpd_access_policy
requests only (no other request type exists).
Diagnostics: PolicyUnavailable and PolicySpecError are logged by the client; when the
client module is absent (a fastpost without it) the restriction is a configuration
error logged once per use.
"""

from __future__ import annotations

import itertools

from fastpost.daemons.smtpd.checks import access
from fastpost.daemons.smtpd.checks.registry import WORD, restriction
from fastpost.mail.address import external
from fastpost.smtp.grammar import xtext_encode
from fastpost.util import log

try:  # the client lives on branch authpol until it is merged
    from fastpost.daemons.smtpd import policy_client
except ImportError:  # pragma: no cover - depends on the merge state
    policy_client = None

__all__ = ["request_attributes"]

_instances = itertools.count(1)


def _instance(ev) -> str:
    """One value per mail transaction (per connection before MAIL)."""
    st = ev.session
    held = st.policy_instance
    if held is None or held[0] is not ev.envelope:
        held = st.policy_instance = (ev.envelope, f"{next(_instances):x}.{id(st) & 0xffffff:x}")
    return held[1]


def request_attributes(ev) -> dict[str, str]:
    """The smtpd_access_policy request for the evaluation ``ev`` (module docstring)."""
    c = ev.client
    env = ev.envelope
    tls = c.tls
    stage = ev.stage
    rcpt_count = len(env.recipients) if env is not None and stage in (
        "DATA", "BDAT", "END-OF-MESSAGE") else 0
    size = ev.req.size if ev.req.size is not None else (env.size if env is not None else None)
    return {
        "request": "smtpd_access_policy",
        "protocol_state": stage,
        "protocol_name": c.protocol,
        "client_address": c.addr,
        "client_name": c.name,
        "client_port": c.port if c.port != "unknown" else "",
        "reverse_client_name": c.reverse_name,
        "server_address": c.server_addr,
        "server_port": c.server_port,
        "helo_name": ev.helo or "",
        "sender": external(ev.sender) if ev.sender else "",
        "recipient": external(ev.recipient) if ev.recipient else "",
        "recipient_count": str(rcpt_count),
        "queue_id": (env.queue_id or "") if env is not None else "",
        "instance": _instance(ev),
        "size": str(size or 0),
        "etrn_domain": ev.req.etrn_domain or "",
        "stress": "",
        "sasl_method": c.sasl_method or "",
        "sasl_username": c.sasl_username or "",
        "sasl_sender": (env.auth or "") if env is not None and env.auth not in (None, "<>") else "",
        # The certificate's names are xtext (``fastpost+20test+20CA``), as Postfix sends them.
        "ccert_subject": xtext_encode(tls.peer_subject) if tls and tls.peer_verified else "",
        "ccert_issuer": xtext_encode(tls.peer_issuer) if tls and tls.peer_verified else "",
        "ccert_fingerprint": tls.peer_fingerprint if tls and tls.peer_verified else "",
        "ccert_pubkey_fingerprint":
            tls.peer_pubkey_fingerprint if tls and tls.peer_verified else "",
        "encryption_protocol": tls.protocol if tls else "",
        "encryption_cipher": tls.cipher if tls else "",
        "encryption_keysize": str(tls.bits) if tls else "0",
    }


def _compile(word, engine):
    if policy_client is not None:
        policy_client.parse_spec(word, engine.config)  # a bad spec fails at start-up
    return word


@restriction("check_policy_service", arg=WORD, compile=_compile)
async def check_policy_service(ev, step, name, klass):
    spec = step.arg
    if policy_client is None:
        log.warn("check_policy_service %s: this fastpost has no policy client", spec)
        return ev.server_error()
    try:
        action = await policy_client.query(spec, request_attributes(ev), ev.engine.config)
    except policy_client.PolicyUnavailable as exc:
        action = exc.default_action or ev.engine.config.get(
            "smtpd_policy_service_default_action")
    except policy_client.PolicySpecError as exc:
        log.warn("check_policy_service: %s", exc)
        return ev.server_error()
    result = access.interpret(ev, spec, action, spec, name, klass)
    if result.__class__ is not int:
        result = await result
    return result
