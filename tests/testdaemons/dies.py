"""Test daemon: fails at start-up, every time (the master must throttle it).

master.cf arguments: none (an exception in pre_init: fatal, exit status 1),
``panic`` (log.panic: an internal inconsistency, exit status 2) or ``slow`` (logs
"starting slowly" and never finishes starting: a test kills it during start-up).
"""

import signal
import time

from fastpost.server import single_server_main
from fastpost.util import log


def pre_init(ctx):
    if ctx.argv[:1] == ["panic"]:
        log.panic("inconsistent state, on purpose")
    if ctx.argv[:1] == ["slow"]:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a graceful stop ends it at once
        log.info("starting slowly")
        time.sleep(600)
    raise RuntimeError("this daemon cannot start")


def main(argv):
    single_server_main(argv, None, pre_init=pre_init)
