"""main.cf: reading, $name expansion and typed values.

Postfix counterpart: src/util/dict.c (dict_load_fp), readlline.c, mac_expand.c,
src/global/mail_conf*.c

A logical line is a line that starts with non-whitespace plus the following lines that
start with whitespace; blank lines and lines whose first non-blank character is ``#``
are skipped, also inside a continued value. ``name = value``: whitespace around ``=``
and at the end is trimmed; the last definition of a name wins.

Values are stored raw and expanded when read (lazily, recursively):

    $name ${name} $(name)        the value of name ("" when undefined)
    ${name?text} ${name?{text}}  text when name is defined and not empty
    ${name:text} ${name:{text}}  text when name is undefined or empty
    ${name?{t1}:{t2}}            t1 or t2
    ${{a} == {b} ? {t} : {f}}    also != < <= > >= (numeric when both sides are
                                 numbers) and ==level !=level <level ... (compatibility
                                 levels such as 3.6)
    $$                           a literal $

Precedence of a value: per-service ``-o name=value`` overrides, then main.cf, then the
declared default (fastpost.mail.params). Defaults that depend on the configuration
itself (myhostname, mydomain, mynetworks: params.DYNAMIC_DEFAULTS) are computed on
first use; per-transport names such as relay_destination_concurrency_limit resolve to
their family's default for any transport (params.transport_param). Raw parameters
(params.RAW_PARAMETERS: forward_path, default_rbl_reply, ...) are returned unexpanded:
the daemon expands them with its own macros, e.g.
``cfg.with_overrides({"user": u, "home": h}).expand(cfg.get("forward_path"))``.

Speed: expanded values and computed defaults are cached per Config; with_overrides()
gives a per-service view that shares the parsed main.cf; the parameter table is built
once per process. docs/configuration.md has the measured figures.

Diagnostics: ConfigError (file and line when known) for a syntax error, an expansion
loop, or a value that does not fit its declared type or range. Callers that are daemons
turn it into ``fatal:``.
"""

from __future__ import annotations

import os
import re

from fastpost.mail import params
# main.cf's syntax and the error class live in the light module sendmail uses alone
from fastpost.mail.maincf import (  # noqa: F401 - re-exported
    C_SPACE, ConfigError, config_directory, parse_main_cf, read_logical_lines)

_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_LIST_SPLIT_CHARS = ", \t\r\n"
_MAX_NESTING = 100


class ExpansionLoop(ConfigError):
    """$name expansion that does not end (a refers to b, b to a); ``name`` is the
    parameter whose expansion ran into it."""

    def __init__(self, where: str, name: str):
        super().__init__(f'{where}: unreasonable macro call nesting: "{name}"')
        self.name = name


def split_list(text: str) -> list[str]:
    """Split a comma/whitespace list; a ``{ ... }`` group is one element, braces kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in _LIST_SPLIT_CHARS:
            i += 1
            continue
        start = i
        depth = 0
        while i < n:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth = max(0, depth - 1)
            elif depth == 0 and c in _LIST_SPLIT_CHARS:
                break
            i += 1
        out.append(text[start:i])
    return out


def strip_braces(token: str) -> str:
    """Return the text inside ``{ ... }`` (trimmed), or the token unchanged."""
    if len(token) >= 2 and token[0] == "{" and token[-1] == "}":
        return token[1:-1].strip()
    return token


def _find_close(text: str, i: int, open_c: str, close_c: str) -> int:
    """Return the index of the bracket closing the one at text[i], or -1."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return j
    return -1


def _parse_level(text: str) -> tuple[int, ...] | None:
    parts = text.strip().split(".")
    if not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _compare(left: str, op: str, right: str, where: str) -> bool:
    if op.endswith("level"):
        a, b = _parse_level(left), _parse_level(right)
        if a is None or b is None:
            raise ConfigError(f"{where}: bad compatibility level in {left!r} {op} {right!r}")
        op = op[: -len("level")]
    elif left.isascii() and right.isascii() and left.isdigit() and right.isdigit():
        a, b = int(left), int(right)
    else:
        a, b = left, right
    return {
        "==": a == b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]


_COMPARE_RE = re.compile(r"\s*(==|!=|<=|>=|<|>)(level)?\s*")


