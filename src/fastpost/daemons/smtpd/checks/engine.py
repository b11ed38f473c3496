"""The restriction engine: smtpd's Policy, evaluating Postfix's restriction lists.

Postfix counterpart: src/smtpd/smtpd_check.c (smtpd_check_client, _helo, _mail,
_rcpt, _data, _eod, _etrn, generic_checks, smtpd_check_reject, defer_if,
log_whatsup).

    policy = RestrictionPolicy(config, dns=..., address_class=...)
    decision = policy.check(request)     # Decision | None | Future of either

When the lists are evaluated (smtpd_delay_reject = yes, the default):

    CONNECT, XCLIENT,
    HELO/EHLO, MAIL            nothing
    RCPT, VRFY                 client, helo, sender lists (each in full, in that
                               order), then smtpd_relay_restrictions, then
                               smtpd_recipient_restrictions, then the implicit
                               unlisted-recipient (and -sender) checks
    DATA (and the first BDAT)  smtpd_data_restrictions
    END-OF-MESSAGE             smtpd_end_of_data_restrictions
    ETRN                       client and helo lists, then smtpd_etrn_restrictions

With smtpd_delay_reject = no the client list runs at CONNECT and after XCLIENT (a
refusal replaces the greeting, and then every command but QUIT gets 503 5.7.0), the
helo list at
HELO/EHLO, the sender list at MAIL, and RCPT runs the relay and recipient lists.

Within one check: the first restriction that permits ends *its list* (the next list
still runs); the first that refuses ends the check. ``warn_if_reject`` turns the
refusal of the restriction after it into a ``reject_warning`` log line.
``defer_if_permit`` (and temporary DNS failures of reject-type checks, by default)
remembers a deferral that is sent if nothing refuses by the end of the check;
``defer_if_reject`` makes a later 5xx refusal *in the same list* a deferral instead.
After DISCARD, later checks of the transaction are skipped. Every refusal is logged
as Postfix does (``NOQUEUE: reject: RCPT from name[addr]: 554 5.7.1 ...; from=<s>
to=<r> proto=ESMTP helo=<h>``), as are the access actions (hold, discard, filter,
redirect, bcc, warn, info, hangup) and, with smtpd_log_access_permit_actions,
permits.

Evaluation is plain calls until a step would wait: each stage is a tuple of phases
(compiled once: the lists, the pending defer_if_permit, the implicit unlisted
checks; an empty list has none) that return None/OK/DUNNO, raise Rejected, or return
an awaitable when they have to wait (DNS, a policy service, a table that is not
inline). From the first awaitable on, the rest of the stage runs as one coroutine
(_run_rest, started by fastpost.util.maybe_async) over the same phases: a check that
needs no network returns a plain value without any coroutine; one that waits returns
a Future, and the session stops reading from that client until it resolves.
``sync_first = False`` runs every check as that coroutine from its first phase (the
differential test, tests/policy/test_sync_first.py). Before any of that, the session
asks ``quick_rcpt`` at RCPT: for Postfix's default lists (and others made of
permit_mynetworks, permit_sasl_authenticated, reject_/defer_unauth_destination,
permit_auth_destination) it answers True, without an Eval, where check() would answer
None with nothing logged, and False (ask check()) everywhere else.

Parameters: smtpd_{client,helo,sender,relay,recipient,data,end_of_data,etrn}_restrictions,
smtpd_delay_reject, smtpd_restriction_classes (and the classes), smtpd_reject_unlisted_sender,
smtpd_reject_unlisted_recipient, smtpd_log_access_permit_actions, soft_bounce, the
*_reject_code / *_defer_code parameters, reject_tempfail_action and its per-check
variants, parent_domain_matches_subdomains, smtpd_null_access_lookup_key, and those
of the restriction modules (see each).
Diagnostics: ConfigError at construction for what Postfix refuses to start with
(the relay rule, a class without definition); run-time configuration problems
are logged warnings and ``451 4.3.5 Server configuration error`` replies; a table
lookup failure is ``451 4.3.5 <name>: Class rejected: Server configuration error``.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from fastpost.daemons.smtpd.checks import reply as rp
from fastpost.daemons.smtpd.checks.lists import WARN_IF_REJECT, check_relay_rule, compile_list
from fastpost.daemons.smtpd.checks.registry import DUNNO, OK
from fastpost.daemons.smtpd.checks.reply import Rejected, make_reply
from fastpost.daemons.smtpd.info import PolicyRequest
from fastpost.daemons.smtpd.netmatch import HostList, parent_matching
from fastpost.daemons.smtpd.policy import Decision, Policy
from fastpost.mail import maps
from fastpost.mail.address import external
from fastpost.mail.config import ConfigError
from fastpost.util import log, maybe_async
from fastpost.util.log import printable

__all__ = ["RestrictionPolicy", "Eval", "Deferral"]

#: Nested restriction lists (classes, access results) deeper than this are an error.
RECURSION_LIMIT = 100

_LISTS = ("client", "helo", "sender", "relay", "recipient", "data", "end_of_data", "etrn")


class Deferral(NamedTuple):
    """A remembered defer_if_permit / defer_if_reject: the reply it would send."""

    code: int
    dsn: str
    text: str


class SessionState:
    """What the engine remembers per connection (ClientInfo.policy_state)."""

    __slots__ = ("dip_client", "dip_helo", "dip_sender", "notes", "policy_instance")

    def __init__(self):
        self.dip_client: Deferral | None = None
        self.dip_helo: Deferral | None = None
        self.dip_sender: Deferral | None = None
        self.notes: set | None = None  # made by the first note_once
        #: check_policy_service's ``instance``: (the envelope it was made for, value)
        self.policy_instance: tuple | None = None


class Settings:
    """The engine's parameters, read once (module docstring)."""

    def __init__(self, cfg):
        gi = cfg.get_int
        self.delay_reject = cfg.get_bool("smtpd_delay_reject")
        self.access_map_reject_code = gi("access_map_reject_code")
        self.access_map_defer_code = gi("access_map_defer_code")
        self.reject_code = gi("reject_code")
        self.defer_code = gi("defer_code")
        self.relay_code = gi("relay_domains_reject_code")
        self.unknown_local_code = gi("unknown_local_recipient_reject_code")
        self.unknown_relay_code = gi("unknown_relay_recipient_reject_code")
        self.unknown_alias_code = gi("unknown_virtual_alias_reject_code")
        self.unknown_mailbox_code = gi("unknown_virtual_mailbox_reject_code")
        self.unknown_address_code = gi("unknown_address_reject_code")
        self.unknown_client_code = gi("unknown_client_reject_code")
        self.unknown_hostname_code = gi("unknown_hostname_reject_code")
        self.non_fqdn_code = gi("non_fqdn_reject_code")
        self.invalid_hostname_code = gi("invalid_hostname_reject_code")
        self.maps_rbl_code = gi("maps_rbl_reject_code")
        self.plaintext_code = gi("plaintext_reject_code")
        self.multi_bounce_code = gi("multi_recipient_bounce_reject_code")
        self.soft_bounce = cfg.get_bool("soft_bounce")
        self.reject_tempfail_action = cfg.get("reject_tempfail_action").strip().lower()
        self.unknown_address_tempfail_action = cfg.get("unknown_address_tempfail_action").strip().lower()
        self.unknown_helo_tempfail_action = cfg.get(
            "unknown_helo_hostname_tempfail_action").strip().lower()
        self.null_key = cfg.get("smtpd_null_access_lookup_key")
        self.parent_style = parent_matching("smtpd_access_maps",
                                            cfg.get("parent_domain_matches_subdomains"))
        self.reject_unlisted_sender = cfg.get_bool("smtpd_reject_unlisted_sender")
        self.reject_unlisted_recipient = cfg.get_bool("smtpd_reject_unlisted_recipient")
        self.delimiters = cfg.get("recipient_delimiter")
        self.sasl_enable = cfg.get_bool("smtpd_sasl_auth_enable")
        self.hostname = cfg.get("myhostname")


