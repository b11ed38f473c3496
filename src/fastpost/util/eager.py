"""Run a coroutine at once, on the caller's stack, until it really has to wait.

Postfix counterpart: none (Postfix's daemons block; this is what lets an event-loop
daemon write its per-message logic as plain ``async def`` without paying for a Task
when nothing blocks).

    done = run_eager(coro, on_result, on_error)

The coroutine runs synchronously. When it finishes without waiting (the common case:
every lookup answered from a cache), ``on_result(value)`` (or ``on_error(exc)``) is
called before ``run_eager`` returns True. When it awaits a future that is not done,
``run_eager`` returns False and the coroutine is resumed by that future's callback,
on the event loop, as a Task would resume it; ``on_result``/``on_error`` are called
when it ends. A bare ``yield`` (``asyncio.sleep(0)``) resumes it on the next loop
turn.

What it does not do (use a Task when these matter): cancellation, contextvars, the
loop's current-task bookkeeping (``asyncio.current_task()`` is whatever ran us).

Diagnostics: an exception raised by the coroutine goes to on_error; an exception
raised by on_result/on_error propagates to whoever resumed the coroutine (the loop's
exception handler logs it).
"""

from __future__ import annotations

import asyncio

__all__ = ["run_eager"]


def run_eager(coro, on_result, on_error) -> bool:
    """Run coro now; return True when it finished before returning (module docstring)."""
    return _step(coro, on_result, on_error, None)


def _step(coro, on_result, on_error, _fut) -> bool:
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        on_result(stop.value)
        return True
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's callback
        on_error(exc)
        return True
    if yielded is None:
        asyncio.get_running_loop().call_soon(_step, coro, on_result, on_error, None)
        return False
    if getattr(yielded, "_asyncio_future_blocking", None) is None:
        coro.close()
        on_error(RuntimeError(f"run_eager: coroutine yielded {yielded!r}, not a future"))
        return True
    yielded._asyncio_future_blocking = False
    yielded.add_done_callback(lambda fut: _step(coro, on_result, on_error, fut))
    return False
