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

import functools
import os
import socket
from dataclasses import dataclass

STR = "str"
BOOL = "bool"
INT = "int"
TIME = "time"
LIST = "list"
MAPS = "maps"

TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: Where fastpost looks for main.cf when neither -c nor the environment says.
DEFAULT_CONFIG_DIRECTORY = "/etc/fastpost"


@dataclass(frozen=True, slots=True)
class Param:
    """One main.cf parameter declaration."""

    name: str  # the Postfix spelling, verbatim
    kind: str  # STR, BOOL, INT, TIME, LIST or MAPS
    default: str  # raw text, before $name expansion, as `postconf -d` prints it
    unit: str = ""  # default unit of a TIME parameter (s, m, h, d or w)
    min: int | None = None  # smallest value allowed (INT, TIME in seconds)
    max: int | None = None  # largest value allowed
    supported: bool = True  # False: accepted, but fastpost does not act on it yet


#: Parameters whose fastpost default deliberately differs from Postfix 3.7's, with the
#: reason. Applied on top of param_table.TABLE.
FASTPOST_DEFAULTS = {
    # SMTP smuggling: Postfix 3.9+ default; 3.7.11's backport default is "no".
    "smtpd_forbid_bare_newline": ("normalize", "SMTP smuggling defence on by default, as Postfix 3.9+"),
    # So that a banner or Received: header says what actually answered.
    "mail_name": ("fastpost", "the software is fastpost, not Postfix"),
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
    """Return the declaration of ``name``, or None when fastpost does not know it."""
    return table().get(name)


def get(name: str) -> Param:
    """Return the declaration of ``name``; KeyError if undeclared (a bug)."""
    return table()[name]


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
    Param("fastpost_queue_index_map_size", INT, "68719476736", min=1 << 20),
    Param("fastpost_queue_compact_age", TIME, "1h", unit="s", min=0),
    Param("fastpost_queue_compact_ratio", INT, "50", min=1, max=100),
    # trivial-rewrite clients (docs/delivery.md): answers cached per process, for a
    # short time, so qmgr asks once per destination and burst rather than per recipient.
    Param("fastpost_rewrite_cache_size", INT, "10000", min=0),
    Param("fastpost_rewrite_cache_time", TIME, "10s", unit="s", min=0),
    # qmgr (docs/delivery.md): a deferred message's next attempt is its backoff time
    # plus a random 0..N % of it, so mail deferred at the same moment (a destination
    # that went down) does not all come back at the same moment.
    Param("fastpost_backoff_jitter", INT, "20", min=0, max=100),
)
