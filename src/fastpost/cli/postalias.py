"""fastpost alias and newaliases: build and query alias tables, as postalias(1) does.

Postfix counterpart: src/postalias/postalias.c; newaliases = ``postalias
$alias_database`` (src/sendmail/sendmail.c -bi).

    fastpost alias [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [type:]file...
    newaliases [-c config_dir]          (also: fastpost newaliases)

Builds ``file.lmdb`` from an aliases(5) file (see fastpost.mail.maps.aliases), adding
the sendmail-compatible ``@`` -> ``@`` entry that marks the database complete.
-q/-s/-d/-i and the other flags behave as for ``fastpost map``; ``-s`` prints
``name: value``.

Parameters: alias_database (newaliases), default_database_type, config_directory.
Diagnostics: as fastpost map; bad lines are warnings naming file and line.
"""

from __future__ import annotations

import getopt
import os
import sys

from fastpost.cli import postmap
from fastpost.cli.postmap import Fatal, Tool, init_logging
from fastpost.mail import maps
from fastpost.mail.config import Config, ConfigError, strip_braces
from fastpost.mail.maps import indexed
from fastpost.mail.maps.aliases import alias_records

USAGE = "usage: {prog} [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file..."


def build(tool: Tool, arg: str, flags: int) -> None:
    type_, name = tool.split(arg)
    if type_ not in maps.INDEXED_TYPES:
        tool.fatal(f"unsupported dictionary type for building: {type_}")
    text = postmap.read_source(tool, name)
    spec = f"{type_}:{name}"
    builder = indexed.Builder(name, flags, warn=tool.warn, spec=spec)

    def warn_line(lineno, message):
        tool.warn(f"{name}, line {lineno}: {message}")

    for _, key, value in alias_records(text, warn_line):
        builder.add(key, value, where=spec)
    builder.add("@", "@")
    mode, owner = postmap.file_attributes(name, keep_mode=not tool.opt_p,
                                          keep_owner=not tool.opt_o)
    builder.commit(mode=mode, owner=owner)


def main(argv: list[str], prog: str = "fastpost alias") -> int:
    tool = Tool(prog)
    try:
        return _main(tool, argv)
    except (Fatal, ConfigError) as exc:
        print(f"{prog}: fatal: {exc}", file=sys.stderr)
        return 1


def _main(tool: Tool, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "Nc:d:finopq:rsuvw")
    except getopt.GetoptError as exc:
        print(f"{tool.prog}: {exc}", file=sys.stderr)
        tool.fatal(USAGE.format(prog=tool.prog))
    config_dir = None
    query = delete = None
    dump = incremental = False
    for opt, val in opts:
        if opt == "-c":
            config_dir = val
        elif opt in ("-q", "-d", "-s"):
            if query is not None or delete is not None or dump:
                tool.fatal("specify only one of -s or -q or -d")
            if opt == "-q":
                query = val
            elif opt == "-d":
                delete = val
            else:
                dump = True
        elif opt == "-i":
            incremental = True
        elif opt == "-p":
            tool.opt_p = True
        elif opt == "-o":
            tool.opt_o = True
    flags = postmap.parse_flags(opts)
    if not args:
        tool.fatal(USAGE.format(prog=tool.prog))
    tool.cfg = postmap.load_config(tool, config_dir)
    init_logging(tool.cfg, "postalias")
    if query is not None:
        tables = [tool.open(a, flags) for a in args]
        if query == "-":
            found = False
            for key in (line.rstrip("\n") for line in sys.stdin):
                value = postmap.query_one(tool, tables, key)
                if value is not None:
                    print(f"{key}:\t{value}")
                    found = True
            return 0 if found else 1
        value = postmap.query_one(tool, tables, query)
        if value is None:
            return 1
        print(value)
        return 0
    if dump:
        for a in args:
            t = tool.open(a, flags)
            try:
                for k, v in t.items():
                    print(f"{k}:\t{v}")
            except (maps.MapError, maps.MapRetry) as exc:
                tool.fatal(str(exc))
        return 0
    if delete is not None:
        keys = [line.rstrip("\n") for line in sys.stdin] if delete == "-" else [delete]
        deleted = 0
        for a in args:
            _, name = tool.split(a)
            try:
                deleted += indexed.update_table(name, flags, deletes=keys)[1]
            except maps.MapRetry as exc:
                tool.fatal(str(exc))
        return 0 if deleted else 1
    if incremental:
        text = sys.stdin.read()
        for a in args:
            _, name = tool.split(a)
            adds = [(k, v, None) for _, k, v in
                    alias_records(text, lambda n, m: tool.warn(f"-, line {n}: {m}"))]
            indexed.update_table(name, flags, adds=adds, warn=tool.warn)
        return 0
    for a in args:
        build(tool, a, flags)
    return 0


def newaliases(argv: list[str]) -> int:
    """Build every table in alias_database (sendmail -bi / -I)."""
    prog = "newaliases"
    try:
        opts, args = getopt.getopt(argv, "c:v")
    except getopt.GetoptError as exc:
        print(f"{prog}: fatal: {exc}; usage: newaliases [-c config_dir]", file=sys.stderr)
        return 1
    config_dir = dict(opts).get("-c")
    if config_dir is not None and not os.path.isfile(os.path.join(config_dir, "main.cf")):
        print(f"{prog}: fatal: open {os.path.join(config_dir, 'main.cf')}: "
              "No such file or directory", file=sys.stderr)
        return 1
    from fastpost.mail.mainvalues import refused

    if refused(config_dir, prog):  # as Postfix's newaliases (its sendmail): exit 75
        return 75
    try:
        cfg = Config(config_dir)
        specs = [strip_braces(s) for s in cfg.get_list("alias_database")]
    except ConfigError as exc:
        print(f"{prog}: fatal: {exc}", file=sys.stderr)
        return 1
    argv2 = (["-c", config_dir] if config_dir else []) + specs
    if not specs:
        return 0
    return main(argv2, prog=prog)
