#!/usr/bin/env python3
"""AUTH PLAIN sessions per second: fastpost's smtpd next to C Postfix, one Dovecot.

    sudo .venv/bin/python benchmarks/auth_sessions.py [--seconds S] [--runs R]
        [--sessions 1,20] [--anvil]

One private Dovecot (auth service only, a passwd-file user, auth_failure_delay 0)
serves both servers through its client socket (smtpd_sasl_type = dovecot):

  C Postfix   a private instance (own config, queue, port; needs root), Debian's
              master.cf without chroot, smtpd_sasl_auth_enable = yes.
  fastpost    a private instance under its own master (fastpost start-fg), smtpd
              (and, with --anvil, the anvil service with a connection rate limit
              high enough never to refuse, so every session pays its round trips).

The load: --sessions concurrent clients (asyncio, in this process), each repeating
connect, EHLO, AUTH PLAIN (a correct password), QUIT for --seconds; every reply is
checked (a failure stops the run). Runs are interleaved Postfix, fastpost, ...;
printed: sessions/s (median of the runs) per server and the fastpost/Postfix ratio
(pair by pair, then the median). The clients share the two cores with both servers
and Dovecot, so absolute figures are low; the ratio is the figure that counts.

Diagnostics: exits 1 with the reason when not root, when postfix or dovecot is
missing, or when a session gets an unexpected reply.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers.instance import Instance, free_port  # noqa: E402
from helpers.peers import Dovecot, PrivatePostfix  # noqa: E402

USER, PASSWORD = "bench", "secret-pass"
AUTH = "AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()


async def _reply(reader) -> bytes:
    while True:
        line = await reader.readline()
        if not line or line[3:4] != b"-":
            return line


async def _client(port: int, stop_at: float, counter: list[int]) -> None:
    while time.monotonic() < stop_at:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for send, want in ((None, b"220"), (b"EHLO bench.example\r\n", b"250"),
                               (AUTH.encode() + b"\r\n", b"235"), (b"QUIT\r\n", b"221")):
                if send:
                    writer.write(send)
                got = await _reply(reader)
                if not got.startswith(want):
                    raise SystemExit(f"unexpected reply {got!r} (wanted {want.decode()})")
        finally:
            writer.close()
        counter[0] += 1


def measure(port: int, sessions: int, seconds: float) -> float:
    async def main():
        counter = [0]
        start = time.monotonic()
        await asyncio.gather(*(_client(port, start + seconds, counter)
                               for _ in range(sessions)))
        return counter[0] / (time.monotonic() - start)

    return asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", default="1,20")
    ap.add_argument("--anvil", action="store_true",
                    help="fastpost with anvil and a (never reached) connection rate limit")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("auth_sessions: run as root (private Postfix and Dovecot)", file=sys.stderr)
        return 1
    levels = [int(x) for x in args.sessions.split(",")]
    common = {"smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "dovecot",
              "smtpd_peername_lookup": "no", "mynetworks": "127.0.0.1/32"}
    with Dovecot({USER: PASSWORD}) as dv, PrivatePostfix(
            {**common, "smtpd_sasl_path": dv.socket}) as pfx, \
            tempfile.TemporaryDirectory(prefix="fastpost-bench-auth-") as tmp:
        port = free_port()
        # As fastpost's embedded master.cf: a multi-client smtpd is not recycled
        # after 100 clients (Postfix's max_use suits its one-client processes).
        master_cf = f"127.0.0.1:{port} inet n - n - - smtpd\n  -o max_use=100000\n"
        extra = {}
        if args.anvil:
            master_cf += "anvil unix - - n - 1 anvil\n"
            extra = {"smtpd_client_connection_rate_limit": "100000000",
                     "smtpd_client_auth_rate_limit": "100000000",
                     "smtpd_client_event_limit_exceptions": ""}
        inst = Instance(tmp, master_cf=master_cf,
                        main_cf={**common, "smtpd_sasl_path": dv.socket, **extra})
        try:
            inst.start()
            measure(pfx.port, 2, 1.0)  # warm up both (first smtpd processes, Dovecot)
            measure(port, 2, 1.0)
            print(f"AUTH PLAIN sessions/s, {args.runs} runs of {args.seconds:g}s "
                  f"(fastpost{' with anvil' if args.anvil else ''})")
            print(f"{'sessions':>8} {'postfix':>10} {'fastpost':>10} {'ratio':>7}  runs (pfx/fp)")
            for level in levels:
                pf, fp = [], []
                for _ in range(args.runs):
                    pf.append(measure(pfx.port, level, args.seconds))
                    fp.append(measure(port, level, args.seconds))
                ratio = statistics.median(f / p for f, p in zip(fp, pf))
                runs = " ".join(f"{p:.0f}/{f:.0f}" for p, f in zip(pf, fp))
                print(f"{level:>8} {statistics.median(pf):>10.0f} "
                      f"{statistics.median(fp):>10.0f} {ratio:>6.2f}x  {runs}")
        except SystemExit as exc:
            print(f"auth_sessions: {exc}; fastpost's log ends:", file=sys.stderr)
            print("\n".join(inst.log_text().splitlines()[-15:]), file=sys.stderr)
            return 1
        finally:
            inst.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
