"""smtp / lmtp: deliver queued mail to SMTP and LMTP servers.

Postfix counterpart: smtp(8) and lmtp(8) (src/smtp/: one program, LMTP mode when
run as the lmtp service)

    smtp      unix  -       -       n       -       -       smtp
    relay     unix  -       -       n       -       -       smtp
    lmtp      unix  -       -       n       -       -       lmtp

qmgr sends delivery requests over private/<service> (fastpost.mail.deliver); this
process answers many at once (multi skeleton, one event loop): each request is
routed (MX, A/AAAA or a literal next hop: route.py), sent over a session
(session.py, on the sans-IO fastpost.smtp.client core) with STARTTLS per policy
(tls.py), and its results logged as Postfix's status lines and returned
(engine.py). Idle sessions stay open for the next message to the same destination
or server (cache.py).

LMTP mode: the ``lmtp`` command (fastpost.daemons.lmtp) or ``-o`` overrides do not
change the mode, the program name does, as Postfix's lmtp is the smtp program
under another name. LMTP reads the lmtp_* parameters, sends LHLO, never looks up
MX records, defaults to port 24 and takes ``unix:/path`` next hops; it reports one
result per recipient after the end of data.

Set-up: the DNS resolver, our own addresses (MX loop check) and the TLS contexts
(CA files, client certificates) are made in pre_init, before a chroot; the queue
store is opened read-only in post_init.

Parameters: see fastpost.daemons.smtp.settings.param_names() (smtp_* or lmtp_*),
plus delay_logging_resolution_limit and queue_directory.
Diagnostics: bad parameter values are fatal at start (file and line); everything
that goes wrong with a delivery is a status line and a result (engine.py), never a
crash of the process.
"""

from __future__ import annotations

import os

from fastpost.daemons.smtp import dns
from fastpost.daemons.smtp.cache import SessionCache
from fastpost.daemons.smtp.engine import Engine
from fastpost.daemons.smtp.route import Router, own_addresses
from fastpost.daemons.smtp.checks import param_names as checks_param_names
from fastpost.daemons.smtp.generic import param_names as generic_param_names
from fastpost.daemons.smtp.sasl import param_names as sasl_param_names
from fastpost.daemons.smtp.settings import Settings, param_names
from fastpost.mail.deliver import delivery_service
from fastpost.mail.queue.store import QueueSettings, QueueStore
from fastpost.server import multi_server_main

__all__ = ["main", "lmtp_main"]


class _State:
    settings: Settings | None = None
    lookups: dns.Lookups | None = None
    own: frozenset = frozenset()
    tls = None
    store: QueueStore | None = None
    cache: SessionCache | None = None
    engine: Engine | None = None
    sasl = None
    generic = None
    checks = None


_state = _State()


def _pre_init(lmtp: bool):
    def pre_init(ctx) -> None:
        s = _state.settings = Settings.from_config(ctx.cfg, lmtp)
        _state.lookups = dns.Lookups(s.dns_servers, timeout=s.dns_timeout, families=s.families)
        _state.own = own_addresses(s.inet_interfaces, s.proxy_interfaces)
        from fastpost.daemons.smtp import tls

        _state.tls = tls.Policies.from_config(ctx.cfg, s)
        from fastpost.daemons.smtp.sasl import SaslClient

        _state.sasl = SaslClient.from_config(ctx.cfg, lmtp)  # the password table, as root
        from fastpost.daemons.smtp.generic import GenericMapper

        _state.generic = GenericMapper.from_config(ctx.cfg, lmtp)
        from fastpost.daemons.smtp.checks import OutputChecks

        _state.checks = OutputChecks.from_config(ctx.cfg, lmtp)
    return pre_init


def post_init(ctx) -> None:
    # The skeleton has made the queue directory the current one (and maybe the root).
    _state.store = QueueStore.open(settings=QueueSettings.from_config(ctx.cfg, queue_directory="."),
                                   recover=False)
    _state.cache = SessionCache(_state.settings)
    router = Router(_state.settings, _state.lookups, _state.own)
    _state.engine = Engine(_state.settings, router, _state.store, _state.cache, tls=_state.tls,
                           resolution=int(ctx.p["delay_logging_resolution_limit"]),
                           sasl=_state.sasl, generic=_state.generic, checks=_state.checks)


async def on_exit(ctx) -> None:
    if _state.cache is not None:
        await _state.cache.close_all()
    if _state.store is not None:
        _state.store.close()


async def handle(request, ctx):
    return await _state.engine.deliver(request)


def _run(argv: list[str], lmtp: bool) -> None:
    name = "lmtp" if lmtp else "smtp"
    multi_server_main(argv, delivery_service(handle), name=name,
                      params=param_names(lmtp) + sasl_param_names(lmtp)
                      + generic_param_names(lmtp) + checks_param_names(lmtp)
                      + ("delay_logging_resolution_limit",),
                      pre_init=_pre_init(lmtp), post_init=post_init, on_exit=on_exit)


def main(argv: list[str]) -> None:
    """The smtp program; LMTP mode when run under the name lmtp (Postfix's rule)."""
    program = os.path.basename(argv[0]) if argv else "smtp"
    _run(argv, program.rpartition(".")[2] == "lmtp")


def lmtp_main(argv: list[str]) -> None:
    _run(argv, True)
