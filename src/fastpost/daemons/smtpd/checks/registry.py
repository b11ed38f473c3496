"""The table of restriction names: what each needs as argument, which function runs it.

Postfix counterpart: the chain of ``strcasecmp(name, ...)`` tests in generic_checks()
of src/smtpd/smtpd_check.c, and the restriction names of src/global/mail_params.h.

Each restriction module registers its functions with ``@restriction(name, arg=...)``;
``lists.compile_list`` looks names up here (case-insensitively, as Postfix does).
A restriction function is called as ``fn(ev, step, name, klass)`` where ``ev`` is the
evaluation (engine.Eval), ``step`` the compiled list element (``step.arg`` holds its
compiled argument), and ``name``/``klass`` the reply name and class of the list it
appears in (``<name>: klass rejected: ...``). It returns OK or DUNNO, or an awaitable
of one, or raises reply.Rejected (through ``ev.reject``).

Argument kinds: NONE; TABLE (``type:name``, opened at start-up); WORD (a domain for
the DNS lists, seconds for sleep, a service for check_policy_service: compiled by
the module's ``compile`` hook).

Diagnostics: none here (lists.py reports unknown names and bad arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

__all__ = ["OK", "DUNNO", "NONE", "TABLE", "WORD", "Spec", "Step", "REGISTRY", "restriction",
           "ALIASES"]

#: Results of a restriction (a reject is an exception, reply.Rejected).
DUNNO = 0
OK = 1

NONE = "none"
TABLE = "table"
WORD = "word"


@dataclass(slots=True)
class Spec:
    """How to run one restriction name."""

    name: str
    fn: Callable
    arg: str = NONE
    #: WORD arguments: compile(word, config, engine) -> compiled value; raise
    #: ValueError(message) for a bad argument (reported at evaluation, as Postfix).
    compile: Callable | None = None
    #: A message actions log once (a deprecated name): "use X instead".
    deprecated: str = ""


@dataclass(slots=True)
class Step:
    """One compiled element of a restriction list."""

    name: str  # the restriction name as written (lower case)
    fn: Callable  # fn(ev, step, name, klass)
    arg: object = None  # compiled argument (MapList, domain, seconds, client, class name)
    word: str = ""  # the argument as written
    error: str = ""  # a configuration error, reported (and 451) when reached
    spec: Spec | None = None


REGISTRY: dict[str, Spec] = {}

#: Old names Postfix still accepts, and the restriction they mean.
ALIASES = {
    "reject_unknown_client": "reject_unknown_client_hostname",
    "reject_invalid_hostname": "reject_invalid_helo_hostname",
    "reject_unknown_hostname": "reject_unknown_helo_hostname",
    "reject_non_fqdn_hostname": "reject_non_fqdn_helo_hostname",
    "reject_rbl": "reject_rbl_client",
    "permit_tls_clientcerts_all": "permit_tls_all_clientcerts",
}


def restriction(name: str, *, arg: str = NONE, compile: Callable | None = None,
                deprecated: str = ""):
    """Register the decorated function as restriction ``name``."""

    def register(fn):
        REGISTRY[name] = Spec(name, fn, arg, compile, deprecated)
        return fn

    return register


@dataclass(slots=True)
class Compiled:
    """A compiled restriction list (steps) and where it came from (for messages)."""

    steps: list = field(default_factory=list)
    origin: str = ""
