"""Log line format and printable()."""

import io
import os
import re

import pytest

from fastpost.util import log


def test_line_format_and_severity_prefixes(tmp_path):
    path = tmp_path / "maillog"
    log.init("smtpd", syslog_name="postfix", maillog_file=str(path))
    log.info("connect from %s[%s]", "host", "1.2.3.4")
    log.warn("something odd")
    with pytest.raises(log.Fatal) as info:
        log.fatal("cannot go on: %d", 5)
    assert info.value.code == 1
    log.close_sinks()
    lines = path.read_text().splitlines()
    pid = os.getpid()
    stamp = r"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ "
    assert re.fullmatch(stamp + rf"postfix/smtpd\[{pid}\]: connect from host\[1.2.3.4\]", lines[0])
    assert lines[1].endswith(f"postfix/smtpd[{pid}]: warning: something odd")
    assert lines[2].endswith(f"postfix/smtpd[{pid}]: fatal: cannot go on: 5")


def test_stream_sink_and_custom_syslog_name():
    buf = io.StringIO()
    log.init("smtpd", syslog_name="postfix/submission", use_syslog=False, stream=buf)
    log.info("hello")
    assert f"postfix/submission/smtpd[{os.getpid()}]: hello" in buf.getvalue()


def test_printable():
    assert log.printable("plain text") == "plain text"
    assert log.printable("a\x00b\r\nc\x7f") == "a?b??c?"
    assert log.printable(b"caf\xc3\xa9 \xff") == "café ?"
    assert log.printable("zw\u200bsp") == "zw?sp"


def test_forked_child_logs_its_own_pid(tmp_path):
    # The pid is kept (getpid is a system call), so a child must get its own after fork.
    path = tmp_path / "maillog"
    log.init("smtpd", syslog_name="postfix", maillog_file=str(path))
    log.info("parent")
    child = os.fork()
    if child == 0:
        try:
            log.info("child")
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    log.close_sinks()
    lines = path.read_text().splitlines()
    assert lines[0].endswith(f"postfix/smtpd[{os.getpid()}]: parent")
    assert lines[1].endswith(f"postfix/smtpd[{child}]: child")


def test_deferred_file_writes_one_write_per_turn(tmp_path):
    """defer_file_writes(loop): a turn's info lines reach the file together at the next
    turn, in order; a warning (and close_sinks) writes what waits first."""
    import asyncio

    import uvloop

    path = tmp_path / "maillog"
    log.init("smtpd", syslog_name="postfix", maillog_file=str(path))
    loop = uvloop.new_event_loop()
    sizes = []
    try:
        log.defer_file_writes(loop)

        async def turns():
            log.info("one")
            log.info("two")
            sizes.append(path.stat().st_size)  # nothing written during the turn
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sizes.append(len(path.read_text().splitlines()))  # both, next turn
            log.info("three")
            log.warn("four")  # not deferred: "three" goes first
            sizes.append(len(path.read_text().splitlines()))
            log.info("five")

        loop.run_until_complete(turns())
    finally:
        log.defer_file_writes(None)  # writes "five"
        loop.close()
    log.info("six")  # written at once again
    assert len(path.read_text().splitlines()) == 6
    log.close_sinks()
    assert sizes == [0, 2, 4]
    texts = [line.split("]: ", 1)[1] for line in path.read_text().splitlines()]
    assert texts == ["one", "two", "three", "warning: four", "five", "six"]


