"""The master daemon: listeners, worker pools, restarts, reloads, shutdown.

Postfix counterpart: src/master/master.c, master_spawn.c, master_avail.c,
master_status.c, master_wakeup.c, master_sig.c, master_service.c

One master per queue directory (pid file lock, see pidfile). It reads main.cf and
master.cf, imports every daemon module, creates every listener itself (port 25 needs
root), and forks workers on demand:

  * a service's listeners are watched only while no worker of it is free and the
    process limit (maxproc; 0 = none) allows another; a waiting connection then forks
    one. A new worker counts as free until it reports otherwise;
  * workers report TAKEN/AVAIL over a per-service SOCK_SEQPACKET channel (their fd 5);
    closing the master's end tells every worker of that generation to finish what it
    has and exit (reload, stop, master death);
  * a worker that dies before it ever reported is a bad start-up: the service is
    throttled for service_throttle_time with a warning; other services are untouched
    (not when SIGKILL or SIGTERM killed it: that is someone else's doing, not the
    command's);
  * every abnormal exit is logged (``process CMD pid N exit status S`` / ``killed by
    signal S``);
  * ``wakeup`` (column 6) sends ``W`` to the service's own endpoint every N seconds;
    with a trailing ``?`` only once the service has had a worker.

Signals:
  SIGHUP   reload main.cf and master.cf. Services whose endpoints are unchanged keep
           their listeners; every running worker finishes its clients and exits (new
           workers get the new configuration); added services start; removed
           services stop and their workers are terminated, as Postfix does. A
           configuration error keeps the running configuration (logged).
  SIGTERM  graceful stop (also SIGINT, Ctrl-C under start-fg): listeners close,
           workers finish their clients and exit; those still running after
           fastpost_stop_timeout get SIGTERM, then SIGKILL 5 s later. The master exits
           when none is left. A second SIGTERM/SIGINT aborts.
  SIGQUIT  abort: workers get SIGTERM at once, the master exits.

Run as non-root (the embedded development set-up) nothing is chrooted and nothing
changes user; one warning says so at start.

Parameters: queue_directory, mail_owner, service_throttle_time, default_process_limit,
master_service_disable, inet_interfaces, inet_protocols, fork_delay,
fastpost_stop_timeout, syslog_name, syslog_facility, maillog_file.
Diagnostics: start-up problems raise StartError with a text naming the file and line
or the endpoint; run-time problems are warnings in the log.
"""

from __future__ import annotations

import fcntl
import gc
import os
import pwd
import select
import signal
import socket
import sys
import time
import traceback

import setproctitle

from fastpost import _version
from fastpost.mail.config import Config, ConfigError
from fastpost.mail.maillog import init_logging
from fastpost.mail.mastercf import load as load_master_cf
from fastpost.master import pidfile
from fastpost.master.listen import ListenError, close_listener, open_endpoint
from fastpost.master.loop import EventLoop
from fastpost.master.services import ServiceSpec, is_disabled, resolve
from fastpost.server import lifecycle
from fastpost.server.lifecycle import MASTER_STATUS_FD, STATUS_AVAIL, STATUS_MESSAGE, STATUS_TAKEN
from fastpost.util import log

#: Seconds between SIGTERM and SIGKILL for workers that outlive a graceful stop.
KILL_GRACE = 5.0
#: Seconds between two "process limit reached" warnings for one service.
LIMIT_WARNING_INTERVAL = 300.0
#: Signals that kill a worker from outside: dying of one before the first report is not
#: a bad start-up (no throttling).
EXTERNAL_SIGNALS = (signal.SIGKILL, signal.SIGTERM)


class StartError(Exception):
    """The master cannot start; the text says why."""


class Child:
    """One worker process."""

    __slots__ = ("pid", "service", "generation", "avail", "ready", "uses", "killed")

    def __init__(self, pid: int, service: "Service"):
        self.pid = pid
        self.service = service
        self.generation = service.generation
        self.avail = True  # counted free until it reports TAKEN
        self.ready = False  # has reported at least once (start-up succeeded)
        self.uses = 0  # TAKEN reports
        self.killed = False  # the master sent it a signal (its exit is expected)


