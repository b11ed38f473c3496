"""reject_unverified_sender, reject_unverified_recipient: ask the verify service.

Postfix counterpart: check_verify() in src/smtpd/smtpd_check.c, with verify_clnt.c.

Each asks private/verify about the address (fastpost.mail.verify_clnt), up to
address_verify_poll_count times, address_verify_poll_delay apart, while the answer is
"in progress", then (K = Sender/Recipient, X.1.7 for a sender, X.1.1 for a recipient):

* deliverable: DUNNO (the list goes on);
* in progress, or a temporary failure: ``unverified_K_defer_code X.1.N <addr>: K address
  rejected: unverified address: WHY`` under unverified_K_tempfail_action
  (defer_if_permit by default: the reply is given only if nothing later rejects);
* undeliverable: with a 5xx unverified_K_reject_code, ``CODE 5.1.N <addr>: K address
  rejected: undeliverable address: WHY``; with a 4xx one (the default, 450) it is
  worded as unverified (``unverified address: WHY``) and, like a temporary failure,
  falls under the tempfail action — Postfix 3.7's replies, recorded in
  tests/verify/test_verify.py;
* the service cannot be asked: ``warning: verify service failure`` and ``450 X.1.N
  <addr>: K address rejected: address verification problem`` under the tempfail
  action.

WHY is the cached reason (``host H[A] said: 550 5.1.1 ... (in reply to RCPT TO
command)``, ``Address verification in progress``), or unverified_K_reject_reason when
that is set. The null sender is not verified.

Parameters: address_verify_poll_count, address_verify_poll_delay,
unverified_{sender,recipient}_{reject_code,defer_code,reject_reason,tempfail_action},
address_verify_service_name, ipc_timeout.
"""

from __future__ import annotations

from fastpost.daemons.smtpd.checks import reply as rp
from fastpost.daemons.smtpd.checks.registry import DUNNO, restriction
from fastpost.util import log


class _Settings:
    def __init__(self, cfg):
        from fastpost.mail.verify_clnt import VerifyClient

        self.poll_count = max(1, cfg.get_int("address_verify_poll_count"))
        self.poll_delay = float(cfg.get_time("address_verify_poll_delay"))
        self.kinds = {}
        for kind in ("sender", "recipient"):
            self.kinds[kind] = (
                cfg.get_int(f"unverified_{kind}_reject_code"),
                cfg.get_int(f"unverified_{kind}_defer_code"),
                cfg.get(f"unverified_{kind}_reject_reason").strip(),
                cfg.get(f"unverified_{kind}_tempfail_action").strip().lower(),
            )
        self.client = VerifyClient(cfg, queue_directory=".")  # the daemon runs in it


def _settings(engine) -> _Settings:
    s = getattr(engine, "_verify_settings", None)
    if s is None:
        s = engine._verify_settings = _Settings(engine.config)
    return s


async def _check(ev, address: str, klass: str, kind: str):
    from fastpost.mail.verify_clnt import (
        STAT_BOUNCE, STAT_DEFER, STAT_OK, STAT_TODO, VerifyError,
    )

    s = _settings(ev.engine)
    rcode, dcode, reason, action = s.kinds[kind]
    detail = "7" if kind == "sender" else "1"
    import asyncio

    try:
        # its own Task: the IPC client's time-outs need one (fastpost.util.maybe_async)
        status, why = await asyncio.get_running_loop().create_task(
            s.client.poll(address, s.poll_count, s.poll_delay))
    except VerifyError as exc:
        log.warn("verify service failure")
        log.warn("%s", exc)
        return ev.tempfail(action, 450, f"4.1.{detail}",
                           f"<{address}>: {klass} rejected: address verification problem")
    if status == STAT_OK:
        return DUNNO
    why = reason or why
    if status == STAT_BOUNCE and rcode >= 500:
        return ev.reject(rcode, f"5.1.{detail}",
                         f"<{address}>: {klass} rejected: undeliverable address: {why}")
    if status in (STAT_TODO, STAT_DEFER, STAT_BOUNCE):
        code = rcode if status == STAT_BOUNCE else dcode
        return ev.tempfail(action, code, f"{str(code)[0]}.1.{detail}",
                           f"<{address}>: {klass} rejected: unverified address: {why}")
    log.warn("unknown address verification status %d", status)
    return DUNNO


@restriction("reject_unverified_sender")
def reject_unverified_sender(ev, step, name, klass):
    if not ev.sender:
        return DUNNO
    return _check(ev, ev.sender, rp.SENDER, "sender")


@restriction("reject_unverified_recipient")
def reject_unverified_recipient(ev, step, name, klass):
    if not ev.recipient:
        return DUNNO
    return _check(ev, ev.recipient, rp.RECIPIENT, "recipient")
