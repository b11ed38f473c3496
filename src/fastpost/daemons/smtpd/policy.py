"""The Policy seam: smtpd asks it at each stage whether the client may go on.

Postfix counterpart: the smtpd_*_restrictions of src/smtpd/smtpd_check.c. The
access-policy issue implements Postfix's restriction lists (check_*_access, RBLs,
policy services, ...) behind this interface; what ships here is DefaultPolicy,
which is enough that fastpost is never an open relay out of the box.

Interface (one method):

    Policy.check(request: PolicyRequest) -> Decision | None | Awaitable[Decision | None]

``None`` (or a Decision without reply) lets the command proceed; a Decision with a
reply refuses it with that reply. A plain value is used at once; an awaitable makes
the session stop reading from that client until it completes (other clients are
not held up). A 421 or 521 reply also disconnects. An exception from check() is a
"server configuration error": the session answers 451 4.3.5 and logs a warning.

Stages asked (PolicyRequest.stage): CONNECT, HELO/EHLO, MAIL, RCPT, VRFY, DATA,
BDAT, END-OF-MESSAGE, ETRN.

``Policy.idle_stages`` (a frozenset of stage names) lists the stages where check()
always answers None without looking at the request (an empty restriction list,
smtpd_delay_reject moving a check to RCPT): the session then builds no request and
makes no call there. The default is empty (every stage is asked).
``Policy.quick_rcpt`` (None, or a function of client, envelope and recipient) answers
True when check() of that RCPT would answer None, without a request being built; the
session asks check() when it answers False (RestrictionPolicy sets it for the RCPT
lists it can short-cut: checks/engine.py).

DefaultPolicy implements, at RCPT (and VRFY),
    permit_mynetworks, reject_unauth_destination
the latter with Postfix's reply: ``554 5.7.1 <rcpt>: Relay access denied``
(relay_domains_reject_code), or 454 4.7.1 when smtpd_relay_restrictions says
defer_unauth_destination (the Postfix 3.x default). A recipient is "ours" when its
domain is in mydestination, relay_domains, virtual_alias_domains or
virtual_mailbox_domains, or is an address literal of this host; a local part with
sender-specified routing (``user%host``, ``user!host``, ``user@host``) is refused
unless allow_untrusted_routing = yes (as reject_unauth_destination does).

Parameters (DefaultPolicy): mynetworks, mydestination, relay_domains,
virtual_alias_domains, virtual_mailbox_domains, inet_interfaces, proxy_interfaces,
relay_domains_reject_code, smtpd_relay_restrictions (only which of
reject_unauth_destination / defer_unauth_destination it names),
allow_untrusted_routing, parent_domain_matches_subdomains.

Diagnostics: a table in one of those lists that cannot answer (maps.MapRetry)
propagates out of check(): the session answers 451 4.3.5 (server configuration
error) and logs a warning - never "not found".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastpost.daemons.smtpd.info import PolicyRequest
from fastpost.daemons.smtpd.netmatch import DomainList, HostList, parent_matching
from fastpost.smtp import replies
from fastpost.smtp.replies import Reply

__all__ = ["Decision", "Policy", "DefaultPolicy", "PermitAll"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of a Policy: ``reply`` None lets the command proceed.

    ``logged``: the policy logged the refusal itself (Postfix's ``NOQUEUE: reject:``
    line), so the session does not. ``hangup``: close the connection without any
    reply (access(5) HANGUP). At CONNECT a refusal that is not 421/521 replaces the
    greeting, and every later command but QUIT is answered ``503 5.7.0 Error:
    access denied for name[addr]`` (smtpd_delay_reject = no).
    """

    reply: Reply | None = None
    logged: bool = False
    hangup: bool = False

    @property
    def disconnect(self) -> bool:
        """True for a 421/521 reply (or a hang-up): the session closes after it."""
        return self.hangup or (self.reply is not None and self.reply.code in (421, 521))


