"""Which parameters a configuration has: built-in, per-service and user-defined.

Postfix counterpart: src/postconf/postconf_builtin.c, postconf_service.c,
postconf_user.c, postconf_unused.c

A configuration (main.cf, master.cf and command-line overrides) knows three kinds of
parameter names:

built-in      the static table (fastpost.mail.params): always known, have defaults
per-service   ``<service>_<suffix>`` for each master.cf delivery service (command smtp,
              lmtp, local, virtual, pipe or error: the scheduler family such as
              relay_destination_concurrency_limit; pipe and spawn:
              <service>_time_limit), with defaults that refer to the global ones
user-defined  any other name main.cf or a ``-o`` sets. It is *used*, and then known,
              when some main.cf value or master.cf ``-o`` value refers to it as $name
              (also inside ${name?...}, ${name:...} and comparisons), or when
              smtpd_restriction_classes lists it. Naming it in a restriction list
              without $ does not count, as in Postfix.

Scope.warnings() gives postconf's diagnostics for scripts and admins:

    DIR/main.cf: undefined parameter: NAME     a $NAME that nothing defines
    DIR/main.cf: unused parameter: NAME=VALUE  a user-defined name nothing uses
    DIR/master.cf: unused parameter: NAME=VALUE  the same for a master.cf -o

Diagnostics: none of its own; ConfigError from parsing propagates to the caller.
"""

from __future__ import annotations

import re

from fastpost.mail import params
from fastpost.mail.config import Config, split_list
from fastpost.mail.confedit import Service, option_problems, service_options

_NAME_RE = re.compile(r"[A-Za-z0-9_]+")


def _close(text: str, i: int, open_c: str, close_c: str) -> int:
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_c:
            depth += 1
        elif text[j] == close_c:
            depth -= 1
            if depth == 0:
                return j
    return -1


def references(text: str) -> list[str]:
    """Return the parameter names that text refers to, in order, without duplicates.

    Looks inside every form config.Config.expand understands; malformed forms are
    skipped (expansion reports them).
    """
    out: list[str] = []
    _scan(text, out)
    return out


def _add(out: list[str], name: str) -> None:
    if name not in out:
        out.append(name)


def _scan(text: str, out: list[str]) -> None:
    i, n = 0, len(text)
    while True:
        j = text.find("$", i)
        if j < 0 or j + 1 >= n:
            return
        c = text[j + 1]
        if c == "$":
            i = j + 2
            continue
        if c in "{(":
            end = _close(text, j + 1, c, "}" if c == "{" else ")")
            if end < 0:
                return
            inner = text[j + 2 : end].lstrip()
            if inner.startswith("{"):
                _scan_groups(inner, out)
            else:
                m = _NAME_RE.match(inner)
                if m:
                    _add(out, m.group())
                    _scan(inner[m.end() :], out)
                elif inner[:1] in ("?", ":"):
                    _add(out, "")  # ${?text}: an empty name, undefined (as postconf says)
                    _scan(inner[1:], out)
            i = end + 1
            continue
        m = _NAME_RE.match(text, j + 1)
        if m:
            _add(out, m.group())
            i = m.end()
        else:
            i = j + 1


def _scan_groups(inner: str, out: list[str]) -> None:
    """Scan each {...} group of a ${{a} op {b} ? {t} : {f}} form."""
    i = 0
    while True:
        j = inner.find("{", i)
        if j < 0:
            return
        end = _close(inner, j, "{", "}")
        if end < 0:
            return
        _scan(inner[j + 1 : end], out)
        i = end + 1


