"""fastpost start|start-fg|stop|abort|reload|status|check|flush|set-permissions: postfix(1).

Postfix counterpart: src/postfix/postfix.c, conf/postfix-script, src/postfix/post-install

    fastpost [-c config_dir] [-v] VERB

    start            check (and first-time set-up), then start the master in the
                     background; wait until it has bound every listener and say whether
                     it did, with the reason when not
    start-fg         the same in the foreground (containers, ./dev run); Ctrl-C stops it
    stop             graceful stop: workers finish their clients (fastpost_stop_timeout),
                     then whatever is left is killed; returns when nothing runs
    abort            stop at once
    reload           check main.cf and master.cf, then have the master re-read them
    status           is the mail system running? (exit 0 yes, 1 no)
    check            configuration valid, daemons loadable, queue directories, owners
                     and modes right, mail_owner exists and is not root; names the
                     Postfix parameters main.cf sets that fastpost does not implement
    flush            ask qmgr to retry all deferred mail now (trigger AFDI), and the
                     fast-flush service to refresh its per-destination logs
    set-permissions  create mail_owner and setgid_group if missing (root), create the
                     queue tree and repair owners and modes
    upgrade-configuration  create what is missing (as Postfix's, nothing to rewrite)

First-time set-up (start, start-fg, check as root): a missing mail_owner user or
setgid_group group is created (system accounts, no login), the queue tree is created
with Postfix's owners and modes (fastpost.master.layout).

Messages go to stderr as ``<syslog_name>/postfix-script: [warning: |fatal: ]text`` and
to the mail log, as Postfix's do.

Parameters: queue_directory, mail_name, syslog_name, maillog_file, mail_owner,
setgid_group, fastpost_stop_timeout, queue_service_name, and everything `check` checks.
Exit status: 0 success; 1 failure (the message says why); 64 usage. As Postfix's
postfix(1), every verb first judges the global parameters' values, maillog_file
against maillog_file_prefixes included (``postfix: fatal: ...`` in Postfix's words,
exit 1; fastpost.mail.mainvalues.judge) -- after the first-time set-up of the
accounts for the verbs that do it.
"""

from __future__ import annotations

import getopt
import os
import signal
import sys
import time

from fastpost.mail import params
from fastpost.mail.config import Config, ConfigError, config_directory
from fastpost.mail.maillog import init_logging
from fastpost.master import layout, pidfile
from fastpost.util import log

VERBS = ("start", "start-fg", "stop", "abort", "reload", "status", "check", "flush",
         "set-permissions", "upgrade-configuration")
USAGE = f"usage: fastpost [-c config_dir] [-v] {{{'|'.join(VERBS)}}}"


class Reporter:
    """Messages for the person at the terminal, also written to the mail log."""

    def __init__(self, cfg: Config | None):
        syslog_name = cfg.get("syslog_name") if cfg else "postfix"
        self.tag = f"{syslog_name}/postfix-script"
        self.to_log = False
        if cfg is not None:
            maillog = cfg.get("maillog_file")
            if maillog not in ("/dev/stdout", "/dev/stderr"):
                init_logging("postfix-script", cfg)
                self.to_log = True
        self.fatals = 0

    def _say(self, level: str, text: str) -> None:
        prefix = "" if level == "info" else f"{level}: "
        print(f"{self.tag}: {prefix}{text}", file=sys.stderr, flush=True)
        if self.to_log:
            log.log_at(level, text)

    def info(self, text: str) -> None:
        self._say("info", text)

    def warn(self, text: str) -> None:
        self._say("warning", text)

    def fatal(self, text: str) -> int:
        self.fatals += 1
        self._say("fatal", text)
        return 1


def unsupported_settings(cfg: Config) -> list[tuple[str, str]]:
    """Return (name, where) for every parameter set that fastpost does not implement."""
    fn = getattr(params, "unsupported_settings", None)
    if fn is not None:
        return list(fn(cfg))
    out = []
    for name in list(cfg.values) + list(cfg.overrides):
        decl = params.lookup(name)
        if decl is not None and not decl.supported:
            out.append((name, cfg.where(name)))
    return out


