"""Delivery status notices as RFC 3464 multipart/report messages.

Postfix counterpart: src/bounce/bounce_notify_util.c (structure of the notice),
bounce_templates.c (its texts: the wording here is fastpost's own).

``compose(kind, ...)`` returns the notice text (LF line ends) for one of:

    failure    some recipients could not be delivered (or their mail expired)
    delay      some recipients are still being retried (delay_warning_time)
    success    delivered, for recipients that asked (NOTIFY=SUCCESS)
    verify     the report sendmail -bv asked for (what would happen, nothing delivered)
    postmaster a copy of a failure or delay notice for the postmaster (headers only)

The words of part 1, the From:, Subject: and charset come from the kind's bounce(5)
template (fastpost.mail.bounce_template: the built-in one or bounce_template_file's);
a postmaster copy has no template text, only the per-recipient lines.

Layout (RFC 3464, RFC 3462):

    From: the template's (MAILER-DAEMON gets @$myhostname)
    To: <original sender>              Subject, Date, Message-Id, Auto-Submitted: auto-replied
    Content-Type: multipart/report; report-type=delivery-status; boundary="ID.TIME/HOST"

    part 1  text/plain            what happened, in words, recipient by recipient
    part 2  message/delivery-status
              Reporting-MTA: dns; $myhostname
              X-Postfix-Queue-ID, X-Postfix-Sender (for tools written for Postfix)
              Original-Envelope-Id (ENVID), Arrival-Date
              per recipient: Final-Recipient, Original-Recipient (ORCPT), Action,
              Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until
    part 3  message/rfc822        the original message (failure notices, RET=FULL and
                                  not larger than bounce_size_limit), else
            text/rfc822-headers   its header only

Diagnostic-Code is ``smtp; <reply>`` when the reason carries a remote server's reply
(``host X said: 550 ...``), else ``X-Postfix; <reason>``.

Parameters (passed in by the daemon): myhostname, bounce_size_limit,
maximal_queue_lifetime / bounce_queue_lifetime (for Will-Retry-Until and the text).
Diagnostics: none; the caller handles what it cannot read.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from dataclasses import dataclass

from fastpost.mail import bounce_template as BT
from fastpost.mail.bounce_log import LogEntry

FAILURE = "failure"
DELAY = "delay"
SUCCESS = "success"
POSTMASTER = "postmaster"

VERIFY = "verify"

#: the bounce(5) template each kind of notice takes its words from
TEMPLATE_OF = {FAILURE: BT.FAILURE, POSTMASTER: BT.FAILURE, DELAY: BT.DELAY,
               SUCCESS: BT.SUCCESS, VERIFY: BT.VERIFY}

#: the built-in subjects (a bounce_template_file may change them)
SUBJECTS = {
    FAILURE: BT.BUILTIN[BT.FAILURE].subject,
    DELAY: BT.BUILTIN[BT.DELAY].subject,
    SUCCESS: BT.BUILTIN[BT.SUCCESS].subject,
    VERIFY: BT.BUILTIN[BT.VERIFY].subject,
    POSTMASTER: BT.BUILTIN[BT.FAILURE].postmaster_subject,
}

_SAID = re.compile(r"\bsaid:\s*(\d{3}[ -].*?)(?:\s+\(in reply to [^)]*\))?$")


@dataclass
class Original:
    """What a notice says about the message it is about."""

    queue_id: str
    sender: str
    arrival: float
    envid: str
    ret: int  # 1 full, 2 headers, 0 not given
    size: int
    text: bytes  # headers and body, LF line ends


def _date(when: float) -> str:
    return email.utils.format_datetime(email.utils.localtime(datetime.datetime.fromtimestamp(when)))


def diagnostic(reason: str) -> str:
    m = _SAID.search(reason)
    if m:
        return f"smtp; {m.group(1)}"
    return f"X-Postfix; {reason}"


def remote_mta(relay: str) -> str:
    if not relay or relay == "none":
        return ""
    host = relay.split("[", 1)[0].strip()
    return f"dns; {host}" if host else ""


def headers_of(text: bytes) -> bytes:
    """The header of a message (up to and including the empty line)."""
    end = text.find(b"\n\n")
    if end < 0:
        return text if text.endswith(b"\n") else text + b"\n"
    return text[:end + 1]


def _human(kind: str, entries: list[LogEntry], intro: str) -> str:
    """The text/plain part: the template's words (not in postmaster copies), then one
    line per recipient."""
    lines = [intro, ""] if intro else []
    for e in entries:
        who = e.recipient if not e.orig_rcpt or e.orig_rcpt == e.recipient else \
            f"{e.recipient} (originally {e.orig_rcpt})"
        lines.append(f"<{who}>: {e.reason}")
    lines.append("")
    return "\n".join(lines)


def _qualify_from(value: str, myhostname: str) -> str:
    """Give the template's From: address a domain when it has none (MAILER-DAEMON)."""
    m = re.search(r"<([^<>]*)>", value)
    if m:
        if m.group(1) and "@" not in m.group(1):
            return f"{value[:m.start(1)]}{m.group(1)}@{myhostname}{value[m.end(1):]}"
        return value
    word, sep, rest = value.partition(" ")
    if word and "@" not in word:
        return f"{word}@{myhostname}{sep}{rest}"
    return value


