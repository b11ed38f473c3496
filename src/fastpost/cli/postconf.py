"""fastpost conf: show and edit main.cf and master.cf, as postconf(1) does.

Postfix counterpart: src/postconf/ (postconf.c and its postconf_*.c helpers)

    fastpost conf [-c dir] [-o name=value] [-C class] [-dfhHnx] [name ...]  main.cf
    fastpost conf [-c dir] [-e] name=value ...                       set in main.cf
    fastpost conf [-c dir] -X name ... | -# name ...                 remove / comment out
    fastpost conf [-c dir] -M[f] [service[/type] ...]                master.cf entries
    fastpost conf [-c dir] -M[e] service/type='entry' ... | -MX|-M# service/type ...
    fastpost conf [-c dir] -F[h] [service[/type[/field]] ...]        master.cf fields
    fastpost conf [-c dir] -F service/type/field=value ...
    fastpost conf [-c dir] -P[hx] [service[/type[/name]] ...]        per-service -o
    fastpost conf [-c dir] -P service/type/name=value ... | -PX service/type/name ...
    fastpost conf -m | -l                                            table / lock types
    fastpost conf -a | -A | -T mode                  SASL server/client types, TLS library
    fastpost conf [-c dir] -b|-t [template_file]     bounce templates, expanded / as written

Output is postconf's, byte for byte, so that scripts that parse it work unchanged:
``name = value`` lines sorted by name (``name =`` for an empty value), -h values only,
-H names only, -x values expanded, -f long lines folded; -M/-F/-P in postconf's
column layout. The parameters shown are the built-in ones, the per-transport ones of
master.cf's delivery services and the user-defined ones that are used
(fastpost.mail.conf_scope). Warnings go to stderr in postconf's words: unknown
parameter (a name asked for that does not exist), undefined parameter (a $name nothing
defines), unused parameter (a user-defined name nothing refers to).

Parameters honoured: all of them, for display; config_directory from -c,
$FASTPOST_CONFIG or $MAIL_CONFIG.

Exit status as postconf's: 0, also after warnings; 1 for a fatal error (bad option
combination, malformed request, unreadable or malformed main.cf/master.cf), with
``fastpost conf: fatal: ...`` on stderr. Deliberate differences from postconf are
listed in docs/configuration.md.
"""

from __future__ import annotations

import functools
import os
import re
import sys

from fastpost.mail import confedit, params
from fastpost.mail.conf_scope import Scope
from fastpost.mail.config import Config, ConfigError, ExpansionLoop, config_directory

PROG = "fastpost conf"
#: What postconf treats as white space when it prints a value (a form feed is kept).
_SPACE_RUN = re.compile(r"[ \t\r\n]+")
FOLD_LIMIT = 80

USAGE = (
    "usage: fastpost conf [-c config_dir] [-o name=value] [-d (defaults)] "
    "[-e (edit main.cf)] [-f (fold lines)] [-F (master.cf fields)] [-h (values only)] "
    "[-C builtin|service|user|all] [-H (names only)] [-l (lock types)] [-m (table types)] [-M (master.cf entries)] "
    "[-n (non-default parameters)] [-p (main.cf, default)] [-P (master.cf -o parameters)] "
    "[-x (expand values)] [-X (remove)] [-# (comment out)] [-a (server SASL types)] "
    "[-A (client SASL types)] [-b (bounce templates)] [-t (bounce templates)] "
    "[-T compile-version|run-version|public-key-algorithms] [name...]"
)

#: Table types fastpost.mail.maps offers (the tables subsystem's list wins when present).
TABLE_TYPES = (
    "btree", "cidr", "environ", "fail", "hash", "inline", "ldap", "lmdb", "memcache",
    "mysql", "pcre", "pgsql", "pipemap", "proxy", "randmap", "regexp", "socketmap",
    "sqlite", "static", "tcp", "texthash", "unionmap",
)
#: Mailbox lock methods (the local and virtual delivery agents: mailbox_delivery_lock).
LOCK_TYPES = ("flock", "fcntl", "dotlock")


