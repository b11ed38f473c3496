"""The typed parameter table: every main.cf parameter fastpost knows.

Postfix counterpart: src/global/mail_params.h and each daemon's CONFIG_*_TABLE.

A parameter is declared once, in param_table.TABLE, with its Postfix name, its type,
its default (the raw text ``postconf -d`` prints) and, for numbers, its range. Code
never reads raw strings: it asks fastpost.mail.config.Config for a typed value, which
validates against this declaration. Defaults that depend on the machine (myhostname,
mydomain, mynetworks, ...) are computed here at run time.

Types:
    STR    text after $name expansion
    BOOL   yes/no (also true/false, 1/0 as Postfix's get_mail_conf_bool does not; only
           yes and no are accepted, case-insensitively)
    INT    decimal integer (Postfix int/long)
    TIME   integer with an optional s/m/h/d/w suffix; ``unit`` is the default unit
    LIST   comma/whitespace separated list, ``{ ... }`` groups one element
    MAPS   list of ``type:name`` tables (or /file names where Postfix allows them)

Deliberate differences from Postfix 3.7 defaults are listed in FASTPOST_DEFAULTS and in
docs/configuration.md.

Diagnostics: KeyError for a name that is not declared (an internal bug: declare it).
"""

from __future__ import annotations

import collections
import functools
import os
import socket

STR = "str"
BOOL = "bool"
INT = "int"
TIME = "time"
LIST = "list"
MAPS = "maps"

TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: Where fastpost looks for main.cf when neither -c nor the environment says.
DEFAULT_CONFIG_DIRECTORY = "/etc/fastpost"


class Param(collections.namedtuple(
        "Param", "name kind default unit min max supported",
        defaults=("", None, None, True))):
    """One main.cf parameter declaration (an immutable named tuple: ~800 are built at
    start-up, and a tuple builds several times faster than a frozen dataclass).

    name       the Postfix spelling, verbatim
    kind       STR, BOOL, INT, TIME, LIST or MAPS
    default    raw text, before $name expansion, as `postconf -d` prints it
    unit       default unit of a TIME parameter (s, m, h, d or w)
    min, max   the range of an INT (or of a TIME, in seconds); None = unbounded
    supported  False: accepted, but fastpost does not act on it yet
    """

    __slots__ = ()


#: Parameters whose fastpost default deliberately differs from Postfix 3.7's, with the
#: reason. Applied on top of param_table.TABLE.
FASTPOST_DEFAULTS = {
    # SMTP smuggling: Postfix 3.9+ default; 3.7.11's backport default is "no".
    "smtpd_forbid_bare_newline": ("normalize", "SMTP smuggling defence on by default, as Postfix 3.9+"),
    # So that a banner or Received: header says what actually answered.
    "mail_name": ("fastpost", "the software is fastpost, not Postfix"),
    # Disconnect clients that pipeline without PIPELINING: Postfix 3.9+ default.
    "smtpd_forbid_unauth_pipelining": ("yes", "SMTP smuggling/pipelining defence, as Postfix 3.9+"),
}


def _computed_defaults() -> dict[str, str]:
    """Return defaults that depend on the machine or the installation."""
    from fastpost import _version

    host = socket.gethostname()
    myhostname = host if "." in host else host + ".localdomain"
    return {
        "myhostname": myhostname,
        "mydomain": myhostname.partition(".")[2] or "localdomain",
        "mynetworks": "",  # computed from mynetworks_style by fastpost.mail.mynetworks
        "process_id": str(os.getpid()),
        "process_name": "fastpost",
        "config_directory": DEFAULT_CONFIG_DIRECTORY,
        "queue_directory": "/var/spool/fastpost",
        "data_directory": "/var/lib/fastpost",
        "daemon_directory": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "command_directory": "/usr/sbin",
        "meta_directory": DEFAULT_CONFIG_DIRECTORY,
        "shlib_directory": "no",
        "sample_directory": DEFAULT_CONFIG_DIRECTORY,
        "html_directory": "no",
        "manpage_directory": "/usr/share/man",
        "readme_directory": "no",
        "sendmail_path": "/usr/sbin/sendmail",
        "newaliases_path": "/usr/bin/newaliases",
        "mailq_path": "/usr/bin/mailq",
        "mail_version": _version.__version__,
        "mail_release_date": "20261121",
    }


