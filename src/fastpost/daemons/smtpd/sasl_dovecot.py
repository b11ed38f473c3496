"""SMTP AUTH through Dovecot's authentication service (smtpd_sasl_type = dovecot).

Postfix counterpart: src/xsasl/xsasl_dovecot_server.c (the client side of Dovecot's
auth protocol) and the AUTH policy of src/smtpd/smtpd_sasl_glue.c.

One smtpd worker keeps one connection to Dovecot's auth client socket and
multiplexes every session's exchange on it by request id; nothing blocks the loop.
The protocol (tab-separated lines, learned from Dovecot's documentation and by
talking to Dovecot 2.3 here):

    client: VERSION 1 2 / CPID <pid>
    server: VERSION 1 2 / MECH <name> [flags...]... / SPID / CUID / COOKIE / DONE
    client: AUTH <id> <mech> service=smtp nologin lip=.. rip=.. [secured] [resp=<b64>]
    server: OK <id> user=<name>          success
            CONT <id> <b64 challenge>    client answers CONT <id> <b64 response>
            FAIL <id> [user=..] [reason=..] [temp]

    auth = DovecotAuthenticator.from_config(config)
    auth.offered(tls)            -> ["PLAIN", "LOGIN"]  (after the security filter)
    await auth.ready()           the handshake (the session waits for it at EHLO)
    step = await auth.start(mechanism, initial, client)   (the sasl.py seam)

Parameters: smtpd_sasl_path (``private/auth`` style paths are relative to
queue_directory; ``inet:host:port`` is a TCP endpoint), smtpd_sasl_service (the
``service=`` field), smtpd_sasl_security_options and smtpd_sasl_tls_security_options
(noanonymous, noplaintext, noactive, nodictionary, forward_secrecy, mutual_auth
filter the mechanisms Dovecot lists by its flags), smtpd_timeout (how long to wait for
Dovecot's answer; connecting and the handshake get at most 10 s).

Failures, as Postfix words them: Dovecot's FAIL is ``535 5.7.8 Error: authentication
failed: <reason>`` (``(reason unavailable)`` when Dovecot gives none); FAIL with
``temp`` or Dovecot unreachable/closing is ``454 4.7.0 Temporary authentication
failure: <reason>``; a mechanism Dovecot did not list is 535 ``Invalid authentication
mechanism``. The session logs ``warning: name[addr]: SASL M authentication failed:
<reason>, sasl_username=<user>`` from the detail string of a fail step; connection
problems log ``warning: SASL: Connect to Dovecot auth socket 'PATH' failed: ...``.
Unlike Postfix's smtpd (which exits with ``fatal: no SASL authentication mechanisms``
when Dovecot is down at its first client), a fastpost worker serves many clients: it
offers no AUTH while it has never reached Dovecot, and retries at most once a second.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time

from fastpost.daemons.smtpd.sasl import Authenticator
from fastpost.smtp.replies import Reply
from fastpost.util import log

__all__ = ["DovecotAuthenticator", "mechanism_allowed", "SECURITY_OPTIONS"]

#: smtpd_sasl_security_options words -> the Dovecot MECH flag they exclude or require.
SECURITY_OPTIONS = {
    "noanonymous": ("exclude", "anonymous"),
    "noplaintext": ("exclude", "plaintext"),
    "noactive": ("exclude", "active"),
    "nodictionary": ("exclude", "dictionary"),
    "forward_secrecy": ("require", "forward-secrecy"),
    "mutual_auth": ("require", "mutual-auth"),
}

UNAVAILABLE = "(reason unavailable)"
RETRY_INTERVAL = 1.0  # seconds between connection attempts after a failure
#: Connecting and the handshake: a worker's first greeting waits for them, so they get
#: less time than an exchange (smtpd_timeout).
HANDSHAKE_TIMEOUT = 10.0
MAX_LINE = 65536


def mechanism_allowed(flags: set[str], options: list[str]) -> bool:
    """Whether a mechanism with Dovecot's ``flags`` passes the security options."""
    if "private" in flags:
        return False
    for word in options:
        rule = SECURITY_OPTIONS.get(word.lower())
        if rule is None:
            continue
        kind, flag = rule
        if (kind == "exclude") == (flag in flags):
            return False
    return True


def _temporary(reason: str, user: str | None):
    return ("fail", Reply(454, f"Temporary authentication failure: {reason}", "4.7.0"),
            f"{reason}, sasl_username={user if user is not None else '(unavailable)'}")