class Service:
    """A master.cf service at run time: listeners, status channel, workers."""

    def __init__(self, master: "Master", spec: ServiceSpec):
        self.master = master
        self.spec = spec
        self.listeners: list = []
        self.children: dict[int, Child] = {}
        self.avail = 0
        self.generation = 0
        self.status_master: socket.socket | None = None
        self.status_child: socket.socket | None = None
        self.throttle_timer = None
        self.wakeup_timer = None
        self.watching = False
        self.used = False
        # -inf, not 0: monotonic() counts from boot, and a machine up for less than
        # LIMIT_WARNING_INTERVAL would otherwise never give the first warning.
        self.limit_warned = float("-inf")
        self.retired = 0  # live workers of earlier generations (they count toward maxproc)

    # -- endpoints ---------------------------------------------------------------------

    def open(self, owner) -> None:
        """Create the listeners; ListenError (nothing left open) on failure."""
        opened = []
        try:
            for ep in self.spec.endpoints:
                opened.append(open_endpoint(ep, owner))
        except ListenError:
            for ep, lst in zip(self.spec.endpoints, opened):
                close_listener(ep, lst)
            raise
        self.listeners = opened

    def close_listeners(self) -> None:
        self.unwatch()
        for ep, lst in zip(self.spec.endpoints, self.listeners):
            close_listener(ep, lst)
        self.listeners = []

    # -- generations ---------------------------------------------------------------------

    def new_generation(self) -> None:
        """Start a fresh status channel; workers of the old one finish and exit."""
        self.close_channel()
        self.generation += 1
        self.status_master, self.status_child = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.status_master.setblocking(False)
        self.master.loop.add_reader(self.status_master.fileno(), self.read_status)
        self.avail = 0
        self.used = False
        for child in self.children.values():
            child.avail = False
        self.retired += len(self.children)
        self.children = {}  # the master's table still has them, for reaping

    @property
    def total(self) -> int:
        """Live workers of every generation: what maxproc limits."""
        return len(self.children) + self.retired

    def close_channel(self) -> None:
        if self.status_master is not None:
            self.master.loop.remove_reader(self.status_master.fileno())
            self.status_master.close()
            self.status_child.close()
            self.status_master = self.status_child = None

    def read_status(self) -> None:
        while True:
            try:
                data = self.status_master.recv(STATUS_MESSAGE.size * 4)
            except (BlockingIOError, InterruptedError):
                break
            if len(data) != STATUS_MESSAGE.size:
                if data:
                    log.warn("service %s: bad status message of %d bytes", self.spec.key, len(data))
                break
            pid, status = STATUS_MESSAGE.unpack(data)
            child = self.children.get(pid)
            if child is None:
                continue
            child.ready = True
            if status == STATUS_AVAIL and not child.avail:
                child.avail = True
                self.avail += 1
            elif status == STATUS_TAKEN and child.avail:
                child.avail = False
                child.uses += 1
                self.avail -= 1
        self.update()

    # -- spawning ------------------------------------------------------------------------

    def may_spawn(self) -> bool:
        m = self.master
        return (not m.stopping and self.throttle_timer is None and bool(self.listeners)
                and self.status_master is not None
                and (self.spec.maxproc == 0 or self.total < self.spec.maxproc))

    def update(self) -> None:
        """Watch the listeners exactly when a waiting client should fork a worker."""
        want = self.avail == 0 and self.may_spawn()
        if want and not self.watching:
            for lst in self.listeners:
                self.master.loop.add_reader(_fd(lst), self.client_waiting)
            self.watching = True
        elif not want and self.watching:
            self.unwatch()
        if (self.avail == 0 and self.spec.maxproc > 1 and self.total >= self.spec.maxproc
                and not self.master.stopping):
            now = time.monotonic()
            if now - self.limit_warned > LIMIT_WARNING_INTERVAL:
                self.limit_warned = now
                log.warn('service "%s" (%s) has reached its process limit %d: new clients '
                         "may wait", self.spec.name, self.spec.type, self.spec.maxproc)

    def unwatch(self) -> None:
        if self.watching:
            for lst in self.listeners:
                self.master.loop.remove_reader(_fd(lst))
            self.watching = False

    def client_waiting(self) -> None:
        if self.avail == 0 and self.may_spawn():
            self.master.spawn(self)
        self.update()

    def throttle(self, seconds: float) -> None:
        if self.throttle_timer is not None:
            return
        self.throttle_timer = self.master.loop.call_later(seconds, self.unthrottle)
        self.update()

    def unthrottle(self) -> None:
        self.throttle_timer = None
        self.update()

    # -- wakeup ----------------------------------------------------------------------------

    def schedule_wakeup(self) -> None:
        if self.wakeup_timer is not None:
            self.wakeup_timer.cancel()
            self.wakeup_timer = None
        if self.spec.wakeup > 0 and not self.master.stopping:
            self.wakeup_timer = self.master.loop.call_later(self.spec.wakeup, self.wakeup)

    def wakeup(self) -> None:
        self.wakeup_timer = None
        # Not while throttled, and not when a trigger or client is already waiting (an
        # earlier wakeup not yet read): wakeups must never pile up in the listen queue.
        if (self.listeners and self.throttle_timer is None
                and not (self.spec.entry.wakeup_conditional and not self.used)
                and not select.select([_fd(self.listeners[0])], [], [], 0)[0]):
            send_trigger(self.spec.endpoints[0], self.listeners[0], b"W")
        self.schedule_wakeup()

    def cancel_timers(self) -> None:
        for timer in (self.wakeup_timer, self.throttle_timer):
            if timer is not None:
                timer.cancel()
        self.wakeup_timer = self.throttle_timer = None


