"""anvil: connection and rate counters per client, for smtpd's client limits.

Postfix counterpart: src/anvil/anvil.c (anvil(8)), the server side of
src/global/anvil_clnt.c.

master.cf: ``anvil unix - - n - 1 anvil`` (one process; the counters live in it).
Requests on private/anvil, attribute frames as every fastpost service
(docs/ipc.md), protocol name ``anvil_protocol``:

    {"request": "connect",    "ident": "smtp:192.0.2.1"} -> {"status": 0, "count": n, "rate": r}
    {"request": "disconnect", "ident": ...}              -> {"status": 0}
    {"request": "message" | "recipient" | "newtls" | "auth", "ident": ...}
                                                         -> {"status": 0, "rate": r}
    {"request": "newtls_report", "ident": ...}           -> {"status": 0, "rate": r}
                                                            (the rate, not counted)
    {"request": "lookup", "ident": ...}                  -> {"status": 0, "count", "rate",
                                                            "message", "recipient",
                                                            "newtls", "auth"}
    anything else                                        -> {"status": 1}  (and a warning)

``ident`` is ``service:client-address`` (the client decides). ``count`` is the number
of connections open now; each rate counts events since the client's current time
window began: a window lasts anvil_rate_time_unit and a new one starts with the first
event after it (Postfix's semantics). A client's counters are dropped when it has
no connection and its window is over. A connection whose client goes away without
a disconnect (a crashed smtpd) is taken back when its IPC connection closes.

Every anvil_status_update_time, and at exit, the maxima since the last report are
logged as Postfix's anvil does:

    statistics: max connection rate 4/60s for (smtp:192.0.2.1) at Nov 21 10:04:07
    statistics: max connection count 1 for (smtp:192.0.2.1) at Nov 21 10:04:05
    statistics: max message rate / recipient rate / newtls rate / auth rate ...
    statistics: max cache size 1 at Nov 21 10:04:05

Unlike Postfix's anvil, this one is resident (it does not retire after max_idle,
which would forget the counters while smtpd processes still count on them).

Parameters: anvil_rate_time_unit, anvil_status_update_time.
Diagnostics: warnings for unknown requests; nothing else can fail here.
"""

from __future__ import annotations

import time

from fastpost.util import log

__all__ = ["Anvil", "main"]

RATES = ("connect", "message", "recipient", "newtls", "auth")
#: statistics line names, in Postfix's order
_STAT_NAMES = (("rate:connect", "connection rate"), ("count", "connection count"),
               ("rate:message", "message rate"), ("rate:recipient", "recipient rate"),
               ("rate:newtls", "newtls rate"), ("rate:auth", "auth rate"))


def _stamp(when: float) -> str:
    return time.strftime("%b %d %H:%M:%S", time.localtime(when))


class _Client:
    __slots__ = ("count", "start", "rates")

    def __init__(self, now: float):
        self.count = 0
        self.start = now
        self.rates = dict.fromkeys(RATES, 0)