class Config:
    """A main.cf plus per-service overrides, with expansion and typed access.

    ``values`` are main.cf's raw values; ``overrides`` (``-o name=value`` from
    master.cf or the command line) take precedence over them.
    """

    def __init__(
        self,
        config_dir: str | None = None,
        overrides: dict[str, str] | None = None,
        *,
        text: str | None = None,
    ):
        self.config_dir = config_directory(config_dir)
        self.path = os.path.join(self.config_dir, "main.cf")
        #: (line, name, earlier value) of each definition that overrides an earlier one
        self.duplicates: list[tuple[int, str, str]] = []
        #: problems that did not stop the parse (a line skipped), postconf's wording
        self.warnings: list[str] = []
        if text is not None:
            self.values, self.lines = parse_main_cf(self.path, text, self.duplicates,
                                                    self.warnings)
        elif os.path.exists(self.path):
            self.values, self.lines = parse_main_cf(self.path, None, self.duplicates,
                                                    self.warnings)
        else:
            self.values, self.lines = {}, {}
        self.overrides = dict(overrides or {})
        #: name -> where an override comes from ("FILE, line N"), when known
        self.override_origins: dict[str, str] = {}
        self._cache: dict[str, str] = {}
        self._dynamic_cache: dict[str, str] = {}
        #: Names whose expansion referred to an undefined parameter (postconf warns).
        self.undefined: set[str] = set()

    # -- raw values ---------------------------------------------------------------

    def raw(self, name: str) -> str | None:
        """Return the unexpanded value of name, or None when it is not defined at all."""
        if name in self.overrides:
            return self.overrides[name]
        if name in self.values:
            return self.values[name]
        if name == "config_directory":
            return self.config_dir
        dynamic = params.DYNAMIC_DEFAULTS.get(name)
        if dynamic is not None:
            return self._dynamic(name, dynamic)
        decl = params.lookup(name) or params.transport_param(name)
        return decl.default if decl is not None else None

    def _dynamic(self, name: str, compute) -> str:
        value = self._dynamic_cache.get(name)
        if value is None:
            try:
                value = compute(self)
            except (ValueError, OSError) as exc:
                raise ConfigError(f"default value of {name}: {exc}") from None
            self._dynamic_cache[name] = value
        return value

    def is_set(self, name: str) -> bool:
        """Return True when main.cf or an override sets name explicitly."""
        return name in self.overrides or name in self.values

    def set_override(self, name: str, value: str) -> None:
        """Apply a ``-o name=value`` override (also after construction)."""
        self.overrides[name] = value
        self._cache.clear()
        self._dynamic_cache.clear()

    def with_overrides(self, overrides: dict[str, str], origin: str | None = None) -> "Config":
        """Return a copy of this configuration with more overrides on top.

        The main.cf values are shared, not re-read: cheap enough to make one per
        master.cf service (its ``-o`` options, service_name). ``origin`` (e.g.
        "/etc/fastpost/master.cf, line 12") is what where() then says for them.
        """
        other = object.__new__(Config)
        other.config_dir = self.config_dir
        other.path = self.path
        other.values = self.values
        other.lines = self.lines
        other.duplicates = self.duplicates
        other.warnings = self.warnings
        other.overrides = {**self.overrides, **overrides}
        other.override_origins = dict(self.override_origins)
        if origin is not None:
            other.override_origins.update({name: origin for name in overrides})
        other._cache = {}
        other._dynamic_cache = {}
        other.undefined = set()
        return other

    def where(self, name: str) -> str:
        """Return 'FILE, line N' for a main.cf parameter, or a description of its origin."""
        if name in self.overrides:
            origin = self.override_origins.get(name)
            return f"{origin}: -o {name}" if origin else f"-o {name}"
        if name in self.lines:
            return f"{self.path}, line {self.lines[name]}"
        return f"default value of {name}"

    # -- expansion ----------------------------------------------------------------

    def get(self, name: str) -> str:
        """Return the fully expanded value of name ("" when undefined)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        raw = self.raw(name)
        if raw is None:
            self.undefined.add(name)
            return ""
        if name in params.RAW_PARAMETERS:
            return raw  # the daemon expands it with its own macros ($user, $rbl_code...)
        value = self.expand(raw, _where=self.where(name), _stack=(name,))
        self._cache[name] = value
        return value

    def expand(self, text: str, *, _where: str = "expression", _stack: tuple = ()) -> str:
        """Return text with every $name form expanded (see the module docstring)."""
        if "$" not in text:
            return text
        if len(_stack) > _MAX_NESTING:
            raise ExpansionLoop(_where, _stack[0])
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            j = text.find("$", i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            i = j + 1
            if i >= n:
                raise ConfigError(f'{_where}: empty macro name: "{text}"')
            c = text[i]
            if c == "$":
                out.append("$")
                i += 1
            elif c in "{(":
                close_c = "}" if c == "{" else ")"
                end = _find_close(text, i, c, close_c)
                if end < 0:
                    raise ConfigError(f'{_where}: truncated macro reference: "{text}"')
                out.append(self._expand_braced(text[i + 1 : end], _where, _stack))
                i = end + 1
            else:
                m = _NAME_RE.match(text, i)
                if not m:
                    raise ConfigError(f'{_where}: empty macro name: "{text}"')
                out.append(self._value_of(m.group(), _where, _stack))
                i = m.end()
        return "".join(out)

    def _value_of(self, name: str, where: str, stack: tuple) -> str:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if name in stack:
            raise ExpansionLoop(where, stack[0])
        raw = self.raw(name)
        if raw is None:
            self.undefined.add(name)
            return ""
        value = self.expand(raw, _where=where, _stack=stack + (name,))
        self._cache[name] = value
        return value

    def _expand_braced(self, inner: str, where: str, stack: tuple) -> str:
        """Expand the text between ${ and } (or $( and )).

        White space around the name is ignored. ``?`` and ``:`` take either the rest
        of the text (trimmed) or a ``{...}`` group; ``?{t}:{f}`` (or ``?{t}:f``) gives
        both branches. Text after a closing group is an error, as in Postfix.
        """
        body = inner.lstrip()
        if body.startswith("{"):
            return self._expand_compare(body, where, stack)
        m = _NAME_RE.match(body)
        name = m.group() if m else ""
        rest = body[len(name):].lstrip()
        if not rest:
            if not name:
                raise ConfigError(f'{where}: empty macro name: "${{{inner}}}"')
            return self._value_of(name, where, stack)
        op, rest = rest[0], rest[1:]
        if op not in "?:":
            raise ConfigError(f'{where}: attribute name syntax error at: "{body}"')
        raw = self.raw(name) if name else None
        if raw is None:
            self.undefined.add(name)
        true_text, false_text = self._branches(op, rest, where, inner)
        chosen = true_text if raw else false_text
        return self.expand(chosen, _where=where, _stack=stack)

    @staticmethod
    def _branches(op: str, rest: str, where: str, inner: str) -> tuple[str, str]:
        """Return (text if true, text if false) of the part after ``?`` or ``:``."""

        def group(text: str) -> tuple[str, str]:
            end = _find_close(text, 0, "{", "}")
            if end < 0:
                raise ConfigError(f'{where}: truncated macro reference: "${{{inner}}}"')
            return text[1:end].strip(), text[end + 1 :].lstrip()

        def unexpected(text: str) -> ConfigError:
            return ConfigError(f'{where}: unexpected input at: "{text}" in "${{{inner}}}"')

        rest = rest.lstrip()
        if op == ":":
            if rest.startswith("{"):
                text, after = group(rest)
                if after:
                    raise unexpected(after)
                return "", text
            return "", rest.strip()
        if not rest.startswith("{"):
            return rest.strip(), ""
        true_text, after = group(rest)
        if not after:
            return true_text, ""
        if after[0] != ":":
            raise unexpected(after)
        after = after[1:].lstrip()
        if not after.startswith("{"):
            return true_text, after.strip()
        false_text, tail = group(after)
        if tail:
            raise unexpected(tail)
        return true_text, false_text

    def _expand_compare(self, inner: str, where: str, stack: tuple) -> str:
        """Expand ${{a} OP {b} ? {t} : {f}} (the ``?`` part may be left out)."""
        pos = 0

        def take_group() -> str:
            nonlocal pos
            while pos < len(inner) and inner[pos].isspace():
                pos += 1
            if pos >= len(inner) or inner[pos] != "{":
                raise ConfigError(f'{where}: "{{" expected at: "{inner[pos:]}" in "${{{inner}}}"')
            end = _find_close(inner, pos, "{", "}")
            if end < 0:
                raise ConfigError(f'{where}: truncated macro reference: "${{{inner}}}"')
            group = inner[pos + 1 : end]
            pos = end + 1
            return group

        left = self.expand(take_group(), _where=where, _stack=stack)
        m = _COMPARE_RE.match(inner, pos)
        if not m:
            raise ConfigError(
                f'{where}: "==" or "!=" or "<" or "<=" or ">=" or ">" expected at: '
                f'"{inner[pos:].strip()}" in "${{{inner}}}"')
        op = m.group(1) + (m.group(2) or "")
        pos = m.end()
        right = self.expand(take_group(), _where=where, _stack=stack)
        tail = inner[pos:].lstrip()
        if not tail:
            return ""
        if tail[0] != "?":
            raise ConfigError(f'{where}: unexpected input at: "{tail}" in "${{{inner}}}"')
        true_text, false_text = self._branches("?", tail[1:], where, inner)
        chosen = true_text if _compare(left, op, right, where) else false_text
        return self.expand(chosen, _where=where, _stack=stack)

    # -- typed values -------------------------------------------------------------

    def _decl(self, name: str) -> params.Param:
        return params.get(name)

    def get_str(self, name: str) -> str:
        """Return a STR parameter, expanded."""
        return self.get(name)

    def get_bool(self, name: str) -> bool:
        """Return a BOOL parameter; ConfigError unless the value is yes or no."""
        value = self.get(name).strip().lower()
        if value == "yes":
            return True
        if value == "no":
            return False
        raise ConfigError(f"{self.where(name)}: bad boolean configuration: {name} = {value}")

    def get_int(self, name: str) -> int:
        """Return an INT parameter, checked against its declared range."""
        value = self.get(name).strip()
        try:
            number = int(value, 10)
        except ValueError:
            raise ConfigError(
                f"{self.where(name)}: bad numerical configuration: {name} = {value}"
            ) from None
        self._check_range(name, number)
        return number

    def get_time(self, name: str) -> int:
        """Return a TIME parameter in seconds (suffix s/m/h/d/w, default unit declared)."""
        value = self.get(name).strip()
        decl = params.lookup(name)
        unit = decl.unit if decl is not None and decl.unit else "s"
        seconds = parse_time(value, unit)
        if seconds is None:
            raise ConfigError(f"{self.where(name)}: bad time value: {name} = {value}")
        self._check_range(name, seconds)
        return seconds

    def get_list(self, name: str) -> list[str]:
        """Return a LIST or MAPS parameter split into elements (``{}`` groups kept)."""
        return split_list(self.get(name))

    def _check_range(self, name: str, number: int) -> None:
        decl = params.lookup(name)
        if decl is None:
            return
        if decl.min is not None and number < decl.min:
            raise ConfigError(
                f"{self.where(name)}: invalid {name} parameter value {number} < {decl.min}"
            )
        if decl.max is not None and number > decl.max:
            raise ConfigError(
                f"{self.where(name)}: invalid {name} parameter value {number} > {decl.max}"
            )

    def typed(self, name: str):
        """Return the value of a declared parameter converted to its declared type."""
        kind = self._decl(name).kind
        if kind == params.BOOL:
            return self.get_bool(name)
        if kind == params.INT:
            return self.get_int(name)
        if kind == params.TIME:
            return self.get_time(name)
        if kind in (params.LIST, params.MAPS):
            return self.get_list(name)
        return self.get(name)


def parse_time(value: str, unit: str = "s") -> int | None:
    """Return seconds for '300', '300s', '5m', '1h', '5d', '2w'; None if malformed."""
    value = value.strip()
    if not value:
        return None
    suffix = value[-1].lower()
    if suffix in params.TIME_UNITS:
        number, mult = value[:-1], params.TIME_UNITS[suffix]
    else:
        number, mult = value, params.TIME_UNITS[unit]
    if not number.isdigit():
        return None
    return int(number) * mult