#: -C class names and the parameter classes they select.
PARAM_CLASSES = {
    "builtin": {"builtin"}, "service": {"service"}, "user": {"user"},
    "all": {"builtin", "service", "user"},
}


class Fatal(Exception):
    """A fatal postconf error: printed as ``fastpost conf: fatal: ...``, exit 1."""


def warn(text: str) -> None:
    print(f"{PROG}: warning: {text}", file=sys.stderr)


def table_types() -> list[str]:
    try:
        from fastpost.mail import maps  # type: ignore[attr-defined]
    except ImportError:
        return sorted(TABLE_TYPES)
    types = getattr(maps, "TABLE_TYPES", None)
    return sorted(types) if types else sorted(TABLE_TYPES)


# -- option handling ------------------------------------------------------------------


class Options:
    def __init__(self):
        self.flags: set[str] = set()
        self.config_dir: str | None = None
        self.overrides: dict[str, str] = {}
        self.names: list[str] = []
        self.classes: set[str] = set()  # -C: builtin, service, user (empty: all)
        self.tls_mode = ""  # -T

    def has(self, flag: str) -> bool:
        return flag in self.flags


_CONFLICTS = (
    # (flag, flag) pairs that cannot go together, checked in this order.
    ("M", "F"), ("M", "P"), ("F", "P"), ("m", "M"), ("m", "F"), ("m", "P"),
    ("l", "M"), ("l", "F"), ("l", "P"), ("l", "m"),
    ("e", "X"), ("e", "#"), ("X", "#"),
    ("d", "e"), ("d", "X"), ("d", "#"), ("e", "n"), ("X", "n"), ("#", "n"),
    ("e", "x"), ("e", "h"), ("e", "H"), ("d", "n"), ("d", "o"), ("h", "H"),
)
#: Flags that only make sense with main.cf display.
_MAIN_ONLY = ("d", "n")


def getopt(argv: list[str], spec: str) -> tuple[list[tuple[str, str]], list[str]]:
    """POSIX getopt: options end at the first argument that is not one (or at --).

    (Python's getopt module would do, but it imports gettext: a few ms of start-up
    that every `fastpost conf` in a shell script pays.)
    """
    takes_arg = {c for i, c in enumerate(spec) if i + 1 < len(spec) and spec[i + 1] == ":"}
    known = set(spec) - {":"}
    opts: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return opts, argv[i + 1 :]
        if not word.startswith("-") or word == "-":
            break
        j = 1
        while j < len(word):
            c = word[j]
            if c not in known:
                raise Fatal(f"invalid option -- '{c}'\n{USAGE}")
            if c in takes_arg:
                if j + 1 < len(word):
                    value = word[j + 1 :]
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise Fatal(f"option requires an argument -- '{c}'\n{USAGE}")
                opts.append(("-" + c, value))
                break
            opts.append(("-" + c, ""))
            j += 1
        i += 1
    return opts, argv[i:]


def parse_args(argv: list[str]) -> Options:
    opts, args = getopt(argv, "aAbc:C:deEfFhHlmMno:pPtT:vxX#")
    o = Options()
    for opt, val in opts:
        flag = opt[1]
        if flag == "c":
            o.config_dir = val
        elif flag == "o":
            name, eq, value = val.partition("=")
            if not eq or not name.strip() or any(c.isspace() for c in name.strip()):
                raise Fatal(f"invalid parameter override: {val}: missing '=' after attribute name")
            o.overrides[name.strip()] = value.strip()
        elif flag == "C":
            for word in val.replace(",", " ").split():
                if word not in PARAM_CLASSES:
                    raise Fatal(f'unknown -C option value "{word}" in "{val}"')
                o.classes.update(PARAM_CLASSES[word])
        elif flag == "T":
            o.tls_mode = val
            o.flags.add("T")
        elif flag == "E":
            raise Fatal("option -E is not supported by fastpost")
        elif flag in ("p", "v"):
            continue
        else:
            o.flags.add(flag)
    o.names = args
    # the modes that print something else than parameters: one at a time, and with
    # none of the parameter display or edit flags
    modes = [m for m in "aAbtT" if o.has(m)]
    if modes:
        for other in "MFPml":
            if o.has(other):
                a, b = sorted((modes[0], other), key=str.lower) if other != "m" else (modes[0], "m")
                raise Fatal(f"specify one of -{a} -{b}")
        if len(modes) > 1:
            if set(modes[:2]) == {"b", "t"}:
                raise Fatal("specify one of -b and -t")
            raise Fatal(f"specify one of -{modes[0]} -{modes[1]}")
        for flag in "denxhHfX#":
            if o.has(flag):
                raise Fatal(f"with option -{modes[0]}, do not specify -{flag}")
        if modes[0] in "bt" and len(args) > 1:
            raise Fatal("options -b and -t require at most one template file")
    for a, b in _CONFLICTS:
        if o.has(a) and o.has(b) or (a == "o" and o.overrides and o.has(b)) or (
            b == "o" and o.overrides and o.has(a)
        ):
            raise Fatal(f"specify one of -{a} -{b}")
    for mode in ("M", "F", "P", "m", "l"):
        if o.has(mode):
            for flag in _MAIN_ONLY + (("h", "H") if mode == "M" else ()):
                if o.has(flag):
                    raise Fatal(f"with option -{mode}, do not specify -{flag}")
    return o