class Eval:
    """One evaluation: a stage of one command of one session (module docstring)."""

    __slots__ = ("engine", "settings", "req", "client", "envelope", "stage", "helo",
                 "sender", "recipient", "warn_if_reject", "defer_if_reject",
                 "defer_if_permit", "recursion", "session", "rcpt_maps_checked",
                 "sender_maps_checked", "list_kind", "open_list")

    def __init__(self, engine: "RestrictionPolicy", req: PolicyRequest):
        self.engine = engine
        self.settings = engine.settings
        self.req = req
        c = req.client
        self.client = c
        env = req.envelope
        self.envelope = env
        self.stage = req.stage
        self.helo = req.helo if req.helo is not None else c.helo
        self.sender = env.sender if env is not None else None
        rcpt = req.recipient
        if rcpt is None and env is not None and req.stage in ("DATA", "BDAT", "END-OF-MESSAGE"):
            if len(env.recipients) == 1:
                rcpt = env.recipients[0].address
        self.recipient = rcpt
        self.warn_if_reject = 0
        self.defer_if_reject: Deferral | None = None
        self.defer_if_permit: Deferral | None = None
        self.recursion = 0
        st = c.policy_state
        if st is None:
            st = c.policy_state = SessionState()
        self.session = st
        self.rcpt_maps_checked = False
        self.sender_maps_checked = False
        self.list_kind = ""
        self.open_list = 0  # which of the client/helo/sender lists is running

    # -- logging ---------------------------------------------------------------------

    @property
    def queue_id(self) -> str:
        env = self.envelope
        return env.queue_id if env is not None and env.queue_id else "NOQUEUE"

    def fields(self) -> str:
        """The ``from=<> to=<> proto= helo=<>`` tail of Postfix's log lines."""
        parts = []
        if self.sender is not None:
            parts.append(f"from=<{printable(external(self.sender))}>")
        if self.recipient is not None:
            parts.append(f"to=<{printable(external(self.recipient))}>")
        parts.append(f"proto={self.client.protocol}")
        if self.helo is not None:
            parts.append(f"helo=<{printable(self.helo)}>")
        return " ".join(parts)

    def log(self, action: str, text: str) -> None:
        """Log ``QUEUEID: action: STAGE from name[addr]: text; fields`` (log_whatsup)."""
        log.info("%s: %s: %s from %s: %s; %s", self.queue_id, action, self.stage,
                 self.client.text, printable(text), self.fields())

    def no_sasl(self, restriction: str) -> bool:
        """True (after Postfix's warning) when SASL is off and ``restriction`` is moot."""
        if self.settings.sasl_enable:
            return False
        log.warn("restriction `%s' ignored: no SASL support", restriction)
        return True

    def note_once(self, text: str) -> None:
        """Log a warning once per session (deprecated restriction names)."""
        st = self.session
        if st.notes is None:
            st.notes = set()
        if text not in st.notes:
            st.notes.add(text)
            log.warn("%s", text)

    # -- outcomes --------------------------------------------------------------------

    def reject(self, code: int, dsn: str, text: str) -> int:
        """Refuse with ``code dsn text`` (smtpd_check_reject): raises Rejected, or
        returns DUNNO after logging ``reject_warning`` under warn_if_reject."""
        s = self.settings
        dir_ = self.defer_if_reject
        if code >= 500 and dir_ is not None:
            code, dsn, text = dir_
        if s.soft_bounce and code >= 500:
            code -= 100
            dsn = "4" + dsn[1:]
        reply = make_reply(code, dsn, text)
        if self.warn_if_reject:
            self.log("reject_warning", str(reply))
            return DUNNO
        self.log("reject", str(reply))
        raise Rejected(reply)

    def server_error(self, name: str | None = None, klass: str | None = None) -> int:
        """``451 4.3.5 Server configuration error`` (with ``<name>: Class rejected:``
        when a table of that context failed)."""
        if name is None:
            return self.reject(451, "4.3.5", "Server configuration error")
        return self.reject(451, "4.3.5", f"<{name}>: {klass} rejected: Server configuration error")

    def defer_if(self, which: str, code: int, dsn: str, text: str) -> int:
        """Remember a defer_if_permit/defer_if_reject (the first reason is kept);
        under warn_if_reject, log it as a reject_warning instead."""
        if self.warn_if_reject:
            self.log("reject_warning", str(make_reply(code, dsn, text)))
            return DUNNO
        if which == "permit":
            if self.defer_if_permit is None:
                self.defer_if_permit = Deferral(code, dsn, text)
        elif self.defer_if_reject is None:
            self.defer_if_reject = Deferral(code, dsn, text)
        return DUNNO

    def tempfail(self, action: str, code: int, dsn: str, text: str) -> int:
        """A reject-type check could not decide (DNS, a table): act per
        reject_tempfail_action (defer_if_permit by default, or defer)."""
        if action == "defer":
            return self.reject(code, dsn, text)
        return self.defer_if("permit", code, dsn, text)

    def permit(self, action: str, name: str, klass: str, table: str | None = None) -> int:
        """Return OK, logging it when smtpd_log_access_permit_actions asks."""
        if self.engine.logs_permits and self.engine.log_permit(action):
            where = f" from {table}" if table else " "
            self.log("permit", f"action={action} for {klass}={name}{where}")
        return OK

    # -- lists -----------------------------------------------------------------------

    def run_list(self, steps, name: str, klass: str):
        """Evaluate one restriction list (generic_checks); OK ends it.

        Returns OK or DUNNO, or an awaitable of it when a step has to wait (DNS, a
        policy service): most lists never wait, and then no coroutine is made
        (the steps' own convention, see registry).
        """
        self.recursion += 1
        depth = self.recursion
        handed_off = False
        try:
            if depth > RECURSION_LIMIT:
                log.warn("SMTPD access map or restriction class recursion limit exceeded")
                return self.server_error()
            for i, step in enumerate(steps):
                if step.name == WARN_IF_REJECT:
                    if not self.warn_if_reject:
                        self.warn_if_reject = depth
                    continue
                result = step.fn(self, step, name, klass)
                if result.__class__ is not int:
                    handed_off = True  # the rest decrements the recursion count
                    return self._run_list_rest(steps, i, result, name, klass, depth)
                if self.warn_if_reject >= depth:
                    self.warn_if_reject = 0
                if result == OK:
                    return OK
            return DUNNO
        finally:
            if not handed_off:
                self.recursion -= 1

    async def _run_list_rest(self, steps, i: int, waiting, name: str, klass: str,
                             depth: int) -> int:
        """run_list from step ``i``, whose answer ``waiting`` is still to come."""
        try:
            result = await waiting
            if self.warn_if_reject >= depth:
                self.warn_if_reject = 0
            if result == OK:
                return OK
            for step in steps[i + 1:]:
                if step.name == WARN_IF_REJECT:
                    if not self.warn_if_reject:
                        self.warn_if_reject = depth
                    continue
                result = step.fn(self, step, name, klass)
                if result.__class__ is not int:
                    result = await result
                if self.warn_if_reject >= depth:
                    self.warn_if_reject = 0
                if result == OK:
                    return OK
            return DUNNO
        finally:
            self.recursion -= 1

    def run_class(self, cname: str, name: str, klass: str):
        steps = self.engine.class_steps(cname)
        return self.run_list(steps, name, klass)

    def top_list(self, kind: str, name: str, klass: str):
        """Evaluate a top-level list: defer_if_reject and warn_if_reject start afresh.
        OK or DUNNO, or an awaitable of it (run_list)."""
        steps = self.engine.lists[kind]
        self.defer_if_reject = None
        self.warn_if_reject = 0
        self.list_kind = kind
        if not steps:
            return DUNNO
        return self.run_list(steps, name, klass)


