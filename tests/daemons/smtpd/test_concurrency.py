"""10,000 concurrent SMTP sessions held by one smtpd process.

The server is a separate process (fastpost.daemons.smtpd.standalone, one worker,
uvloop); this test opens 10,000 connections to it, reads every greeting, measures
the server's resident memory before and after, and checks that a new client still
gets a whole message through while all of them are open. The memory figures are
printed (run with -s to see them) and recorded as test properties; docs/smtp.md has
the numbers of a reference run. No timing is asserted.
"""

import asyncio
import os
import resource
import subprocess
import sys
import time

import pytest

N = 10_000


def _raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want and os.geteuid() == 0:
        hard = want
    target = min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _hold(port: int, n: int):
    """Open n sessions, read each greeting; return the open (reader, writer) pairs."""
    sem = asyncio.Semaphore(256)
    conns = []

    async def one():
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            line = await reader.readline()
            assert line.startswith(b"220 "), line
            conns.append((reader, writer))

    await asyncio.gather(*(one() for _ in range(n)))
    return conns


async def _one_message(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    for cmd in (b"HELO late.example\r\n", b"MAIL FROM:<a@example.org>\r\n",
                b"RCPT TO:<b@example.net>\r\n", b"DATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n",
                b"QUIT\r\n"):
        writer.write(cmd)
        replies.append(await reader.readline())
    writer.close()
    return b"".join(replies)


@pytest.mark.slow
def test_ten_thousand_sessions(tmp_path, record_property):
    have = _raise_nofile(N + 2000)
    if have < N + 1000:
        pytest.skip(f"RLIMIT_NOFILE is {have}; need {N + 1000} (run as root)")
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text(
        "compatibility_level = 3.7\nmyhostname = mx.fastpost.test\n"
        "mynetworks = 127.0.0.0/8\nsmtpd_peername_lookup = no\n"
        f"queue_directory = {tmp_path}\n"
        "smtpd_client_connection_count_limit = 0\n")
    port_file = tmp_path / "port"
    server = subprocess.Popen(
        [sys.executable, "-m", "fastpost.daemons.smtpd.standalone", "-c", str(conf),
         "-l", "127.0.0.1:0", "-d", str(tmp_path / "spool"), "--quiet",
         "--port-file", str(port_file)],
        preexec_fn=lambda: _raise_nofile(N + 2000))
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert server.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = int(port_file.read_text())
        loop = asyncio.new_event_loop()
        try:
            # Warm up (imports, first session) before the baseline.
            loop.run_until_complete(_one_message(port))
            before = _rss_kib(server.pid)
            conns = loop.run_until_complete(_hold(port, N))
            assert len(conns) == N
            after = _rss_kib(server.pid)
            transcript = loop.run_until_complete(_one_message(port))
            assert b"250 2.0.0 Ok: queued as " in transcript
            assert server.poll() is None
            for _, writer in conns:
                writer.close()
            loop.run_until_complete(asyncio.sleep(0.1))
        finally:
            loop.close()
    finally:
        server.terminate()
        server.wait(30)
    per_1000 = (after - before) / (N / 1000)
    record_property("rss_before_kib", before)
    record_property("rss_with_10000_sessions_kib", after)
    record_property("rss_per_1000_idle_sessions_kib", round(per_1000))
    print(f"\nsmtpd RSS: {before} KiB idle, {after} KiB with {N} sessions "
          f"({per_1000:.0f} KiB per 1,000 idle sessions)")
    assert len(list((tmp_path / "spool").glob("*.msg"))) == 2
