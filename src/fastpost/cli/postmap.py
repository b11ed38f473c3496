"""fastpost map: build, query and update lookup tables, as postmap(1) does.

Postfix counterpart: src/postmap/postmap.c.

    fastpost map [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [type:]file...

Without -q/-s/-d/-i it builds each ``[type:]file`` (type defaults to
``default_database_type``) from its source: ``file`` -> ``file.lmdb`` for hash, btree
and lmdb (see fastpost.mail.maps.indexed). Builds are atomic and show progress on a
terminal for large inputs.

    -q key    print the value of key (first table that has it); exit 1 if none has it
    -q -      read keys from stdin, print "key<TAB>value" for each found; exit 1 if none
    -b, -h    with -q -: stdin is a message; look up body lines (-b) and/or header
              lines (-h, continuation lines included)
    -s        print every "key<TAB>value" of each table
    -d key    delete key (-d -: keys from stdin); exit 1 if nothing was deleted
    -i        add "key value" lines from stdin to an existing table
    -f        do not fold keys to lower case     -F  values are file names: store base64
    -N / -n   store with / without a NUL after keys and values (default: with NUL)
    -r / -w   on duplicate keys: replace silently / keep the first silently
    -p        give new files mode 0644 instead of the source file's permissions
    -o        as root, keep new files owned by root (default: the source's owner)
    -u -U -m -v    accepted for compatibility (UTF-8 is always on; -m does no MIME
              processing: -b/-h see the top-level message only)

Parameters: default_database_type, config_directory (-c).
Diagnostics: "fastpost map: fatal: ..." and exit 1 for usage errors, missing files
and lookup failures; warnings name the file and line of bad input lines. main.cf's
global values are judged as postmap's are (fastpost.mail.mainvalues, in load_config,
for postalias too): the same fatal text, exit 1.
"""

from __future__ import annotations

import base64
import getopt
import os
import sys

from fastpost.mail import maps
from fastpost.mail.config import Config, ConfigError
from fastpost.mail.maps import _base, indexed
from fastpost.mail.maps.source import records

USAGE = ("usage: {prog} [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] "
         "[map_type:]file...")
#: Sources larger than this show progress when stderr is a terminal.
PROGRESS_BYTES = 4_000_000


class Fatal(Exception):
    pass


class Tool:
    """Shared state of one postmap/postalias run: program name, config, messages."""

    def __init__(self, prog: str):
        self.prog = prog
        self.cfg: Config | None = None
        self.opt_p = False      # -p: new files get mode 0644, not the source's
        self.opt_o = False      # -o: as root, do not give the file to the source's owner

    def warn(self, text: str) -> None:
        print(f"{self.prog}: warning: {text}", file=sys.stderr)

    def fatal(self, text: str):
        raise Fatal(text)

    def default_type(self) -> str:
        return self.cfg.get("default_database_type") if self.cfg else "hash"

    def split(self, arg: str) -> tuple[str, str]:
        if ":" in arg and not arg.startswith("/") or arg.split(":", 1)[0] in maps.TYPES:
            type_, _, name = arg.partition(":")
            if type_ == "proxy":
                return self.split(name)
            return type_, name
        return self.default_type(), arg

    def open(self, arg: str, flags: int):
        type_, name = self.split(arg)
        try:
            return maps.create_map(f"{type_}:{name}", self.cfg, flags=flags,
                                   warn=self.warn)
        except maps.MapRetry as exc:
            self.fatal(str(exc))
        except maps.MapError as exc:
            self.fatal(str(exc))


def load_config(tool: "Tool", config_dir: str | None) -> Config:
    """main.cf of -c DIR (which must exist, as for postmap), else the default one."""
    if config_dir is not None and not os.path.isfile(os.path.join(config_dir, "main.cf")):
        tool.fatal(f"open {os.path.join(config_dir, 'main.cf')}: No such file or directory")
    cfg = Config(config_dir)
    # the global parameters' values, as every Postfix program judges them at start
    from fastpost.mail.mainvalues import judge

    warnings, fatal = judge(cfg)
    for text in warnings:
        print(f"{tool.prog}: warning: {text}", file=sys.stderr)
    if fatal is not None:
        tool.fatal(fatal)
    return cfg


