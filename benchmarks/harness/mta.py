"""A private C Postfix instance and a private fastpost instance behind one API.

Postfix counterpart: ``postfix -c DIR start`` with its own queue_directory,
data_directory, syslog_name and maillog_file (a second instance needs no registration
when started by root); fastpost mirrors it with ``fastpost -c DIR start``.

Both instances get the *same* main.cf and master.cf text (fastpost reads Postfix's
files), differing only in directories, ports and syslog_name. Layout of an instance
under ROOT: ``etc/`` (main.cf, master.cf, tables), ``spool/`` (queue_directory),
``data/`` (data_directory), ``maillog`` (maillog_file). Daemons run without chroot
(column 5 ``n``) in both, so no chroot has to be populated.

Queue counts come from ``postqueue -j`` / ``fastpost queue -j`` (one JSON object per
message with ``queue_name``), the one interface both MTAs share; emptying the queue
between repetitions uses ``postsuper -d ALL`` / ``fastpost super -d ALL``.

What fastpost can do is detected, not assumed: ``fastpost_capabilities()`` looks for the
control verbs, the daemons and the tools a scenario needs, and a scenario whose pieces
are missing is reported as "not yet available" with the list of what is missing.

Fails: ``InstanceError`` with the command, its exit status and output (and the tail of
the instance's maillog) when an instance cannot be configured, started or queried.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import time

from . import procs
from .tools import SBIN, free_port, wait_port


class InstanceError(RuntimeError):
    """An MTA instance could not be configured, started, stopped or queried."""


#: master.cf services of the benchmark configuration: (service, type, private, unpriv,
#: chroot, wakeup, maxproc, command). The SMTP listener is added per instance.
SERVICES = [
    ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
    ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
    ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
    ("tlsmgr", "unix", "-", "-", "n", "1000?", "1", "tlsmgr"),
    ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
    ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
    ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
    ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
    ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
    ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
    ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
    ("error", "unix", "-", "-", "n", "-", "-", "error"),
    ("retry", "unix", "-", "-", "n", "-", "-", "error"),
    ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
    ("local", "unix", "-", "n", "n", "-", "-", "local"),
    ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
    ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
    ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
]


def base_main(root: str, syslog_name: str, sink_port: int | None) -> dict[str, str]:
    """The minimal main.cf both MTAs get: loopback only, relay to the sink, no DNS."""
    main = {
        "compatibility_level": "3.6",
        "queue_directory": f"{root}/spool",
        "data_directory": f"{root}/data",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "syslog_name": syslog_name,
        "maillog_file": f"{root}/maillog",
        "maillog_file_prefixes": f"/var, /dev/stdout, {root}",
        "myhostname": f"{syslog_name}.localdomain",
        "mydomain": "localdomain",
        "myorigin": "$myhostname",
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "biff": "no",
        "smtp_dns_support_level": "disabled",
        "default_transport": "smtp",
        "relay_transport": "relay",
        "smtputf8_enable": "no",
    }
    if sink_port:
        main["relayhost"] = f"[127.0.0.1]:{sink_port}"
    return main


def render_main(main: dict[str, str]) -> str:
    return "# written by benchmarks/harness/mta.py\n" + "".join(f"{k} = {v}\n" for k, v in main.items())


def render_master(port: int, services, smtpd_args: tuple = ()) -> str:
    lines = ["# written by benchmarks/harness/mta.py"]
    lines.append(f"127.0.0.1:{port} inet n - n - - smtpd")
    lines += [f"  -o {a}" for a in smtpd_args]
    for svc in services:
        lines.append(" ".join(svc))
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], *, env=None, timeout: float = 120, check: bool = True,
         input: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as exc:
        raise InstanceError(f"{' '.join(cmd)}: timed out after {timeout} s") from exc
    except OSError as exc:
        raise InstanceError(f"{' '.join(cmd)}: {exc}") from exc
    if check and proc.returncode:
        out = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        raise InstanceError(f"{' '.join(cmd)}: exit {proc.returncode}: {out[-800:]}")
    return proc


class Instance:
    """One private MTA instance under ``root``; subclasses say how to drive it."""

    kind = "?"
    label = "?"

    def __init__(self, root: str, *, port: int | None = None, sink_port: int | None = None,
                 name: str | None = None):
        self.root = os.path.abspath(root)
        self.etc = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        self.data = os.path.join(self.root, "data")
        self.maillog = os.path.join(self.root, "maillog")
        self.port = port or free_port()
        self.sink_port = sink_port
        self.syslog_name = name or f"bench-{self.kind}"
        self.main = base_main(self.root, self.syslog_name, sink_port)
        self.smtpd_args: tuple = ()
        self.services = list(SERVICES)
        self.running = False

    # -- configuration -------------------------------------------------------------
    def configure(self, extra_main: dict[str, str] | None = None,
                  tables: dict[str, str] | None = None, smtpd_args: tuple = ()) -> None:
        """Write main.cf, master.cf and the given tables ({file name: text}) into etc/.

        Table files are written as given and indexed with the MTA's postmap for every
        ``hash:``/``lmdb:``/``btree:`` reference to them in main.cf.
        """
        for d in (self.etc, self.spool, self.data):
            os.makedirs(d, exist_ok=True)
        main = dict(self.main)
        for key, value in (extra_main or {}).items():
            main[key] = value.replace("@ETC@", self.etc)
        self.smtpd_args = smtpd_args
        self.write_file("main.cf", render_main(main))
        self.write_file("master.cf", render_master(self.port, self.service_lines(), smtpd_args))
        self._prepare_dirs()
        for fname, text in (tables or {}).items():
            self.write_file(fname, text)
            for kind in ("hash", "lmdb", "btree"):
                ref = f"{kind}:{self.etc}/{fname}"
                if any(ref in v for v in main.values()):
                    self.postmap(ref)
        self.main = main

    def write_file(self, name: str, text: str) -> str:
        path = os.path.join(self.etc, name)
        with open(path, "w") as fh:
            fh.write(text)
        return path

    def service_lines(self):
        return self.services

    def _prepare_dirs(self) -> None:
        os.chmod(self.root, 0o755)          # mail_owner must reach data/ and spool/
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postfix")
            os.chown(self.data, pw.pw_uid, pw.pw_gid)
        if not os.path.exists(self.maillog):
            open(self.maillog, "a").close()

    # -- to be provided -----------------------------------------------------------
    def command(self, verb: str, *args: str) -> list[str]:
        raise NotImplementedError

    def sendmail_command(self, sender: str, recipient: str) -> tuple[list[str], dict]:
        raise NotImplementedError

    # -- operations ---------------------------------------------------------------
    def start(self, timeout: float = 30) -> None:
        _run(self.command("start"), timeout=timeout)
        if not wait_port(self.port, timeout=timeout):
            raise InstanceError(f"{self.label}: nothing listens on 127.0.0.1:{self.port} "
                                f"after start; maillog tail:\n{self.log_tail()}")
        self.running = True

    def stop(self) -> None:
        if not self.running:
            return
        _run(self.command("stop"), check=False, timeout=60)
        pid = self.master_pid(quiet=True)
        end = time.monotonic() + 15
        while pid and os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
            time.sleep(0.1)
        self.running = False

    def master_pid(self, quiet: bool = False) -> int | None:
        """Master pid from queue_directory/pid/master.pid, else the SMTP listener's owner."""
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as fh:
                pid = int(fh.read().strip())
            if os.path.exists(f"/proc/{pid}"):
                return pid
        except (OSError, ValueError):
            pass
        pid = procs.listener_pid(self.port)
        if pid is None and not quiet:
            raise InstanceError(f"{self.label}: no master pid found")
        return pid

    def queue_messages(self) -> list[dict]:
        """One dict per queued message, from ``postqueue -j`` (or fastpost's)."""
        proc = _run(self.command("queue", "-j"), timeout=300)
        out = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out

    def queue_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for msg in self.queue_messages():
            q = msg.get("queue_name", "?")
            counts[q] = counts.get(q, 0) + 1
        return counts

    def purge(self) -> None:
        """Delete every queued message (between repetitions)."""
        _run(self.command("super", "-d", "ALL"), timeout=300, check=False)

    def flush(self) -> None:
        _run(self.command("queue", "-f"), timeout=60, check=False)

    def postmap(self, spec: str) -> None:
        _run(self.command("map", spec), timeout=600)

    def memory(self) -> dict:
        pid = self.master_pid(quiet=True)
        return procs.tree_memory(pid) if pid else {"rss": 0, "pss": 0, "processes": 0}

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.maillog, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 8192))
                return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no maillog)"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class PostfixInstance(Instance):
    """Debian's C Postfix 3.7 as a private instance."""

    kind = "postfix"
    label = "C Postfix"

    def __init__(self, root: str, **kw):
        super().__init__(root, **kw)
        self.main.update({
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
        })

    TOOLS = {"start": "postfix", "stop": "postfix", "queue": "postqueue", "super": "postsuper",
             "map": "postmap", "conf": "postconf", "abort": "postfix", "reload": "postfix"}

    def command(self, verb: str, *args: str) -> list[str]:
        tool = os.path.join(SBIN, self.TOOLS[verb])
        if self.TOOLS[verb] == "postfix":
            return [tool, "-c", self.etc, verb, *args]
        return [tool, "-c", self.etc, *args]

    def sendmail_command(self, sender: str, recipient: str) -> tuple[list[str], dict]:
        env = dict(os.environ, MAIL_CONFIG=self.etc)
        return [os.path.join(SBIN, "sendmail"), "-f", sender, recipient], env

    def start(self, timeout: float = 30) -> None:
        try:
            super().start(timeout)
        except InstanceError as exc:
            # Postfix prints its fatal errors on stderr only when it is a terminal.
            why = subprocess.run(["script", "-qc", " ".join(self.command("start")), "/dev/null"],
                                 capture_output=True, timeout=timeout)
            raise InstanceError(f"{exc}\n{why.stdout.decode('utf-8', 'replace')[-800:]}") from None


