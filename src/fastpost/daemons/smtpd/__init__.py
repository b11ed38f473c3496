"""smtpd: the SMTP server daemon, as a multi-client session layer.

Postfix counterpart: src/smtpd/ (smtpd(8)).

    service.py    SmtpdService: per-process state, the protocol factory
    session.py    SmtpdProtocol: one asyncio BufferedProtocol per connection
    settings.py   every main.cf value smtpd reads, typed, read once
    policy.py     the Policy seam and DefaultPolicy (permit_mynetworks,
                  reject_unauth_destination)
    sink.py       the MessageSink seam
    cleanupsink.py CleanupSink: the cleanup client as the MessageSink (the daemon's)
    _cleanuptxn_py.py  its per-message path (begin, the transaction that calls the
                  session back), compiled as _cleanuptxn_c (one source)
    testsink.py   FileTestSink: messages as files, for tests and benchmarks only
    tls.py        the SSLContext from smtpd_tls_*
    received.py   the Received: header
    peer.py       asynchronous, cached, forward-confirmed reverse lookups
    netmatch.py   mynetworks-style host lists and domain lists
    sasl.py       the SASL seam of AUTH and a static-table authenticator
    sasl_dovecot.py  AUTH through Dovecot's auth socket (smtpd_sasl_type = dovecot)
    limits.py     smtpd_client_*_limit through the anvil service
    policy_client.py  the check_policy_service client (for the restriction engine)
    info.py       ClientInfo / Envelope / PolicyRequest passed to the seams
    queuesink.py  QueueSink: straight into the queue store without cleanup's work
                  (the standalone runner and benchmarks only, for comparison)
    standalone.py a runner for development and benchmarks (one process, test sink)

``main(argv)`` runs smtpd under the master on the multi skeleton (master.cf:
``smtp inet n - n - - smtpd``): the SmtpdService and its TLS context are built in
pre_init (as root, before workers are forked - they share TLS session-ticket keys);
post_init (as mail_owner, in queue_directory) sets up the cleanup client: every
session of the worker hands its messages to cleanup over one persistent connection
(public/cleanup), and "250 ... queued as ID" waits for cleanup's durable answer.
post_init also sets up the loop thread's busy switch: SCHED_BATCH while the worker
serves many clients (util/threadprio.py BusySwitch; FASTPOST_SCHED_ADAPT=0 turns it off).

The protocol itself (parsing, sequencing, pipelining rules, DATA/BDAT) is
fastpost.smtp.server; this package decides, logs, and moves bytes. See docs/smtp.md.

Diagnostics: none here; see each module.
"""

from __future__ import annotations  # noqa: E402 - after the docstring, as usual

from fastpost.util import log, threadprio  # noqa: E402

_state: dict = {}

#: Server handles per listening socket (multi skeleton's accept_handles): the loop
#: accepts one connection per handle per iteration, and smtp clients arrive in bursts
#: (docs/accept.md, "Session 5: smtpd at -s 20").
ACCEPT_HANDLES = 4


def _pre_init(ctx) -> None:
    # Everything is imported now, while the process may still read the Python
    # installation (after the privilege drop or chroot it may not).
    import fastpost.daemons.smtpd.cleanupsink  # noqa: F401
    import fastpost.mail.cleanup_clnt  # noqa: F401
    from fastpost.daemons.smtpd.limits import ClientLimits
    from fastpost.daemons.smtpd.service import SmtpdService
    from fastpost.mail.config import ConfigError

    try:
        service = _state["service"] = SmtpdService.from_config(
            ctx.cfg, sink=None, service_name=ctx.service_name or "smtp")
        from fastpost.daemons.smtpd.cleanupsink import CleanupSink

        # The skeleton leaves us in queue_directory (maybe chrooted there): a relative
        # endpoint works both ways.
        _state["sink"] = CleanupSink.from_config(ctx.cfg, queue_directory=".")
        from fastpost.mail.flush_clnt import AsyncFlushClient

        # ETRN's client; fast_flush_domains' tables are opened now, before any chroot
        _state["flush"] = AsyncFlushClient(ctx.cfg, queue_directory=".")
        limits = ClientLimits.from_config(ctx.cfg, service_name=service.service_name,
                                          hostname=service.settings.hostname,
                                          exempt=service.exempt_from_limits,
                                          queue_directory=".")
        if limits.active:
            service.limits = limits  # anvil: private/anvil in master.cf
    except (ConfigError, OSError, ValueError) as exc:
        log.fatal("%s", exc)


def _post_init(ctx) -> None:
    from fastpost import _accel

    service = _state["service"]
    service.loop = ctx.loop
    service.sink = _state["sink"]
    service.flush = _state["flush"]
    # The sessions count themselves toward the skeleton's client limit (self_counting).
    service.on_connect = ctx.connected
    service.on_disconnect = ctx.disconnected
    # The loop thread at SCHED_BATCH while it serves many clients (util/threadprio.py,
    # FASTPOST_SCHED_ADAPT): counted where the sessions count themselves.
    busy = threadprio.BusySwitch.from_environ("smtpd")
    if busy is not None:
        service.on_connect = _counted(ctx.connected, busy.arrived)
        service.on_disconnect = _counted(ctx.disconnected, busy.gone)
    # The maillog lines of one turn of the loop in one write (util/log.py).
    log.defer_file_writes(ctx.loop)
    threadprio.apply("smtpd")  # measuring only (util/threadprio.py)
    log.debug("%s", _accel.describe())


def _counted(skeleton, switch):
    """on_connect/on_disconnect: the skeleton's count, then the BusySwitch's."""
    def both() -> None:
        skeleton()
        switch()
    return both


async def _on_exit(ctx) -> None:
    from fastpost.daemons.smtpd.policy_client import close_all

    close_all()
    service = _state.get("service")
    if service is not None and service.sink is not None:
        await service.sink.close()
    closer = getattr(service.authenticator, "close", None) if service is not None else None
    if closer is not None:
        await closer()


def main(argv: list[str]) -> None:
    """Run smtpd on the multi skeleton (the master calls this in a forked worker)."""
    from fastpost.daemons.smtpd.policy_client import POLICY_PARAMS
    from fastpost.server.multi import multi_server_main

    # A Postfix smtpd serves max_use (100) clients one at a time; a fastpost smtpd
    # serves up to fastpost_multi_client_limit at once: it recycles after that many
    # times max_use sessions. POLICY_PARAMS: ctx.p holds what check_policy_service's
    # client reads.
    multi_server_main(argv, lambda ctx: _state["service"].protocol(), name="smtpd",
                      params=POLICY_PARAMS, pre_init=_pre_init, post_init=_post_init,
                      on_exit=_on_exit, max_use_scale=1000,
                      accept_handles=ACCEPT_HANDLES, self_counting=True)