def test_deferred_info_lines_as_emit_makes_them_and_the_cap(tmp_path):
    """info()'s own path for a deferring maillog file (no other sink) makes the line
    _emit() makes (log_at goes through _emit), with a format and without; the
    _DEFER_MAX_LINES-th waiting line writes them all during the turn."""
    import uvloop

    path = tmp_path / "maillog"
    log.init("smtpd", syslog_name="postfix", maillog_file=str(path))
    loop = uvloop.new_event_loop()
    counts = []
    try:
        log.defer_file_writes(loop)

        async def turn():
            log.info("connect from a[%s]", "192.0.2.1")
            log.info("100% of nothing")  # no arguments: not a format
            log.log_at("info", "connect from a[192.0.2.1]")
            for i in range(log._DEFER_MAX_LINES):
                log.info("line %d", i)
            counts.append(len(path.read_text().splitlines()))

        loop.run_until_complete(turn())
    finally:
        log.defer_file_writes(None)
        loop.close()
    log.close_sinks()
    lines = path.read_text().splitlines()
    assert counts == [log._DEFER_MAX_LINES]  # the 256th waiting line wrote them
    assert len(lines) == log._DEFER_MAX_LINES + 3
    assert lines[0].split(" ", 3)[3] == lines[2].split(" ", 3)[3]  # (past the time stamp)
    assert lines[0].endswith(f"postfix/smtpd[{os.getpid()}]: connect from a[192.0.2.1]")
    assert lines[1].endswith(": 100% of nothing")


def test_deferred_lines_from_other_threads_and_at_close(tmp_path):
    import threading

    import uvloop

    path = tmp_path / "maillog"
    log.init("smtpd", syslog_name="postfix", maillog_file=str(path))
    loop = uvloop.new_event_loop()
    try:
        log.defer_file_writes(loop)
        log.info("waiting")  # the loop never turns
        t = threading.Thread(target=log.info, args=("from a thread",))
        t.start()
        t.join()
        # the other thread's line is written at once; the loop thread's still waits
        assert [ln.split("]: ", 1)[1] for ln in path.read_text().splitlines()] == [
            "from a thread"]
        log.info("at close")
        log.close_sinks()
        assert [ln.split("]: ", 1)[1] for ln in path.read_text().splitlines()] == [
            "from a thread", "waiting", "at close"]
    finally:
        log.defer_file_writes(None)
        loop.close()

def test_info_later_waits_for_flush_and_keeps_the_order(tmp_path):
    path = tmp_path / "maillog"
    log.init("cleanup", syslog_name="fastpost", maillog_file=str(path), use_syslog=False)
    try:
        log.info_later("%s: message-id=<%s>", "A1", "a@x")
        log.info_later("B2: message-id=<>")
        assert path.read_text() == ""  # not written yet
        log.flush()
        lines = path.read_text().splitlines()
        assert [ln.split("]: ", 1)[1] for ln in lines] == ["A1: message-id=<a@x>", "B2: message-id=<>"]
        assert all(re.match(r"\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ fastpost/cleanup\[\d+\]: ", ln)
                   for ln in lines)
        # a line logged at once writes the waiting ones first
        log.info_later("C3: message-id=<c@x>")
        log.warn("D4: something")
        log.info_later("E5: message-id=<e@x>")
        log.close_sinks()  # and closing the sinks writes what waits
        tail = [ln.split("]: ", 1)[1] for ln in path.read_text().splitlines()[2:]]
        assert tail == ["C3: message-id=<c@x>", "warning: D4: something", "E5: message-id=<e@x>"]
    finally:
        log.init("test", use_syslog=False)


def test_info_later_with_a_stream_logs_at_once():
    buf = io.StringIO()
    log.init("cleanup", syslog_name="fastpost", stream=buf, use_syslog=False)
    try:
        log.info_later("F6: message-id=<f@x>")
        assert buf.getvalue().endswith("fastpost/cleanup[%d]: F6: message-id=<f@x>\n" % os.getpid())
    finally:
        log.init("test", use_syslog=False)


def _keepers():
    """LineKeeper of both builds (the compiled one when it is built)."""
    from fastpost.util import _logline_py

    builds = [_logline_py]
    try:
        from fastpost.util import _logline_c
    except ImportError:  # pragma: no cover - FASTPOST_PURE_PYTHON without a build
        pass
    else:
        builds.append(_logline_c)
    return builds


