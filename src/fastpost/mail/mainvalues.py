"""The values of the global parameters a submission command judges at start, as
Postfix 3.7's postdrop and sendmail judge them.

Postfix counterpart: mail_params_init() and the conversions of src/global/mail_conf_*.c
(every Postfix program judges its global parameters when it starts). The rules here
were learnt by running Debian's Postfix 3.7 postdrop on this machine with one bad value
at a time, for every parameter ``postconf -d`` lists (docs/submission.md, "Global
parameter values at submission"); the code is fastpost's own.

``judge(cfg)`` returns ``(warnings, fatal)``: Postfix's warning texts (a hostname's
``valid_hostname: ...``) and the text of the fatal error (``None``: every value is
good), for the caller to print as ``PROG: warning: ...`` / ``PROG: fatal: ...`` and exit
(postdrop 1, sendmail 75, as Postfix's). The wording is Postfix's; where Postfix names
no file (``bad string length 0 < 1: myhostname = ``) fastpost puts ``PATH, line N: ``
after ``fatal: `` when the value comes from a main.cf line (fastpost's rule: an error
names its file and line); where Postfix names the file (``file PATH: parameter NAME:
...``) the text is Postfix's.

What is judged: a parameter of the tables below only when main.cf sets it (their
defaults are good); myhostname and mydomain (each derived from the other when not
set), and when main.cf does not set myhostname the machine's own name first
(``warning: valid_hostname: ...``, then ``unable to use my own hostname``, session 8);
mail_owner, setgid_group and
default_privs always (users and groups that must exist and be distinct and
unprivileged). The compiled postdrop and sendmail front end (cli/csrc/mainvalues.h)
judge the same with the same tables (a test compares them).

Also judged when set: compatibility_level (``N[.N[.N]]``), syslog_facility (a facility
name), inet_protocols (all, ipv4, ipv6), mynetworks_style (host, subnet or class),
default_verp_delimiters against verp_delimiter_filter. The order, with several bad
values, is Postfix's between the groups: compatibility_level, syslog_facility,
inet_protocols, myhostname/mydomain, the strings, numbers, booleans, times, the
accounts, mynetworks_style, the VERP delimiters.

Then, as Postfix (session 8): inet_interfaces when main.cf sets it (after
mynetworks_style, before the VERP delimiters): unless it is exactly ``all`` or
``loopback-only``, or inet_protocols is empty, every word (``[...]`` taken off) must
resolve (getaddrinfo, in the families inet_protocols allows) -- ``config variable
inet_interfaces: host not found: WORD`` -- and then every address must be one of this
machine's interface addresses (getifaddrs) -- ``parameter inet_interfaces: no local
interface found for ADDR``. Last, and only for the programs that log through Postfix's
maillog client (``judge(cfg, maillog=True)``, the default; postcat passes False):
maillog_file, when set, must begin with one of maillog_file_prefixes (plain string
prefixes, case as written) -- ``maillog_file value 'V' does not match any prefix in
maillog_file_prefixes``. ``maillog_refused(cfg, prog)`` is that last check alone, for
the program that judges nothing else (postlog).

Who else judges (session 10): ``fastpost start|check|stop|...`` (postfix(1): every
verb, ``postfix: fatal: ...``, exit 1), every daemon at start (the skeleton,
fastpost.server.lifecycle: ``fatal:`` in the mail log, exit 1, so the master throttles
the service as for any daemon that dies at start) and ``fastpost conf -m`` (postconf
-m, without maillog_file; postconf's other forms judge nothing).
"""

from __future__ import annotations

import os
import re

#: parameters whose value (after $name expansion) must not be empty: (min, max) length,
#: in the order Postfix 3.7 judges them (learnt by setting every one bad and taking
#: away the one named, run after run; myhostname, mydomain and syslog_facility are
#: judged before the table and stand last)
STRING_LENGTHS: dict[str, tuple[int, int]] = {name: (1, 0) for name in (
    "mail_version maillog_file_prefixes maillog_file_compressor "
    "maillog_file_rotate_suffix postlog_service_name mail_name syslog_name mail_owner "
    "setgid_group myorigin daemon_directory data_directory command_directory "
    "meta_directory queue_directory shlib_directory process_id_directory "
    "double_bounce_sender default_privs mail_release_date default_database_type "
    "hash_queue_names mynetworks_style default_verp_delimiters verp_delimiter_filter "
    "bounce_service_name cleanup_service_name defer_service_name pickup_service_name "
    "queue_service_name rewrite_service_name showq_service_name error_service_name "
    "flush_service_name address_verify_service_name trace_service_name "
    "proxymap_service_name proxywrite_service_name smtputf8_autodetect_classes "
    "info_log_address_format myhostname mydomain syslog_facility").split()}