# -- output helpers -------------------------------------------------------------------


def fold(line: str, limit: int = FOLD_LIMIT) -> str:
    """Fold a long ``name = value`` line at white space, continuing with 4 spaces."""
    if len(line) <= limit:
        return line
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and current.strip() and len(current) + 1 + len(word) > limit:
            out.append(current)
            current = "    " + word
        elif current:
            current += " " + word
        else:
            current = word
    out.append(current)
    return "\n".join(out)


def show_line(name: str, value: str, o: Options) -> str:
    """Return one ``name = value`` line; white space in value collapses as in postconf."""
    value = " ".join(w for w in _SPACE_RUN.split(value) if w)
    if o.has("h"):
        line = value
    elif o.has("H"):
        line = name
    else:
        line = f"{name} = {value}" if value else f"{name} ="
    return fold(line) if o.has("f") else line


# -- main.cf display ------------------------------------------------------------------


def load(o: Options, *, need_main: bool = True, defaults_only: bool = False
         ) -> tuple[Config, list, Scope]:
    config_dir = config_directory(o.config_dir)
    main_path = os.path.join(config_dir, "main.cf")
    if need_main and not os.path.exists(main_path):
        raise Fatal(f"open {main_path}: No such file or directory")
    cfg = Config(config_dir, dict(o.overrides))
    explicit = o.config_dir or os.environ.get("FASTPOST_CONFIG") or os.environ.get("MAIL_CONFIG")
    cli = dict(o.overrides)
    if explicit:
        cli.setdefault("config_directory", config_dir)
    services = []
    master_path = os.path.join(config_dir, "master.cf")
    if os.path.exists(master_path):
        services = confedit.read_services(master_path)
        for entry in services:
            for problem in confedit.option_problems(entry.args):
                warn(f"master.cf: {problem}")
    else:
        warn(f"open {master_path}: No such file or directory")
    scope = Scope(cfg, services, cli)
    if not defaults_only:
        scope.check_expansions()
    return cfg, services, scope


def value_for_display(scope: Scope, cfg: Config, name: str, o: Options, defaults: Config | None) -> str:
    if defaults is not None:
        raw = scope.default(name)
        if name in params.DYNAMIC_DEFAULTS:
            raw = defaults.raw(name)
        src = defaults
    else:
        raw = cfg.raw(name)
        if name == "config_directory" and "config_directory" in scope.cli_overrides:
            raw = scope.cli_overrides["config_directory"]
        src = cfg
    raw = raw or ""
    if o.has("x") and name not in params.RAW_PARAMETERS:
        return src.expand(raw, _where=src.where(name), _stack=(name,))
    return raw