class Control:
    """The verbs, for one configuration directory."""

    def __init__(self, config_dir: str, cfg: Config, verbose: int, say: Reporter):
        self.config_dir = config_dir
        self.cfg = cfg
        self.verbose = verbose
        self.say = say
        self.name = cfg.get("mail_name") or "fastpost"
        self.qdir = cfg.get("queue_directory")

    def running(self) -> int:
        return pidfile.running(self.qdir)

    # -- checks ---------------------------------------------------------------------------

    def check_fatal(self) -> int:
        """First-time set-up and everything that must hold to start; 1 on failure."""
        try:
            for line in layout.ensure_accounts(self.cfg):
                self.say.info(line)
            for line in layout.ensure_tree(self.cfg):
                self.say.info(line)
        except layout.SetupError as exc:
            return self.say.fatal(str(exc))
        failed = 0
        for name in sorted(self.cfg.values):
            if params.lookup(name) is None:
                continue
            try:
                self.cfg.typed(name)
            except ConfigError as exc:
                failed = self.say.fatal(str(exc))
        from fastpost.master.master import Master

        problems: list[str] = []
        try:
            _, specs = Master(self.config_dir, verbose=self.verbose).load(problems)
        except ConfigError as exc:
            return self.say.fatal(str(exc))
        for text in problems:
            failed = self.say.fatal(text)
        self.specs = specs
        for text in _smtpd_problems(self.cfg, specs):
            failed = self.say.fatal(text)
        for level, text in layout.check(self.cfg):
            if level == "fatal":
                failed = self.say.fatal(text)
        return failed

    def check_warn(self) -> None:
        """Warnings that do not stop a start."""
        for level, text in layout.check(self.cfg):
            if level == "warning":
                self.say.warn(text)
        for name, where in unsupported_settings(self.cfg):
            self.say.warn(f"{where}: {name} is a Postfix parameter that fastpost does not "
                          f"implement: it has no effect")
        for spec in getattr(self, "specs", []):
            for name in spec.entry.overrides():
                decl = params.lookup(name)
                if decl is not None and not decl.supported:
                    self.say.warn(f"{spec.where}: -o {name}: a Postfix parameter that "
                                  f"fastpost does not implement: it has no effect")

    # -- verbs ----------------------------------------------------------------------------

    def do_check(self) -> int:
        rc = self.check_fatal()
        self.check_warn()
        return rc

    def do_start(self, foreground: bool = False) -> int:
        pid = self.running()
        if pid:
            return self.say.fatal(f"the {self.name} mail system is already running (pid {pid})")
        if self.check_fatal():
            return self.say.fatal(f"{self.name} integrity check failed!")
        self.check_warn()
        self.say.info(f"starting the {self.name} mail system")
        if foreground:
            return run_master(self.config_dir, foreground=True, verbose=self.verbose)
        return self._daemonize()

    def _daemonize(self) -> int:
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                if null > 2:
                    os.close(null)
                code = run_master(self.config_dir, foreground=False, verbose=self.verbose,
                                  ready_fd=w)
            finally:
                os._exit(code)
        os.close(w)
        chunks = []
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        answer = b"".join(chunks).decode("utf-8", "replace").strip()
        if answer == "ok":
            return 0
        return self.say.fatal(answer or "mail system startup failed")

    def _wait_gone(self, pid: int, seconds: float, note: bool = True) -> bool:
        """Wait until the master has let go of its lock and exited; True if it did."""
        deadline = time.monotonic() + seconds
        next_note = time.monotonic() + 2
        while time.monotonic() < deadline:
            if not self.running() and not _alive(pid):
                return True
            if note and time.monotonic() >= next_note:
                self.say.info(f"waiting for the {self.name} mail system to terminate")
                next_note = time.monotonic() + 10
            time.sleep(0.05)
        return False

    def do_stop(self) -> int:
        pid = self.running()
        if not pid:
            return self.say.fatal(f"the {self.name} mail system is not running")
        self.say.info(f"stopping the {self.name} mail system")
        _kill(pid, signal.SIGTERM)
        from fastpost.master.master import KILL_GRACE

        try:
            patience = self.cfg.get_time("fastpost_stop_timeout") + KILL_GRACE + 5
        except ConfigError:
            patience = 40
        if self._wait_gone(pid, patience):
            return 0
        self.say.warn(f"stopping the {self.name} mail system with force")
        for child in _children_of(pid):
            _kill(child, signal.SIGKILL)
        _kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 5, note=False)
        return 0

    def do_abort(self) -> int:
        pid = self.running()
        if not pid:
            return self.say.fatal(f"the {self.name} mail system is not running")
        self.say.info(f"aborting the {self.name} mail system")
        _kill(pid, signal.SIGQUIT)
        from fastpost.master.master import KILL_GRACE

        if not self._wait_gone(pid, KILL_GRACE + 5, note=False):
            for child in _children_of(pid):
                _kill(child, signal.SIGKILL)
            _kill(pid, signal.SIGKILL)
        return 0

    def do_reload(self) -> int:
        pid = self.running()
        if not pid:
            return self.say.fatal(f"the {self.name} mail system is not running")
        from fastpost.master.master import Master

        try:
            Master(self.config_dir, verbose=self.verbose).load()
        except ConfigError as exc:
            self.say.fatal(str(exc))
            return self.say.fatal("configuration not reloaded: the running one stays in effect")
        self.say.info(f"refreshing the {self.name} mail system")
        _kill(pid, signal.SIGHUP)
        return 0

    def do_status(self) -> int:
        pid = self.running()
        if not pid:
            self.say.info(f"the {self.name} mail system is not running")
            return 1
        self.say.info(f"the {self.name} mail system is running: PID: {pid}")
        return 0

    def do_flush(self) -> int:
        from fastpost.mail import ipc

        if not self.running():
            return self.say.fatal(f"cannot flush the mail queue: the {self.name} mail system "
                                  f"is not running")
        try:
            ipc.mail_trigger(self.qdir, self.cfg.get("queue_service_name"), ipc.QMGR_FLUSH,
                             timeout=self.cfg.get_time("trigger_timeout"))
        except (ipc.IPCError, ConfigError) as exc:
            return self.say.fatal(f"cannot flush the mail queue: {exc}")
        from fastpost.cli.postqueue import refresh_flush_logs

        refresh_flush_logs(self.cfg)  # the fast-flush logs, as their times say
        return 0

    def do_set_permissions(self, repair: bool = True) -> int:
        try:
            for line in layout.ensure_accounts(self.cfg):
                self.say.info(line)
            for line in layout.ensure_tree(self.cfg, repair=repair):
                self.say.info(line)
        except layout.SetupError as exc:
            return self.say.fatal(str(exc))
        return 0


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[0] != b"Z"
    except (OSError, IndexError):
        return False