def _failed(reason: str, user: str | None):
    return ("fail", Reply(535, f"Error: authentication failed: {reason}", "5.7.8"),
            f"{reason}, sasl_username={user if user is not None else '(unavailable)'}")


def _escape(value: str) -> str:
    # Dovecot's tab-escaping for values (\001 is the escape character).
    return (value.replace("\x01", "\x011").replace("\t", "\x01t").replace("\r", "\x01r")
            .replace("\n", "\x01n"))


def _unescape(value: str) -> str:
    if "\x01" not in value:
        return value
    out, i = [], 0
    table = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n", "0": "\0"}
    while i < len(value):
        ch = value[i]
        if ch == "\x01" and i + 1 < len(value):
            out.append(table.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class DovecotAuthenticator(Authenticator):
    """The Dovecot auth client of one worker (module docstring)."""

    def __init__(self, path: str, *, queue_directory: str = ".", service: str = "smtp",
                 security_options: list[str] = ("noanonymous",),
                 tls_security_options: list[str] | None = None, timeout: float = 300.0):
        self.path = path  # a relative one is resolved when connecting (queue_relative)
        self.queue_directory = queue_directory
        self.service = service
        self.security_options = list(security_options)
        self.tls_security_options = (list(tls_security_options)
                                     if tls_security_options is not None
                                     else list(self.security_options))
        self.timeout = timeout
        #: Dovecot's mechanisms: name -> set of flags (from the last handshake).
        self.mechs: dict[str, set[str]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._handshake: asyncio.Future | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._failed_at = float("-inf")  # monotonic() counts from boot: never "just failed" at first
        self._read_task: asyncio.Task | None = None

    @classmethod
    def from_config(cls, config) -> "DovecotAuthenticator":
        """Build from main.cf (smtpd_sasl_path relative to queue_directory)."""
        path = config.get("smtpd_sasl_path").strip()
        return cls(path, queue_directory=config.get("queue_directory"), service=config.get("smtpd_sasl_service") or "smtp",
                   security_options=config.get_list("smtpd_sasl_security_options"),
                   tls_security_options=config.get_list("smtpd_sasl_tls_security_options"),
                   timeout=float(config.get_time("smtpd_timeout")))

    # -- the seam ---------------------------------------------------------------

    @property
    def mechanisms(self) -> list[str]:
        return self.offered(False)

    def offered(self, tls: bool) -> list[str]:
        """The mechanisms announced to a client (with or without TLS)."""
        options = self.tls_security_options if tls else self.security_options
        return [name for name, flags in self.mechs.items() if mechanism_allowed(flags, options)]

    def ready(self):
        """None when the mechanism list can be used now; else an awaitable handshake."""
        if self._writer is not None and self.mechs:
            return None
        if self._handshake is not None:
            return asyncio.shield(self._handshake)
        if self.mechs or time.monotonic() - self._failed_at < RETRY_INTERVAL:
            return None  # the known list (or none): AUTH itself reconnects
        return self._ensure()

    async def start(self, mechanism: str, initial: bytes | None, client):
        if mechanism not in self.offered(client.tls is not None):
            return _failed("Invalid authentication mechanism", None)
        try:
            await self._ensure()
        except (OSError, asyncio.TimeoutError, ConnectionError, ValueError):
            return _temporary(UNAVAILABLE, None)
        self._next_id = (self._next_id % 0x7FFFFFFF) + 1
        rid = self._next_id
        fields = [f"AUTH\t{rid}\t{mechanism}", f"service={_escape(self.service)}", "nologin"]
        if client.server_addr:
            fields.append(f"lip={client.server_addr}")
        if client.addr:
            fields.append(f"rip={client.addr}")
        if client.server_port:
            fields.append(f"lport={client.server_port}")
        if client.port:
            fields.append(f"rport={client.port}")
        if client.tls is not None:
            fields.append("secured")
        if initial is not None:
            fields.append("resp=" + base64.b64encode(initial).decode("ascii"))
        return await self._request(rid, "\t".join(fields) + "\n")

    async def step(self, state, response: bytes):
        rid = state
        line = f"CONT\t{rid}\t{base64.b64encode(response).decode('ascii')}\n"
        return await self._request(rid, line)

    # -- the connection -----------------------------------------------------------

    def _ensure(self) -> asyncio.Future:
        if self._writer is not None and not self._writer.is_closing():
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut
        if self._handshake is None:
            self._handshake = asyncio.ensure_future(self._connect())
            self._handshake.add_done_callback(self._handshake_done)
        return asyncio.shield(self._handshake)

    def _handshake_done(self, fut) -> None:
        self._handshake = None
        if not fut.cancelled() and fut.exception() is not None:
            self._failed_at = time.monotonic()
            fut.exception()  # retrieved: a failure is reported by the callers

    async def _connect(self) -> None:
        try:
            if self.path.startswith("inet:"):
                host, _, port = self.path[5:].rpartition(":")
                opening = asyncio.open_connection(host.strip("[]"), int(port), limit=MAX_LINE)
            else:
                from fastpost.mail.ipc import queue_relative

                opening = asyncio.open_unix_connection(
                    queue_relative(self.path, self.queue_directory), limit=MAX_LINE)
            hs_timeout = min(self.timeout, HANDSHAKE_TIMEOUT)
            reader, writer = await asyncio.wait_for(opening, hs_timeout)
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (
                str(exc) or type(exc).__name__)
            log.warn("SASL: Connect to Dovecot auth socket '%s' failed: %s", self.path, reason)
            raise
        try:
            writer.write(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
            mechs: dict[str, set[str]] = {}
            while True:
                line = await asyncio.wait_for(reader.readline(), hs_timeout)
                if not line.endswith(b"\n"):
                    raise ConnectionError("connection closed during the handshake")
                words = line.rstrip(b"\n").decode("utf-8", "replace").split("\t")
                if words[0] == "VERSION":
                    if len(words) < 2 or words[1] != "1":
                        raise ValueError(f"unsupported protocol version {words[1:]}")
                elif words[0] == "MECH" and len(words) >= 2:
                    mechs[words[1].upper()] = {w.lower() for w in words[2:]}
                elif words[0] == "DONE":
                    break
        except (OSError, ValueError, ConnectionError, asyncio.TimeoutError) as exc:
            log.warn("SASL: Dovecot auth socket '%s': handshake failed: %s", self.path,
                     str(exc) or type(exc).__name__)
            writer.close()
            raise
        self.mechs = mechs
        if not self.offered(False) and not self.offered(True):
            log.warn("SASL: Dovecot at '%s' offers no mechanism that the security "
                     "options allow", self.path)
        self._reader, self._writer = reader, writer
        self._read_task = asyncio.ensure_future(self._read_loop(reader, writer))

    async def _request(self, rid: int, line: str):
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._writer.write(line.encode("utf-8", "surrogateescape"))
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except asyncio.TimeoutError:
            log.warn("SASL: Dovecot auth socket '%s': no reply in %gs", self.path, self.timeout)
            return _temporary(UNAVAILABLE, None)
        except (ConnectionError, OSError, AttributeError):
            return _temporary(UNAVAILABLE, None)
        finally:
            self._pending.pop(rid, None)

    async def _read_loop(self, reader, writer) -> None:
        reason = "connection closed"
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    break
                self._dispatch(line.rstrip(b"\n").decode("utf-8", "surrogateescape"))
        except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
            reason = str(exc) or type(exc).__name__
        finally:
            if self._writer is writer:
                self._writer = self._reader = None
            writer.close()
            if self._pending:
                log.warn("SASL: Dovecot auth socket '%s': %s with %d requests pending",
                         self.path, reason, len(self._pending))
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_result(_temporary(UNAVAILABLE, None))

    def _dispatch(self, text: str) -> None:
        words = text.split("\t")
        if len(words) < 2 or not words[1].isdigit():
            return  # not for a request (e.g. a late handshake line)
        fut = self._pending.get(int(words[1]))
        if fut is None or fut.done():
            return
        kind = words[0]
        args: dict[str, str] = {}
        flags = set()
        for word in words[2:]:
            name, eq, value = word.partition("=")
            if eq:
                args[name] = _unescape(value)
            else:
                flags.add(name)
        if kind == "OK":
            fut.set_result(("ok", args.get("user", ""), None))
        elif kind == "CONT":
            data = words[2] if len(words) > 2 else ""
            try:
                challenge = base64.b64decode(data, validate=True)
            except ValueError:
                fut.set_result(_temporary("Invalid base64 data from the server", None))
                return
            fut.set_result(("challenge", challenge, int(words[1])))
        elif kind == "FAIL":
            reason = args.get("reason") or UNAVAILABLE
            user = args.get("user")
            fut.set_result(_temporary(reason, user) if "temp" in flags else _failed(reason, user))
        else:
            fut.set_result(_temporary(UNAVAILABLE, None))

    async def close(self) -> None:
        """Close the connection (the worker exits)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._read_task is not None:
            self._read_task.cancel()
            try:
                await self._read_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
            self._read_task = None