def fastpost_capabilities() -> dict[str, bool]:
    """What of fastpost exists in this checkout: verbs, daemons and tools."""
    caps: dict[str, bool] = {}
    try:
        main = importlib.import_module("fastpost.cli.main")
        commands = getattr(main, "COMMANDS", {})
    except Exception:  # noqa: BLE001 - an unimportable fastpost is simply "nothing there"
        return {"fastpost": False}
    caps["fastpost"] = True
    caps["control"] = "control" in commands
    for verb in ("queue", "super", "map", "sendmail"):
        caps[verb] = verb in commands
    for daemon in ("master", "smtpd", "cleanup", "qmgr", "smtp", "pickup", "trivial_rewrite",
                   "bounce", "showq", "anvil"):
        try:
            found = importlib.util.find_spec(f"fastpost.daemons.{daemon}") is not None
        except ModuleNotFoundError:
            found = False
        if daemon == "master":
            try:
                found = importlib.util.find_spec("fastpost.master") is not None
            except ModuleNotFoundError:
                found = False
        caps[daemon] = found
    # Something that takes mail to the battery's sink: the smtp agent, or pipe running
    # harness/pipe_relay.py in its place (FastpostInstance.service_lines).
    caps["sink"] = caps.get("smtp", False) or _has_daemon("pipe")
    return caps


