"""Replies: wire form (one bytes object, enhanced code on each line) and safety."""

import pytest

from fastpost.smtp import replies
from fastpost.smtp.replies import Reply


def test_single_and_multi_line():
    assert replies.OK.wire == b"250 2.0.0 Ok\r\n"
    assert replies.START_DATA.wire == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    ehlo = replies.ehlo("mx.example", ["PIPELINING", "SIZE 1000"])
    assert ehlo.wire == b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    assert isinstance(ehlo.wire, bytes)
    two = Reply(550, ["first", "second"], "5.7.1")
    assert two.wire == b"550-5.7.1 first\r\n550 5.7.1 second\r\n"
    assert str(two) == "550 5.7.1 first second"


def test_untrusted_text_cannot_break_lines():
    r = replies.unsupported_option("X=\r\n250 fake")
    assert r.wire.count(b"\r\n") == 1
    assert r.wire == b"555 5.5.4 Unsupported option: X=??250 fake\r\n"


def test_parameterised_texts():
    assert replies.queued("3F1A").wire == b"250 2.0.0 Ok: queued as 3F1A\r\n"
    assert replies.bdat_queued(8, "E9").wire == b"250 2.0.0 Ok: 8 bytes queued as E9\r\n"
    assert replies.bare_lf(550, "mx").wire == b"550 5.5.2 mx Error: bare <LF> received\r\n"
    assert replies.relay_denied("x@y", 454).wire == b"454 4.7.1 <x@y>: Relay access denied\r\n"
    assert replies.timeout("mx").wire == b"421 4.4.2 mx Error: timeout exceeded\r\n"


def test_bad_code():
    with pytest.raises(ValueError):
        Reply(600, "x")
    assert Reply(250, "x") == Reply(250, "x")
    assert replies.OK.is_positive and replies.NEED_MAIL.is_permanent