def init_logging(cfg: Config, service: str) -> None:
    """Table-layer warnings (log.warn) go to the mail log and to stderr, as postmap's."""
    from fastpost.util import log

    log.init(service, syslog_name=cfg.get("syslog_name"), maillog_file=cfg.get("maillog_file"),
             stream=sys.stderr)


def parse_flags(opts) -> int:
    flags = _base.FOLD_FIX | _base.DUP_WARN | _base.UTF8
    for opt, _ in opts:
        if opt == "-f":
            flags &= ~_base.FOLD_FIX
        elif opt == "-N":
            flags = (flags | _base.TRY1NULL) & ~_base.TRY0NULL
        elif opt == "-n":
            flags = (flags | _base.TRY0NULL) & ~_base.TRY1NULL
        elif opt == "-r":
            flags = (flags | _base.DUP_REPLACE) & ~(_base.DUP_WARN | _base.DUP_IGNORE)
        elif opt == "-w":
            flags = (flags | _base.DUP_IGNORE) & ~(_base.DUP_WARN | _base.DUP_REPLACE)
    return flags


def query_one(tool: Tool, tables, key: str) -> str | None:
    for t in tables:
        try:
            value = t.get(key)
        except maps.MapRetry as exc:
            tool.fatal(f"table {t.spec}: query error: {exc}")
        if value is not None:
            if value == "":
                tool.warn(f"table {t.spec}: key {key}: empty string result is not allowed")
                tool.warn(f"table {t.spec} should return NO RESULT in case of NOT FOUND")
            return value
    return None


def message_lines(stream, headers: bool, body: bool):
    """Yield the lines of a message to look up: logical header lines, then body lines."""
    in_headers = True
    pending: list[str] = []
    for raw in stream:
        line = raw.rstrip("\n").rstrip("\r")
        if in_headers:
            if line and line[0] in " \t" and pending:
                pending.append(line)
                continue
            if pending:
                if headers:
                    yield "\n".join(pending)
                pending = []
            if line == "":
                in_headers = False
                continue
            pending = [line]
            continue
        if body:
            yield line
    if pending and headers:
        yield "\n".join(pending)


def read_source(tool: Tool, path: str, *, ignore_note=False):
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        tool.fatal(f"open {path}: {exc.strerror}")
    return data.decode("utf-8", "surrogateescape")