def _fd(listener) -> int:
    return listener if isinstance(listener, int) else listener.fileno()


def send_trigger(ep, listener, data: bytes) -> bool:
    """Write a trigger to a service's own endpoint without blocking; True if sent."""
    try:
        if ep.kind == "fifo":
            os.write(listener, data)
        elif ep.kind == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.setblocking(False)
                sock.connect(ep.address[0])
                sock.send(data)
        elif ep.kind == "unix-dgram":
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(data, ep.address[0])
        else:
            return False
    except (BlockingIOError, InterruptedError):
        return False  # the service is backlogged: it has work and will wake anyway
    except OSError as exc:
        log.warn("wakeup %s: %s", ep.describe(), exc.strerror)
        return False
    return True


class Master:
    """The master process (see the module docstring)."""

    def __init__(self, config_dir: str, *, foreground: bool = False, verbose: int = 0):
        self.config_dir = os.path.abspath(config_dir)
        self.foreground = foreground
        self.verbose = verbose
        self.loop = EventLoop()
        self.services: dict[str, Service] = {}
        self.children: dict[int, Child] = {}
        self.stopping = False
        self.aborting = False
        self.stop_timer = None
        self.pid_fd: int | None = None
        self.cfg: Config | None = None
        self.owner = None  # (uid, gid) of mail_owner for socket ownership, when root

    # -- configuration -----------------------------------------------------------------------

    def load(self, errors: list[str] | None = None) -> tuple[Config, list[ServiceSpec]]:
        """Read main.cf and master.cf; ConfigError on the first problem, or, when an
        ``errors`` list is given, each bad master.cf entry's problem appended to it."""
        cfg = Config(self.config_dir)
        for name in ("queue_directory", "mail_owner", "service_throttle_time", "fork_delay",
                     "fastpost_stop_timeout", "default_process_limit", "syslog_name"):
            cfg.typed(name)
        entries = load_master_cf(self.config_dir)
        disabled = cfg.get_list("master_service_disable")
        path = os.path.join(self.config_dir, "master.cf")
        specs = []
        for entry in entries:
            if is_disabled(entry, disabled):
                log.info("service %s disabled by master_service_disable", entry.key)
                continue
            try:
                specs.append(resolve(entry, cfg, path=path, verbose=self.verbose,
                                     foreground=self.foreground))
            except ConfigError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
        return cfg, specs

    def _init_log(self, cfg: Config) -> None:
        init_logging("master", cfg, stream=sys.stdout if self.foreground else None)

    def _mail_owner_ids(self, cfg: Config):
        if os.geteuid() != 0:
            return None
        name = cfg.get("mail_owner")
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise StartError(f"{cfg.where('mail_owner')}: parameter mail_owner: unknown user "
                             f"name value: {name}") from None
        if pw.pw_uid == 0:
            raise StartError(f"mail_owner: user {name} has privileged user ID")
        return (pw.pw_uid, pw.pw_gid)

    # -- start-up ------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the lock, read the configuration, bind everything; StartError on failure."""
        os.environ["FASTPOST_CONFIG"] = self.config_dir
        os.environ["MAIL_CONFIG"] = self.config_dir
        os.umask(0o022)
        try:
            cfg = Config(self.config_dir)
            self._init_log(cfg)
            qdir = cfg.get("queue_directory")
        except ConfigError as exc:
            raise StartError(str(exc)) from None
        try:
            os.chdir(qdir)
        except OSError as exc:
            raise StartError(f"chdir {qdir}: {exc.strerror}") from None
        try:
            self.pid_fd = pidfile.acquire(qdir)
        except pidfile.AlreadyRunning as exc:
            raise StartError(f"the {cfg.get('mail_name')} mail system is already running"
                             + (f" (pid {exc.pid})" if exc.pid else "")) from None
        except OSError as exc:
            raise StartError(f"pid file {pidfile.path(qdir)}: {exc.strerror}") from None
        try:
            self.cfg, specs = self.load()
            self.owner = self._mail_owner_ids(self.cfg)
            for spec in specs:
                svc = Service(self, spec)
                try:
                    svc.open(self.owner)
                except ListenError as exc:
                    raise StartError(f"{spec.where}: service {spec.key}: {exc}") from None
                self.services[spec.key] = svc
        except (ConfigError, StartError) as exc:
            self._close_all_listeners()
            pidfile.release(qdir, self.pid_fd)
            self.pid_fd = None
            raise StartError(str(exc)) from None
        for svc in self.services.values():
            svc.new_generation()
            svc.schedule_wakeup()
            svc.update()
        self.loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        self.loop.add_signal_handler(signal.SIGTERM, self._on_term)
        self.loop.add_signal_handler(signal.SIGINT, self._on_term)
        self.loop.add_signal_handler(signal.SIGQUIT, self._on_quit)
        self.loop.add_signal_handler(signal.SIGCHLD, self._on_child)
        if os.geteuid() != 0:
            user = pwd.getpwuid(os.geteuid()).pw_name
            log.warn("not running as root: services run as %s, without chroot or privilege "
                     "separation", user)
        setproctitle.setproctitle(f"fastpost master -c {self.config_dir}")
        log.info("daemon started -- version %s, configuration %s", _version.__version__,
                 self.config_dir)

    def run(self) -> int:
        """Serve until stopped; return the exit status."""
        gc.collect()
        gc.freeze()  # workers share the imported code pages instead of copying them
        try:
            self.loop.run()
        except BaseException as exc:
            # A master bug: say where, release the listeners and the lock, exit loudly.
            log.log_at("panic", "master: %s" % lifecycle.describe_exception(exc))
            self._shutdown()
            raise
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        self._close_all_listeners()
        for svc in self.services.values():
            svc.close_channel()
            svc.cancel_timers()
        if self.pid_fd is not None:
            pidfile.release(self.cfg.get("queue_directory"), self.pid_fd)
            self.pid_fd = None

    def _close_all_listeners(self) -> None:
        for svc in self.services.values():
            svc.close_listeners()

    # -- workers ------------------------------------------------------------------------------

    def spawn(self, svc: Service) -> None:
        """Fork one worker for svc."""
        sys.stdout.flush()  # or the child would write the parent's buffered text again
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            log.warn("fork: %s", exc.strerror)
            svc.throttle(self.cfg.get_time("fork_delay"))
            return
        if pid == 0:
            self._become_worker(svc)  # never returns
        child = Child(pid, svc)
        svc.children[pid] = child
        self.children[pid] = child
        svc.avail += 1
        svc.used = True
        log.debug("spawned %s pid %d for service %s", svc.spec.command, pid, svc.spec.key)

    def _become_worker(self, svc: Service):
        """In the child: keep svc's descriptors at 5, 6, ... and run the daemon's main()."""
        code = 1
        try:
            lifecycle.reset_signals_for_child()
            log.close_sinks()
            keep = [svc.status_child] + list(svc.listeners)
            self._close_in_child(keep)
            _install_descriptors(keep)
            setproctitle.setproctitle(" ".join(svc.spec.argv))
            result = svc.spec.module.main(list(svc.spec.argv))
            code = result if isinstance(result, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # a daemon bug: say where, exit as a panic
            traceback.print_exc()
            try:
                log.log_at("error", "uncaught exception: %s" % lifecycle.describe_exception(exc))
            except Exception:
                pass
            code = 2
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _close_in_child(self, keep: list) -> None:
        keep_ids = {id(obj) for obj in keep}
        for svc in self.services.values():
            for lst in svc.listeners:
                if id(lst) not in keep_ids:
                    _close_quietly(lst)
            for sock in (svc.status_master, svc.status_child):
                if sock is not None and id(sock) not in keep_ids:
                    _close_quietly(sock)
        self.loop.close_in_child()
        if self.pid_fd is not None:
            _close_quietly(self.pid_fd)

    def _on_child(self, signum: int) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._child_exited(child, status)
        if self.stopping and not self.children:
            self.loop.stop()

    def _child_exited(self, child: Child, status: int) -> None:
        svc = child.service
        current = svc.children.get(child.pid) is child
        if current:
            del svc.children[child.pid]
            if child.avail:
                svc.avail -= 1
        else:
            svc.retired -= 1
        normal = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if not normal and not child.killed:
            if os.WIFSIGNALED(status):
                how = f"killed by signal {os.WTERMSIG(status)}"
            else:
                how = f"exit status {os.WEXITSTATUS(status)}"
            log.warn("process %s pid %d %s", svc.spec.command, child.pid, how)
            # Killed from outside (SIGKILL: the OOM killer, an operator, the reliability
            # battery; SIGTERM) says nothing about the command: a Python worker spends
            # a few hundred ms starting, and throttling the service for
            # service_throttle_time after such a kill refused all clients for a minute.
            external = os.WIFSIGNALED(status) and os.WTERMSIG(status) in EXTERNAL_SIGNALS
            if (current and not child.ready and not external and svc.throttle_timer is None
                    and self.services.get(svc.spec.key) is svc and not self.stopping):
                log.warn("%s: bad command startup -- throttling", svc.spec.command)
                svc.throttle(self.cfg.get_time("service_throttle_time"))
        if self.services.get(svc.spec.key) is svc:
            svc.update()

    def _signal_children(self, children, signum: int) -> None:
        for child in children:
            child.killed = True
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass

    # -- signals ------------------------------------------------------------------------------

    def _on_hup(self, signum: int) -> None:
        if self.stopping:
            return
        self.reload()

    def _on_term(self, signum: int) -> None:
        if self.stopping:
            log.info("terminating on signal %d (second request): aborting", signum)
            self.abort()
            return
        self.stop(signum)

    def _on_quit(self, signum: int) -> None:
        log.info("terminating on signal %d (abort)", signum)
        self.abort()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Graceful stop (see the module docstring)."""
        self.stopping = True
        log.info("terminating on signal %d", signum)
        for svc in self.services.values():
            svc.cancel_timers()
            svc.close_listeners()
            svc.close_channel()
        if not self.children:
            self.loop.stop()
            return
        timeout = self.cfg.get_time("fastpost_stop_timeout")
        self.stop_timer = self.loop.call_later(timeout, self._stop_expired)

    def _stop_expired(self) -> None:
        if not self.children:
            return
        log.warn("%d process(es) still running after fastpost_stop_timeout: terminating them",
                 len(self.children))
        self._signal_children(list(self.children.values()), signal.SIGTERM)
        self.stop_timer = self.loop.call_later(KILL_GRACE, self._kill_remaining)

    def _kill_remaining(self) -> None:
        self._signal_children(list(self.children.values()), signal.SIGKILL)

    def abort(self) -> None:
        """Stop at once: every worker gets SIGTERM; wait briefly for them to go."""
        self.stopping = self.aborting = True
        for svc in self.services.values():
            svc.cancel_timers()
            svc.close_listeners()
            svc.close_channel()
        self._signal_children(list(self.children.values()), signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while self.children and time.monotonic() < deadline:
            self._on_child(signal.SIGCHLD)
            if self.children:
                time.sleep(0.01)
        if self.children:
            self._signal_children(list(self.children.values()), signal.SIGKILL)
        self.loop.stop()

    # -- reload ---------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read main.cf and master.cf (see the module docstring)."""
        log.info("reload -- version %s, configuration %s", _version.__version__, self.config_dir)
        try:
            cfg, specs = self.load()
            owner = self._mail_owner_ids(cfg)
        except (ConfigError, StartError) as exc:
            log.error("reload: %s; keeping the running configuration", exc)
            return
        old_qdir, new_qdir = self.cfg.get("queue_directory"), cfg.get("queue_directory")
        if new_qdir != old_qdir:
            log.error("reload: queue_directory changed from %s to %s: that takes a restart; "
                      "keeping the running configuration", old_qdir, new_qdir)
            return
        self._init_log(cfg)
        new = {spec.key: spec for spec in specs}
        for key, svc in list(self.services.items()):
            spec = new.get(key)
            if spec is None or spec.listen_identity() != svc.spec.listen_identity():
                self._remove_service(svc, terminate=spec is None)
        for key, spec in new.items():
            svc = self.services.get(key)
            if svc is None:
                svc = Service(self, spec)
                try:
                    svc.open(owner)
                except ListenError as exc:
                    log.error("%s: service %s: %s", spec.where, key, exc)
                    continue
                self.services[key] = svc
                log.debug("service %s added", key)
            else:
                svc.spec = spec
                if svc.throttle_timer is not None:
                    svc.throttle_timer.cancel()
                    svc.throttle_timer = None
            svc.new_generation()
            svc.schedule_wakeup()
            svc.update()
        self.cfg = cfg
        self.owner = owner

    def _remove_service(self, svc: Service, terminate: bool) -> None:
        del self.services[svc.spec.key]
        svc.cancel_timers()
        svc.close_listeners()
        svc.close_channel()
        workers = [child for child in self.children.values() if child.service is svc]
        if terminate:
            log.debug("service %s removed", svc.spec.key)
            self._signal_children(workers, signal.SIGTERM)


def _close_quietly(obj) -> None:
    try:
        if isinstance(obj, int):
            os.close(obj)
        else:
            obj.close()
    except OSError:
        pass


def _install_descriptors(keep: list) -> None:
    """Renumber the kept descriptors to 5, 6, ... and close every other one above 2."""
    raw = [obj if isinstance(obj, int) else obj.detach() for obj in keep]
    base = MASTER_STATUS_FD + len(raw) + 16
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, base) for fd in raw]
    for fd in raw:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, MASTER_STATUS_FD + i, inheritable=False)
        os.close(fd)
    os.closerange(3, MASTER_STATUS_FD)
    os.closerange(MASTER_STATUS_FD + len(high), os.sysconf("SC_OPEN_MAX"))
