"""From master.cf entries to what the master runs: endpoints, limits, daemon, argv.

Postfix counterpart: src/master/master_ent.c (the part after parsing)

Column 8 names the daemon program. fastpost runs daemons in-process after fork, so a
program is a Python module with a ``main(argv)`` function:

    smtpd, trivial-rewrite    fastpost.daemons.smtpd, fastpost.daemons.trivial_rewrite
                              (a name without dots; "-" becomes "_")
    tests.daemons.echo        a dotted name is imported as written: how tests and
                              site-specific daemons are registered (any module on
                              sys.path; master.cf is root's file, as Postfix's
                              command column is)

The master imports every daemon module once, before it forks, so children start
without importing anything (and nothing needs importing after chroot).

A child's argv is ``[command, -n service, -t type, (-u), (-c), (-l | -z), -s N, (-v...),
(-o fastpost_foreground_log=yes), daemon args...]`` with ``{ ... }`` groups unbraced.

Parameters: default_process_limit (maxproc "-"), master_service_disable, inet_interfaces,
inet_protocols, queue_directory.
Diagnostics: ConfigError naming master.cf and the line: unsupported service type
(pass), unknown port or host, a daemon module that cannot be imported or has no main().
A wakeup time on an inet service is ignored with a warning, as Postfix does.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

from fastpost.mail.config import Config, ConfigError
from fastpost.mail.mastercf import ServiceEntry
from fastpost.master.listen import Endpoint, ListenError, inet_endpoints
from fastpost.util import log

#: Package that holds the daemons named without dots in master.cf.
DAEMON_PACKAGE = "fastpost.daemons"


def module_name(command: str) -> str:
    """Return the module that implements a master.cf command (see the docstring)."""
    if "." in command:
        return command
    return f"{DAEMON_PACKAGE}.{command.replace('-', '_')}"


def load_daemon(command: str, where: str):
    """Import a daemon module; ConfigError (naming where) when that fails."""
    name = module_name(command)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise ConfigError(f'{where}: cannot load daemon "{command}": no module named '
                              f"{name}") from None
        raise ConfigError(f'{where}: cannot load daemon "{command}" ({name}): {exc}') from None
    except Exception as exc:  # any import-time failure is a configuration problem here
        raise ConfigError(f'{where}: cannot load daemon "{command}" ({name}): '
                          f"{type(exc).__name__}: {exc}") from None
    if not callable(getattr(module, "main", None)):
        raise ConfigError(f'{where}: daemon "{command}" ({name}) has no main(argv) function')
    return module


def _unbrace(word: str) -> str:
    if len(word) >= 2 and word[0] == "{" and word[-1] == "}":
        return word[1:-1].strip()
    return word


@dataclass
class ServiceSpec:
    """One service, resolved: what to listen on, how many processes, what to run."""

    entry: ServiceEntry
    where: str  # "FILE, line N" of the master.cf entry
    maxproc: int  # 0 = no limit
    endpoints: list[Endpoint]
    module: object  # the imported daemon module
    argv: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def name(self) -> str:
        return self.entry.service

    @property
    def type(self) -> str:
        return self.entry.type

    @property
    def command(self) -> str:
        return self.entry.command

    @property
    def wakeup(self) -> int:
        return 0 if self.entry.type == "inet" else self.entry.wakeup

    def listen_identity(self) -> tuple:
        """What must stay equal for a reload to keep this service's listeners."""
        return (self.entry.type, tuple(self.endpoints))


def is_disabled(entry: ServiceEntry, disabled: list[str]) -> bool:
    """master_service_disable: ``type`` or ``name/type`` entries switch a service off."""
    for item in disabled:
        item = item.strip()
        if item == entry.type or item == entry.key:
            return True
    return False


def resolve(entry: ServiceEntry, cfg: Config, *, path: str, verbose: int = 0,
            foreground: bool = False) -> ServiceSpec:
    """Resolve one entry; ConfigError naming path and line on any problem."""
    where = f"{path}, line {entry.line}"
    if entry.type == "pass":
        raise ConfigError(f"{where}: service type pass is not supported by fastpost")
    try:
        if entry.type == "inet":
            host, port = entry.inet_address()
            endpoints = inet_endpoints(host, port, cfg.get_list("inet_interfaces"),
                                       cfg.get_list("inet_protocols"))
        else:
            # Relative to queue_directory, the master's working directory: no parent
            # directory needs to be searchable by mail_owner, and paths stay short.
            sub = "private" if entry.private else "public"
            endpoints = [Endpoint(entry.type, (os.path.join(sub, entry.service),))]
    except ListenError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if entry.type == "inet" and entry.wakeup:
        log.warn("%s: wakeup time is ignored for inet service %s", where, entry.service)
    maxproc = entry.maxproc if entry.maxproc is not None else cfg.get_int("default_process_limit")
    module = load_daemon(entry.command, where)
    argv = [entry.command, "-n", entry.service, "-t", entry.type]
    if entry.unpriv:
        argv.append("-u")
    if entry.chroot:
        argv.append("-c")
    if maxproc == 1:
        argv.append("-l")
    elif maxproc == 0:
        argv.append("-z")
    argv += ["-s", str(len(endpoints))]
    argv += ["-v"] * verbose
    if foreground:
        argv += ["-o", "fastpost_foreground_log=yes"]
    argv += [_unbrace(word) for word in entry.args]
    return ServiceSpec(entry=entry, where=where, maxproc=maxproc, endpoints=endpoints,
                       module=module, argv=argv)