STRING_LENGTHS["default_verp_delimiters"] = (2, 2)

INT_BITS, LONG_BITS = 32, 64
#: integers: (min or None, max or None, bits of Postfix's C type)
INTEGERS: dict[str, tuple[int | None, int | None, int]] = {  # Postfix's order
    "default_process_limit": (1, None, INT_BITS),
    "max_use": (1, None, INT_BITS),
    "dont_remove": (None, None, INT_BITS),
    "line_length_limit": (512, None, INT_BITS),
    "hash_queue_depth": (1, None, INT_BITS),
    "fork_attempts": (1, None, INT_BITS),
    "deliver_lock_attempts": (1, None, INT_BITS),
    "debug_peer_level": (1, None, INT_BITS),
    "fault_injection_code": (None, None, INT_BITS),
    "berkeley_db_create_buffer_size": (1, None, INT_BITS),
    "berkeley_db_read_buffer_size": (1, None, INT_BITS),
    "header_size_limit": (1, None, INT_BITS),
    "header_address_token_limit": (1, None, INT_BITS),
    "mime_nesting_limit": (1, None, INT_BITS),
    "mime_boundary_length_limit": (1, None, INT_BITS),
    "delay_logging_resolution_limit": (None, 6, INT_BITS),
    "tcp_windowsize": (None, None, INT_BITS),
    "message_size_limit": (None, None, LONG_BITS),
    "lmdb_map_size": (1, None, LONG_BITS),
}

#: yes/no parameters (case does not matter; nothing else is accepted)
BOOLEANS: tuple[str, ...] = tuple((  # Postfix's order
    "daemon_table_open_error_is_fatal dns_ncache_ttl_fix_enable smtputf8_enable "
    "enable_idna2003_compatibility respectful_logging disable_dns_lookups soft_bounce "
    "owner_request_special strict_8bitmime strict_7bit_headers strict_8bitmime_body "
    "strict_mime_encoding_domain disable_mime_input_processing "
    "disable_mime_output_conversion address_verify_negative_cache "
    "backwards_bounce_logfile_compatibility helpful_warnings send_cyrus_sasl_authzid "
    "multi_instance_enable enable_long_queue_ids strict_smtputf8 "
    "enable_original_recipient").split())

#: time values (default unit s): the least number of seconds
TIMES: dict[str, int] = {name: 1 for name in (  # Postfix's order
    "application_event_drain_time max_idle ipc_timeout ipc_idle ipc_ttl "
    "trigger_timeout fork_delay deliver_lock_delay stale_lock_time daemon_timeout").split()}
TIMES["in_flow_delay"] = 0

#: syslog_facility's names (case matters)
FACILITIES = frozenset("auth authpriv cron daemon ftp kern lpr mail news syslog user uucp "
                       "local0 local1 local2 local3 local4 local5 local6 local7".split())
INET_PROTOCOLS = frozenset(("all", "ipv4", "ipv6"))
MYNETWORKS_STYLES = frozenset(("host", "subnet", "class"))
_COMPAT = re.compile(r"\+?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?")
_LIST_SPLIT = re.compile(r"[, \t\r\n]+")

TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
INT_MAX = (1 << 31) - 1

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TIME = re.compile(r"([+-]?[0-9]+)(.?)")


def printable(text: str) -> str:
    """The value as Postfix prints it in these messages: each byte that is not
    printable ASCII becomes ``?``."""
    raw = text.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if 32 <= b < 127 else "?" for b in raw)