def missing(caps: dict[str, bool], needs: tuple[str, ...]) -> list[str]:
    """The pieces of ``needs`` that ``caps`` lacks, in order."""
    return [n for n in needs if not caps.get(n, False)]


class FastpostInstance(Instance):
    """fastpost from this checkout, started with ``fastpost -c DIR start``."""

    kind = "fastpost"
    label = "fastpost"

    def command(self, verb: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "fastpost", "-c", self.etc, verb, *args]

    def sendmail_command(self, sender: str, recipient: str) -> tuple[list[str], dict]:
        env = dict(os.environ, FASTPOST_CONFIG=self.etc, MAIL_CONFIG=self.etc)
        # the compiled front end ./dev build puts next to the interpreter, as an
        # installation's sendmail would run (docs/submission.md); else the Python command
        front = os.path.join(os.path.dirname(sys.executable), "fastpost-sendmail")
        if os.access(front, os.X_OK):
            return [front, "-c", self.etc, "-f", sender, recipient], env
        return [sys.executable, "-m", "fastpost", "-c", self.etc, "sendmail", "-f", sender,
                recipient], env

    def service_lines(self):
        """Only the services whose daemon exists in this checkout (the rest would fail).

        Without an smtp agent but with pipe, and with a sink to relay to, the ``smtp``
        and ``relay`` services become pipe services running harness/pipe_relay.py,
        which relays each message to the sink (see ``pipe_sink_services``).
        """
        out = []
        stand_in = (self.sink_port is not None and not _has_daemon("smtp")
                    and _has_daemon("pipe"))
        for svc in self.services:
            if stand_in and svc[0] in ("smtp", "relay") and svc[7] == "smtp":
                out.append(pipe_sink_service(svc[0], self.sink_port))
                continue
            if _has_daemon(svc[7]):
                out.append(svc)
        return out


#: the pipe command that stands in for smtp(8) (system Python: runs as nobody)
PIPE_RELAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipe_relay.py")


def pipe_sink_service(name: str, sink_port: int) -> tuple:
    """A master.cf line: service ``name`` delivering through pipe to the sink."""
    return (name, "unix", "-", "n", "n", "-", "-", "pipe", "user=nobody",
            f"argv=/usr/bin/python3 {PIPE_RELAY} 127.0.0.1 {sink_port} ${{sender}} ${{recipient}}")


def _has_daemon(command: str) -> bool:
    try:
        return importlib.util.find_spec(f"fastpost.daemons.{command.replace('-', '_')}") is not None
    except ModuleNotFoundError:
        return False


def make(kind: str, root: str, **kw) -> Instance:
    """An instance of ``kind`` ("postfix" or "fastpost") under ``root``."""
    cls = {"postfix": PostfixInstance, "fastpost": FastpostInstance}[kind]
    os.makedirs(root, exist_ok=True)
    tag = "".join(c for c in os.path.basename(root)[-6:] if c.isalnum()).lower() or "x"
    return cls(root, name=f"bench-{kind}-{tag}", **kw)


def remove(root: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
