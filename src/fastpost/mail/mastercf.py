"""master.cf: the service table.

Postfix counterpart: src/master/master_ent.c (get_master_ent), proto/master

Each entry has eight columns, ``-`` meaning the default:

    service type private unpriv chroot wakeup maxproc command [args...]

service  name (unix, unix-dgram, fifo, pass) or ``[host:]port`` (inet; IPv6 host in [])
type     inet, unix, unix-dgram, fifo, pass
private  y/n (default y): socket under private/ instead of public/ (not for inet)
unpriv   y/n (default y): run as mail_owner
chroot   y/n (default n, as Postfix 3.0+): chroot to queue_directory
wakeup   seconds between ``W`` triggers; a trailing ``?`` wakes only after first use
maxproc  process limit (default $default_process_limit; 0 = no limit)
command  program name and arguments; ``-o name=value`` overrides main.cf for this
         service (``-o { name = value with spaces }`` too); ``{ ... }`` groups an
         argument that contains whitespace

Lines starting with whitespace continue the previous entry; ``#`` lines are comments.

Diagnostics: ConfigError naming the file and line for a malformed entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fastpost.mail.config import ConfigError, read_logical_lines

SERVICE_TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")


@dataclass
class ServiceEntry:
    """One master.cf entry, with defaults applied except maxproc (see ``maxproc``)."""

    service: str  # column 1, as written (inet: "[host:]port")
    type: str  # column 2
    private: bool  # column 3
    unpriv: bool  # column 4
    chroot: bool  # column 5
    wakeup: int  # column 6, seconds (0 = none)
    wakeup_conditional: bool  # column 6 ended in "?"
    maxproc: int | None  # column 7; None = "-" ($default_process_limit)
    command: str  # first word of column 8
    args: list[str] = field(default_factory=list)  # remaining words, "-o" pairs included
    line: int = 0  # line number in master.cf
    columns: list[str] = field(default_factory=list)  # the eight raw columns, for postconf -M

    @property
    def key(self) -> str:
        """Return ``service/type``: what identifies an entry (postconf -M syntax)."""
        return f"{self.service}/{self.type}"

    def overrides(self) -> dict[str, str]:
        """Return the ``-o name=value`` pairs of the command arguments."""
        out: dict[str, str] = {}
        it = iter(self.args)
        for arg in it:
            if arg == "-o":
                value = next(it, None)
                if value is None:
                    break
            elif arg.startswith("-o") and len(arg) > 2:
                value = arg[2:]
            else:
                continue
            value = _unbrace(value)
            name, eq, val = value.partition("=")
            if eq:
                out[name.strip()] = val.strip()
        return out

    def inet_address(self) -> tuple[str, str]:
        """Return (host, port) of an inet service; host "" means all interfaces."""
        name = self.service
        if name.startswith("["):
            end = name.find("]")
            host, rest = name[1:end], name[end + 1 :]
            return host, rest.lstrip(":") or "smtp"
        if ":" in name:
            host, _, port = name.rpartition(":")
            return host, port
        return "", name


def _unbrace(text: str) -> str:
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        return text[1:-1].strip()
    return text


def split_command(text: str) -> list[str]:
    """Split a command field on whitespace; ``{ ... }`` is one word, braces kept."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        if text[i] == "{":
            depth = 0
            while i < n:
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            while i < n and not text[i].isspace():
                i += 1
        words.append(text[start:i])
    return words


def _yes_no(value: str, default: bool, path: str, line: int, column: str) -> bool:
    if value == "-":
        return default
    if value in ("y", "yes"):
        return True
    if value in ("n", "no"):
        return False
    raise ConfigError(f"{path}, line {line}: bad {column} field: {value}")


def parse_entry(text: str, path: str = "master.cf", line: int = 0) -> ServiceEntry:
    """Parse one logical master.cf line."""
    fields = text.split(None, 7)
    if len(fields) < 8:
        raise ConfigError(f"{path}, line {line}: missing command name field")
    service, stype, private, unpriv, chroot, wakeup, maxproc, command = fields
    if stype not in SERVICE_TYPES:
        raise ConfigError(f"{path}, line {line}: bad transport type: {stype}")
    wake_cond = False
    wake = 0
    if wakeup != "-":
        if wakeup.endswith("?"):
            wake_cond, wakeup = True, wakeup[:-1]
        if not wakeup.isdigit():
            raise ConfigError(f"{path}, line {line}: bad wakeup time: {fields[5]}")
        wake = int(wakeup)
    if maxproc == "-":
        limit = None
    elif maxproc.isdigit():
        limit = int(maxproc)
    else:
        raise ConfigError(f"{path}, line {line}: bad process limit: {maxproc}")
    words = split_command(command)
    if stype == "inet" and private not in ("-", "n", "no"):
        raise ConfigError(f"{path}, line {line}: inet service cannot be private")
    entry = ServiceEntry(
        service=service,
        type=stype,
        private=_yes_no(private, stype != "inet", path, line, "private"),
        unpriv=_yes_no(unpriv, True, path, line, "unprivileged"),
        chroot=_yes_no(chroot, False, path, line, "chroot"),
        wakeup=wake,
        wakeup_conditional=wake_cond,
        maxproc=limit,
        command=words[0],
        args=words[1:],
        line=line,
        columns=fields[:7] + [command],
    )
    for arg, nxt in zip(entry.args, entry.args[1:] + [""]):
        if arg == "-o" and nxt and "=" not in _unbrace(nxt):
            raise ConfigError(f'{path}, line {line}: missing "=" in "-o {nxt}"')
    return entry


def parse_master_cf(path: str, text: str | None = None) -> list[ServiceEntry]:
    """Return every entry of a master.cf file, in order; duplicates are an error."""
    entries: list[ServiceEntry] = []
    seen: dict[str, int] = {}
    for number, line in read_logical_lines(path, text):
        entry = parse_entry(line, path, number)
        if entry.key in seen:
            raise ConfigError(
                f"{path}, line {number}: duplicate service name/type entry "
                f'"{entry.key}" (first at line {seen[entry.key]})'
            )
        seen[entry.key] = number
        entries.append(entry)
    return entries


def load(config_dir: str) -> list[ServiceEntry]:
    """Return the entries of config_dir/master.cf (ConfigError if it is missing)."""
    path = os.path.join(config_dir, "master.cf")
    if not os.path.exists(path):
        raise ConfigError(f"open {path}: No such file or directory")
    return parse_master_cf(path)