def main_show(o: Options) -> int:
    cfg, services, scope = load(o, defaults_only=o.has("d"))
    defaults = None
    if o.has("d"):
        defaults = Config(cfg.config_dir, text="")
    else:
        for line in scope.warnings(main=True):
            warn(line)
    if o.names:
        names = []
        for name in o.names:
            ok = scope.builtin(name) if o.has("d") else scope.known(name)
            if o.has("n") and ok:
                ok = name in scope.set_names()
                if not ok:
                    continue
            if not ok:
                warn(f"{name}: unknown parameter")
                continue
            names.append(name)
    else:
        if o.has("d"):
            names = scope.default_names()
        elif o.has("n"):
            names = scope.set_names()
        else:
            names = scope.names()
        if o.classes:
            names = [n for n in names if scope.param_class(n) in o.classes]
    # All or nothing: after an expansion error nothing is printed. (postconf prints
    # the whole stdio blocks it had filled before the error, and loses the rest.)
    out = [show_line(name, value_for_display(scope, cfg, name, o, defaults), o)
           for name in names]
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0


# -- main.cf editing ------------------------------------------------------------------


def main_edit(o: Options) -> int:
    config_dir = config_directory(o.config_dir)
    path = os.path.join(config_dir, "main.cf")
    if o.has("X") or o.has("#"):
        if not o.names:
            raise Fatal("missing service argument")
        for name in o.names:
            if "=" in name:
                raise Fatal(f"-{'X' if o.has('X') else '#'} option requires parameter name: \"{name}\"")
    elif not o.names:
        raise Fatal("-e requires name=value argument")
    lines = confedit.read_lines(path)
    if not lines and not os.path.exists(path):
        raise Fatal(f"open {path}: No such file or directory")
    kwargs: dict = {}
    if o.has("X"):
        kwargs["remove"] = o.names
    elif o.has("#"):
        kwargs["comment"] = o.names
    else:
        values: dict[str, str] = {}
        for arg in o.names:
            try:
                name, value = confedit.parse_assignment(arg)
            except confedit.EditError as exc:
                raise Fatal(str(exc)) from None
            values[name] = value
        kwargs["set_values"] = values
    new = confedit.edit_main_cf(lines, warn=lambda t: warn(f"{path}: {t}"), **kwargs)
    if new != lines:
        confedit.write_lines(path, new)
    return 0


# -- master.cf ------------------------------------------------------------------------


def _split_request(text: str, maxparts: int, option: str, what: str) -> list[str]:
    parts = text.split("/")
    if len(parts) > maxparts or not parts[0]:
        raise Fatal(f"-{option} option requires {what}")
    return parts


def master_show(o: Options) -> int:
    config_dir = config_directory(o.config_dir)
    cfg, services, scope = load(o, need_main=False)
    if not os.path.exists(os.path.join(config_dir, "master.cf")):
        raise Fatal(f"open {os.path.join(config_dir, 'master.cf')}: No such file or directory")
    for line in scope.warnings(main=False):
        warn(line)
    mode = "M" if o.has("M") else "F" if o.has("F") else "P"
    what = {
        "M": "service_name[/type]",
        "F": "service_name[/type[/field]]",
        "P": "service_name[/type[/parameter]]",
    }[mode]
    requests = [_split_request(n, 2 if mode == "M" else 3, mode, what) for n in o.names]
    out: list[str] = []
    matched = [False] * len(requests)
    for entry in services:
        items = _entry_items(entry, mode, o, cfg)
        for item_name, text in items:
            if requests:
                hit = False
                for k, req in enumerate(requests):
                    if req[0] != entry.service:
                        continue
                    if len(req) > 1 and req[1] != entry.type:
                        continue
                    if len(req) > 2 and req[2] != item_name:
                        continue
                    matched[k] = True
                    hit = True
                if not hit:
                    continue
            out.append(text)
    for k, req in enumerate(requests):
        if not matched[k]:
            warn(f'unmatched request: "{o.names[k]}"')
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0