def hostname_problem(name: str) -> str | None:
    """Why ``name`` is not a valid host name in Postfix's words, or None."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        return f"bad length {len(raw)} for {printable(name)[:100]}..."
    label = 0
    numeric = True
    for i, b in enumerate(raw):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c == "_"):
            label += 1
            if label > 63:
                return f"hostname label too long: {printable(name)}"
            if not c.isdigit():
                numeric = False
        elif c == ".":
            if label == 0 or i == len(raw) - 1:
                return f"misplaced delimiter: {printable(name)}"
            label = 0
        elif c == "-":
            numeric = False
            if label == 0 or i == len(raw) - 1 or raw[i + 1] == ord("."):
                return f"misplaced hyphen: {printable(name)}"
            label += 1
        else:
            return f"invalid character {b}(decimal): {printable(name)}"
    if numeric:
        return f"numeric hostname: {printable(name)}"
    return None


def _integer_problem(name: str, value: str) -> str | None:
    low, high, bits = INTEGERS[name]
    limit = 1 << (bits - 1)
    if not _INTEGER.fullmatch(value) or not -limit <= int(value) < limit:
        return f"bad numerical configuration: {name} = {value}"
    number = int(value)
    if low is not None and number < low:
        return f"invalid {name} parameter value {number} < {low}"
    if high is not None and number > high:
        return f"invalid {name} parameter value {number} > {high}"
    return None


def _boolean_problem(name: str, value: str) -> str | None:
    if value.lower() in ("yes", "no"):
        return None
    return f"bad boolean configuration: {name} = {value}"


def _time_problem(name: str, value: str) -> str | None:
    found = _TIME.match(value)
    bad = f"parameter {name}: bad time value or unit: {value}"
    if found is None or found.group(1).startswith("-"):
        return bad
    number, unit = int(found.group(1)), found.group(2) or "s"
    if unit not in TIME_UNITS or number > INT_MAX:
        return bad
    # (Postfix ignores what follows the unit letter: "5mm" is 5 minutes)
    mult = TIME_UNITS[unit]
    if mult > 1 and number >= INT_MAX // mult:
        return bad
    if number * mult < TIMES[name]:
        return f"invalid {name}: {number * mult} (min {TIMES[name]})"
    return None


def _raw(cfg, name: str) -> str | None:
    """main.cf's (or an override's) unexpanded value of name; None when not set.
    (``__dict__``: a LiteConfig hands unknown attributes to a full Config.)"""
    overrides = cfg.__dict__.get("overrides") or {}
    return overrides.get(name, cfg.values.get(name))


#: the accounts' defaults (fastpost.mail.params' and Postfix's; a test keeps them
#: equal), so that a plain submission needs no parameter table to judge them
ACCOUNT_DEFAULTS = {"mail_owner": "postfix", "setgid_group": "postdrop",
                    "default_privs": "nobody"}


def _value(cfg, name: str) -> str:
    raw = _raw(cfg, name)
    if raw is None:
        raw = ACCOUNT_DEFAULTS.get(name)
    if raw is not None and "$" not in raw:
        return raw
    return cfg.get(name)


def _where(cfg, name: str) -> str:
    lines = cfg.__dict__.get("lines") or {}
    overrides = cfg.__dict__.get("overrides") or {}
    if name in lines and name not in overrides:
        return f"{cfg.path}, line {lines[name]}: "
    return ""


def _set_names(cfg) -> list[str]:
    overrides = cfg.__dict__.get("overrides") or {}
    return list(cfg.values) + [n for n in overrides if n not in cfg.values]


def judge(cfg, maillog: bool = True) -> tuple[list[str], str | None]:
    """Judge the global parameters of ``cfg`` (a Config or a LiteConfig) as Postfix
    3.7's postdrop and sendmail do: (warning texts, fatal text or None). ``maillog``:
    maillog_file against maillog_file_prefixes too (every Postfix program that logs
    through the maillog client; not postcat)."""
    warnings: list[str] = []
    set_names = _set_names(cfg)
    path = cfg.path
    chosen = set(set_names)
    if "compatibility_level" in chosen:
        value = _value(cfg, "compatibility_level")
        found = _COMPAT.fullmatch(value)
        if found is None or any(part and int(part) > INT_MAX for part in found.groups()[1:]) \
                or int(found.group(1)) >= 1 << 63:
            return warnings, (f"{_where(cfg, 'compatibility_level')}malformed compatibility "
                              f'level syntax: "{value}"')
    if "syslog_facility" in chosen:
        value = _value(cfg, "syslog_facility")
        if not value:
            return warnings, f"{_where(cfg, 'syslog_facility')}bad string length 0 < 1: syslog_facility = "
        if value not in FACILITIES:
            return warnings, f"file {path}: parameter syslog_facility: unrecognized value: {value}"
    if "inet_protocols" in chosen:
        value = _value(cfg, "inet_protocols")
        for word in _LIST_SPLIT.split(value):
            if word and word not in INET_PROTOCOLS:
                return warnings, (f"{_where(cfg, 'inet_protocols')}unknown inet_protocols "
                                  f'value "{word}" in "{value}"')
    # first myhostname and mydomain (each derived from the other when not set); when
    # main.cf does not set myhostname, the machine's own name must be a valid host name
    machine = None
    if "myhostname" not in set_names:
        machine = os.uname().nodename  # gethostname(2)
        problem = hostname_problem(machine)
        if problem is not None:
            warnings.append(f"valid_hostname: {problem}")
            return warnings, "unable to use my own hostname"
    if machine is None:
        host = _value(cfg, "myhostname")
    elif "." in machine:
        host = machine
    else:  # Postfix's default: the bare name with $mydomain or localdomain
        host = f"{machine}.{_value(cfg, 'mydomain') if 'mydomain' in set_names else 'localdomain'}"
    if "mydomain" in set_names:
        domain = _value(cfg, "mydomain")
    else:  # Postfix's derivation (an empty rest stays empty)
        domain = host.partition(".")[2] if "." in host else "localdomain"
    pair = (("myhostname", host), ("mydomain", domain))
    for name, value in pair:  # both lengths before either name's syntax
        if not value:
            return warnings, f"{_where(cfg, name)}bad string length 0 < 1: {name} = "
    for name, value in pair:
        problem = hostname_problem(value)
        if problem is not None:
            warnings.append(f"valid_hostname: {problem}")
            return warnings, (f"file {path}: parameter {name}: bad parameter value: "
                              f"{printable(value)}")
    # then each table in its order (Postfix's: with several bad values of one table
    # the first in that order is named)
    for name, (low, high) in STRING_LENGTHS.items():
        if name in chosen and name not in ("myhostname", "mydomain"):
            value = _value(cfg, name)
            size = len(value.encode("utf-8", "surrogateescape"))
            if size < low:
                return warnings, f"{_where(cfg, name)}bad string length {size} < {low}: {name} = {value}"
            if high and size > high:
                return warnings, f"{_where(cfg, name)}bad string length {size} > {high}: {name} = {value}"
    for table, problem_of in ((INTEGERS, _integer_problem), (BOOLEANS, _boolean_problem),
                              (TIMES, _time_problem)):
        for name in table:
            if name in chosen:
                problem = problem_of(name, _value(cfg, name))
                if problem is not None:
                    return warnings, f"{_where(cfg, name)}{problem}"
    problem = _accounts_problem(cfg, path)
    if problem is not None:
        return warnings, problem
    if "mynetworks_style" in chosen and "mynetworks" not in chosen:
        # Postfix judges it where it makes mynetworks' default: not when mynetworks is set
        value = _value(cfg, "mynetworks_style")
        words = [w for w in _LIST_SPLIT.split(value) if w]
        if len(words) > 1:
            return warnings, (f"{_where(cfg, 'mynetworks_style')}bad mynetworks_style value: "
                              f"{value}; specify exactly one value")
        if words and words[0] not in MYNETWORKS_STYLES:
            return warnings, (f"{_where(cfg, 'mynetworks_style')}unknown mynetworks mask "
                              f'style value "{words[0]}" in "{value}"')
    if "inet_interfaces" in chosen:
        protocols = _value(cfg, "inet_protocols") if "inet_protocols" in chosen else "all"
        problem = inet_interfaces_problem(_value(cfg, "inet_interfaces"), protocols)
        if problem is not None:
            return warnings, f"{_where(cfg, 'inet_interfaces')}{problem}"
    if "default_verp_delimiters" in chosen or "verp_delimiter_filter" in chosen:
        delimiters = _value(cfg, "default_verp_delimiters") \
            if "default_verp_delimiters" in chosen else "+="
        allowed = _value(cfg, "verp_delimiter_filter") \
            if "verp_delimiter_filter" in chosen else "-=+"
        for which, char in zip(("first", "second"), delimiters):
            if char not in allowed:
                return warnings, (f"file {path}: parameters default_verp_delimiters and "
                                  f"verp_delimiter_filter: bad {which} VERP delimiter character")
    if maillog:
        problem = _maillog_problem(cfg, chosen)
        if problem is not None:
            return warnings, problem
    return warnings, None


#: maillog_file_prefixes' default (Postfix's and fastpost.mail.params')
MAILLOG_PREFIXES_DEFAULT = "/var, /dev/stdout"


def maillog_problem(maillog_file: str, prefixes: str) -> str | None:
    """Postfix's complaint when ``maillog_file`` (set) begins with none of ``prefixes``."""
    if not maillog_file:
        return None
    for prefix in _LIST_SPLIT.split(prefixes):
        if prefix and maillog_file.startswith(prefix):
            return None
    return (f"maillog_file value '{maillog_file}' does not match any prefix in "
            "maillog_file_prefixes")


