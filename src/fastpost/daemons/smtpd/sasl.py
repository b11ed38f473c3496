"""The SASL seam of smtpd's AUTH command, and a small built-in authenticator.

Postfix counterpart: src/xsasl/ (the server plug-in interface Postfix uses for its
Cyrus and Dovecot back-ends) and smtpd_sasl_proto.c.

    auth = Authenticator()          # the interface
    auth.mechanisms                 -> ["PLAIN", "LOGIN"]   (announced after EHLO)
    step = auth.start(mechanism, initial_response_or_None, client)
    step = auth.step(state, response)
    step is ("challenge", bytes, state) | ("ok", username, None)
          | ("fail", Reply | None, detail)   detail: None or the text after "failed: "
             (or an awaitable of one: the session stops reading meanwhile)
    auth.offered(tls) -> mechanisms for a client with/without TLS (security options)
    auth.ready()      -> None or an awaitable (the session waits before its greeting)

The protocol framing (334 challenges, base64, "*" to cancel, the response length
limit) is the protocol core's; this seam only judges credentials. The Dovecot
back-end (smtpd_sasl_type = dovecot) is sasl_dovecot.py; Cyrus is not supported.
StaticAuthenticator checks a fixed user table and speaks PLAIN (RFC 4616) and LOGIN.

Parameters: smtpd_sasl_auth_enable (AUTH is offered only with an authenticator).
Diagnostics: none; malformed client responses are ("fail", None).
"""

from __future__ import annotations

import hmac

__all__ = ["Authenticator", "StaticAuthenticator"]


class Authenticator:
    """Interface of SASL back-ends (module docstring)."""

    mechanisms: list[str] = []

    def offered(self, tls: bool) -> list[str]:
        """The mechanisms announced to a client with (or without) TLS."""
        return list(self.mechanisms)

    def ready(self):
        """None, or an awaitable the session waits for before its greeting (a
        back-end's first handshake, which tells it the mechanisms)."""
        return None

    def start(self, mechanism: str, initial: bytes | None, client):
        """Begin an exchange; return a step (module docstring)."""
        raise NotImplementedError

    def step(self, state, response: bytes):
        """Continue an exchange with the client's response; return a step."""
        raise NotImplementedError


class StaticAuthenticator(Authenticator):
    """PLAIN and LOGIN against a {username: password} table."""

    mechanisms = ["PLAIN", "LOGIN"]

    def __init__(self, users: dict[str, str]):
        self.users = dict(users)

    def _verify(self, user: str, password: str):
        expected = self.users.get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return ("ok", user, None)
        return ("fail", None, None)

    def start(self, mechanism: str, initial: bytes | None, client):
        if mechanism == "PLAIN":
            if initial is None:
                return ("challenge", b"", ("PLAIN",))
            return self._plain(initial)
        if mechanism == "LOGIN":
            if initial:
                return ("challenge", b"Password:", ("LOGIN", initial.decode("utf-8", "replace")))
            return ("challenge", b"Username:", ("LOGIN",))
        return ("fail", None, None)

    def _plain(self, data: bytes):
        parts = data.split(b"\0")
        if len(parts) != 3:
            return ("fail", None, None)
        _authz, user, password = (p.decode("utf-8", "replace") for p in parts)
        return self._verify(user, password)

    def step(self, state, response: bytes):
        if state[0] == "PLAIN":
            return self._plain(response)
        if len(state) == 1:
            return ("challenge", b"Password:", ("LOGIN", response.decode("utf-8", "replace")))
        return self._verify(state[1], response.decode("utf-8", "replace"))
