"""main.cf read cheaply: logical lines, raw values, and a few parameters for commands
that must start fast (sendmail's plain submission).

Postfix counterpart: src/util/readlline.c and dict_load_fp() (the file's syntax);
``LiteConfig`` has none: Postfix's sendmail is a C program whose parameter table costs
nothing to build, and fastpost's typed table (fastpost.mail.params) costs ~10 ms of
imports, a large part of a sendmail's run (docs/submission.md, "sendmail speed").

``read_logical_lines`` and ``parse_main_cf`` are the main.cf syntax that
fastpost.mail.config uses too (it imports them from here; the rules are in its
docstring). ``LiteConfig(config_dir)`` parses main.cf and answers ``get(name)`` for the
names in ``LITE_DEFAULTS`` whose value (from main.cf or the default) has no ``$``;
every other question -- another name, a value to expand, a typed getter -- goes to a
full fastpost.mail.config.Config, built on first need. So a LiteConfig always answers
what Config answers; it is only cheaper when the question is simple.

Parameters: only those of LITE_DEFAULTS are answered without the parameter table
(tests/submission/test_sendmail_fast.py checks the defaults equal the table's).

Diagnostics: ConfigError (fastpost.mail.config.ConfigError is this class) naming the
file and line of a syntax error, as Config raises it.
"""

from __future__ import annotations

import os

#: White space as C's isspace() in the C locale: what Postfix trims around names and
#: values (a form feed or a non-ASCII character inside a value is part of it).
C_SPACE = " \t\n\v\f\r"

#: Where fastpost looks for main.cf when neither -c nor the environment says
#: (fastpost.mail.params.DEFAULT_CONFIG_DIRECTORY is this).
DEFAULT_CONFIG_DIRECTORY = "/etc/fastpost"

#: The parameters LiteConfig answers itself, with their defaults (those of
#: fastpost.mail.params; a test keeps them equal).
LITE_DEFAULTS = {
    "queue_directory": "/var/spool/fastpost",
    "command_directory": "/usr/sbin",
    "pickup_service_name": "pickup",
    "setgid_group": "postdrop",
    "mail_owner": "postfix",
    "authorized_submit_users": "static:anyone",
}


class ConfigError(Exception):
    """A configuration problem; str() names the file and line when known."""


def config_directory(cli_dir: str | None = None) -> str:
    """Return the configuration directory: -c, $FASTPOST_CONFIG, $MAIL_CONFIG, default."""
    return (
        cli_dir
        or os.environ.get("FASTPOST_CONFIG")
        or os.environ.get("MAIL_CONFIG")
        or DEFAULT_CONFIG_DIRECTORY
    )


def read_logical_lines(path: str, text: str | None = None, warnings: list | None = None):
    """Yield (line_number, logical_line) from a main.cf-style file.

    Comment lines are skipped, also between continuation lines; the line number is
    that of the first physical line. A continuation line with nothing before it to
    continue is skipped (with its own continuations), as Postfix does; ``warnings``,
    when given, receives a message for it.
    """
    if text is None:
        # newline="": a stray \r stays in its line (and is trimmed as white space)
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            text = fh.read()
    current: list[str] = []
    start = 0
    orphan = False
    for number, raw in enumerate(text.split("\n"), 1):
        stripped = raw.strip(C_SPACE)
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if current:
                current.append(stripped)
                continue
            if not orphan and warnings is not None:
                shown = raw if len(raw) <= 30 else raw[:30] + "..."
                warnings.append(f'{path}: logical line must not start with whitespace: "{shown}"')
            orphan = True
            continue
        orphan = False
        if current:
            yield start, " ".join(current)
        current = [raw.rstrip(C_SPACE)]
        start = number
    if current:
        yield start, " ".join(current)


def parse_main_cf(
    path: str, text: str | None = None, duplicates: list | None = None,
    warnings: list | None = None,
) -> tuple[dict[str, str], dict[str, int]]:
    """Return ({name: raw value}, {name: line number}) of a main.cf file.

    ``duplicates``, when given, receives (line, name, earlier value) for each
    definition that overrides an earlier one; ``warnings`` the text of each
    line that was skipped.
    """
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in read_logical_lines(path, text, warnings):
        name, eq, value = line.partition("=")
        name = name.strip(C_SPACE)
        # Any word is a name (scalemail-backend_time_limit has a dash); only $name
        # references are restricted to letters, digits and "_".
        if not eq or any(c in C_SPACE for c in name):
            raise ConfigError(f'{path}, line {number}: missing \'=\' after attribute name: "{line}"')
        if not name:
            raise ConfigError(f'{path}, line {number}: missing attribute name: "{line}"')
        if duplicates is not None and name in values:
            duplicates.append((number, name, values[name]))
        values[name] = value.strip(C_SPACE)
        lines[name] = number
    return values, lines


def warning_lines(cfg) -> list[str]:
    """What Postfix 3.7's commands print about main.cf as ``PROG: warning: ...`` (a
    continuation line with nothing to continue; a parameter set again to another value:
    ``PATH, line N: overriding earlier entry: NAME=OLD``), once each, for a Config or a
    LiteConfig, in file order."""
    out = list(cfg.warnings)  # only at the top of the file: before any redefinition
    dups = cfg.duplicates  # (line, name, the value it replaced), in file order
    for i, (line, name, old) in enumerate(dups):
        # the value set at this line: what the next redefinition replaced, or the last
        new = next((o for _, n, o in dups[i + 1:] if n == name), cfg.values.get(name))
        if new != old:  # Postfix says nothing when the value is the same
            out.append(f"{cfg.path}, line {line}: overriding earlier entry: {name}={old}")
    return out


class LiteConfig:
    """main.cf parsed, a few parameters answered without the parameter table; the
    rest through a full Config made on first need (``full()``)."""

    def __init__(self, config_dir: str | None = None):
        self.config_dir = config_directory(config_dir)
        self.path = os.path.join(self.config_dir, "main.cf")
        #: as Config's: lines skipped, and (line, name, earlier value) of redefinitions
        self.warnings: list[str] = []
        self.duplicates: list[tuple[int, str, str]] = []
        try:
            self.values, self.lines = parse_main_cf(self.path, None, self.duplicates,
                                                    self.warnings)
        except FileNotFoundError:
            self.values, self.lines = {}, {}
        self._full = None

    def full(self):
        """The complete fastpost.mail.config.Config of the same directory."""
        if self._full is None:
            from fastpost.mail.config import Config

            self._full = Config(self.config_dir)
        return self._full

    def get(self, name: str) -> str:
        """The value of ``name``, exactly as Config.get gives it."""
        if name in LITE_DEFAULTS:
            value = self.values.get(name, LITE_DEFAULTS[name])
            if "$" not in value:
                return value
        return self.full().get(name)

    def __getattr__(self, attr: str):
        # get_int, get_bool, get_list, expand ...: the full Config's
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.full(), attr)


__all__ = ["C_SPACE", "ConfigError", "DEFAULT_CONFIG_DIRECTORY", "LITE_DEFAULTS", "LiteConfig",
           "config_directory", "parse_main_cf", "read_logical_lines", "warning_lines"]