def _entry_items(entry: confedit.Service, mode: str, o: Options, cfg: Config):
    """Return [(item name, output text)] of one entry for -M, -F or -P."""
    options, _rest = confedit.split_options(confedit.split_words(entry.columns[7])[1:])
    pairs = sorted((n, v) for n, v in options if n is not None)
    expand = None
    if o.has("x"):
        # in the service's context: $service_name and its own -o values
        service_cfg = cfg.with_overrides({"service_name": entry.service, **dict(pairs)})
        expand = functools.partial(service_cfg.expand, _where=entry.key)

    if mode == "M":
        return [("", "\n".join(confedit.format_entry(entry.columns, fold=o.has("f"),
                                                     expand=expand)))]
    prefix = f"{entry.service}/{entry.type}/"
    if mode == "F":
        fields = confedit.entry_fields(entry, expand)
        items = [(f, _item_line(prefix + f, v, o)) for f, v in fields.items()]
        if o.has("f") and not o.has("H"):
            head = "" if o.has("h") else f"{prefix}command = "
            text = "\n".join(confedit.format_command(head, entry.columns[7], fold=True,
                                                     expand=expand))
            items[-1] = ("command", text)
        return items
    return [(name, _item_line(prefix + name, expand(value) if expand else value, o))
            for name, value in pairs]


def _item_line(name: str, value: str, o: Options) -> str:
    if o.has("h"):
        line = value
    elif o.has("H"):
        line = name
    else:
        line = f"{name} = {value}" if value else f"{name} ="
    return fold(line) if o.has("f") else line


def master_edit(o: Options) -> int:
    config_dir = config_directory(o.config_dir)
    path = os.path.join(config_dir, "master.cf")
    if not o.names:
        if o.has("X") or o.has("#"):
            raise Fatal("missing service argument")
        raise Fatal("-e requires name=value argument")
    if not os.path.exists(path):
        raise Fatal(f"open {path}: No such file or directory")
    master = confedit.MasterFile(path)
    mode = "M" if o.has("M") else "F" if o.has("F") else "P"
    if mode == "P":  # postconf looks at the -o options only when it edits them
        for entry, _start, _lines, _interior in master.entries:
            for problem in confedit.option_problems(entry.args):
                warn(f"master.cf: {problem}")
    try:
        for arg in o.names:
            if mode == "M":
                _master_edit_entry(master, arg, o)
            elif mode == "F":
                key, field, value = _field_request(arg, "F", "field")
                if value is None:
                    raise Fatal(f'-F requires service_name/type/field=value: "{arg}"')
                if not master.set_field(key, field, value):
                    warn(f'unmatched service_name/type: "{arg}"')
            else:
                key, name, value = _field_request(arg, "P", "parameter")
                if o.has("X"):
                    if value is not None:
                        raise Fatal(f'-PX requires service_name/type/parameter: "{arg}"')
                elif value is None:
                    raise Fatal(f'-P requires service_name/type/parameter=value: "{arg}"')
                if not master.set_param(key, name, value):
                    warn(f'unmatched service_name/type: "{arg}"')
    except confedit.EditError as exc:
        raise Fatal(str(exc)) from None
    new = master.result()
    if new != master.lines:
        confedit.write_lines(path, new)
    return 0


def _master_edit_entry(master: confedit.MasterFile, arg: str, o: Options) -> None:
    key, eq, text = arg.partition("=")
    parts = key.strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise Fatal("-Me, -MX or -M# requires service_name/type")
    key = "/".join(parts)
    if o.has("X") or o.has("#"):
        if eq:
            raise Fatal("-Me, -MX or -M# requires service_name/type")
        if o.has("X"):
            master.delete(key)
        else:
            master.comment_out(key)
        return
    if not eq:
        raise Fatal("-Me, -MX or -M# requires service_name/type")
    master.set_entry(key, text.strip())


def _field_request(arg: str, option: str, what: str) -> tuple[str, str, str | None]:
    head, eq, value = arg.partition("=")
    parts = head.strip().split("/")
    if len(parts) != 3 or not all(parts):
        raise Fatal(f"-{option} option requires service_name/type/{what}")
    return f"{parts[0]}/{parts[1]}", parts[2], (value if eq else None)


# -- entry point ----------------------------------------------------------------------


#: what -T prints for public-key-algorithms: the certificate types smtpd can load
#: (smtpd_tls_cert_file, smtpd_tls_eccert_file; no DSA: smtpd_tls_dcert_file is read
#: as a second RSA/ECDSA pair only if given)
PUBLIC_KEY_ALGORITHMS = ("ecdsa", "rsa")


