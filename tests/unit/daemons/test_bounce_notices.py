"""Notices and status log entries, without processes: parsed back with the email package."""

from __future__ import annotations

import email
import email.policy

from fastpost.daemons.bounce import notices as N
from fastpost.mail.bounce_log import LogEntry, parse_log

ORIG = N.Original("4C83C100000", "alice@example.org", 1_700_000_000.0, "", 0, 0,
                  b"From: alice@example.org\nSubject: hi\n\nbody line\n")


def entry(**kw) -> LogEntry:
    base = dict(recipient="bob@remote.example", offset=300, status="5.1.1", action="failed",
                reason="host mx[192.0.2.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)",
                relay="mx.remote.example[192.0.2.1]:25", when=1_700_000_100.0)
    base.update(kw)
    return LogEntry(**base)


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def test_log_entry_roundtrip_and_last_wins():
    e = entry(orig_rcpt="Bob@Remote.Example", dsn_orig_rcpt="rfc822;Bob@Remote.Example",
              notify_flags=6, reason="line one\nline two")
    back = LogEntry.parse(e.encode())
    assert back.reason == "line one line two" and back.notify_flags == 6
    assert back.orig_rcpt == "Bob@Remote.Example" and back.when == 1_700_000_100.0
    older = entry(status="4.4.1", action="delayed").encode()
    assert [x.status for x in parse_log([older, e.encode()])] == ["5.1.1"]
    # Postfix's own lines (a legacy "<rcpt>: text" line first) are read too
    legacy = b"<bob@remote.example>: gone\nrecipient=bob@remote.example\noffset=300\nreason=gone\n"
    assert LogEntry.parse(legacy).reason == "gone"


def test_failure_notice_structure():
    data = N.compose(N.FAILURE, [entry()], ORIG, notice_id="5B2C31D0F12", to="<alice@example.org>",
                     myhostname="mx.example.org", bounce_size_limit=50000, lifetime=432000)
    msg = parse(data)
    assert msg["Message-Id"].endswith(".5B2C31D0F12@mx.example.org>")
    boundary = msg.get_boundary()
    assert boundary.startswith("4C83C100000.") and boundary.endswith("/mx.example.org")
    human, report, original = msg.get_payload()
    per_message, per_rcpt = report.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.example.org"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert per_rcpt["Remote-MTA"] == "dns; mx.remote.example"
    assert per_rcpt["Last-Attempt-Date"]
    assert original.get_content_type() == "message/rfc822"
    assert original.get_payload()[0].get_payload() == "body line\n"
    assert "<bob@remote.example>: host mx" in human.get_payload()


def test_headers_only_when_too_large_or_ret_hdrs():
    big = N.Original(**{**ORIG.__dict__, "size": 60000})
    for orig, limit in ((big, 50000), (N.Original(**{**ORIG.__dict__, "ret": 2}), 50000)):
        msg = parse(N.compose(N.FAILURE, [entry()], orig, notice_id="X", to="<a@b>",
                              myhostname="h", bounce_size_limit=limit, lifetime=1))
        part = msg.get_payload()[2]
        assert part.get_content_type() == "text/rfc822-headers"
        assert "body line" not in part.get_payload() and "Subject: hi" in part.get_payload()


def test_delay_and_success_notices():
    msg = parse(N.compose(N.DELAY, [entry(status="4.4.1", action="delayed", reason="timed out")], ORIG,
                          notice_id="X", to="<a@b>", myhostname="h", bounce_size_limit=0,
                          lifetime=432000))
    assert msg["Subject"] == N.SUBJECTS[N.DELAY]
    rcpt = msg.get_payload()[1].get_payload()[1]
    assert rcpt["Action"] == "delayed" and rcpt["Diagnostic-Code"] == "X-Postfix; timed out"
    assert rcpt["Will-Retry-Until"]
    msg = parse(N.compose(N.SUCCESS, [entry(status="2.0.0", action="relayed", reason="250 ok")], ORIG,
                          notice_id="X", to="<a@b>", myhostname="h", bounce_size_limit=0, lifetime=1))
    assert msg.get_payload()[1].get_payload()[1]["Action"] == "relayed"
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