def _children_of(pid: int) -> list[int]:
    """Pids whose parent is pid (the master's workers), from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def run_master(config_dir: str, *, foreground: bool, verbose: int = 0,
               ready_fd: int | None = None) -> int:
    """Run the master in this process until it stops; return its exit status.

    With ready_fd, write "ok" (or the reason it could not start) there once the
    listeners are up, and close it.
    """
    from fastpost.master.master import Master, StartError

    master = Master(config_dir, foreground=foreground, verbose=verbose)
    try:
        master.start()
    except StartError as exc:
        log.log_at("fatal", str(exc))
        if ready_fd is not None:
            os.write(ready_fd, str(exc).encode("utf-8", "replace"))
            os.close(ready_fd)
        elif log.stream() is None:
            print(f"{log.tag()}: fatal: {exc}", file=sys.stderr)
        return 1
    if ready_fd is not None:
        os.write(ready_fd, b"ok\n")
        os.close(ready_fd)
    return master.run()


#: The verbs that do the first-time set-up (check_fatal, do_set_permissions).
SETUP_VERBS = ("start", "start-fg", "check", "set-permissions", "upgrade-configuration")


def main(argv: list[str]) -> int:
    """Entry point: argv[0] is the verb, then -c/-v options."""
    if not argv or argv[0] not in VERBS:
        print(USAGE, file=sys.stderr)
        return 64
    verb = argv[0]
    try:
        opts, rest = getopt.getopt(argv[1:], "c:vD")
    except getopt.GetoptError as exc:
        print(f"fastpost: {exc}\n{USAGE}", file=sys.stderr)
        return 64
    if rest:
        print(f"fastpost {verb}: unexpected arguments: {' '.join(rest)}\n{USAGE}", file=sys.stderr)
        return 64
    config_dir = None
    verbose = 0
    for flag, value in opts:
        if flag == "-c":
            config_dir = value
        elif flag == "-v":
            verbose += 1
    config_dir = os.path.abspath(config_directory(config_dir))
    try:
        cfg = Config(config_dir)
        cfg.get("queue_directory")
    except ConfigError as exc:
        Reporter(None).fatal(str(exc))
        return 1
    if os.geteuid() == 0 and verb in SETUP_VERBS:
        # first-time set-up before the values are judged: the accounts (check_fatal
        # reports a failure to create them)
        try:
            for line in layout.ensure_accounts(cfg):
                Reporter(cfg).info(line)
        except layout.SetupError:
            pass
    from fastpost.mail.mainvalues import refused_config

    if refused_config(cfg, "postfix"):  # Postfix's postfix(1): every verb, exit 1
        return 1
    say = Reporter(cfg)
    ctl = Control(config_dir, cfg, verbose, say)
    if verb == "start":
        return ctl.do_start()
    if verb == "start-fg":
        return ctl.do_start(foreground=True)
    if verb == "set-permissions":
        return ctl.do_set_permissions(repair=True)
    if verb == "upgrade-configuration":
        return ctl.do_set_permissions(repair=False)
    return getattr(ctl, "do_" + verb)()


def _smtpd_problems(cfg, specs) -> list[str]:
    """What would make each smtpd service of master.cf refuse to start: the relay rule
    and undefined restriction classes (docs/policy.md), with its -o overrides."""
    from fastpost.daemons.smtpd.checks.engine import check_config

    out = []
    for spec in specs:
        entry = spec.entry
        if entry.command != "smtpd":
            continue
        try:
            check_config(cfg.with_overrides(entry.overrides()))
        except ConfigError as exc:
            out.append(f"{spec.where}: service {entry.key}: {exc}")
    return out

