"""SmtpdService: what one smtpd worker process shares between its sessions.

Postfix counterpart: the globals and the service callback of src/smtpd/smtpd.c
main() (smtpd_service, pre_jail_init, post_jail_init) on multi_server rather than
single_server: one process, one event loop, many sessions.

    service = SmtpdService(settings, policy=..., sink=..., tls=..., loop=loop)
    protocol = service.protocol()           # the protocol factory for create_server
    server = await service.listen(host, port)   # or the multi skeleton's listener

Wiring into the master's multi skeleton is one call: pass ``lambda ctx:
service.protocol()`` as the service, build the SmtpdService (and its TLS context)
in pre_init so that forked workers share it.

It owns: the settings, the Policy, the MessageSink, the TLS context, the optional
SASL authenticator, the anvil-backed client limits (limits.py; the daemon sets them,
test servers may), the reverse-lookup cache, one 64 KiB read buffer shared by every
session (BufferedProtocol reads are served one at a time, so idle sessions hold no
read buffer at all), per-client connection counts (smtpd_client_connection_count_limit
within this worker; the anvil service will make the count global), the free-space
check of queue_minfree, and the set of live sessions.

Parameters: as fastpost.daemons.smtpd.settings.
Diagnostics: warnings (logged once at construction) for settings fastpost does not
act on yet.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time

from fastpost.daemons.smtpd.peer import PeerResolver
from fastpost.daemons.smtpd.policy import Policy
from fastpost.daemons.smtpd.session import TLS_SHUTDOWN_TIMEOUT, SmtpdProtocol
from fastpost.daemons.smtpd.sessioncore import ServiceFields
from fastpost.daemons.smtpd.settings import SmtpdSettings
from fastpost.daemons.smtpd.tls import ServerTls
from fastpost.smtp import replies
from fastpost.util import log

__all__ = ["SmtpdService"]

READ_BUFFER_SIZE = 65536


def _authenticator(config):
    """The SASL back-end smtpd_sasl_type names (None, with a warning, if unsupported)."""
    kind = config.get("smtpd_sasl_type").strip().lower()
    if kind == "dovecot":
        from fastpost.daemons.smtpd.sasl_dovecot import DovecotAuthenticator

        return DovecotAuthenticator.from_config(config)
    log.warn("smtpd_sasl_type = %s is not supported (only dovecot): AUTH is not offered", kind)
    return None


class SmtpdService(ServiceFields):
    """Per-process smtpd state shared by the sessions (module docstring).

    (ServiceFields, its base, holds the fields the compiled session core reads at
    every step as C members: sessioncore.py; the others are this object's own.)"""

    def __init__(self, settings: SmtpdSettings, *, sink, policy: Policy | None = None,
                 tls: ServerTls | None = None, authenticator=None, resolver=None,
                 loop: asyncio.AbstractEventLoop | None = None, service_name: str = "smtp",
                 exempt=None):
        self.settings = settings
        self.sink = sink
        self.policy = policy if policy is not None else Policy()
        self.tls = tls if tls is not None else ServerTls(None, "none")
        self.authenticator = authenticator
        #: The fast-flush client for ETRN (AsyncFlushClient), None: no domain is eligible.
        self.flush = None
        self.resolver = resolver if resolver is not None else PeerResolver()
        self._loop = loop
        self.service_name = service_name
        self.read_buffer = bytearray(READ_BUFFER_SIZE)
        self.read_view = memoryview(self.read_buffer)
        self.sessions: set[SmtpdProtocol] = set()
        #: Connections per client address in this worker (smtpd_client_connection_
        #: count_limit): counted by the session's greeting, forgotten at its end.
        self.client_counts: dict[str, int] = {}
        self._exempt = exempt  # HostList for smtpd_client_event_limit_exceptions
        #: ClientLimits (anvil) or None: the smtpd_client_*_limit checks.
        self.limits = None
        self._options: dict = {}
        #: The core's options at the greeting by (name, addr, no TLS), or None when
        #: they may change for a client (a host list with a table): the session's
        #: _c_greet_options() (which also passes it by while there is an authenticator).
        self.greet_options: dict | None = {} if all(
            hosts.fixed for hosts in (settings.xclient_hosts, settings.xforward_hosts,
                                      settings.bare_lf_exclusions)) else None
        self._ehlo: dict = {}
        #: The EHLO replies without AUTH by flags (starttls 1, xclient 2, xforward 4):
        #: the session's _c_ehlo_reply() reads it before calling ehlo_reply().
        self.ehlo_plain: dict = {}
        self.helo_reply = replies.helo(settings.hostname)
        self.greeting = replies.greeting(settings.banner)
        self._space_checked = 0.0
        self._space_free = None
        #: enough_space(None)'s answer is True until this time.monotonic() (the
        #: last statvfs + 1 s, when its free space was enough); -inf: ask again.
        #: The compiled session core reads it to skip the call (MAIL without SIZE=).
        self.space_ok_until = float("-inf")
        #: Called with each session when it ends (tests use it to wait).
        self.on_session_end = None
        #: The newest session (tests and transcripts follow it).
        self.last_session = None
        self.deadlines = None  # the sessions' timeout checks (the session core's _Deadlines)
        #: Called (no arguments) from each session's connection_made and
        #: connection_lost: the multi skeleton's client count (self_counting).
        self.on_connect = None
        self.on_disconnect = None
        #: protocol(): a new session (the protocol factory). The class itself, bound
        #: to this service: no Python frame per connection (the session's __init__
        #: sets last_session).
        self.protocol = functools.partial(SmtpdProtocol, self)
        for text in settings.unsupported:
            log.warn("%s is not supported yet and is ignored", text)
        for text in getattr(self.policy, "warnings", []):
            log.warn("%s", text)
        if self.tls.problem:
            log.warn("%s", self.tls.problem)

    @classmethod
    def from_config(cls, config, *, sink, policy: Policy | None = None, authenticator=None,
                    loop=None, service_name: str = "smtp") -> "SmtpdService":
        """Build the service from main.cf: settings, the restriction lists
        (checks.RestrictionPolicy), TLS context."""
        from fastpost.daemons.smtpd.netmatch import HostList, parent_matching

        settings = SmtpdSettings.from_config(config)
        tls = ServerTls.from_config(config, settings.tls_security_level)
        if policy is None:
            from fastpost.daemons.smtpd.checks import RestrictionPolicy

            policy = RestrictionPolicy(config)
        if authenticator is None and settings.sasl_enable:
            authenticator = _authenticator(config)
        exempt = HostList(config.get_list("smtpd_client_event_limit_exceptions"),
                          parent=parent_matching("mynetworks",
                                                 config.get("parent_domain_matches_subdomains")),
                          cfg=config)
        return cls(settings, sink=sink, policy=policy, tls=tls, authenticator=authenticator,
                   loop=loop, service_name=service_name, exempt=exempt)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the sessions run on (the running one unless one was given)."""
        return self._loop if self._loop is not None else asyncio.get_running_loop()

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- sessions -----------------------------------------------------------------

    def ehlo_reply(self, *, starttls: bool, auth: bool, xclient: bool, xforward: bool,
                   tls: bool = False):
        """Return the EHLO reply for a kind of client (built once, then shared)."""
        mechs = ""
        if auth and self.authenticator is not None:
            mechs = " ".join(self.authenticator.offered(tls))
        key = (starttls, mechs, xclient, xforward)
        reply = self._ehlo.get(key)
        if reply is None:
            reply = self._ehlo[key] = replies.ehlo(self.settings.hostname, self.settings.ehlo_keywords(
                starttls=starttls, auth_mechanisms=mechs, xclient=xclient, xforward=xforward))
        return reply

    def auth_offered(self, tls: bool) -> bool:
        """Whether a client (with or without TLS) may use AUTH now.

        smtpd_sasl_auth_enable, an authenticator, smtpd_tls_auth_only, and at least
        one mechanism that the security options allow.
        """
        s = self.settings
        if self.authenticator is None or not s.sasl_enable:
            return False
        if s.tls_auth_only and not tls:
            return False
        return bool(self.authenticator.offered(tls))

    def core_options(self, **kind):
        """Return the protocol core's options for a kind of client (shared, cached)."""
        key = tuple(sorted(kind.items()))
        opts = self._options.get(key)
        if opts is None:
            opts = self._options[key] = self.settings.server_options(**kind)
        return opts

    def session_options(self, xclient: bool, xforward: bool, bare_lf_excluded: bool,
                        starttls: bool, auth: bool):
        """core_options() for a session's five flags, without building a key per call."""
        key = (xclient, xforward, bare_lf_excluded, starttls, auth)
        opts = self._options.get(key)
        if opts is None:
            opts = self._options[key] = self.core_options(
                xclient=xclient, xforward=xforward, bare_lf_excluded=bare_lf_excluded,
                starttls=starttls, auth=auth)
        return opts

    async def listen(self, host: str = "127.0.0.1", port: int = 0, *, sock=None,
                     backlog: int = 1024):
        """Start listening (for tests and the standalone runner); return the server."""
        ssl_ctx = self.tls.context if self.settings.wrappermode else None
        tls_kw = {}
        if ssl_ctx is not None:
            tls_kw = {"ssl": ssl_ctx, "ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT,
                      "ssl_handshake_timeout": self.settings.starttls_timeout}
        if sock is not None:
            return await self.loop.create_server(self.protocol, sock=sock, backlog=backlog,
                                                 **tls_kw)
        return await self.loop.create_server(self.protocol, host, port, backlog=backlog,
                                             reuse_address=True, **tls_kw)

    def exempt_from_limits(self, client) -> bool:
        """True for clients in smtpd_client_event_limit_exceptions."""
        try:
            return self._exempt is not None and self._exempt.match(client.name, client.addr)
        except Exception as exc:  # noqa: BLE001 - a table that cannot answer: not exempt
            log.warn("smtpd_client_event_limit_exceptions lookup failed: %s", exc)
            return False

    def enough_space(self, size: int | None) -> bool:
        """queue_minfree: True when the queue file system can take a message.

        Postfix's rule: free space must be at least queue_minfree and at least
        1.5 x message_size_limit, and more than the SIZE= the client announced.
        statvfs is cheap but is still a system call: the free space is kept a second
        (of time.monotonic()). While the kept free space is enough for a message
        without SIZE=, space_ok_until says until when (the session core's MAIL then
        answers True without calling here: the same answer, the same statvfs times).
        """
        s = self.settings
        now = time.monotonic()
        refresh = self._space_free is None or now - self._space_checked > 1.0
        if refresh:
            try:
                st = os.statvfs(s.queue_directory)
                self._space_free = st.f_bavail * st.f_frsize
            except OSError:
                self._space_free = -1  # no queue directory (tests): do not refuse
            self._space_checked = now
        free = self._space_free
        need = max(s.queue_minfree, int(1.5 * s.message_size_limit) if s.message_size_limit else 0)
        if refresh:
            self.space_ok_until = now + 1.0 if free < 0 or free >= need else float("-inf")
        if free < 0:
            return True
        if size is not None:
            need = max(need, size + s.queue_minfree)
        return free >= need

    async def close(self, grace: float = 0.0) -> None:
        """Say goodbye to every session (421) and close them."""
        for session in list(self.sessions):
            conn = session.conn
            if conn is not None and not conn.closed and session.transport is not None:
                try:
                    session.transport.write(conn.send(replies.shutting_down(self.settings.hostname),
                                                      close=True))
                except Exception:  # noqa: BLE001 - closing anyway
                    pass
            if session.transport is not None:
                session.transport.close()
        if grace:
            await asyncio.sleep(grace)
        closer = getattr(self.authenticator, "close", None)
        if closer is not None:
            await closer()
        if self.limits is not None:
            self.limits.close()