class Policy:
    """Base class of policies: everything is permitted."""

    #: stages where check() is known to answer None (module docstring); a subclass
    #: that sets it must keep it true for the life of the object.
    idle_stages: frozenset = frozenset()

    #: Problems found while building the policy, for the session to log once.
    warnings: list[str] = []
    #: None, or quick_rcpt(client, envelope, recipient) -> bool: True when check() of
    #: that RCPT would answer None, found without building a request; False when it
    #: cannot tell (the session then calls check()). A subclass that sets it must keep
    #: both answers equal for the life of the object.
    quick_rcpt = None

    def check(self, request: PolicyRequest):
        """Return None, a Decision, or an awaitable of either (module docstring)."""
        return None


class PermitAll(Policy):
    """A policy that permits everything (for tests of the protocol alone)."""


def _split_domain(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain


class DefaultPolicy(Policy):
    """permit_mynetworks, reject_unauth_destination (module docstring)."""

    def __init__(self, config):
        parent = config.get("parent_domain_matches_subdomains")
        self.mynetworks = HostList(config.get_list("mynetworks"),
                                   parent=parent_matching("mynetworks", parent), cfg=config)
        self.local_domains = DomainList(config.get_list("mydestination"),
                                        parent=parent_matching("mydestination", parent),
                                        cfg=config)
        ours = (config.get_list("relay_domains") + config.get_list("virtual_alias_domains")
                + config.get_list("virtual_mailbox_domains"))
        self.relay_domains = DomainList(ours, parent=parent_matching("relay_domains", parent),
                                        cfg=config)
        self.interfaces: set[str] = set()
        for word in config.get_list("inet_interfaces") + config.get_list("proxy_interfaces"):
            try:
                self.interfaces.add(str(ipaddress.ip_address(word.strip("[]"))))
            except ValueError:
                pass
        self.any_interface = "all" in [w.lower() for w in config.get_list("inet_interfaces")]
        restrictions = [w.lower() for w in config.get_list("smtpd_relay_restrictions")
                        + config.get_list("smtpd_recipient_restrictions")]
        defer = ("defer_unauth_destination" in restrictions
                 and "reject_unauth_destination" not in restrictions)
        self.reject_code = 454 if defer else config.get_int("relay_domains_reject_code")
        self.untrusted_routing = config.get_bool("allow_untrusted_routing")
        self.warnings = []

    def _is_local_literal(self, domain: str, server_addr: str) -> bool:
        """True for [addr] naming this host (inet_interfaces, or our end of the socket)."""
        inner = domain[1:-1]
        if inner[:5].lower() == "ipv6:":
            inner = inner[5:]
        try:
            ip = ipaddress.ip_address(inner)
        except ValueError:
            return False
        if str(ip) in self.interfaces or (server_addr and str(ip) == server_addr):
            return True
        return self.any_interface and ip.is_loopback

    def is_our_destination(self, address: str, server_addr: str = "") -> bool:
        """True when mail for ``address`` may be received from anyone."""
        local, domain = _split_domain(address)
        if not domain:
            # unqualified: cleanup appends $myorigin - unless it is a route in disguise
            # (``user%host``, ``host!user``: trivial-rewrite would send it to host)
            return self.untrusted_routing or not any(c in local for c in "%!")
        domain = domain.rstrip(".")
        if domain.startswith("["):
            ours = self._is_local_literal(domain, server_addr)
        else:
            ours = self.local_domains.match(domain) or self.relay_domains.match(domain)
        if ours and not self.untrusted_routing and any(c in local for c in "@%!"):
            return False  # sender-specified routing
        return ours

    idle_stages = frozenset(("CONNECT", "HELO", "EHLO", "MAIL", "DATA", "BDAT",
                             "END-OF-MESSAGE", "ETRN", "XCLIENT"))

    def check(self, request: PolicyRequest):
        if request.stage not in ("RCPT", "VRFY"):
            return None
        client = request.client
        if self.mynetworks.match(client.name, client.addr):
            return None
        rcpt = request.recipient or ""
        if self.is_our_destination(rcpt, client.server_addr):
            return None
        return Decision(replies.relay_denied(rcpt, self.reject_code))