def _dynamic_myhostname(cfg) -> str:
    """myhostname: this host's name; a bare name gets $mydomain (when main.cf sets it)
    or ``localdomain`` appended, as Postfix does."""
    host = socket.gethostname()
    if "." in host:
        return host
    if cfg.is_set("mydomain"):
        return f"{host}.{cfg.get('mydomain')}"
    return f"{host}.localdomain"


def _dynamic_mydomain(cfg) -> str:
    """mydomain: myhostname without its first label ("localdomain" for a bare name)."""
    return cfg.get("myhostname").partition(".")[2] or "localdomain"


def _dynamic_mynetworks(cfg) -> str:
    """mynetworks: from mynetworks_style and the interfaces (fastpost.mail.mynetworks)."""
    from fastpost.mail import mynetworks

    return mynetworks.compute(cfg.get("mynetworks_style"), cfg.get_list("inet_protocols"))


#: Defaults computed from other parameters of the same configuration, when main.cf
#: and the overrides leave the parameter unset: name -> function(Config) -> raw text.
#: (myhostname and the installation paths are fixed per process: _computed_defaults.)
DYNAMIC_DEFAULTS = {
    "myhostname": _dynamic_myhostname,
    "mydomain": _dynamic_mydomain,
    "mynetworks": _dynamic_mynetworks,
}


#: Parameters whose defaults describe fastpost's installation or the running process,
#: not Postfix's; they differ from `postconf -d` by nature (docs/configuration.md).
INSTALLATION_PARAMETERS = frozenset({
    "config_directory", "queue_directory", "data_directory", "daemon_directory",
    "command_directory", "meta_directory", "shlib_directory", "sample_directory",
    "html_directory", "manpage_directory", "readme_directory", "sendmail_path",
    "newaliases_path", "mailq_path", "mail_version", "mail_release_date", "process_id",
    "process_name",
})


_COMPUTED_KINDS = {
    "mynetworks": LIST,
}


@functools.cache
def table() -> dict[str, Param]:
    """Return every declared parameter by name (built once per process)."""
    from fastpost.mail.param_table import TABLE

    out = {p.name: p for p in TABLE}
    for name, value in _computed_defaults().items():
        out[name] = Param(name, _COMPUTED_KINDS.get(name, STR), value)
    for name, (value, _why) in FASTPOST_DEFAULTS.items():
        old = out[name]
        out[name] = Param(name, old.kind, value, old.unit, old.min, old.max, old.supported)
    for p in FASTPOST_PARAMS:
        out[p.name] = p
    return out


def lookup(name: str) -> Param | None:
    """Return the declaration of ``name``, or None when fastpost does not know it.

    Only the static table: per-transport parameters are found by transport_param().
    """
    return table().get(name)


def get(name: str) -> Param:
    """Return the declaration of ``name`` (static or per-transport); KeyError if neither."""
    decl = table().get(name)
    if decl is None:
        decl = transport_param(name)
        if decl is None:
            raise KeyError(name)
    return decl


# -- per-transport parameters -------------------------------------------------------
#
# A delivery service in master.cf (command smtp, lmtp, local, virtual, pipe or error)
# has its own scheduler parameters, ``<service>_<suffix>``, whose defaults refer to the
# global ones; pipe and spawn services also have ``<service>_time_limit``. Postfix's
# postconf lists them for the services master.cf defines; qmgr and pipe read them by
# the transport name. Built-in rows of the static table (local_destination_*) win.

