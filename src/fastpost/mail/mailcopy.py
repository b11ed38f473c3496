"""The delivered form of a message: envelope headers, From_ line, quoting, line ends.

Postfix counterpart: src/global/mail_copy.c, quote_822_local.c, delivered_hdr.c,
src/local/delivered.c

Every final delivery (mailbox, maildir, file, command, pipe) writes the message text
with some of these, selected by flag bits as Postfix's mail_copy() does:

    COPY_FROM         prepend ``From sender  Www Mmm dd hh:mm:ss yyyy`` (mbox, commands)
    COPY_RETURN_PATH  prepend ``Return-Path: <sender>``
    COPY_ORIG_RCPT    prepend ``X-Original-To: original recipient`` (when known)
    COPY_DELIVERED    prepend ``Delivered-To: recipient``
    COPY_QUOTE        ``>From `` for body lines starting with ``From `` (mbox)
    COPY_DOT          ``..`` for lines starting with ``.`` (BSMTP; pipe flag ``.``)
    COPY_BLANK        append an empty line (mbox: the next From_ needs one before it)
    COPY_TOFILE       the destination is a file: sync it, truncate it on failure

in that order (From_, Return-Path, X-Original-To, Delivered-To, then the message). A
message whose last line lacks its newline gets one. Addresses are written in external
form (``"a b"@example.com``); the null sender is ``MAILER-DAEMON`` on the From_ line
and ``<>`` in Return-Path. The From_ date is asctime() of the local time.

delivered_to(text) collects the Delivered-To: addresses of a message's header (lower
case), the loop detector of local(8) and of pipe's ``D`` flag.

Diagnostics: none; the input is the queue's content text, already validated.
"""

from __future__ import annotations

import re
import time

from fastpost.mail.address import external

COPY_QUOTE = 1 << 0
COPY_TOFILE = 1 << 1
COPY_FROM = 1 << 2
COPY_BLANK = 1 << 3
COPY_DELIVERED = 1 << 4
COPY_RETURN_PATH = 1 << 5
COPY_DOT = 1 << 6
COPY_ORIG_RCPT = 1 << 7
#: What a UNIX mailbox delivery uses.
COPY_MBOX = (COPY_FROM | COPY_QUOTE | COPY_TOFILE | COPY_DELIVERED | COPY_RETURN_PATH
             | COPY_BLANK | COPY_ORIG_RCPT)
COPY_NONE = 0

#: The From_ line's name for the null sender.
MAILER_DAEMON = "MAILER-DAEMON"

_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)
_DOT_LINE = re.compile(rb"^\.", re.MULTILINE)
_HEADER_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def from_line(sender: str, now: float | None = None) -> bytes:
    """Return the mbox ``From `` line (without the line end)."""
    who = external(sender) if sender else MAILER_DAEMON
    stamp = time.asctime(time.localtime(time.time() if now is None else now))
    return b"From " + _b(who) + b"  " + stamp.encode("ascii")


def envelope_headers(*, sender: str, orig_rcpt: str, delivered: str, flags: int,
                     eol: bytes = b"\n", now: float | None = None) -> bytes:
    """Return the lines mail_copy prepends (From_, Return-Path, X-Original-To, Delivered-To)."""
    out = []
    if flags & COPY_FROM:
        out.append(from_line(sender, now) + eol)
    if flags & COPY_RETURN_PATH:
        out.append(b"Return-Path: <" + _b(external(sender)) + b">" + eol)
    if flags & COPY_ORIG_RCPT and orig_rcpt:
        out.append(b"X-Original-To: " + _b(external(orig_rcpt)) + eol)
    if flags & COPY_DELIVERED:
        out.append(b"Delivered-To: " + _b(external(delivered)) + eol)
    return b"".join(out)


def transform_body(text: bytes, flags: int, eol: bytes = b"\n") -> bytes:
    """Apply the line-level options to the message text (``\\n`` line ends in ``text``)."""
    if text and not text.endswith(b"\n"):
        text += b"\n"
    if flags & COPY_QUOTE and b"From " in text:
        text = _FROM_LINE.sub(b">From ", text)
    if flags & COPY_DOT and b"." in text:
        text = _DOT_LINE.sub(b"..", text)
    if flags & COPY_BLANK:
        text += b"\n"
    if eol != b"\n":
        text = text.replace(b"\n", eol)
    return text


def copy_bytes(text: bytes, *, sender: str, orig_rcpt: str, delivered: str, flags: int,
               eol: bytes = b"\n", now: float | None = None) -> bytes:
    """Return the whole delivered form of a message (see the module docstring)."""
    return envelope_headers(sender=sender, orig_rcpt=orig_rcpt, delivered=delivered,
                            flags=flags, eol=eol, now=now) + transform_body(text, flags, eol)


def delivered_to(text: bytes, limit: int = 1 << 20) -> set[str]:
    """Return the lower-cased Delivered-To: values in the message header.

    Scans header lines (and their continuation lines) up to the first line that is
    neither, looking at no more than ``limit`` bytes.
    """
    found: set[str] = set()
    pos = 0
    end = min(len(text), limit)
    while pos < end:
        nl = text.find(b"\n", pos)
        line = text[pos:nl if nl >= 0 else len(text)]
        pos = len(text) if nl < 0 else nl + 1
        m = _HEADER_NAME.match(line)
        if m:
            if m.group(1).lower() == b"delivered-to":
                value = line[m.end():].strip(b" \t\r")
                found.add(value.decode("utf-8", "surrogateescape").lower())
        elif line[:1] in (b" ", b"\t"):
            continue
        else:
            break
    return found


def delivered_key(address: str) -> str:
    """The form in which ``address`` appears in a Delivered-To: header, lower-cased."""
    return external(address).lower()