def _dsn_part(kind: str, entries: list[LogEntry], orig: Original, myhostname: str,
              lifetime: int) -> str:
    head = [f"Reporting-MTA: dns; {myhostname}", f"X-Postfix-Queue-ID: {orig.queue_id}",
            f"X-Postfix-Sender: rfc822; {orig.sender}"]
    if orig.envid:
        head.append(f"Original-Envelope-Id: {orig.envid}")
    head.append(f"Arrival-Date: {_date(orig.arrival)}")
    blocks = ["\n".join(head)]
    for e in entries:
        b = [f"Final-Recipient: rfc822; {e.recipient}"]
        if e.dsn_orig_rcpt:
            b.append(f"Original-Recipient: {e.dsn_orig_rcpt}")
        elif e.orig_rcpt and e.orig_rcpt != e.recipient:
            b.append(f"Original-Recipient: rfc822; {e.orig_rcpt}")
        b.append(f"Action: {e.action}")
        b.append(f"Status: {e.status}")
        mta = remote_mta(e.relay)
        if mta:
            b.append(f"Remote-MTA: {mta}")
        if kind != SUCCESS or e.reason:
            b.append(f"Diagnostic-Code: {diagnostic(e.reason)}")
        if e.when:
            b.append(f"Last-Attempt-Date: {_date(e.when)}")
        if kind == DELAY:
            b.append(f"Will-Retry-Until: {_date(orig.arrival + lifetime)}")
        blocks.append("\n".join(b))
    return "\n\n".join(blocks) + "\n"


def compose(kind: str, entries: list[LogEntry], orig: Original, *, notice_id: str, to: str,
            myhostname: str, bounce_size_limit: int, lifetime: int, expired: bool = False,
            now: float | None = None, template: BT.Template | None = None,
            intro: str | None = None, postmaster: bool = False) -> bytes:
    """Return the notice (header and body, LF line ends) as bytes.

    template: the bounce(5) template for this kind (default: the built-in one); intro:
    its text with the $names expanded (default: the built-in text with $myhostname);
    postmaster: a postmaster copy of a delay notice (kind POSTMASTER is the failure one).
    """
    now = time.time() if now is None else now
    if template is None:
        template = BT.BUILTIN[TEMPLATE_OF[kind]]
    if intro is None:
        intro = BT.BUILTIN[TEMPLATE_OF[kind]].text.replace("$myhostname", myhostname)
    postmaster = postmaster or kind == POSTMASTER
    subject = template.postmaster_subject if postmaster and template.postmaster_subject \
        else template.subject
    if postmaster:
        intro = ""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    boundary = f"{orig.queue_id}.{int(now)}/{myhostname}"
    headers = [
        f"From: {_qualify_from(template.sender, myhostname)}",
        f"Subject: {subject}",
        f"To: {to}",
        "Auto-Submitted: auto-replied",
        f"Date: {_date(now)}",
        f"Message-Id: <{stamp}.{notice_id}@{myhostname}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\n\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
    ]
    full = kind == FAILURE and orig.ret != 2 and (bounce_size_limit <= 0 or orig.size <= bounce_size_limit)
    attached = orig.text if full else headers_of(orig.text)
    if not attached.endswith(b"\n"):
        attached += b"\n"
    parts = [
        "\n".join(headers), "", "This is a MIME-encapsulated message.", "",
        f"--{boundary}", "Content-Description: Notification",
        f"Content-Type: text/plain; charset={template.charset}", "",
        _human(kind, entries, intro),
        f"--{boundary}", "Content-Description: Delivery report",
        "Content-Type: message/delivery-status", "",
        _dsn_part(kind, entries, orig, myhostname, lifetime),
        f"--{boundary}",
        "Content-Description: " + ("Undelivered Message" if kind in (FAILURE, POSTMASTER)
                                   else "Message Headers" if kind in (DELAY, VERIFY) else "Delivered Message"),
        "Content-Type: message/rfc822" if full else "Content-Type: text/rfc822-headers",
        "Content-Transfer-Encoding: 8bit", "",
    ]
    text = "\n".join(parts).encode("utf-8", "surrogateescape") + b"\n" + attached
    return text + f"\n--{boundary}--\n".encode()


__all__ = ["DELAY", "FAILURE", "Original", "POSTMASTER", "SUBJECTS", "SUCCESS", "TEMPLATE_OF",
           "VERIFY", "compose",
           "diagnostic", "headers_of", "remote_mta"]