class RestrictionPolicy(Policy):
    """Postfix's restriction lists as smtpd's Policy (module docstring)."""

    #: False: every check runs as a coroutine from its first step (the differential
    #: test and benchmarks/policy_check.py --coroutines compare the two).
    sync_first = True

    def __init__(self, config, *, dns=None, address_class=None, anvil=None,
                 policy_clients: dict | None = None):
        self.config = config
        self.settings = Settings(config)
        self.warnings: list[str] = []
        self._tables: dict[str, maps.MapList] = {}
        self._value_lists: dict[str, list] = {}
        self._dns = dns
        self.policy_clients = policy_clients if policy_clients is not None else {}
        parent = config.get("parent_domain_matches_subdomains")
        self.mynetworks = HostList(config.get_list("mynetworks"),
                                   parent=parent_matching("mynetworks", parent))
        self.warnings += [f"mynetworks: lookup table {t} is not supported yet; it matches nothing"
                          for t in self.mynetworks.unsupported]
        # Restriction classes: names first (lists may refer to them), then bodies.
        self.class_names: set[str] = set(config.get_list("smtpd_restriction_classes"))
        self._class_words: dict[str, list[str]] = {}
        for cname in self.class_names:
            words = config.get_list(cname)
            if not words:
                raise ConfigError(f"restriction class `{cname}' needs a definition")
            self._class_words[cname] = words
        self._class_steps: dict[str, list] = {}
        words = {kind: config.get_list(f"smtpd_{kind}_restrictions") for kind in _LISTS}
        check_relay_rule(words["relay"], words["recipient"], self._class_words)
        from fastpost.daemons.smtpd.checks import relay as relaymod

        self.address_class = address_class or relaymod.AddressClassifier(config)
        self.warnings += self.address_class.warnings
        #: address_class.classify() never waits (its tables answer inline)
        self.classify_inline = bool(getattr(self.address_class, "inline", False))
        self._permit_names, self._permit_tables = self._permit_logging(config)
        #: smtpd_log_access_permit_actions names something (else log_permit is False)
        self.logs_permits = bool(self._permit_names or self._permit_tables)
        self._load_modules()
        from fastpost.daemons.smtpd.checks import address as address_checks

        self._address_checks = address_checks  # (not imported again per RCPT)
        self.lists = {kind: compile_list(words[kind], self, f"smtpd_{kind}_restrictions")
                      for kind in _LISTS}
        for cname in self.class_names:
            self.class_steps(cname)
        self._unlisted = None
        # The stages where check() answers None whatever the request (the session
        # then skips the call): see check().
        idle = set()
        if self.settings.delay_reject:
            idle.update(("MAIL", "EHLO", "HELO", "CONNECT", "XCLIENT"))
        if not self.lists["data"]:
            idle.update(("DATA", "BDAT"))
        if not self.lists["end_of_data"]:
            idle.add("END-OF-MESSAGE")
        self.idle_stages = frozenset(idle)
        self._plans = self._make_plans()
        #: The session's shortcut for RCPT (Policy.quick_rcpt), or None: see _quick_rcpt.
        self._quick_lists: tuple = ()  # the relay and recipient lists as step codes
        self._quick_mynetworks_first = False  # the first of them starts with permit_mynetworks
        self._quick_after_first: tuple = ()  # the lists after the first
        self.quick_rcpt = self._quick_rcpt if self._quick_rcpt_applies() else None
        self._networks_memo = self.mynetworks.memo
        #: address.silent_classes(self), made at the first RCPT that needs it
        self._quick_silent: frozenset | bool | None = None

    # -- construction helpers ----------------------------------------------------------

    @staticmethod
    def _load_modules() -> None:
        """Import the restriction modules (they register their names)."""
        from fastpost.daemons.smtpd.checks import (  # noqa: F401
            access, address, dnsaccess, dnsbl, generic, hostname, policy_service, relay,
            verify,
        )

    def open_table(self, spec: str) -> maps.MapList:
        """Open (once) the table of a check_*_access restriction."""
        ml = self._tables.get(spec)
        if ml is None:
            ml = self._tables[spec] = maps.MapList(spec, [maps.open_map(spec, self.config)])
        return ml

    def class_steps(self, cname: str) -> list:
        steps = self._class_steps.get(cname)
        if steps is None:
            # Placeholder first: a class that names itself recurses at run time,
            # where the recursion limit stops it (as in Postfix).
            self._class_steps[cname] = []
            steps = self._class_steps[cname] = compile_list(self._class_words[cname], self, cname)
        return steps

    def value_steps(self, value: str, table: str) -> list:
        """Compile (once) an access-table result that is a restriction list."""
        key = (value, table)
        steps = self._value_lists.get(key)
        if steps is None:
            from fastpost.daemons.smtpd.checks.lists import split_words

            steps = compile_list(split_words(value), self, "", value_of=table)
            if len(self._value_lists) < 10000:
                self._value_lists[key] = steps
        return steps

    @property
    def dns(self):
        if self._dns is None:
            from fastpost.mail.dns import DnsClient

            self._dns = DnsClient.from_config(self.config)
        return self._dns

    def _permit_logging(self, cfg):
        names, tables = set(), []
        for item in cfg.get_list("smtpd_log_access_permit_actions"):
            if ":" in item and not item.startswith("["):
                tables.append(maps.open_map(item, cfg))
            else:
                names.add(item.lower())
        return names, tables

    def log_permit(self, action: str) -> bool:
        if not self._permit_names and not self._permit_tables:
            return False
        if action.lower() in self._permit_names:
            return True
        for t in self._permit_tables:
            try:
                if t.get(action) is not None:
                    return True
            except maps.MapRetry:
                return False
        return False

    def _quick_rcpt_applies(self) -> bool:
        """True when the RCPT stage has a shape _quick_rcpt knows (and sets
        ``_quick_lists``): smtpd_delay_reject with empty client, helo and sender lists
        (and no reject_unlisted_sender), so that the remembered defer_if_permit of
        those lists is always None; relay and recipient lists made only of the steps
        in _quick_codes; mynetworks without tables; permits not logged."""
        plan = self._plans["RCPT"][0]
        if plan[0] is not _no_lists_phase or plan[-2:] != (_rcpt_dip_phase, _unlisted_phase):
            return False
        codes = tuple(self._quick_codes(self.lists[kind]) for kind in ("relay", "recipient")
                      if self.lists[kind])
        if None in codes or self.mynetworks.memo is None or self.logs_permits:
            return False
        self._quick_lists = codes
        self._quick_mynetworks_first = bool(codes) and codes[0][:1] == (_Q_MYNETWORKS,)
        self._quick_after_first = codes[1:]
        return True

    @staticmethod
    def _quick_codes(steps):
        """A list as _quick_rcpt's step codes, or None when a step is not one of them."""
        from fastpost.daemons.smtpd.checks import generic, relay

        known = {generic.permit_mynetworks: _Q_MYNETWORKS,
                 generic.permit_sasl_authenticated: _Q_SASL,
                 relay.reject_unauth_destination: _Q_UNAUTH,
                 relay.defer_unauth_destination: _Q_UNAUTH,
                 relay.permit_auth_destination: _Q_PERMIT_AUTH}
        codes = tuple(known.get(step.fn) for step in steps)
        return None if None in codes else codes

    def _quick_rcpt(self, client, envelope, recipient) -> bool:
        """RCPT's check without an Eval when its answer is None (permit): True then,
        False when it cannot tell (the session then asks check(), which decides).

        Only built for the RCPT plans of _quick_rcpt_applies, and only answers True
        where check() goes through the same steps without a side effect and ends
        with None. In the relay and recipient lists, as run_list would: a client in
        mynetworks (permit_mynetworks) or logged in with SASL on
        (permit_sasl_authenticated) ends the list with OK, nothing logged; a
        recipient we host or relay for passes reject_/defer_unauth_destination and
        ends the list at permit_auth_destination. Then the defer_if_permit phase
        finds nothing (no client/helo/sender list can set one, and these steps set
        none), and the implicit reject_unlisted_recipient finds the recipient in a
        table or has no table to ask (check_rcpt_maps, answered inline). Anything
        else - a recipient we would refuse to relay for, an unknown recipient, a
        table that fails, a classifier or table that would wait - is check()'s.
        (After DISCARD check() answers None at once: either answer is right there.)
        """
        if not self.sync_first or not recipient:
            return False
        lists = self._quick_lists
        if self._quick_mynetworks_first:
            # The common case first, without the walk: a client in mynetworks ends the
            # first list at its first step.
            addr = client.addr
            hit = self._networks_memo.get(("", addr))
            if hit is None:
                hit = self.mynetworks.match("", addr)
            if hit:
                lists = self._quick_after_first
        for codes in lists:
            for code in codes:
                if code == _Q_MYNETWORKS:
                    addr = client.addr
                    hit = self._networks_memo.get(("", addr))  # (match() without the call)
                    if hit is None:
                        hit = self.mynetworks.match("", addr)
                    if hit:
                        break
                elif code == _Q_SASL:
                    if client.sasl_username is not None and self.settings.sasl_enable:
                        break
                else:
                    if not self.classify_inline:
                        return False
                    ac = self.address_class
                    try:
                        ok = ac.authorized_class(ac.classify(recipient, client.server_addr))
                    except maps.MapRetry:
                        return False
                    if ok:
                        if code == _Q_PERMIT_AUTH:
                            break
                    elif code == _Q_UNAUTH:
                        return False
        if not self.settings.reject_unlisted_recipient:
            return True
        silent = self._quick_silent
        if silent is None:
            silent = self._quick_silent = self._address_checks.silent_classes(self)
        if silent is False:
            return False  # the classifier or a table would wait
        try:
            klass = self.address_class.classify(recipient, client.server_addr).klass
        except maps.MapRetry:
            return False
        if klass in silent:
            return True
        return self._address_checks.rcpt_maps_pass(self, recipient, client.server_addr)

    # -- the Policy interface ------------------------------------------------------------

    def check(self, request: PolicyRequest):
        stage = request.stage
        if stage in self.idle_stages:
            return None
        entry = self._plans.get(stage)
        if entry is None:
            return None
        plan, discard_skips = entry
        if discard_skips:
            env = request.envelope
            if env is not None and env.discard:
                return None  # after DISCARD, later checks of the transaction are skipped
        ev = Eval(self, request)
        if not self.sync_first:
            return maybe_async.start(self._run_rest(ev, plan, 0, None))
        # The sync loop: each phase returns None/OK/DUNNO, or an awaitable when it
        # has to wait; from that phase on, _run_rest continues as a coroutine.
        try:
            i = 0
            for phase in plan:
                r = phase(ev)
                if r is not None and r.__class__ is not int:
                    return maybe_async.start(self._run_rest(ev, plan, i, r))
                i += 1
            if ev.open_list:
                _close_list(ev)
            return None
        except Rejected as rej:
            return self._refused(ev, rej)
        except maps.MapRetry as exc:
            return self._map_failed(ev, exc)
        except BaseException:
            _close_list(ev)
            raise

    async def _run_rest(self, ev: Eval, plan: tuple, i: int, waiting):
        """The phases of ``plan`` from ``i`` as a coroutine; ``waiting`` is phase i's
        awaitable (None: phase i is still to run)."""
        try:
            if waiting is not None:
                await waiting
                i += 1
            for phase in plan[i:]:
                r = phase(ev)
                if r is not None and r.__class__ is not int:
                    await r
            _close_list(ev)
            return None
        except Rejected as rej:
            return self._refused(ev, rej)
        except maps.MapRetry as exc:
            return self._map_failed(ev, exc)
        except BaseException:
            _close_list(ev)
            raise

    @staticmethod
    def _refused(ev: Eval, rej: Rejected) -> Decision:
        _close_list(ev)
        return Decision(rej.reply, logged=True, hangup=rej.hangup)

    @staticmethod
    def _map_failed(ev: Eval, exc: maps.MapRetry) -> Decision | None:
        """A table failed outside an access check: 451 4.3.5, logged."""
        _close_list(ev)
        log.warn("%s", exc)
        try:
            ev.warn_if_reject = 0
            ev.server_error()
        except Rejected as rej:
            return Decision(rej.reply, logged=True)
        return None

    def _make_plans(self) -> dict:
        """stage -> (its phases, whether DISCARD earlier in the transaction skips it)."""
        lists = self.lists
        # An empty list does nothing but leave no defer_if_permit and reset
        # warn_if_reject/defer_if_reject, which every later phase resets again before
        # it could matter: empty lists get no phase (the client, helo and sender ones
        # one phase that clears their remembered defer_if_permit).
        tail = []
        if lists["relay"]:
            tail.append(_relay_phase)
        if lists["recipient"]:
            tail.append(_recipient_phase)
        tail += [_rcpt_dip_phase, _unlisted_phase]
        if self.settings.delay_reject:
            if (lists["client"] or lists["helo"] or lists["sender"]
                    or self.settings.reject_unlisted_sender):
                rcpt = (_client_phase, _helo_phase, _sender_phase, _sender_maps_phase,
                        _rcpt_start_phase, *tail)
            else:
                rcpt = (_no_lists_phase, *tail)
            etrn = (_client_phase, _helo_phase, _etrn_phase, _dip_phase)
        else:
            rcpt = (_rcpt_start_phase, *tail)
            etrn = (_etrn_phase, _dip_phase)
        return {
            "RCPT": (rcpt, True), "VRFY": (rcpt, True),
            "MAIL": ((_sender_phase, _sender_maps_phase), False),
            "EHLO": ((_helo_phase,), False), "HELO": ((_helo_phase,), False),
            "CONNECT": ((_client_phase,), False), "XCLIENT": ((_client_phase,), False),
            "DATA": ((_data_phase, _dip_phase), True),
            "BDAT": ((_data_phase, _dip_phase), True),
            "END-OF-MESSAGE": ((_eod_phase, _dip_phase), True),
            "ETRN": (etrn, False),
        }


