"""What the queue commands (cat, queue, super) share: config, store, diagnostics.

Postfix counterpart: the common start of src/postcat, src/postqueue and src/postsuper
(mail_conf_read, msg_vstream_init + maillog/syslog, chdir to the queue directory).

Diagnostics go to standard error as Postfix's commands write them (``postsuper: ...``,
``postsuper: warning: ...``, ``postsuper: fatal: ...``) and, for commands that change the
queue, also to the mail log (syslog or maillog_file) as ``postfix/postsuper[pid]: ...``.

Parameters: syslog_name, syslog_facility, maillog_file, queue_directory.
Diagnostics: ToolFatal carries a fatal message and exit status 1 to the command's main;
``Tool.config`` judges main.cf's global values first (fastpost.mail.mainvalues).
"""

from __future__ import annotations

import sys

from fastpost.mail.config import Config, ConfigError
from fastpost.util import log


class ToolFatal(Exception):
    """A fatal error of a queue command; the text is printed after ``<prog>: fatal: ``."""


class Tool:
    """One command invocation's identity and diagnostics."""

    def __init__(self, prog: str, *, log_to_maillog: bool = False):
        self.prog = prog
        self.log_to_maillog = log_to_maillog
        self.cfg: Config | None = None

    def config(self, config_dir: str | None) -> Config:
        """main.cf, its global parameters' values judged as Postfix's commands judge
        them at start (fastpost.mail.mainvalues; postcat: not maillog_file)."""
        from fastpost.mail.mainvalues import judge

        try:
            cfg = Config(config_dir)
            warnings, fatal = judge(cfg, maillog=self.prog != "postcat")
            for text in warnings:
                print(f"{self.prog}: warning: {text}", file=sys.stderr)
            if fatal is not None:
                raise ToolFatal(fatal)
            if self.log_to_maillog:
                log.init(self.prog, syslog_name=cfg.get("syslog_name"),
                         syslog_facility=cfg.get("syslog_facility"), maillog_file=cfg.get("maillog_file"))
        except ConfigError as exc:
            raise ToolFatal(str(exc)) from None
        self.cfg = cfg
        return cfg

    def info(self, text: str) -> None:
        print(f"{self.prog}: {text}", file=sys.stderr, flush=True)
        if self.log_to_maillog:
            log.info("%s", text)

    def log(self, text: str) -> None:
        """An informational line for the mail log only (nothing on the terminal)."""
        if self.log_to_maillog:
            log.info("%s", text)

    def warn(self, text: str) -> None:
        print(f"{self.prog}: warning: {text}", file=sys.stderr, flush=True)
        if self.log_to_maillog:
            log.warn("%s", text)

    def fatal(self, text: str) -> int:
        print(f"{self.prog}: fatal: {text}", file=sys.stderr, flush=True)
        if self.log_to_maillog:
            log.log_at("fatal", text)
        return 1

    def open_store(self, cfg: Config):
        from fastpost.mail.queue import QueueError, QueueStore

        try:
            return QueueStore.open(cfg=cfg)
        except (QueueError, OSError) as exc:
            raise ToolFatal(f"open queue {cfg.get('queue_directory')}: {exc}") from None
