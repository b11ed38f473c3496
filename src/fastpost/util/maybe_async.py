"""Run a coroutine synchronously when it never waits; as a future only when it does.

Postfix counterpart: none (Postfix's smtpd blocks its one process while it waits).

smtpd asks its restriction engine at every command. Most answers come from tables in
memory and never wait; a few need the network (DNS lists, a policy service). Writing
the engine as coroutines keeps one code path for both, but creating an asyncio Task
per command would cost more than the checks themselves. ``start(coro)`` steps the
coroutine at once:

    result = start(evaluate(request))
    if isinstance(result, Pending): ...   # an asyncio Future-like: await it, or
                                          # add_done_callback
    else: ...                             # the value, computed without the loop

Rules for the coroutine: it may await only asyncio Futures (Tasks included) or
coroutines that themselves await only those (``asyncio.sleep``, ``wait_for``,
``loop.run_in_executor``, ``loop.getaddrinfo`` all qualify). Anything that needs
``asyncio.current_task()`` (``asyncio.timeout()``, ``TaskGroup``) must be wrapped
in its own Task by the code that calls it (``loop.create_task(...)``), which is
what the DNS and policy-service clients do.

Diagnostics: an exception raised by the coroutine propagates from ``start`` (when it
happens before the first wait) or becomes the Pending's exception. A coroutine that
yields something other than a Future is a programming error: RuntimeError.
"""

from __future__ import annotations

import asyncio

__all__ = ["start", "Pending"]

Pending = asyncio.Future


def start(coro, loop: asyncio.AbstractEventLoop | None = None):
    """Run ``coro`` until it first waits; return its value, or a Future of it."""
    try:
        waiting = coro.send(None)
    except StopIteration as stop:
        return stop.value
    if loop is None:
        loop = asyncio.get_running_loop()
    outer = loop.create_future()
    _wait(coro, waiting, outer, loop)
    return outer


def _wait(coro, waiting, outer, loop) -> None:
    if waiting is None:
        # A bare yield (asyncio.sleep(0)): go on at the next loop iteration.
        loop.call_soon(_step, coro, None, outer, loop)
        return
    if not asyncio.isfuture(waiting):
        coro.close()
        outer.set_exception(RuntimeError(f"maybe_async: coroutine yielded {waiting!r}"))
        return
    waiting._asyncio_future_blocking = False
    waiting.add_done_callback(lambda f: _step(coro, f, outer, loop))


def _step(coro, fut, outer, loop) -> None:
    if outer.cancelled():
        coro.close()
        return
    try:
        waiting = coro.send(None)
    except StopIteration as stop:
        outer.set_result(stop.value)
        return
    except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits outer
        outer.set_exception(exc)
        return
    _wait(coro, waiting, outer, loop)
