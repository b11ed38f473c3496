#!/usr/bin/env python3
"""Micro-benchmark: SMTP kernels and the server core, compiled vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_smtp.py [--seconds S]

Workloads:
  commands      LineReader.read_command over a pipelined stream of typical commands
                (EHLO/MAIL/RCPT x3/DATA/RSET lines): commands/s
  quick         quick_command (the common-command kernel) over the split EHLO/MAIL/
                RCPT/DATA/QUIT lines of a transaction: commands/s
  DATA text     DotDecoder over a 1 MiB message of 78-byte lines (a few starting with
                a dot), fed in 64 KiB reads: MB/s
  DATA 8bit     the same with long (990-byte) lines of binary-ish text: MB/s
  BDAT          ChunkDecoder over the same 1 MiB in 64 KiB chunks: MB/s
  session core  ServerConnection running whole transactions (greeting, EHLO, MAIL,
                3 RCPT, DATA with a 1 KiB message, QUIT) with canned replies: the
                compiled core over the compiled kernels, or the reference core
                (_server_py) over the reference kernels: transactions/s
Medians of 5 timed rounds; each round runs for about --seconds / 5.
"""

import argparse
import sys

from fastpost.smtp import _command_c, _command_py, _data_c, _data_py, _lines_c, _lines_py
from fastpost.smtp import events as ev
from fastpost.smtp import replies
from fastpost.smtp import _server_c, _server_py
from _timing import rate  # noqa: E402  (this directory is sys.path[0])


COMMANDS = (b"EHLO client.example.org\r\nMAIL FROM:<sender@example.org> SIZE=1024\r\n"
            b"RCPT TO:<one@example.net>\r\nRCPT TO:<two@example.net>\r\n"
            b"RCPT TO:<three@example.net> NOTIFY=SUCCESS\r\nDATA\r\nRSET\r\n") * 100
N_COMMANDS = 700


def bench_commands(mod):
    def run():
        r = mod.LineReader(2048)
        r.feed(COMMANDS)
        n = 0
        while r.read_command() is not None:
            n += 1
        assert n == N_COMMANDS
    return run


QUICK = [(b"EHLO", b"client.example.org"), (b"MAIL", b"FROM:<sender@example.org> SIZE=1024"),
         (b"RCPT", b"TO:<one@example.net>"), (b"RCPT", b"TO:<two@example.net>"),
         (b"DATA", b""), (b"QUIT", b"")]


def bench_quick(mod):
    quick = mod.quick_command

    def run():
        for verb, args in QUICK:
            if quick(verb, args) is None:
                raise AssertionError(verb)
    return run


def message(line: bytes, size: int = 1 << 20) -> bytes:
    lines = []
    total = 0
    i = 0
    while total < size:
        body = (b"." + line[1:]) if i % 50 == 0 else line
        lines.append(body + b"\r\n")
        total += len(body) + 2
        i += 1
    return b"".join(lines)


TEXT = message(b"The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet, 0123")
EIGHT = message(bytes(range(33, 127)) * 10 + bytes(range(160, 256)) * 3)
READS = 65536


def bench_dot(mod, data):
    stuffed = data + b".\r\n"
    pieces = [stuffed[i:i + READS] for i in range(0, len(stuffed), READS)]

    def run():
        d = mod.DotDecoder(0, True)
        for p in pieces:
            out, used, done = d.feed(p)
        assert done
    return run


def bench_chunk(mod, data):
    pieces = [data[i:i + READS] for i in range(0, len(data), READS)]

    def run():
        d = mod.ChunkDecoder(0)
        for p in pieces:
            d.feed(p)
        d.finish()
    return run


BODY = b"Subject: benchmark\r\n\r\n" + (b"x" * 70 + b"\r\n") * 13 + b".\r\n"
SESSION = [b"EHLO client.example.org\r\n", b"MAIL FROM:<sender@example.org> SIZE=1024\r\n",
           b"RCPT TO:<one@example.net>\r\n", b"RCPT TO:<two@example.net>\r\n",
           b"RCPT TO:<three@example.net>\r\n", b"DATA\r\n", BODY, b"QUIT\r\n"]
ANSWERS = {
    ev.Ehlo: replies.ehlo("mx.example", ["PIPELINING", "SIZE 10240000", "8BITMIME", "CHUNKING"]),
    ev.Mail: replies.MAIL_OK, ev.Rcpt: replies.RCPT_OK, ev.Data: replies.START_DATA,
    ev.EndOfData: replies.queued("3F1A21C0A35"), ev.Quit: replies.BYE,
}
GREETING = replies.greeting("mx.example ESMTP fastpost")


def bench_session_py():
    """The reference core (_server_py) over the reference kernels."""
    core = _server_py

    def run():
        saved = core.LineReader, core.DotDecoder, core.ChunkDecoder, core.quick
        core.LineReader, core.DotDecoder, core.ChunkDecoder, core.quick = (
            _lines_py.LineReader, _data_py.DotDecoder, _data_py.ChunkDecoder, _command_py)
        try:
            run_session(core.ServerConnection())
        finally:
            core.LineReader, core.DotDecoder, core.ChunkDecoder, core.quick = saved
    return run


def bench_session_c():
    """The compiled core (_server_c) over the compiled kernels, as production runs it."""
    def run():
        run_session(_server_c.ServerConnection())
    return run


def run_session(conn):
    conn.send(GREETING)
    for piece in SESSION:
        conn.receive_data(piece)
        while True:
            e = conn.next_event()
            if e is ev.NEED_DATA or e is ev.PAUSED:
                break
            if e.needs_reply:
                conn.send(ANSWERS[type(e)])
    assert conn.closed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    s = args.seconds
    mib = len(TEXT) / 1e6
    print(f"{'workload':26} {'python':>14} {'cython':>14} {'speedup':>8}")
    p = rate(bench_commands(_lines_py), s, batch=1) * N_COMMANDS
    c = rate(bench_commands(_lines_c), s, batch=1) * N_COMMANDS
    print(f"{'commands (read_command)':26} {p:10,.0f} c/s {c:10,.0f} c/s {c / p:7.1f}x")
    p = rate(bench_quick(_command_py), s, batch=1) * len(QUICK)
    c = rate(bench_quick(_command_c), s, batch=1) * len(QUICK)
    print(f"{'commands (quick_command)':26} {p:10,.0f} c/s {c:10,.0f} c/s {c / p:7.1f}x")
    for label, data in (("DATA text, 78-byte lines", TEXT), ("DATA 8bit, 990-byte lines", EIGHT)):
        p = rate(bench_dot(_data_py, data), s, batch=1) * len(data) / 1e6
        c = rate(bench_dot(_data_c, data), s, batch=1) * len(data) / 1e6
        print(f"{label:26} {p:10,.1f} MB/s {c:10,.1f} MB/s {c / p:7.1f}x")
    p = rate(bench_chunk(_data_py, TEXT), s, batch=1) * mib
    c = rate(bench_chunk(_data_c, TEXT), s, batch=1) * mib
    print(f"{'BDAT text':26} {p:10,.1f} MB/s {c:10,.1f} MB/s {c / p:7.1f}x")
    p = rate(bench_session_py(), s, batch=1)
    c = rate(bench_session_c(), s, batch=1)
    print(f"{'session core, 1 KiB msg':26} {p:10,.0f} t/s {c:10,.0f} t/s {c / p:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