#: suffix -> (kind, default, unit) of the scheduler parameters of a delivery transport.
TRANSPORT_SUFFIXES: dict[str, tuple[str, str, str]] = {
    "delivery_slot_cost": (INT, "$default_delivery_slot_cost", ""),
    "delivery_slot_discount": (INT, "$default_delivery_slot_discount", ""),
    "delivery_slot_loan": (INT, "$default_delivery_slot_loan", ""),
    "destination_concurrency_failed_cohort_limit": (
        INT, "$default_destination_concurrency_failed_cohort_limit", ""),
    "destination_concurrency_limit": (INT, "$default_destination_concurrency_limit", ""),
    "destination_concurrency_negative_feedback": (
        STR, "$default_destination_concurrency_negative_feedback", ""),
    "destination_concurrency_positive_feedback": (
        STR, "$default_destination_concurrency_positive_feedback", ""),
    "destination_rate_delay": (TIME, "$default_destination_rate_delay", "s"),
    "destination_recipient_limit": (INT, "$default_destination_recipient_limit", ""),
    "extra_recipient_limit": (INT, "$default_extra_recipient_limit", ""),
    "initial_destination_concurrency": (INT, "$initial_destination_concurrency", ""),
    "minimum_delivery_slots": (INT, "$default_minimum_delivery_slots", ""),
    "recipient_limit": (INT, "$default_recipient_limit", ""),
    "recipient_refill_delay": (TIME, "$default_recipient_refill_delay", "s"),
    "recipient_refill_limit": (INT, "$default_recipient_refill_limit", ""),
    "transport_rate_delay": (TIME, "$default_transport_rate_delay", "s"),
}
#: suffix -> (kind, default, unit) of the command time limit of pipe and spawn services.
TIME_LIMIT_SUFFIX = ("time_limit", (TIME, "$command_time_limit", "s"))

#: master.cf commands (column 8, first word, exactly) that are delivery agents.
DELIVERY_AGENTS = frozenset({"smtp", "lmtp", "local", "virtual", "pipe", "error"})
#: master.cf commands whose services have a <service>_time_limit.
TIME_LIMITED_COMMANDS = frozenset({"pipe", "spawn"})

_ALL_TRANSPORT_SUFFIXES = dict(TRANSPORT_SUFFIXES, **{TIME_LIMIT_SUFFIX[0]: TIME_LIMIT_SUFFIX[1]})


def _transport_decl(name: str, spec: tuple[str, str, str]) -> Param:
    kind, default, unit = spec
    return Param(name, kind, default, unit=unit, min=0 if kind != STR else None)


def service_param_names(service: str, command: str) -> list[str]:
    """Return every per-transport name a master.cf service defines, built-in rows
    (local_destination_concurrency_limit) included."""
    suffixes: list[str] = []
    if command in DELIVERY_AGENTS:
        suffixes += list(TRANSPORT_SUFFIXES)
    if command in TIME_LIMITED_COMMANDS:
        suffixes.append(TIME_LIMIT_SUFFIX[0])
    return [f"{service}_{suffix}" for suffix in suffixes]


def service_params(service: str, command: str) -> list[Param]:
    """Return the per-transport parameters a master.cf service defines, sorted by name.

    ``service`` is column 1, ``command`` the first word of column 8. Names that the
    static table already declares (local_destination_concurrency_limit, ...) are left
    out: the table's row is the parameter.
    """
    specs: dict[str, tuple[str, str, str]] = {}
    if command in DELIVERY_AGENTS:
        specs.update(TRANSPORT_SUFFIXES)
    if command in TIME_LIMITED_COMMANDS:
        specs[TIME_LIMIT_SUFFIX[0]] = TIME_LIMIT_SUFFIX[1]
    static = table()
    out = []
    for suffix, spec in specs.items():
        name = f"{service}_{suffix}"
        if name not in static:
            out.append(_transport_decl(name, spec))
    out.sort(key=lambda p: p.name)
    return out


@functools.lru_cache(maxsize=4096)
def transport_param(name: str) -> Param | None:
    """Return the declaration of a per-transport parameter name, whatever the transport.

    ``relay_destination_concurrency_limit`` -> INT, default
    ``$default_destination_concurrency_limit``. None when name has no such suffix or
    the static table declares it.
    """
    if name in table():
        return None
    for suffix, spec in _ALL_TRANSPORT_SUFFIXES.items():
        if name.endswith("_" + suffix) and len(name) > len(suffix) + 1:
            return _transport_decl(name, spec)
    return None


#: Parameters whose values the daemon expands itself, with its own macros ($user,
#: $rbl_code, ...), at use time: ``postconf -x`` prints them unexpanded and
#: Config.get() returns them raw (Postfix's "raw" parameters).
RAW_PARAMETERS = frozenset({
    "command_execution_directory", "default_rbl_reply", "forward_path", "luser_relay",
    "mailbox_command", "postscreen_expansion_filter", "postscreen_reject_footer",
    "smtpd_expansion_filter", "smtpd_reject_footer",
})