def build(tool: Tool, arg: str, flags: int, *, base64_values: bool = False) -> None:
    type_, name = tool.split(arg)
    if type_ not in maps.INDEXED_TYPES:
        if type_ not in maps.TYPES:
            tool.fatal(f"unsupported dictionary type: {type_}")
        tool.fatal(f"unsupported dictionary type for building: {type_} "
                   f"(only {', '.join(maps.INDEXED_TYPES)} tables are built)")
    spec = f"{type_}:{name}"
    mode, owner = file_attributes(name, keep_mode=not tool.opt_p, keep_owner=not tool.opt_o)
    if not base64_values:
        try:
            with open(name, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            tool.fatal(f"open {name}: {exc.strerror}")
        show = sys.stderr.isatty() and len(data) > PROGRESS_BYTES
        indexed.build_from_source(name, data, flags, warn=tool.warn, spec=spec, mode=mode,
                                  owner=owner, show_progress=show)
        return
    text = read_source(tool, name)
    builder = indexed.Builder(name, flags, warn=tool.warn, spec=spec)

    def warn_line(lineno, message):
        tool.warn(f"{name}, line {lineno}: {message}")

    for lineno, key, value in records(text, warn_line):
        builder.add(key, file_base64(tool, value, name, lineno), where=spec)
    builder.commit(mode=mode, owner=owner)


def file_attributes(source: str, *, keep_mode: bool, keep_owner: bool):
    """Return (mode, owner) for a table built from source, as postmap does.

    The new file gets the source's permissions (``-p``: 0644 instead) and, when run
    as root on a file owned by someone else, that owner (``-o``: stay root).
    """
    try:
        st = os.stat(source)
    except OSError:
        return None, None
    mode = (st.st_mode & 0o666) if keep_mode else 0o644
    owner = None
    if keep_owner and os.geteuid() == 0 and st.st_uid != 0:
        owner = (st.st_uid, st.st_gid)
    return mode, owner


def file_base64(tool: Tool, path: str, source: str, lineno: int) -> str:
    try:
        with open(path, "rb") as fh:
            return base64.b64encode(fh.read()).decode("ascii")
    except OSError as exc:
        tool.fatal(f"{source}, line {lineno}: open {path}: {exc.strerror}")


def main(argv: list[str], prog: str = "fastpost map") -> int:
    tool = Tool(prog)
    try:
        return _main(tool, argv)
    except Fatal as exc:
        print(f"{prog}: fatal: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"{prog}: fatal: {exc}", file=sys.stderr)
        return 1


def _main(tool: Tool, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "bc:d:fFhijmnNopq:rsuUvw")
    except getopt.GetoptError as exc:
        print(f"{tool.prog}: {exc}", file=sys.stderr)
        tool.fatal(USAGE.format(prog=tool.prog))
    config_dir = None
    query = delete = None
    dump = incremental = headers = body = b64 = False
    for opt, val in opts:
        if opt == "-c":
            config_dir = val
        elif opt == "-q":
            if query is not None or delete is not None or dump:
                tool.fatal("specify only one of -s or -q or -d")
            query = val
        elif opt == "-d":
            if query is not None or delete is not None or dump:
                tool.fatal("specify only one of -s or -q or -d")
            delete = val
        elif opt == "-s":
            if query is not None or delete is not None:
                tool.fatal("specify only one of -s or -q or -d")
            dump = True
        elif opt == "-i":
            incremental = True
        elif opt == "-h":
            headers = True
        elif opt == "-b":
            body = True
        elif opt == "-F":
            b64 = True
        elif opt == "-p":
            tool.opt_p = True
        elif opt == "-o":
            tool.opt_o = True
    flags = parse_flags(opts)
    if not args:
        tool.fatal(USAGE.format(prog=tool.prog))
    tool.cfg = load_config(tool, config_dir)
    init_logging(tool.cfg, "postmap")
    if query is not None:
        tables = [tool.open(a, flags) for a in args]
        if query == "-":
            found = False
            if headers or body:
                lines = message_lines(sys.stdin, headers, body)
            else:
                lines = (line.rstrip("\n") for line in sys.stdin)
            for key in lines:
                value = query_one(tool, tables, key)
                if value is not None:
                    print(f"{key}\t{value}")
                    found = True
            sys.stdout.flush()
            return 0 if found else 1
        value = query_one(tool, tables, query)
        if value is None:
            return 1
        print(value)
        return 0
    if dump:
        for a in args:
            t = tool.open(a, flags)
            try:
                for k, v in t.items():
                    print(f"{k}\t{v}")
            except (maps.MapError, maps.MapRetry) as exc:
                tool.fatal(f"table {t.spec}: sequence operation is not supported"
                           if isinstance(exc, maps.MapError) else str(exc))
        return 0
    if delete is not None:
        keys = [line.rstrip("\n") for line in sys.stdin] if delete == "-" else [delete]
        deleted = 0
        for a in args:
            type_, name = tool.split(a)
            if type_ not in maps.INDEXED_TYPES:
                tool.fatal(f"table {type_}:{name}: delete operation is not supported")
            try:
                deleted += indexed.update_table(name, flags, deletes=keys)[1]
            except maps.MapRetry as exc:
                tool.fatal(str(exc))
        return 0 if deleted else 1
    if incremental:
        lines = sys.stdin.read()
        for a in args:
            type_, name = tool.split(a)
            if type_ not in maps.INDEXED_TYPES:
                tool.fatal(f"table {type_}:{name}: update operation is not supported")
            adds = [(k, file_base64(tool, v, "-", n) if b64 else v, None)
                    for n, k, v in records(lines, lambda n, m: tool.warn(f"-, line {n}: {m}"))]
            indexed.update_table(name, flags, adds=adds, warn=tool.warn)
        return 0
    for a in args:
        build(tool, a, flags, base64_values=b64)
    return 0