# -- the phases of the stages ------------------------------------------------------------
#
# Each phase takes the Eval and returns None, OK or DUNNO, or an awaitable of one (a step
# that has to wait), or raises Rejected. The client, helo and sender lists remember their
# defer_if_permit in the session when they end, also when they end by a refusal
# (ev.open_list says which list is open; _close_list stores it).

_OPEN_CLIENT, _OPEN_HELO, _OPEN_SENDER = 1, 2, 3

#: The steps RestrictionPolicy._quick_rcpt runs itself: permit_mynetworks,
#: permit_sasl_authenticated, reject_/defer_unauth_destination, permit_auth_destination.
_Q_MYNETWORKS, _Q_SASL, _Q_UNAUTH, _Q_PERMIT_AUTH = 1, 2, 3, 4


def _close_list(ev: Eval) -> None:
    k = ev.open_list
    if k:
        st = ev.session
        if k == _OPEN_CLIENT:
            st.dip_client = ev.defer_if_permit
        elif k == _OPEN_HELO:
            st.dip_helo = ev.defer_if_permit
        else:
            st.dip_sender = ev.defer_if_permit
        ev.open_list = 0


def _client_phase(ev: Eval):
    ev.defer_if_permit = None
    ev.open_list = _OPEN_CLIENT
    return ev.top_list("client", ev.client.text, rp.CLIENT)