@pytest.mark.parametrize("build", _keepers(), ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_line_keeper_builds_make_emits_line(build):
    """Each build's keep() appends the bytes _emit() makes for the same text, has
    ``flush`` called when the loop's turn ends after the first line (at once when the
    loop is closed) and at once from the limit-th line on, and declines (False,
    nothing kept) when off, from another thread, or in a second its stamp was not
    made for."""
    import asyncio
    import threading
    import time

    texts = ["connect from a[192.0.2.1]", "100% of %s", "client=h\u00e9[::1]",
             "bad \udcff byte", ""]
    k = build.LineKeeper()
    assert not k.keep("off")
    k.set_head("postfix/smtpd[7]: ")
    k.thread = threading.get_ident()
    k.pending = []
    k.limit = 4
    calls = []
    k.flush = lambda: calls.append(len(k.pending))
    loop = k.loop = asyncio.new_event_loop()
    k.on = True
    k.set_stamp(-1, "")
    assert not k.keep("a second without its stamp") and k.pending == []
    while True:
        now = int(time.time())
        k.set_stamp(now, "Jan 01 00:00:00 host ")
        kept = [k.keep(t) for t in texts]
        if int(time.time()) == now:  # (a second boundary between: declined, again)
            break
        k.pending[:] = []
        calls[:] = []
        loop.run_until_complete(asyncio.sleep(0))  # (the first line's flush: dropped)
        calls[:] = []
    assert kept == [True] * len(texts)
    assert calls == [4, 5]  # the limit-th and later lines: at once
    loop.run_until_complete(asyncio.sleep(0))
    assert calls == [4, 5, 5]  # the first line's: when the turn ended
    loop.close()
    saved, k.pending = k.pending, []
    k.set_stamp(int(time.time()), "Jan 01 00:00:00 host ")
    assert k.keep("closed loop") or int(time.time()) != k.stamp_second
    assert calls[3:] in ([1], [])  # at once: no turn will come
    k.pending = saved
    expect = [("Jan 01 00:00:00 host postfix/smtpd[7]: " + t + "\n").encode(
        "utf-8", "surrogateescape") for t in texts]
    assert k.pending == expect
    other = []
    t = threading.Thread(target=lambda: other.append(k.keep("from a thread")))
    t.start()
    t.join()
    assert other == [False] and len(k.pending) == len(texts)


def test_info_through_the_keeper_equals_emit(tmp_path):
    """The lines info() hands KEEPER (a deferring maillog file alone) and the session
    core's texts equal _emit()'s; KEEPER is off without deferring, with a stream."""
    import uvloop

    path = tmp_path / "maillog"
    log.init("smtpd", syslog_name="postfix", maillog_file=str(path))
    assert not log.KEEPER.on
    loop = uvloop.new_event_loop()
    try:
        log.defer_file_writes(loop)
        assert log.KEEPER.on and log.KEEPER.pending is log._state.pending

        async def turn():
            log.log_at("info", "disconnect from h\u00e9[192.0.2.1] ehlo=1 quit=1 commands=2")
            kept = log.KEEPER.keep("disconnect from h\u00e9[192.0.2.1] ehlo=1 quit=1 commands=2")
            log.info("%s: client=%s", "4ABC", "a[192.0.2.1]")
            log.log_at("info", "4ABC: client=a[192.0.2.1]")
            return kept

        kept = loop.run_until_complete(turn())
        assert log.KEEPER.pending is log._state.pending  # (after flush's swap)
    finally:
        log.defer_file_writes(None)
        loop.close()
    assert not log.KEEPER.on
    log.close_sinks()
    lines = [ln.split(" ", 3)[3] for ln in path.read_text().splitlines()]
    if kept:  # (False only when the second ended between the two lines)
        assert lines[0] == lines[1] and lines[2] == lines[3] and len(lines) == 4
    log.init("smtpd", maillog_file=str(path), stream=io.StringIO())
    log.defer_file_writes(asyncio_loop := uvloop.new_event_loop())
    try:
        assert not log.KEEPER.on  # a stream gets every line too
    finally:
        log.defer_file_writes(None)
        asyncio_loop.close()
        log.close_sinks()