class Anvil:
    """The counters (no I/O: the daemon and the tests drive it)."""

    def __init__(self, rate_time_unit: float = 60.0, clock=time.time):
        self.unit = rate_time_unit
        self.clock = clock
        self.clients: dict[str, _Client] = {}
        self.maxima: dict[str, tuple[int, str, float]] = {}  # name -> (value, ident, when)
        self.max_cache = (0, 0.0)

    def _client(self, ident: str) -> _Client:
        now = self.clock()
        c = self.clients.get(ident)
        if c is None:
            c = self.clients[ident] = _Client(now)
            if len(self.clients) > self.max_cache[0]:
                self.max_cache = (len(self.clients), now)
        elif now - c.start >= self.unit:
            c.start = now
            c.rates = dict.fromkeys(RATES, 0)
        return c

    def _note(self, name: str, value: int, ident: str) -> None:
        old = self.maxima.get(name)
        if old is None or value > old[0]:
            self.maxima[name] = (value, ident, self.clock())

    def _bump(self, ident: str, what: str) -> int:
        c = self._client(ident)
        c.rates[what] += 1
        self._note("rate:" + what, c.rates[what], ident)
        return c.rates[what]

    def handle(self, request: dict, held: dict | None = None) -> dict:
        """Answer one request; ``held`` counts this IPC connection's open connects."""
        what = request.get("request")
        ident = request.get("ident")
        if not isinstance(ident, str) or not ident:
            log.warn("anvil: request %r without ident", what)
            return {"status": 1}
        if what == "connect":
            rate = self._bump(ident, "connect")
            c = self.clients[ident]
            c.count += 1
            self._note("count", c.count, ident)
            if held is not None:
                held[ident] = held.get(ident, 0) + 1
            return {"status": 0, "count": c.count, "rate": rate}
        if what == "disconnect":
            self.disconnect(ident)
            if held is not None and held.get(ident):
                held[ident] -= 1
            return {"status": 0}
        if what in ("message", "recipient", "newtls", "auth"):
            return {"status": 0, "rate": self._bump(ident, what)}
        if what == "newtls_report":
            return {"status": 0, "rate": self._client(ident).rates["newtls"]}
        if what == "lookup":
            c = self._client(ident)
            return {"status": 0, "count": c.count, "rate": c.rates["connect"],
                    "message": c.rates["message"], "recipient": c.rates["recipient"],
                    "newtls": c.rates["newtls"], "auth": c.rates["auth"]}
        log.warn("anvil: unknown request %r from a client", what)
        return {"status": 1}

    def disconnect(self, ident: str) -> None:
        c = self.clients.get(ident)
        if c is not None and c.count > 0:
            c.count -= 1

    def expire(self) -> None:
        """Forget clients with no connection whose time window is over."""
        now = self.clock()
        for ident in [i for i, c in self.clients.items()
                      if c.count == 0 and now - c.start >= self.unit]:
            del self.clients[ident]

    def statistics(self) -> list[str]:
        """The statistics lines since the last call (then start afresh)."""
        unit = f"{int(self.unit)}s"
        lines = []
        for key, name in _STAT_NAMES:
            got = self.maxima.get(key)
            if got is None:
                continue
            value, ident, when = got
            shown = f"{value}/{unit}" if key.startswith("rate:") else str(value)
            lines.append(f"statistics: max {name} {shown} for ({ident}) at {_stamp(when)}")
        if self.max_cache[0]:
            lines.append(f"statistics: max cache size {self.max_cache[0]} at "
                         f"{_stamp(self.max_cache[1])}")
        self.maxima.clear()
        self.max_cache = (len(self.clients), self.clock()) if self.clients else (0, 0.0)
        return lines


_state: dict = {}


def _report() -> None:
    anvil: Anvil = _state["anvil"]
    for line in anvil.statistics():
        log.info("%s", line)


def _tick(ctx) -> None:
    anvil: Anvil = _state["anvil"]
    anvil.expire()
    if anvil.maxima:
        _report()
    ctx.loop.call_later(_state["update"], _tick, ctx)


def _post_init(ctx) -> None:
    _state["anvil"] = Anvil(float(ctx.p["anvil_rate_time_unit"]))
    _state["update"] = float(ctx.p["anvil_status_update_time"])
    ctx.loop.call_later(_state["update"], _tick, ctx)


def _on_exit(ctx) -> None:
    if _state.get("anvil") is not None and _state["anvil"].maxima:
        _report()


def _handle(request: dict, conn) -> dict:
    return _state["anvil"].handle(request, conn.state.setdefault("held", {}))


def _service():
    """The protocol factory: attribute frames, and connects given back on close."""
    from fastpost.mail.ipc import AttrServerProtocol

    class AnvilProtocol(AttrServerProtocol):
        def connection_lost(self, exc):
            super().connection_lost(exc)
            anvil = _state.get("anvil")
            for ident, n in self.state.get("held", {}).items():
                for _ in range(n):
                    anvil.disconnect(ident)

    return lambda ctx: AnvilProtocol(ctx, "anvil_protocol", _handle)


def main(argv: list[str]) -> None:
    """Run anvil on the multi skeleton (resident, one process)."""
    from fastpost.server.multi import multi_server_main

    multi_server_main(argv, _service(), name="anvil",
                      params=("anvil_rate_time_unit", "anvil_status_update_time"),
                      post_init=_post_init, on_exit=_on_exit, resident=True, solitary=True)
