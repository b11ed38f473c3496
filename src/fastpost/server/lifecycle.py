"""The life of a daemon process, shared by the single, multi and trigger skeletons.

Postfix counterpart: src/master/single_server.c, multi_server.c, trigger_server.c (the
parts they share), mail_server.h, master_proto.h

A daemon's ``main(argv)`` hands itself to a skeleton (fastpost.server.single/multi/
trigger), which does, in order:

 1. argv: ``-n service -t transport [-u] [-c] [-l|-z] [-s count] [-v] [-o name=value]...
    [daemon arguments]`` as the master builds it (see parse_args);
 2. configuration: main.cf from $FASTPOST_CONFIG/$MAIL_CONFIG (the master exports it)
    with the service's ``-o`` overrides; the global parameters' values are judged as
    every Postfix program judges them at start (fastpost.mail.mainvalues.judge: a bad
    one is ``fatal:`` in Postfix's words), then every parameter the skeleton and the
    daemon declare is read and type-checked, so a bad value is a fatal error naming
    the file and line before any client is served;
 3. logging: ``<syslog_name>/<program>[pid]`` to syslog or maillog_file, and stdout
    when fastpost_foreground_log (``fastpost start-fg``);
 4. ``pre_init(ctx)`` with root privileges: open tables, keys, files, resolvers;
 5. what a chroot jail lacks is loaded now (time zone, codecs, the syslog socket, the
    mail_owner's ids), then chdir to queue_directory, chroot when the master passed
    ``-c`` (chroot column), setgid/setuid to mail_owner when it passed ``-u`` (unpriv
    column). As non-root none of this happens (the master warned once);
 6. a uvloop event loop; ``post_init(ctx)`` (may be async) as the unprivileged user;
 7. serving (the skeleton's own part), reporting to the master over the status channel
    (file descriptor 5: TAKEN while busy, AVAIL when it can take a client);
 8. retirement: after ``max_use`` clients, after ``max_idle`` seconds without one, or
    when the master disconnects (reload, stop, master death) the process stops
    accepting, finishes the clients it has, runs ``on_exit(ctx)`` and exits 0.
    ``resident=True`` daemons (qmgr) ignore max_use and max_idle; ``max_use_scale=N``
    makes max_use count N clients as one (smtpd: thousands of short sessions per worker).

Watchdog: if the event loop makes no progress for ``daemon_timeout`` seconds the
process dumps its Python stacks to stderr and exits 1 (faulthandler; this works even
when the loop is stuck inside a C call).

Exit status: 0 normal, 1 fatal (log.fatal, bad configuration, failed pre_init), 2 panic.

Read-only parameters set for the daemon: process_name, process_id, service_name.

Parameters: queue_directory, mail_owner, max_use, max_idle, daemon_timeout,
ipc_timeout, syslog_name, syslog_facility, maillog_file, fastpost_foreground_log, and
each daemon's own declared list.

Diagnostics: fatal: lines naming the problem (bad option, bad parameter with file and
line, unknown mail_owner, chroot/setuid failure); an exception escaping a client's
service callback is logged as an error with its location and only that client is
dropped.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes  # noqa: F401 - judge's getifaddrs (mainvalues), imported before fork
import faulthandler
import getopt
import grp  # noqa: F401 - judge's group lookups (mainvalues), imported before fork
import inspect
import os
import pwd
import signal
import socket
import stat
import struct
import sys
import time
import traceback

import uvloop

from fastpost import _accel
from fastpost.mail.config import Config, ConfigError
from fastpost.mail.maillog import init_logging
from fastpost.mail.mainvalues import judge
from fastpost.util import log

#: File descriptor of the status channel to the master (Postfix: MASTER_STATUS_FD).
MASTER_STATUS_FD = 5
#: First inherited listening descriptor (Postfix: MASTER_LISTEN_FD).
MASTER_LISTEN_FD = 6
#: Status messages: the worker cannot take a client / can take one.
STATUS_TAKEN = 0
STATUS_AVAIL = 1
#: One status message: (pid, status), native byte order (same host, same process tree).
STATUS_MESSAGE = struct.Struct("=ii")
#: listen(2) backlog for every listener; workers re-listen with the same value.
LISTEN_BACKLOG = socket.SOMAXCONN

#: Parameters every skeleton reads.
SKELETON_PARAMS = (
    "queue_directory", "mail_owner", "max_use", "max_idle", "daemon_timeout",
    "ipc_timeout", "syslog_name", "syslog_facility", "maillog_file",
    "fastpost_foreground_log",
)


def _judge_globals(cfg: Config) -> None:
    """The global parameters' values, as Postfix's daemons judge them at start
    (mail_params_init): Postfix's warnings, and a bad value is fatal (exit 1: the
    master then logs the exit and throttles the service, as for any daemon that dies
    before its first status report)."""
    warnings, fatal = judge(cfg)
    for text in warnings:
        log.warn("%s", text)
    if fatal is not None:
        log.fatal("%s", fatal)


class UsageError(Exception):
    """A bad command line from the master (or a person)."""


class Options:
    """What the master passed on the command line."""

    def __init__(self) -> None:
        self.service_name = ""  # -n: the master.cf service name
        self.transport = ""  # -t: inet, unix, unix-dgram, fifo
        self.chroot = False  # -c: chroot to queue_directory
        self.unprivileged = False  # -u: run as mail_owner
        self.solitary = False  # -l: maxproc is 1
        self.unlimited = False  # -z: maxproc is 0 (no limit)
        self.listen_count = 0  # -s: listening descriptors from MASTER_LISTEN_FD
        self.verbose = 0  # -v (repeatable)
        self.overrides: dict[str, str] = {}  # -o name=value
        self.args: list[str] = []  # what follows the options


def parse_args(argv: list[str]) -> Options:
    """Parse a daemon command line; UsageError on a bad one. argv[0] is the program."""
    opts = Options()
    try:
        pairs, rest = getopt.getopt(argv[1:], "cln:o:s:t:uvz")
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    for flag, value in pairs:
        if flag == "-c":
            opts.chroot = True
        elif flag == "-l":
            opts.solitary = True
        elif flag == "-n":
            opts.service_name = value
        elif flag == "-o":
            name, eq, val = value.partition("=")
            if not eq or not name.strip():
                raise UsageError(f'bad -o argument: "{value}" (expected name=value)')
            opts.overrides[name.strip()] = val.strip()
        elif flag == "-s":
            if not value.isdigit():
                raise UsageError(f"bad -s argument: {value}")
            opts.listen_count = int(value)
        elif flag == "-t":
            opts.transport = value
        elif flag == "-u":
            opts.unprivileged = True
        elif flag == "-v":
            opts.verbose += 1
        elif flag == "-z":
            opts.unlimited = True
    opts.args = rest
    return opts


class ServerContext:
    """What a daemon's callbacks receive: its identity, configuration and loop."""

    def __init__(self, server: "BaseServer", name: str, opts: Options, cfg: Config):
        self._server = server
        self.name = name  # program name in log lines (smtpd, cleanup, ...)
        self.service_name = opts.service_name  # master.cf service name (-n)
        self.transport = opts.transport  # master.cf service type (-t)
        self.argv = opts.args  # the daemon's own arguments
        self.cfg = cfg  # main.cf with this service's -o overrides
        self.p: dict[str, object] = {}  # typed values of the declared parameters
        self.loop: asyncio.AbstractEventLoop | None = None  # set before post_init
        self.verbose = opts.verbose
        #: Called (no arguments) when the process starts retiring: a daemon whose
        #: clients keep persistent connections (cleanup) closes them when idle.
        self.on_retire: list = []
        #: The multi skeleton's client count, for protocols that count themselves
        #: (multi_server_main's self_counting): call from connection_made / _lost.
        self.connected = getattr(server, "_connected", None)
        self.disconnected = getattr(server, "_disconnected", None)

    @property
    def clients(self) -> int:
        """Clients being served right now."""
        return self._server.clients

    @property
    def use_count(self) -> int:
        """Clients (or triggers) served since the process started."""
        return self._server.use_count

    def retire(self, reason: str = "") -> None:
        """Stop accepting, finish the current clients, then exit normally."""
        self._server.retire(reason or "daemon request")