def show_sasl_types(client: bool) -> int:
    """-a: the SASL server types smtpd offers; -A: the client types (none yet)."""
    if not client:
        print("dovecot")
    return 0


def show_tls(mode: str) -> int:
    """-T: the OpenSSL library, as Python's ssl module was built and as it runs."""
    if mode == "compile-version":
        import ssl
        major, minor, fix, patch, _status = ssl._OPENSSL_API_VERSION  # noqa: SLF001
        print(f"OpenSSL {major}.{minor}.{patch if major >= 3 else fix}")
    elif mode == "run-version":
        import ssl
        print(ssl.OPENSSL_VERSION)
    elif mode == "public-key-algorithms":
        print("\n".join(PUBLIC_KEY_ALGORITHMS))
    else:
        warn(f"unknown 'fastpost conf -T' mode: {mode}")
        return 1
    return 0


def show_templates(o: Options, expand: bool) -> int:
    """-t: the bounce templates (built-in, or a file's); -b: their texts expanded."""
    from fastpost.mail import bounce_template as BT

    cfg = Config(o.config_dir or config_directory(), overrides=o.overrides)
    path = o.names[0] if o.names else cfg.get("bounce_template_file").strip()
    try:
        ts = BT.parse(path) if path else BT.builtin()
    except OSError as exc:
        raise Fatal(f"open {path}: {exc.strerror}") from None
    except BT.TemplateError as exc:
        raise Fatal(str(exc)) from None
    for w in ts.warnings:
        warn(w)
    if not expand:
        sys.stdout.write(ts.render())
        return 0
    blocks = []
    for name in BT.NAMES:
        try:
            text = BT.expand(ts[name], cfg)
        except BT.TemplateError as exc:
            where = path or "built-in templates"
            raise Fatal(f"{where}: {exc}") from None
        blocks.append(f"expanded_{name.split('_')[0]}_text = <<EOF\n{text}\nEOF")
    sys.stdout.write("\n\n".join(blocks) + "\n")
    return 0


def run(o: Options) -> int:
    if o.has("a") or o.has("A"):
        return show_sasl_types(o.has("A"))
    if o.has("T"):
        return show_tls(o.tls_mode)
    if o.has("b") or o.has("t"):
        return show_templates(o, expand=o.has("b"))
    if o.has("m"):
        # postconf -m judges the global values (its only form that does; not
        # maillog_file): as postconf's, exit 1 (fastpost.mail.mainvalues)
        from fastpost.mail.mainvalues import refused_config

        try:
            cfg = Config(config_directory(o.config_dir), overrides=o.overrides)
        except (ConfigError, OSError):
            cfg = None  # no main.cf to judge: the list all the same
        if cfg is not None and refused_config(cfg, PROG, maillog=False):
            return 1
        print("\n".join(table_types()))
        return 0
    if o.has("l"):
        print("\n".join(LOCK_TYPES))
        return 0
    if o.has("M") or o.has("F") or o.has("P"):
        # -e is implied by a name=value argument, as for main.cf
        edit = o.has("e") or o.has("X") or o.has("#") or any("=" in n for n in o.names)
        if o.has("x") and edit:
            raise Fatal("specify one of -e -x")
        return master_edit(o) if edit else master_show(o)
    if o.has("e") or o.has("X") or o.has("#"):
        return main_edit(o)
    if o.names and "=" in o.names[0] and not (o.has("d") or o.has("n") or o.has("h")
                                               or o.has("H") or o.has("x")):
        o.flags.add("e")
        return main_edit(o)
    return main_show(o)


def main(argv: list[str]) -> int:
    """Entry point of ``fastpost conf``; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        # bytes that are not UTF-8 in main.cf go out as they came in
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        return run(parse_args(argv))
    except Fatal as exc:
        print(f"{PROG}: fatal: {exc}", file=sys.stderr)
        return 1
    except ExpansionLoop as exc:
        warn(f'unreasonable macro call nesting: "{exc.name}"')
        print(f"{PROG}: fatal: macro processing error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"{PROG}: fatal: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except OSError as exc:
        name = exc.filename or ""
        print(f"{PROG}: fatal: {name}: {exc.strerror}", file=sys.stderr)
        return 1
