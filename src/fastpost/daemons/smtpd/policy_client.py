"""The SMTPD policy delegation client: check_policy_service's side of the protocol.

Postfix counterpart: the policy client of src/smtpd/smtpd_check.c (check_policy_service)
on src/global/attr_clnt.c / src/util/auto_clnt.c (connection reuse and limits).

    action = await query("inet:127.0.0.1:10023", attrs, params)
    action = await query("{ unix:private/policy, timeout=10s, default_action=DUNNO }",
                         attrs, params)
    spec = parse_spec(text, params)        # PolicySpec: endpoint and the options
    spec.default_action                    # what the engine applies on PolicyUnavailable

The protocol (Postfix's SMTPD_POLICY_README): the client writes ``name=value`` lines and
an empty line; the server answers ``action=...`` (other attributes are ignored) and
an empty line. ``attrs`` is the request the restriction engine built (request=,
protocol_state=, ..., in Postfix's order); this module appends ``policy_context=``
(always, as Postfix 3.7 does) and returns the action text as the server wrote it.

Connections are reused per spec (one pool per spec text and event loop): a worker
serves many sessions at once, so a query takes an idle connection or opens another;
a connection is closed when idle longer than max_idle, older than max_ttl, or after
request_limit requests (0: no limit).

Parameters (each overridable per spec as ``{ spec, name=value, ... }``, Postfix 3.0's
form, where name drops the ``smtpd_policy_service_`` prefix):
smtpd_policy_service_timeout (connect, write and read of one attempt),
smtpd_policy_service_max_idle, smtpd_policy_service_max_ttl,
smtpd_policy_service_request_limit, smtpd_policy_service_try_limit,
smtpd_policy_service_retry_delay, smtpd_policy_service_default_action,
smtpd_policy_service_policy_context; queue_directory (a relative ``unix:`` path is
relative to it, e.g. ``unix:private/policy``).

Failures: each failed attempt logs ``warning: connect to SERVER: REASON`` or
``warning: read/write ... SERVER: REASON`` or ``warning: missing attribute action in
input from SERVER``; after try_limit attempts ``warning: problem talking to server
SERVER: REASON`` and PolicyUnavailable is raised (its ``default_action`` is the one
for this spec). A malformed spec is PolicySpecError (a configuration error; the
engine reports it as Postfix's 451 4.3.5 Server configuration error).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass

from fastpost.mail.config import parse_time, split_list, strip_braces
from fastpost.mail.ipc import queue_relative
from fastpost.util import log
from fastpost.util.log import printable

__all__ = ["query", "parse_spec", "PolicySpec", "PolicyUnavailable", "PolicySpecError",
           "close_all", "POLICY_PARAMS"]

PREFIX = "smtpd_policy_service_"
TIME_OPTIONS = ("timeout", "max_idle", "max_ttl", "retry_delay")
INT_OPTIONS = ("request_limit", "try_limit")
STR_OPTIONS = ("default_action", "policy_context")
MAX_REPLY = 65536  # bytes of one reply; more is a malformed answer
#: What ``params`` must hold (smtpd declares them, so the skeleton's ctx.p has them).
POLICY_PARAMS = ("queue_directory",) + tuple(
    PREFIX + name for name in TIME_OPTIONS + INT_OPTIONS + STR_OPTIONS)


class PolicyUnavailable(Exception):
    """The policy server could not be reached or answered malformed, after retries."""

    def __init__(self, message: str, default_action: str = ""):
        super().__init__(message)
        self.default_action = default_action


class PolicySpecError(ValueError):
    """A check_policy_service argument that cannot be used."""


@dataclass(frozen=True)
class PolicySpec:
    """One check_policy_service endpoint with its effective options."""

    text: str  # the spec as written (the pool key and the log name)
    kind: str  # "inet" or "unix"
    address: str  # host:port, or an absolute path
    timeout: float
    max_idle: float
    max_ttl: float
    request_limit: int
    try_limit: int
    retry_delay: float
    default_action: str
    policy_context: str

    @property
    def server(self) -> str:
        """How log lines name the server (Postfix: host:port, or the path)."""
        return self.address


def _param(params, name: str):
    typed = getattr(params, "typed", None)
    if typed is not None:
        return typed(name)
    try:
        return params[name]
    except KeyError:
        raise PolicySpecError(f"parameter {name} was not given to the policy client "
                              f"(declare POLICY_PARAMS)") from None


def _seconds(value, name: str) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    seconds = parse_time(str(value).strip(), "s")
    if seconds is None:
        raise PolicySpecError(f"bad time value for {name}: {value}")
    return float(seconds)


_spec_cache: dict[tuple, PolicySpec] = {}


def parse_spec(text: str, params) -> PolicySpec:
    """Parse ``inet:host:port``, ``unix:path`` or ``{ spec, name=value, ... }``."""
    # Keyed by the values used, not the mapping's identity (a reload brings new ones).
    key = (text, str(_param(params, "queue_directory"))) + tuple(
        str(_param(params, PREFIX + name)) for name in TIME_OPTIONS + INT_OPTIONS + STR_OPTIONS)
    cached = _spec_cache.get(key)
    if cached is not None:
        return cached
    body = text.strip()
    overrides: dict[str, str] = {}
    if body.startswith("{"):
        if not body.endswith("}"):
            raise PolicySpecError(f"missing '}}' in policy service spec: {text}")
        words = split_list(strip_braces(body))
        if not words:
            raise PolicySpecError(f"empty policy service spec: {text}")
        body = words[0]
        for word in words[1:]:
            name, eq, value = word.partition("=")
            name = name.strip()
            if not eq or name not in TIME_OPTIONS + INT_OPTIONS + STR_OPTIONS:
                raise PolicySpecError(f"unknown policy service option \"{word}\" in {text}")
            overrides[name] = strip_braces(value.strip()) if value.strip().startswith("{") \
                else value.strip()
    kind, colon, address = body.partition(":")
    kind = kind.lower()
    if not colon or kind not in ("inet", "unix") or not address:
        raise PolicySpecError(f"policy service {body}: expected inet:host:port or unix:path")
    if kind == "inet":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise PolicySpecError(f"policy service {body}: expected inet:host:port")
    else:
        address = queue_relative(address, str(_param(params, "queue_directory")))

    def option(name):
        if name in overrides:
            return overrides[name]
        return _param(params, PREFIX + name)

    try:
        spec = PolicySpec(
            text=text, kind=kind, address=address,
            timeout=_seconds(option("timeout"), "timeout"),
            max_idle=_seconds(option("max_idle"), "max_idle"),
            max_ttl=_seconds(option("max_ttl"), "max_ttl"),
            request_limit=int(option("request_limit")),
            try_limit=max(1, int(option("try_limit"))),
            retry_delay=_seconds(option("retry_delay"), "retry_delay"),
            default_action=str(option("default_action")),
            policy_context=str(option("policy_context")),
        )
    except (TypeError, ValueError) as exc:
        raise PolicySpecError(f"policy service {text}: {exc}") from None
    if len(_spec_cache) > 1000:
        _spec_cache.clear()
    _spec_cache[key] = spec
    return spec


class _Connection:
    __slots__ = ("reader", "writer", "born", "used", "requests")

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.born = self.used = time.monotonic()
        self.requests = 0

    def close(self) -> None:
        self.writer.close()


class _AttemptFailed(Exception):
    pass


class _Pool:
    """Idle connections of one spec on one event loop."""

    def __init__(self, spec: PolicySpec):
        self.spec = spec
        self.idle: list[_Connection] = []
        self._sweeper: asyncio.TimerHandle | None = None

    def _usable(self, conn: _Connection, now: float) -> bool:
        s = self.spec
        if conn.writer.is_closing() or conn.reader.at_eof():
            return False
        if now - conn.used > s.max_idle or now - conn.born > s.max_ttl:
            return False
        return not (s.request_limit and conn.requests >= s.request_limit)

    async def _take(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if self._usable(conn, now):
                return conn, True
            conn.close()
        s = self.spec
        try:
            if s.kind == "inet":
                host, _, port = s.address.rpartition(":")
                opening = asyncio.open_connection(host.strip("[]"), int(port), limit=MAX_REPLY)
            else:
                opening = asyncio.open_unix_connection(s.address, limit=MAX_REPLY)
            reader, writer = await asyncio.wait_for(opening, s.timeout)
        except asyncio.TimeoutError:
            log.warn("connect to %s: timeout", s.server)
            raise _AttemptFailed("timeout") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.warn("connect to %s: %s", s.server, reason)
            raise _AttemptFailed(reason) from None
        return _Connection(reader, writer), False

    def _give_back(self, conn: _Connection) -> None:
        conn.used = time.monotonic()
        conn.requests += 1
        if not self._usable(conn, conn.used):
            conn.close()
            return
        self.idle.append(conn)
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.spec.max_idle + 0.1, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        keep = []
        for conn in self.idle:
            if self._usable(conn, now):
                keep.append(conn)
            else:
                conn.close()
        self.idle = keep
        if keep:
            self._sweeper = asyncio.get_running_loop().call_later(
                self.spec.max_idle + 0.1, self._sweep)

    async def attempt(self, request: bytes) -> str:
        s = self.spec
        conn, reused = await self._take()
        try:
            try:
                conn.writer.write(request)
                await asyncio.wait_for(conn.writer.drain(), s.timeout)
                action = await asyncio.wait_for(self._read_reply(conn), s.timeout)
            except (ConnectionError, OSError, asyncio.IncompleteReadError, EOFError) as exc:
                if reused and isinstance(exc, (asyncio.IncompleteReadError, EOFError,
                                               ConnectionResetError, BrokenPipeError)):
                    # The server closed a reused connection (idle timeout on its side):
                    # not an attempt of its own; try once on a fresh connection.
                    conn.close()
                    conn, reused = await self._take()
                    conn.writer.write(request)
                    await asyncio.wait_for(conn.writer.drain(), s.timeout)
                    action = await asyncio.wait_for(self._read_reply(conn), s.timeout)
                else:
                    raise
        except asyncio.TimeoutError:
            conn.close()
            log.warn("timeout talking to %s", s.server)
            raise _AttemptFailed("timeout") from None
        except (ConnectionError, OSError, asyncio.IncompleteReadError, EOFError) as exc:
            conn.close()
            reason = "lost connection" if isinstance(exc, (asyncio.IncompleteReadError,
                                                           EOFError)) else str(exc)
            log.warn("read reply from %s: %s", s.server, reason)
            raise _AttemptFailed(reason) from None
        except _AttemptFailed:
            conn.close()
            raise
        self._give_back(conn)
        return action

    async def _read_reply(self, conn: _Connection) -> str:
        action = None
        total = 0
        while True:
            try:
                line = await conn.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                log.warn("reply from %s is too long", self.spec.server)
                raise _AttemptFailed("malformed reply") from None
            total += len(line)
            if total > MAX_REPLY:
                log.warn("reply from %s is too long", self.spec.server)
                raise _AttemptFailed("malformed reply")
            text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            if not text:
                break
            name, eq, value = text.partition("=")
            if not eq:
                log.warn("malformed attribute in input from %s: %s", self.spec.server,
                         printable(text[:100]))
                raise _AttemptFailed("malformed reply")
            if name == "action" and action is None:
                action = value
        if action is None:
            log.warn("missing attribute action in input from %s", self.spec.server)
            raise _AttemptFailed("malformed reply")
        return action

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


#: loop -> {spec text: pool}
_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[PolicySpec, _Pool]]" = \
    weakref.WeakKeyDictionary()


def _encode(attrs: dict[str, str], spec: PolicySpec) -> bytes:
    lines = []
    for name, value in attrs.items():
        value = "" if value is None else str(value)
        # The protocol has no escaping: a newline would end the attribute early.
        lines.append(f"{name}={value.replace(chr(10), ' ').replace(chr(13), ' ')}\n")
    if "policy_context" not in attrs:
        lines.append(f"policy_context={spec.policy_context}\n")
    lines.append("\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


async def query(spec: str, attrs: dict[str, str], params) -> str:
    """Ask the policy server of ``spec``; return its action text.

    Raises PolicyUnavailable (with the spec's default_action) when every try failed,
    PolicySpecError when the spec itself is bad.
    """
    ps = parse_spec(spec, params)
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    pool = pools.get(ps)
    if pool is None:
        pool = pools[ps] = _Pool(ps)
    request = _encode(attrs, ps)
    reason = "unknown error"
    for attempt in range(ps.try_limit):
        if attempt:
            await asyncio.sleep(ps.retry_delay)
        try:
            return await pool.attempt(request)
        except _AttemptFailed as exc:
            reason = str(exc)
    log.warn("problem talking to server %s: %s", ps.server, reason)
    raise PolicyUnavailable(f"problem talking to server {ps.server}: {reason}",
                            ps.default_action)


def close_all() -> None:
    """Close every idle connection of the running loop's pools (worker exit, tests)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for pool in _pools.pop(loop, {}).values():
        pool.close()
