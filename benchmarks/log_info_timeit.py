"""Time one log.info() line as smtpd logs it: the maillog file deferred per loop turn.

What util/_logline_c (the line keeper) earns its place with (docs/accept.md,
"Session 11: smtpd's log lines and per-connection objects"): nanoseconds per
``log.info("connect from a[192.0.2.1]")`` in the loop's thread, the share of the
flush (one write per 200 lines) included; best of 7 rounds of 50 x 200 lines.
Run it against another tree with ``PYTHONPATH=TREE/src``. Wrap it in
``flock /tmp/fastpost-bench.lock`` on the shared machine.
"""

import asyncio
import os
import sys
import tempfile
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
if os.environ.get("PYTHONPATH"):  # another tree's src/ first
    sys.path[:0] = os.environ["PYTHONPATH"].split(os.pathsep)

from fastpost.util import log  # noqa: E402


def main() -> None:
    spool = tempfile.mkdtemp(prefix="fastpost-log-timeit-")
    log.init("smtpd", maillog_file=os.path.join(spool, "maillog"), use_syslog=False)
    loop = asyncio.new_event_loop()
    log.defer_file_writes(loop)

    def lines(n=200):
        for _ in range(n):
            log.info("connect from a[192.0.2.1]")
        log.flush()

    async def run() -> float:
        best = min(timeit.repeat(lines, number=50, repeat=7))
        return best / (50 * 200) * 1e9

    ns = loop.run_until_complete(run())
    log.defer_file_writes(None)
    loop.close()
    print(f"{log.__file__}: log.info {ns:.0f} ns per line")


if __name__ == "__main__":
    main()