#: Parameters a process sets for itself; main.cf cannot set them (postconf warns).
READ_ONLY_PARAMETERS = frozenset({"process_name", "process_id", "service_name"})

#: Parameters fastpost adds beyond Postfix (documented in docs/configuration.md).
FASTPOST_PARAMS: tuple[Param, ...] = (
    Param("fastpost_foreground_log", BOOL, "no"),  # also log to stdout (start-fg sets it)
    # master and skeletons (docs/master.md):
    Param("fastpost_multi_client_limit", INT, "1000", min=1),  # clients per multi worker
    Param("fastpost_stop_timeout", TIME, "30s", unit="s", min=0),  # graceful stop, then TERM
    # The queue store (docs/queue.md): segment roll size, the size from which a message
    # gets a segment file of its own, the LMDB map size of the index, and compaction
    # (sealed segments older than the age whose live bytes are at most the percentage
    # of their size have their messages copied forward).
    Param("fastpost_queue_segment_size", INT, "67108864", min=65536),
    Param("fastpost_queue_large_message_size", INT, "1048576", min=4096),
    Param("fastpost_queue_segment_prezero", INT, "4194304", min=0),
    Param("fastpost_queue_index_map_size", INT, "68719476736", min=1 << 20),
    Param("fastpost_queue_compact_age", TIME, "1h", unit="s", min=0),
    Param("fastpost_queue_compact_ratio", INT, "50", min=1, max=100),
    # DNS lookups of the smtpd access policy (docs/policy.md): name servers to ask
    # (host, host:port or [ipv6]:port; empty: /etc/resolv.conf), the deadline of one
    # lookup, the size of each process's answer cache, the longest time a negative
    # answer is kept.
    Param("fastpost_dns_servers", LIST, ""),
    Param("fastpost_dns_timeout", TIME, "10s", unit="s", min=1),
    Param("fastpost_dns_cache_size", INT, "10000", min=0),
    Param("fastpost_dns_negative_ttl", TIME, "300s", unit="s", min=0),
    # Delivery agents (docs/local.md): file and command deliveries one local, virtual
    # or pipe process runs at once (each in a worker thread).
    Param("fastpost_delivery_thread_limit", INT, "20", min=1),
    # trivial-rewrite clients (docs/delivery.md): answers cached per process, for a
    # short time, so qmgr asks once per destination and burst rather than per recipient.
    Param("fastpost_rewrite_cache_size", INT, "10000", min=0),
    Param("fastpost_rewrite_cache_time", TIME, "10s", unit="s", min=0),
    # qmgr (docs/delivery.md): a deferred message's next attempt is its backoff time
    # plus a random 0..N % of it, so mail deferred at the same moment (a destination
    # that went down) does not all come back at the same moment.
    Param("fastpost_backoff_jitter", INT, "20", min=0, max=100),
    # smtp/lmtp delivery agents (docs/smtp-client.md): the DNS servers MX/A/AAAA
    # queries go to ("host", "host:port", "[ipv6]:port"; empty = /etc/resolv.conf as
    # read before chroot), and how long one lookup may take in all.
    Param("fastpost_dns_servers", LIST, ""),
    Param("fastpost_dns_timeout", TIME, "10s", unit="s", min=1),
)


def unsupported_settings(cfg) -> list[tuple[str, str]]:
    """Return (name, where) for each parameter cfg sets that fastpost does not act on.

    ``cfg`` is a fastpost.mail.config.Config; main.cf settings come first in line
    order, as ("smtpd_milters", "/etc/fastpost/main.cf, line 12"), then overrides
    ("-o name", or "/etc/fastpost/master.cf, line 30: -o name" for a Config made by
    with_overrides(service.overrides(), origin=...)). Used by ``fastpost check`` so that
    an unsupported feature is named, never silently ignored.
    """
    out: list[tuple[str, str]] = []
    names = sorted(cfg.values, key=lambda n: cfg.lines.get(n, 0))
    names += sorted(n for n in cfg.overrides if n not in cfg.values)
    for name in names:
        decl = table().get(name)
        if decl is not None and not decl.supported:
            out.append((name, cfg.where(name)))
    return out
