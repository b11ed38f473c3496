"""fastpost log: log a message as postlog(1) does.

Postfix counterpart: src/postlog/postlog.c

    fastpost log [-c config_dir] [-i] [-p priority] [-t tag] [-v] [text...]

Logs text (or each line of standard input when no text is given) with the tag
``$syslog_name/postlog`` (or -t tag) at the priority info, warn/warning, error, fatal
or panic, to syslog or maillog_file as main.cf says, and to stderr when stderr is a
terminal. -i adds the pid (always present in fastpost's format; accepted for
compatibility).

Diagnostics: a bad priority or option is a usage error (exit 64); fatal and panic
priorities log and exit 1 and 2 as postlog does; a maillog_file outside
maillog_file_prefixes is refused as Postfix's postlog refuses it
(``$syslog_name/postlog: fatal: ...`` on standard error, exit 1).
"""

from __future__ import annotations

import getopt
import sys

from fastpost.mail.config import Config, ConfigError
from fastpost.mail.maillog import init_logging
from fastpost.util import log

_PRIORITIES = {"info": "info", "warn": "warning", "warning": "warning", "error": "error",
               "fatal": "fatal", "panic": "panic"}


def main(argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "c:ip:t:v")
    except getopt.GetoptError as exc:
        print(f"fastpost log: {exc}\nusage: fastpost log [-c config_dir] [-i] [-p priority] "
              "[-t tag] [-v] [text...]", file=sys.stderr)
        return 64
    config_dir = None
    priority = "info"
    tag = None
    for opt, val in opts:
        if opt == "-c":
            config_dir = val
        elif opt == "-p":
            if val not in _PRIORITIES:
                print(f"fastpost log: unknown priority value: {val}", file=sys.stderr)
                return 64
            priority = _PRIORITIES[val]
        elif opt == "-t":
            tag = val
    try:
        cfg = Config(config_dir)
        from fastpost.mail.mainvalues import maillog_refused

        if maillog_refused(cfg, f"{cfg.get('syslog_name')}/postlog"):  # as Postfix's postlog
            return 1
        # Unprivileged callers that may not open maillog_file log through the postlog
        # service (fastpost.daemons.postlogd).
        init_logging("postlog", cfg, stream=sys.stderr if sys.stderr.isatty() else None)
    except ConfigError as exc:
        print(f"fastpost log: fatal: {exc}", file=sys.stderr)
        return 1
    if tag:
        log.set_tag(tag)
    lines = [" ".join(args)] if args else [line.rstrip("\n") for line in sys.stdin]
    for text in lines:
        text = log.printable(text)
        if priority == "fatal":
            log.log_at("fatal", text)
            return 1
        if priority == "panic":
            log.log_at("panic", text)
            return 2
        log.log_at(priority, text)
    return 0