def _helo_phase(ev: Eval):
    if ev.open_list:
        _close_list(ev)
    ev.defer_if_permit = None
    ev.open_list = _OPEN_HELO
    if ev.helo is not None:
        return ev.top_list("helo", ev.helo, rp.HELO)
    return None


def _sender_phase(ev: Eval):
    if ev.open_list:
        _close_list(ev)
    ev.defer_if_permit = None
    ev.open_list = _OPEN_SENDER
    if ev.sender is not None:
        return ev.top_list("sender", ev.sender, rp.SENDER)
    return None


def _sender_maps_phase(ev: Eval):
    """The implicit reject_unlisted_sender, inside the sender list's bracket."""
    if (ev.sender is not None and ev.settings.reject_unlisted_sender
            and not ev.sender_maps_checked):
        return ev.engine._address_checks.check_sender_maps(ev, ev.sender)
    return None


def _no_lists_phase(ev: Eval):
    """_client_phase to _rcpt_start_phase when the three lists are empty."""
    st = ev.session
    st.dip_client = st.dip_helo = st.dip_sender = None
    ev.defer_if_permit = None
    return None


def _rcpt_start_phase(ev: Eval):
    if ev.open_list:
        _close_list(ev)
    st = ev.session
    ev.defer_if_permit = st.dip_client or st.dip_helo or st.dip_sender
    return None