def describe_exception(exc: BaseException) -> str:
    """Return 'Type: message (at file:line in function)' for a one-line log entry."""
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        last = tb[-1]
        where = f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return f"{type(exc).__name__}: {log.printable(str(exc))}{where}"


async def _maybe_await(result):
    if inspect.isawaitable(result):
        return await result
    return result


class BaseServer:
    """The shared lifecycle; subclasses implement how clients are accepted and served."""

    #: Extra parameters a skeleton reads besides SKELETON_PARAMS.
    extra_params: tuple[str, ...] = ()

    def __init__(self, argv, service, *, name=None, params=(), pre_init=None, post_init=None,
                 on_exit=None, resident=False, solitary=False, max_use_scale=1):
        self.argv = list(argv)
        self.service = service
        program = name or os.path.basename(self.argv[0] if self.argv else "daemon")
        self.name = program.rpartition(".")[2] if not name else program
        self.params = tuple(params)
        self.pre_init = pre_init
        self.post_init = post_init
        self.on_exit = on_exit
        self.resident = resident
        #: max_use counts clients; a daemon that serves many short sessions at once
        #: (smtpd) retires after max_use x max_use_scale of them.
        self.max_use_scale = max(1, int(max_use_scale))
        self.require_solitary = solitary
        self.clients = 0
        self.use_count = 0
        self.listeners: list = []  # sockets, or ints for FIFOs
        self.status: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.retiring = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._exit_code = 0
        self._exiting = False
        self._taken = False

    # -- start-up ---------------------------------------------------------------

    def run(self):
        """Run the daemon; never returns (raises SystemExit with the exit status)."""
        log.init(self.name, syslog_name=os.environ.get("MAIL_LOGTAG", "postfix"),
                 stream=sys.stderr)
        try:
            opts = parse_args(self.argv)
        except UsageError as exc:
            log.fatal("%s", exc)
        self.opts = opts
        log.set_verbose(opts.verbose)
        try:
            cfg = Config(None, opts.overrides)
            # Postfix's read-only parameters, for $name expansion in this process.
            cfg.set_override("process_name", self.name)
            cfg.set_override("process_id", str(os.getpid()))
            if opts.service_name:
                cfg.set_override("service_name", opts.service_name)
            foreground = cfg.get_bool("fastpost_foreground_log")
            init_logging(self.name, cfg, stream=sys.stdout if foreground else None)
            _judge_globals(cfg)
            ctx = self.ctx = ServerContext(self, self.name, opts, cfg)
            for pname in SKELETON_PARAMS + self.extra_params + self.params:
                ctx.p[pname] = cfg.typed(pname)
        except ConfigError as exc:
            log.fatal("%s", exc)
        except KeyError as exc:
            log.panic("parameter %s is not declared in fastpost.mail.param_table", exc)
        if _accel.PURE_PYTHON:
            log.warn("FASTPOST_PURE_PYTHON=1: running the pure-Python kernels (%s)",
                     _accel.describe())
        if self.require_solitary and not opts.solitary:
            log.fatal("service %s requires a process limit of 1", opts.service_name or self.name)
        self._inherit_descriptors(opts)
        self._call_hook("pre_init", self.pre_init)
        self._enter_jail(opts)
        self.loop = loop = self._new_loop()
        ctx.loop = loop
        if self.post_init is not None:
            try:
                loop.run_until_complete(_maybe_await(self.post_init(ctx)))
            except SystemExit:
                raise
            except ConfigError as exc:
                log.fatal("%s", exc)
            except Exception as exc:
                log.fatal("post_init: %s", describe_exception(exc))
        self._watch_master()
        self._arm_watchdog()
        self._prepare()
        # The first report says "started": a worker that dies before it is a bad start-up.
        self._send_status(STATUS_AVAIL)
        self._start_accepting()
        self._schedule_idle()
        log.debug("%s service %s ready, %d listener(s)", type(self).__name__,
                  opts.service_name, len(self.listeners))
        loop.run_forever()
        faulthandler.cancel_dump_traceback_later()
        raise SystemExit(self._exit_code)

    def _call_hook(self, what: str, hook) -> None:
        if hook is None:
            return
        try:
            result = hook(self.ctx)
            if inspect.isawaitable(result):
                raise TypeError(f"{what} must not be a coroutine (there is no event loop yet)")
        except SystemExit:
            raise
        except ConfigError as exc:
            log.fatal("%s", exc)
        except Exception as exc:
            log.fatal("%s: %s", what, describe_exception(exc))

    def _inherit_descriptors(self, opts: Options) -> None:
        """Adopt the status channel (fd 5) and the listeners (fd 6...)."""
        try:
            os.fstat(MASTER_STATUS_FD)
        except OSError:
            log.fatal("file descriptor %d (status channel) is not open: this program is run "
                      "by the fastpost master", MASTER_STATUS_FD)
        self.status = socket.socket(fileno=MASTER_STATUS_FD)
        self.status.setblocking(True)
        for i in range(opts.listen_count):
            fd = MASTER_LISTEN_FD + i
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                log.fatal("listening file descriptor %d is not open", fd)
            if stat.S_ISSOCK(mode):
                sock = socket.socket(fileno=fd)
                sock.setblocking(False)
                self.listeners.append(sock)
            else:
                os.set_blocking(fd, False)
                self.listeners.append(fd)

    def _enter_jail(self, opts: Options) -> None:
        """chdir to the queue, chroot and drop privileges as the columns say (root only)."""
        ctx = self.ctx
        qdir = str(ctx.p["queue_directory"])
        root = os.geteuid() == 0
        owner = None
        if root and (opts.unprivileged or opts.chroot):
            owner_name = str(ctx.p["mail_owner"])
            try:
                owner = pwd.getpwnam(owner_name)
            except KeyError:
                log.fatal("%s: parameter mail_owner: unknown user name value: %s",
                          ctx.cfg.where("mail_owner"), owner_name)
            if owner.pw_uid == 0:
                log.fatal("mail_owner: user %s has privileged user ID", owner_name)
        # What a chroot jail would make unreachable is loaded now: the time zone
        # (glibc keeps it once read), codecs imported lazily by the standard library,
        # and the host name the log lines carry.
        time.tzset()
        time.localtime()
        for codec in ("idna", "ascii", "latin-1", "utf-8", "punycode"):
            codecs.lookup(codec)
        try:
            os.chdir(qdir)
        except OSError as exc:
            log.fatal("chdir %s: %s", qdir, exc.strerror)
        if root and opts.chroot:
            try:
                os.chroot(qdir)
                os.chdir("/")
            except OSError as exc:
                log.fatal("chroot(%s): %s", qdir, exc.strerror)
        if root and opts.unprivileged and owner is not None:
            try:
                os.setgroups([owner.pw_gid])
                os.setgid(owner.pw_gid)
                os.setuid(owner.pw_uid)
            except OSError as exc:
                log.fatal("set privileges to %s: %s", owner.pw_name, exc.strerror)
        if root and (opts.chroot or opts.unprivileged):
            # Table files opened in pre_init may be out of reach now (not in the jail,
            # not readable by mail_owner): they keep what they loaded instead of
            # failing every lookup (a reload restarts the daemon, as in Postfix). A
            # daemon that never loaded the tables module opened no table (and cannot
            # import it inside the jail).
            maps_base = sys.modules.get("fastpost.mail.maps._base")
            if maps_base is not None:
                maps_base.KEEP_UNREACHABLE = True

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._loop_exception)
        return loop

    def _loop_exception(self, loop, context) -> None:
        exc = context.get("exception")
        message = context.get("message", "unhandled exception")
        if isinstance(exc, SystemExit):
            self._exit_code = exc.code if isinstance(exc.code, int) else 1
            self._exiting = True
            loop.stop()
            return
        if exc is not None:
            log.error("%s: %s", message, describe_exception(exc))
        else:
            log.error("%s", message)

    # -- master status channel ----------------------------------------------------

    def _watch_master(self) -> None:
        self.loop.add_reader(self.status.fileno(), self._master_readable)

    def _master_readable(self) -> None:
        try:
            data = self.status.recv(64, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.status.fileno())
            self.retire("master disconnect")

    def notify(self, status: int) -> None:
        """Tell the master whether this process can take a client now (on change)."""
        taken = status == STATUS_TAKEN
        if taken == self._taken:
            return
        self._taken = taken
        self._send_status(status)

    def _send_status(self, status: int) -> None:
        if self.status is None:
            return
        try:
            self.status.send(STATUS_MESSAGE.pack(os.getpid(), status))
        except OSError:
            # The master is gone; the read side notices and retires this process.
            pass

    # -- clients, idleness, retirement -------------------------------------------------

    def client_arrived(self) -> None:
        """Account for a new client (or trigger)."""
        self.clients += 1
        self.use_count += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not self.resident and self.use_count >= int(self.ctx.p["max_use"]) * self.max_use_scale:
            self.retire("max_use reached")

    def client_gone(self) -> None:
        """Account for a client that has finished."""
        self.clients -= 1
        if self.clients == 0:
            if self.retiring:
                self._finish()
            else:
                self._schedule_idle()

    def _schedule_idle(self) -> None:
        if self.resident or self.retiring or self.clients:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        idle = int(self.ctx.p["max_idle"])
        if idle > 0:
            self._idle_timer = self.loop.call_later(idle, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if self.clients == 0:
            self.retire("idle timeout")

    def retire(self, reason: str) -> None:
        """Stop accepting; exit once the current clients are done."""
        if self.retiring:
            return
        self.retiring = True
        log.debug("retiring: %s", reason)
        for callback in self.ctx.on_retire:
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - a daemon's hook must not stop retiring
                self.report_exception("on_retire", exc)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._stop_accepting(final=True)
        self.notify(STATUS_TAKEN)
        if self.clients == 0:
            self._finish()

    def _finish(self) -> None:
        if self._exiting:
            return
        self._exiting = True
        if self.on_exit is None:
            self.loop.stop()
            return

        async def run_exit_hook():
            try:
                await _maybe_await(self.on_exit(self.ctx))
            except SystemExit as exc:
                self._exit_code = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:
                log.error("on_exit: %s", describe_exception(exc))
            finally:
                self.loop.stop()

        self.loop.create_task(run_exit_hook())

    # -- watchdog -------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        timeout = int(self.ctx.p["daemon_timeout"])
        if timeout <= 0:
            return
        period = min(timeout / 4, 60.0)  # re-armed well before it can fire

        def rearm():
            faulthandler.dump_traceback_later(timeout, exit=True, file=sys.stderr)
            self.loop.call_later(period, rearm)

        rearm()

    # -- what the skeletons provide ------------------------------------------------------

    def _prepare(self) -> None:
        """Last set-up on the loop before accepting (skeleton-specific)."""

    def _start_accepting(self) -> None:
        raise NotImplementedError

    def _stop_accepting(self, final: bool) -> None:
        raise NotImplementedError

    def _close_listeners(self) -> None:
        for lst in self.listeners:
            try:
                if isinstance(lst, int):
                    os.close(lst)
                else:
                    lst.close()
            except OSError:
                pass
        self.listeners = []

    def report_exception(self, what: str, exc: BaseException) -> None:
        """Log an exception that escaped a client's service callback."""
        log.error("%s: %s", what, describe_exception(exc))


def reset_signals_for_child() -> None:
    """Signal dispositions of a worker: TERM kills it; INT, QUIT and HUP are the master's."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
