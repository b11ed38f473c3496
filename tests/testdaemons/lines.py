"""The line protocol the echo-style test daemons speak.

Server greets ``ready <service> <pid>``; then each line gets one reply line:

    PID          -> the worker's pid
    CONF <name>  -> the value of a parameter in the worker's configuration
    SLEEP <s>    -> "slept" after s seconds (the session stays busy meanwhile)
    LOG <text>   -> logs text (info) and answers "logged"
    IDNA <name>  -> the name in its IDNA (xn--) form: codecs work inside a chroot
    BLOCK <s>    -> blocks the whole event loop for s seconds (a daemon bug: the
                    daemon_timeout watchdog must catch it)
    QUIT         -> "bye", then the server closes
    anything     -> "echo: " + the line
"""

import asyncio
import os
import time

from fastpost.util import log


def greeting(ctx) -> bytes:
    return f"ready {ctx.service_name} {os.getpid()}\n".encode()


def answer(line: bytes, ctx) -> tuple[bytes, bool]:
    """Return (reply line, close after it) for one request line (without newline)."""
    text = line.decode("utf-8", "replace").strip()
    word, _, arg = text.partition(" ")
    if word == "PID":
        return f"{os.getpid()}\n".encode(), False
    if word == "CONF":
        return f"{ctx.cfg.get(arg)}\n".encode(), False
    if word == "LOG":
        log.info("%s", arg)
        return b"logged\n", False
    if word == "IDNA":
        return arg.encode("idna") + b"\n", False
    if word == "BLOCK":
        time.sleep(float(arg))
        return b"unblocked\n", False
    if word == "QUIT":
        return b"bye\n", True
    return b"echo: " + text.encode() + b"\n", False


async def stream_session(reader, writer, ctx) -> None:
    """One session over asyncio streams (single skeleton, multi stream flavour)."""
    writer.write(greeting(ctx))
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return
        word, _, arg = line.decode().strip().partition(" ")
        if word == "SLEEP":
            await asyncio.sleep(float(arg))
            writer.write(b"slept\n")
            await writer.drain()
            continue
        reply, close = answer(line, ctx)
        writer.write(reply)
        await writer.drain()
        if close:
            return
