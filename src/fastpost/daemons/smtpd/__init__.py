"""smtpd: the SMTP server daemon, as a multi-client session layer.

Postfix counterpart: src/smtpd/ (smtpd(8)).

    service.py    SmtpdService: per-process state, the protocol factory
    session.py    SmtpdProtocol: one asyncio BufferedProtocol per connection
    settings.py   every main.cf value smtpd reads, typed, read once
    policy.py     the Policy seam and DefaultPolicy (permit_mynetworks,
                  reject_unauth_destination)
    sink.py       the MessageSink seam (the cleanup client implements it)
    testsink.py   FileTestSink: messages as files, for tests and benchmarks only
    tls.py        the SSLContext from smtpd_tls_*
    received.py   the Received: header
    peer.py       asynchronous, cached, forward-confirmed reverse lookups
    netmatch.py   mynetworks-style host lists and domain lists
    sasl.py       the SASL seam of AUTH and a static-table authenticator
    info.py       ClientInfo / Envelope / PolicyRequest passed to the seams
    queuesink.py  QueueSink: the interim sink of the real daemon (straight into the
                  queue store, until the cleanup daemon exists)
    standalone.py a runner for development and benchmarks (one process, test sink)

``main(argv)`` runs smtpd under the master on the multi skeleton (master.cf:
``smtp inet n - n - - smtpd``): the SmtpdService and its TLS context are built in
pre_init (as root, before workers are forked - they share TLS session-ticket keys),
the queue store is opened in post_init (as mail_owner, in queue_directory).

The protocol itself (parsing, sequencing, pipelining rules, DATA/BDAT) is
fastpost.smtp.server; this package decides, logs, and moves bytes. See docs/smtp.md.

Diagnostics: none here; see each module.
"""

from __future__ import annotations  # noqa: E402 - after the docstring, as usual

import os  # noqa: E402

from fastpost.util import log  # noqa: E402

_state: dict = {}


def _pre_init(ctx) -> None:
    # Everything is imported now, while the process may still read the Python
    # installation (after the privilege drop or chroot it may not).
    import fastpost.daemons.smtpd.queuesink  # noqa: F401
    from fastpost.daemons.smtpd.service import SmtpdService
    from fastpost.mail.config import ConfigError

    try:
        _state["service"] = SmtpdService.from_config(
            ctx.cfg, sink=None, service_name=ctx.service_name or "smtp")
    except (ConfigError, OSError, ValueError) as exc:
        log.fatal("%s", exc)
    _queue_directories(ctx.cfg)


def _queue_directories(cfg) -> None:
    """Create the queue store's directories for mail_owner (the interim QueueSink's).

    XXX: the queue subsystem's rows in fastpost.master.layout.QUEUE_TREE should
    create these; until then smtpd, their first user under the master, does.
    """
    from fastpost.master.layout import SetupError, lookup_ids

    qdir = cfg.get("queue_directory")
    try:
        ids = lookup_ids(cfg)
        for name in ("segments", "index"):
            path = os.path.join(qdir, name)
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
                if ids.root:
                    os.chown(path, ids.owner_uid, ids.owner_gid)
    except (SetupError, OSError) as exc:
        log.fatal("queue directory %s: %s", qdir, exc)


def _post_init(ctx) -> None:
    from fastpost import _accel
    from fastpost.daemons.smtpd.queuesink import QueueSink
    from fastpost.mail.queue import QueueError

    service = _state["service"]
    service.loop = ctx.loop
    try:
        # The skeleton left us in queue_directory (maybe chrooted there): a relative
        # path works both ways and needs no access to the directories above.
        service.sink = QueueSink.open(".", ctx.cfg)
    except (QueueError, OSError) as exc:
        log.fatal("cannot open the queue: %s", exc)
    log.debug("%s; writing to the queue store directly (no cleanup service yet)",
              _accel.describe())


async def _on_exit(ctx) -> None:
    service = _state.get("service")
    if service is not None and service.sink is not None:
        await service.sink.close()


def main(argv: list[str]) -> None:
    """Run smtpd on the multi skeleton (the master calls this in a forked worker)."""
    from fastpost.server.multi import multi_server_main

    multi_server_main(argv, lambda ctx: _state["service"].protocol(), name="smtpd",
                      pre_init=_pre_init, post_init=_post_init, on_exit=_on_exit)