def _relay_phase(ev: Eval):
    return ev.top_list("relay", ev.recipient or "", rp.RECIPIENT)


def _recipient_phase(ev: Eval):
    return ev.top_list("recipient", ev.recipient or "", rp.RECIPIENT)


def _unlisted_phase(ev: Eval):
    if ev.settings.reject_unlisted_recipient and not ev.rcpt_maps_checked:
        ev.warn_if_reject = 0
        ev.defer_if_reject = None
        ev.rcpt_maps_checked = True  # (address.check_recipient_maps without the call)
        return ev.engine._address_checks.rcpt_maps(ev, ev.recipient or "")
    return None


def _data_phase(ev: Eval):
    ev.defer_if_permit = None
    return ev.top_list("data", "DATA", rp.DATA)


def _eod_phase(ev: Eval):
    ev.defer_if_permit = None
    return ev.top_list("end_of_data", "END-OF-MESSAGE", rp.EOD)


def _etrn_phase(ev: Eval):
    if ev.open_list:
        _close_list(ev)
    ev.defer_if_permit = None
    return ev.top_list("etrn", ev.req.etrn_domain or "", rp.ETRN)


def _dip_phase(ev: Eval):
    """The end of a data, end-of-data or ETRN check: a remembered defer_if_permit."""
    if ev.defer_if_permit is not None:
        ev.warn_if_reject = 0
        ev.defer_if_reject = None
        ev.reject(*ev.defer_if_permit)
    return None


# In the RCPT stage the same step comes before the implicit unlisted-recipient check, as
# Postfix 3.7 orders it (`defer_if_permit` then an unlisted recipient: 450 4.7.0 ...
# defer_if_permit requested, not 550 User unknown; the same for
# reject_unverified_recipient's deferrals: tests/verify).
_rcpt_dip_phase = _dip_phase


def _sleep(seconds: float):
    return asyncio.sleep(seconds)


def check_config(config) -> None:
    """Check what makes Postfix's smtpd refuse to start, without opening any table:
    every class of smtpd_restriction_classes has a definition, and the relay rule
    holds (lists.check_relay_rule). Raises ConfigError; ``fastpost check`` and
    ``fastpost start`` call it for every smtpd service of master.cf (with its -o
    overrides), and RestrictionPolicy does the same when a server starts."""
    classes: dict[str, list[str]] = {}
    for cname in config.get_list("smtpd_restriction_classes"):
        words = config.get_list(cname)
        if not words:
            raise ConfigError(f"restriction class `{cname}' needs a definition")
        classes[cname] = words
    check_relay_rule(config.get_list("smtpd_relay_restrictions"),
                     config.get_list("smtpd_recipient_restrictions"), classes)
