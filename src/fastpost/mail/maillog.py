"""Logging set-up from main.cf: the one place that maps parameters to log sinks.

Postfix counterpart: src/global/maillog_client.c

    init_logging(program, cfg, stream=None)

Lines are tagged ``$syslog_name/program`` and go to syslog (facility
$syslog_facility), or, when maillog_file is set, to that file; a process that may not
open the file (an unprivileged command) sends them to the postlog service
($queue_directory/public/$postlog_service_name, a unix-dgram service run by
fastpost.daemons.postlogd), which writes them for it. ``stream`` (stdout under
``start-fg``) gets every line too.

Parameters: syslog_name, syslog_facility, maillog_file, queue_directory,
postlog_service_name.
Diagnostics: ConfigError from the parameters; a sink that cannot be opened is reported
once on stderr (fastpost.util.log).
"""

from __future__ import annotations

import os

from fastpost.mail.config import Config
from fastpost.util import log


def postlog_endpoint(cfg: Config) -> str:
    """Return the socket path of the postlog service."""
    return os.path.join(cfg.get("queue_directory"), "public", cfg.get("postlog_service_name"))


def init_logging(program: str, cfg: Config, *, stream=None) -> None:
    """Point this process's log lines where main.cf says (see the module docstring)."""
    log.init(program, syslog_name=cfg.get("syslog_name"),
             syslog_facility=cfg.get("syslog_facility"), maillog_file=cfg.get("maillog_file"),
             stream=stream, postlog=postlog_endpoint(cfg))