def _maillog_problem(cfg, chosen) -> str | None:
    if "maillog_file" not in chosen:
        return None
    prefixes = _value(cfg, "maillog_file_prefixes") if "maillog_file_prefixes" in chosen \
        else MAILLOG_PREFIXES_DEFAULT
    problem = maillog_problem(_value(cfg, "maillog_file"), prefixes)
    return None if problem is None else f"{_where(cfg, 'maillog_file')}{problem}"


def maillog_refused(cfg, prog: str) -> bool:
    """For programs that judge nothing else (postlog, ``fastpost start``): print
    ``PROG: fatal: ...`` on standard error when maillog_file is outside
    maillog_file_prefixes, and return True (the caller exits 1)."""
    import sys

    problem = _maillog_problem(cfg, set(_set_names(cfg)))
    if problem is not None:
        print(f"{prog}: fatal: {problem}", file=sys.stderr, flush=True)
    return problem is not None


def inet_interfaces_problem(value: str, protocols: str) -> str | None:
    """Postfix's complaint about an inet_interfaces value (module docstring), or None."""
    import socket

    if value in ("all", "loopback-only"):
        return None
    words = [w for w in _LIST_SPLIT.split(protocols) if w]
    if not words:
        return None  # no protocol: nothing is resolved (as Postfix)
    if "all" in words or ("ipv4" in words and "ipv6" in words):
        family = socket.AF_UNSPEC
    else:
        family = socket.AF_INET6 if "ipv6" in words else socket.AF_INET
    wanted = []
    for word in _LIST_SPLIT.split(value):
        if not word:
            continue
        host = word[1:-1] if word.startswith("[") and word.endswith("]") else word
        try:
            infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM) if host else []
        except (OSError, UnicodeError):
            infos = []
        if not infos:
            return f"config variable inet_interfaces: host not found: {word}"
        wanted.extend(info[4][0].partition("%")[0] for info in infos)
    local = local_addresses()
    for address in wanted:
        if address not in local:
            return f"parameter inet_interfaces: no local interface found for {address}"
    return None


