"""mail_copy's delivered form, and Delivered-To: scanning (fastpost.mail.mailcopy)."""

import time

from fastpost.mail import mailcopy as mc

NOW = time.mktime((2026, 11, 1, 8, 5, 9, 0, 0, -1))


def test_from_line_uses_asctime_and_mailer_daemon_for_null_sender():
    assert mc.from_line("a@example.org", NOW) == b"From a@example.org  " + \
        time.asctime(time.localtime(NOW)).encode()
    assert time.asctime(time.localtime(NOW))[8:10] == " 1"  # day padded like asctime(3)
    assert mc.from_line("", NOW).startswith(b"From MAILER-DAEMON  ")
    assert mc.from_line("a b@example.org", NOW).startswith(b'From "a b"@example.org  ')


def test_envelope_headers_order_and_quoting():
    out = mc.envelope_headers(sender="", orig_rcpt="x y@d", delivered="Z@D",
                              flags=mc.COPY_MBOX, now=NOW)
    lines = out.split(b"\n")
    assert lines[0].startswith(b"From MAILER-DAEMON  ")
    assert lines[1:4] == [b"Return-Path: <>", b'X-Original-To: "x y"@d', b"Delivered-To: Z@D"]
    assert mc.envelope_headers(sender="s@d", orig_rcpt="", delivered="r@d",
                               flags=mc.COPY_ORIG_RCPT | mc.COPY_DELIVERED) == b"Delivered-To: r@d\n"


def test_body_transformations():
    text = b"From me\nFrom: header-like\n.dot\n..two\nlast line without newline"
    assert mc.transform_body(text, 0) == text + b"\n"
    quoted = mc.transform_body(text, mc.COPY_QUOTE)
    assert quoted.startswith(b">From me\nFrom: header-like\n")  # only "From " is quoted
    assert mc.transform_body(b".a\n..b\nc.\n", mc.COPY_DOT) == b"..a\n...b\nc.\n"
    assert mc.transform_body(b"a\n", mc.COPY_BLANK) == b"a\n\n"
    assert mc.transform_body(b"a\nb\n", mc.COPY_BLANK, eol=b"\r\n") == b"a\r\nb\r\n\r\n"
    assert mc.transform_body(b"", mc.COPY_BLANK) == b"\n"


def test_quoting_applies_only_at_line_starts():
    assert mc.transform_body(b"xFrom a\n From b\nFrom c\n", mc.COPY_QUOTE) == \
        b"xFrom a\n From b\n>From c\n"


def test_delivered_to_scans_the_header_only():
    text = (b"Received: from x\n\tby y\nDelivered-To: A@Example.COM\ndelivered-to:  b@x  \n"
            b"Subject: s\n\nDelivered-To: not@header\n")
    assert mc.delivered_to(text) == {"a@example.com", "b@x"}
    assert mc.delivered_to(b"no header line\nDelivered-To: x@y\n") == set()
    assert mc.delivered_key("A B@Example.com") == '"a b"@example.com'
