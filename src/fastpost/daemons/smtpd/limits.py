"""smtpd's per-client event limits, counted by the anvil service.

Postfix counterpart: the anvil_clnt calls in src/smtpd/smtpd.c (connect, mail_cmd,
rcpt_cmd, the STARTTLS and AUTH commands) and their replies.

The session asks at five points; each call returns None (nothing to check: no limit
set, or an exempt client) or an awaitable of a Reply (refuse) or None (go on):

    limits.connect(client)     -> awaitable of (Reply | None, ident counted | None)
                               421 4.7.0 host Error: too many connections from addr
    limits.event("message", client)     450 4.7.1 Error: too much mail from addr
    limits.event("recipient", client)   450 4.7.1 Error: too many recipients from addr
    limits.event("newtls", client)      454 4.7.0 Error: too many new TLS sessions from addr
    limits.event("auth", client)        450 4.7.1 Error: too many AUTH commands from addr
    limits.disconnect(ident, loop)   (the ident connect() counted; nothing to wait for)
    limits.tls_established(client, resumed)   counts a new (not resumed) TLS session

Each refusal logs Postfix's warning, e.g. ``warning: Connection rate limit exceeded:
4 from name[addr] for service smtp``. The new-TLS check looks at the rate before the
handshake (newtls_report) and counts after it, as Postfix does.

Parameters: smtpd_client_connection_count_limit, smtpd_client_connection_rate_limit,
smtpd_client_message_rate_limit, smtpd_client_recipient_rate_limit,
smtpd_client_new_tls_session_rate_limit, smtpd_client_auth_rate_limit (0: no limit),
smtpd_client_event_limit_exceptions (through the service's exempt_from_limits),
queue_directory, ipc_timeout.

Failures: anvil unreachable means no limits (anvil_clnt logs the warning), as in
Postfix. The connection count limit is also enforced per worker by SmtpdService,
without anvil.
"""

from __future__ import annotations

from fastpost.smtp.replies import Reply
from fastpost.util import log

__all__ = ["ClientLimits"]

#: event -> (parameter, warning text, reply code, enhanced code, reply text)
EVENTS = {
    "message": ("smtpd_client_message_rate_limit", "Message delivery request rate limit",
                450, "4.7.1", "Error: too much mail from {addr}"),
    "recipient": ("smtpd_client_recipient_rate_limit", "Recipient address rate limit",
                  450, "4.7.1", "Error: too many recipients from {addr}"),
    "newtls": ("smtpd_client_new_tls_session_rate_limit", "New TLS session rate limit",
               454, "4.7.0", "Error: too many new TLS sessions from {addr}"),
    "auth": ("smtpd_client_auth_rate_limit", "AUTH command rate limit",
             450, "4.7.1", "Error: too many AUTH commands from {addr}"),
}


class ClientLimits:
    """The limits of one smtpd service (module docstring)."""

    def __init__(self, limits: dict[str, int], *, anvil, service_name: str, hostname: str,
                 exempt=None):
        self.limits = limits  # "count", "connect", "message", ... -> limit (0: none)
        self.anvil = anvil
        self.service_name = service_name
        self.hostname = hostname
        self.exempt = exempt  # client -> bool

    @classmethod
    def from_config(cls, config, *, service_name: str, hostname: str, exempt=None,
                    queue_directory: str | None = None):
        """queue_directory: "." in a worker (it runs there, maybe chrooted)."""
        from fastpost.mail.anvil_clnt import AnvilClient

        limits = {"count": config.get_int("smtpd_client_connection_count_limit"),
                  "connect": config.get_int("smtpd_client_connection_rate_limit")}
        for event, (param, *_rest) in EVENTS.items():
            limits[event] = config.get_int(param)
        anvil = AnvilClient(queue_directory or config.get("queue_directory"),
                            timeout=float(config.get_time("ipc_timeout")))
        return cls(limits, anvil=anvil, service_name=service_name, hostname=hostname,
                   exempt=exempt)

    @property
    def active(self) -> bool:
        return any(self.limits.values())

    def _ident(self, client) -> str:
        return f"{self.service_name}:{client.addr}"

    def _exempt(self, client) -> bool:
        return self.exempt is not None and self.exempt(client)

    def connect(self, client):
        if not (self.limits["count"] or self.limits["connect"]) or self._exempt(client):
            return None
        return self._connect(client)

    async def _connect(self, client):
        ident = self._ident(client)
        got = await self.anvil.connect(ident)
        if got is None:
            return None, None
        count, rate = got
        limit = self.limits["count"]
        if limit and count > limit:
            log.warn("Connection concurrency limit exceeded: %d from %s for service %s",
                     count, client.text, self.service_name)
            return Reply(421, f"{self.hostname} Error: too many connections from {client.addr}",
                         "4.7.0"), ident
        limit = self.limits["connect"]
        if limit and rate > limit:
            log.warn("Connection rate limit exceeded: %d from %s for service %s",
                     rate, client.text, self.service_name)
            return Reply(421, f"{self.hostname} Error: too many connections from {client.addr}",
                         "4.7.0"), ident
        return None, ident

    def disconnect(self, ident: str, loop) -> None:
        """Tell anvil that a connection connect() counted is gone."""
        loop.create_task(self.anvil.disconnect(ident))

    def event(self, what: str, client):
        limit = self.limits[what]
        if not limit or self._exempt(client):
            return None
        return self._event(what, limit, client)

    async def _event(self, what: str, limit: int, client):
        # The TLS rate is looked at before the handshake and counted after it.
        rate = await self.anvil.event("newtls_report" if what == "newtls" else what,
                                      self._ident(client))
        if rate is None:
            return None
        if what == "newtls":
            if rate < limit:
                return None
            rate += 1
        elif rate <= limit:
            return None
        _param, warning, code, enhanced, text = EVENTS[what]
        log.warn("%s exceeded: %d from %s for service %s", warning, rate, client.text,
                 self.service_name)
        return Reply(code, text.format(addr=client.addr), enhanced)

    def tls_established(self, client, resumed: bool, loop) -> None:
        if self.limits["newtls"] and not resumed and not self._exempt(client):
            loop.create_task(self.anvil.event("newtls", self._ident(client)))

    def close(self) -> None:
        self.anvil.close()