def local_addresses() -> set[str]:
    """This machine's interface addresses (getifaddrs(3)), as inet_ntop writes them."""
    import ctypes
    import socket

    class SockAddr(ctypes.Structure):
        _fields_ = [("family", ctypes.c_ushort), ("data", ctypes.c_ubyte * 26)]

    class IfAddrs(ctypes.Structure):
        pass

    IfAddrs._fields_ = [("next", ctypes.POINTER(IfAddrs)), ("name", ctypes.c_char_p),
                        ("flags", ctypes.c_uint), ("addr", ctypes.POINTER(SockAddr)),
                        ("netmask", ctypes.POINTER(SockAddr)),
                        ("ifu", ctypes.POINTER(SockAddr)), ("data", ctypes.c_void_p)]
    libc = ctypes.CDLL(None, use_errno=True)  # libc is loaded (no find_library: it runs ldconfig)
    head = ctypes.POINTER(IfAddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        raise OSError(ctypes.get_errno(), "getifaddrs")
    found = set()
    try:
        node = head
        while node:
            sa = node.contents.addr
            if sa:
                fam, raw = sa.contents.family, bytes(sa.contents.data)
                if fam == socket.AF_INET:  # port (2), then the address
                    found.add(socket.inet_ntop(socket.AF_INET, raw[2:6]))
                elif fam == socket.AF_INET6:  # port (2), flow info (4), then the address
                    found.add(socket.inet_ntop(socket.AF_INET6, raw[6:22]))
            node = node.contents.next
    finally:
        libc.freeifaddrs(head)
    return found


def refused(config_dir: str | None, prog: str, maillog: bool = True) -> bool:
    """For commands that judge nothing else of main.cf (postqueue, mailq, sendmail
    -bp/-q/-bi, newaliases, postcat): print Postfix's lines (``PROG: warning: ...``,
    ``PROG: fatal: ...``) on standard error when a value is bad and return True. A
    main.cf that cannot be read or parsed is left to the command's own path (False).
    ``maillog``: as for judge (postcat: False)."""
    from fastpost.mail.maincf import ConfigError, LiteConfig

    try:
        cfg = LiteConfig(config_dir)
    except (ConfigError, OSError):
        return False
    return refused_config(cfg, prog, maillog)


def refused_config(cfg, prog: str, maillog: bool = True) -> bool:
    """``refused`` for a configuration already read (a Config or a LiteConfig):
    ``fastpost start|check|...`` (``postfix: ...``) and ``fastpost conf -m``."""
    import sys

    from fastpost.mail.maincf import ConfigError

    try:
        warnings, fatal = judge(cfg, maillog)
    except (ConfigError, OSError):
        return False
    for text in warnings:
        print(f"{prog}: warning: {text}", file=sys.stderr)
    if fatal is not None:
        print(f"{prog}: fatal: {fatal}", file=sys.stderr, flush=True)
    return fatal is not None


def _accounts_problem(cfg, path: str) -> str | None:
    import grp
    import pwd

    users = {}
    for name in ("mail_owner", "default_privs"):
        value = _value(cfg, name)
        try:
            users[name] = pwd.getpwnam(value)
        except KeyError:
            return f"file {path}: parameter {name}: unknown user name value: {value}"
        if users[name].pw_uid == 0:
            return f"file {path}: parameter {name}: user {value} has privileged user ID"
        if name == "mail_owner":
            problem = _group_problem(cfg, path, users)
            if problem is not None:
                return problem
    owner, privs = users["mail_owner"], users["default_privs"]
    if owner.pw_uid == privs.pw_uid:
        return (f"file {path}: parameters default_privs and mail_owner specify the same "
                f"user {privs.pw_name}")
    group = grp.getgrnam(_value(cfg, "setgid_group"))
    if privs.pw_gid == group.gr_gid:
        return (f"file {path}: parameters default_privs and setgid_group: user "
                f"{privs.pw_name} and group {group.gr_name} have the same group ID: "
                f"{group.gr_gid}")
    return None


def _group_problem(cfg, path: str, users: dict) -> str | None:
    import grp

    value = _value(cfg, "setgid_group")
    try:
        group = grp.getgrnam(value)
    except KeyError:
        return f"file {path}: parameter setgid_group: unknown group name: {value}"
    if group.gr_gid == 0:
        return f"file {path}: parameter setgid_group: group {value} has privileged group ID"
    owner = users["mail_owner"]
    # A single-user instance (fastpost run without root: mail_owner is the invoking
    # user, setgid_group that user's group) has no privilege boundary for the check to
    # protect, and Postfix cannot run that way: it is not judged there.
    if owner.pw_gid == group.gr_gid and owner.pw_uid != os.getuid():
        return (f"file {path}: parameters mail_owner and setgid_group: user "
                f"{owner.pw_name} and group {group.gr_name} have the same group ID: "
                f"{group.gr_gid}")
    return None


__all__ = ["ACCOUNT_DEFAULTS", "refused", "BOOLEANS", "INTEGERS", "STRING_LENGTHS", "TIMES", "hostname_problem", "judge",
           "printable"]