class Scope:
    """The parameter names of one configuration and how each is used."""

    def __init__(self, cfg: Config, services: list[Service] | None = None,
                 cli_overrides: dict[str, str] | None = None):
        self.cfg = cfg
        self.services = services or []
        #: -o name=value given to the command (not master.cf).
        self.cli_overrides = dict(cli_overrides or {})
        self.static = params.table()
        #: per-service parameter name -> declaration, from master.cf
        self.per_service: dict[str, params.Param] = {}
        #: every per-service name, also those the static table declares (postconf -C)
        self.service_names: set[str] = set()
        for entry in self.services:
            for decl in params.service_params(entry.service, entry.command):
                self.per_service.setdefault(decl.name, decl)
            self.service_names.update(params.service_param_names(entry.service, entry.command))
        self._main_refs: list[tuple[str, str]] = []  # (name, referring parameter)
        self._master_refs: list[str] = []
        self.referenced: set[str] = set()
        for name, value in cfg.values.items():
            if name in params.RAW_PARAMETERS:
                continue  # expanded by the daemon with its own macros
            for ref in references(value):
                self._main_refs.append((ref, name))
                self.referenced.add(ref)
        for value in self.cli_overrides.values():
            self.referenced.update(references(value))
        for entry in self.services:
            for value in service_options(entry).values():
                for ref in references(value):
                    if ref not in self._master_refs:
                        self._master_refs.append(ref)
                    self.referenced.add(ref)
        self.classes: set[str] = set()
        for value in self._class_values():
            self.classes.update(split_list(value))

    def _class_values(self):
        name = "smtpd_restriction_classes"
        try:
            yield self.cfg.get(name)
        except Exception:  # a broken value is reported where it is expanded
            yield self.cfg.raw(name) or ""
        for entry in self.services:
            value = service_options(entry).get(name)
            if value:
                yield value

    # -- classification -------------------------------------------------------------

    def builtin(self, name: str) -> bool:
        """True for a static or per-service parameter (one that has a default)."""
        return name in self.static or name in self.per_service

    def defined_by_user(self, name: str) -> bool:
        return name in self.cfg.values or name in self.cfg.overrides

    def used(self, name: str) -> bool:
        """True when a user-defined name is referred to or is a restriction class."""
        return name in self.referenced or name in self.classes

    def known(self, name: str) -> bool:
        """True when postconf would show name: built-in, or user-defined and used."""
        return self.builtin(name) or (self.defined_by_user(name) and self.used(name))

    def param_class(self, name: str) -> str:
        """Return "builtin", "service" or "user" (postconf -C). A built-in name that a
        master.cf service also defines (local_destination_concurrency_limit with a
        local service) counts as "service", as in postconf."""
        if name in self.service_names:
            return "service"
        if name in self.static:
            return "builtin"
        return "user"

    def default(self, name: str) -> str | None:
        """Return the default (raw text) of a built-in name, None for others."""
        decl = self.static.get(name) or self.per_service.get(name)
        return decl.default if decl is not None else None

    def names(self) -> list[str]:
        """Every known name, sorted: what ``postconf`` lists."""
        out = set(self.static) | set(self.per_service)
        out.update(n for n in self.cfg.values if self.used(n))
        out.update(n for n in self.cfg.overrides if self.used(n))
        return sorted(out)

    def default_names(self) -> list[str]:
        """Every built-in name, sorted: what ``postconf -d`` lists."""
        return sorted(set(self.static) | set(self.per_service))

    def set_names(self) -> list[str]:
        """Known names that main.cf or an override sets, sorted (``postconf -n``)."""
        names = set(self.cfg.values) | set(self.cli_overrides)
        names -= params.READ_ONLY_PARAMETERS
        return sorted(n for n in names if self.known(n))

    # -- diagnostics ----------------------------------------------------------------

    def _defined(self, name: str) -> bool:
        if self.builtin(name) or self.defined_by_user(name):
            return True
        return any(name in service_options(e) for e in self.services)

    def undefined_warnings(self) -> list[str]:
        """``FILE: undefined parameter: NAME`` for each $NAME nothing defines."""
        out: list[str] = []
        master = f"{self.cfg.config_dir}/master.cf"
        main = f"{self.cfg.config_dir}/main.cf"
        for ref in self._master_refs:
            if not self._defined(ref):
                out.append(f"{master}: undefined parameter: {ref}")
        seen: set[str] = set()
        for ref, _by in self._main_refs:
            if ref in seen or self._defined(ref):
                continue
            seen.add(ref)
            out.append(f"{main}: undefined parameter: {ref}")
        return out

    def unused_main_warnings(self) -> list[str]:
        main = f"{self.cfg.config_dir}/main.cf"
        out = [
            f"{main}: unused parameter: {name}={self.cfg.values[name]}"
            for name in sorted(self.cfg.values, key=lambda n: self.cfg.lines.get(n, 0))
            if not self.builtin(name) and not self.used(name)
        ]
        for name, value in self.cli_overrides.items():
            if name not in self.cfg.values and not self.builtin(name) and not self.used(name):
                out.append(f"{main}: unused parameter: {name}={value}")
        return out

    def option_warnings(self) -> list[str]:
        """``-o`` options that are not name=value (postconf names the file only)."""
        return [f"master.cf: {problem}" for entry in self.services
                for problem in option_problems(entry.args)]

    def unused_master_warnings(self) -> list[str]:
        master = f"{self.cfg.config_dir}/master.cf"
        out: list[str] = []
        for entry in self.services:
            for name, value in service_options(entry).items():
                if not self.builtin(name) and not self.used(name):
                    out.append(f"{master}: unused parameter: {name}={value}")
        return out

    def file_warnings(self) -> list[str]:
        """Overridden duplicates and read-only names set in main.cf."""
        main = f"{self.cfg.config_dir}/main.cf"
        out = list(self.cfg.warnings)
        out += [
            f"{main}, line {line}: overriding earlier entry: {name}={old}"
            for line, name, old in self.cfg.duplicates
        ]
        for name in sorted(self.cfg.values, key=lambda n: self.cfg.lines.get(n, 0)):
            if name in params.READ_ONLY_PARAMETERS:
                out.append(f"{main}: read-only parameter assignment: "
                           f"{name}={self.cfg.values[name]}")
        return out

    def check_expansions(self) -> None:
        """Expand each built-in parameter that main.cf or a master.cf ``-o`` sets, as
        postconf does before any output: a loop or a malformed expression reached from
        one is a ConfigError (fatal). User-defined values are expanded only through
        the built-in ones that refer to them."""
        for name in self.cfg.values:
            if self.builtin(name) and name not in params.RAW_PARAMETERS:
                self.cfg.get(name)
        for entry in self.services:
            for name, value in service_options(entry).items():
                if self.builtin(name) and name not in params.RAW_PARAMETERS:
                    self.cfg.expand(value, _where=f"{self.cfg.config_dir}/master.cf, "
                                                  f"line {entry.line}: -o {name}")

    def warnings(self, main: bool = True) -> list[str]:
        """All diagnostics; ``main=False`` leaves out main.cf's unused names (-M, -F, -P)."""
        out = self.file_warnings() + self.undefined_warnings()
        if main:
            out += self.unused_main_warnings()
        return out + self.unused_master_warnings()
