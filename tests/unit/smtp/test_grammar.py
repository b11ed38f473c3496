"""Envelope address and ESMTP parameter grammar, against what Postfix 3.7.11 does.

The tables were made by sending each command to Debian's Postfix on this machine
(docs/smtp.md, "Learning from Postfix"); the expected internal forms are those its
reject log lines show.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpost.smtp import grammar, replies
from fastpost.smtp.grammar import GrammarError

BAD = replies.BAD_SENDER

# (path as sent, internal form Postfix uses)
ACCEPTED = [
    ("<a@b>", "a@b"),
    ("a@b", "a@b"),
    ("<>", ""),
    ("<<a@b>>", "a@b"),
    ("<a(comment)@b>", "a@b"),
    ("< a@b >", "a@b"),
    ("<@x:a@b>", "a@b"),
    ("<@x,@y:a@b>", "a@b"),
    ("<a@[1.2.3.4]>", "a@[1.2.3.4]"),
    ("<a@[IPv6:::1]>", "a@[IPv6:::1]"),
    ('<"a\\"b"@c>', 'a"b@c'),
    ('"a b"@c', "a b@c"),
    ('<"a@b"@c>', "a@b@c"),
    ("<a@b@c>", "a@b@c"),
    ("<a.@b>", "a.@b"),
    ("<a..b@c>", "a..b@c"),
    ("<@b>", "@b"),
    ("<a@b_c.d>", "a@b_c.d"),
    ("<a@b.c.>", "a@b.c."),
    ("a", "a"),
    ("<a>", "a"),
    ("<A@B.EXAMPLE>", "A@B.EXAMPLE"),
    ("<\u00e9@x.example>", "\u00e9@x.example"),
]

REJECTED = [
    "<a@[foo]>", "<a@>", "<a@-b.c>", "<a b>", "<a,b@c>", "<a;b@c>", "<a@b",
    '<"a b@c>', "<a@[300.2.3.4]>", "<a\x00b@c>", "<a@\u00e9.example>",
]


@pytest.mark.parametrize("path,internal", ACCEPTED)
def test_paths_postfix_accepts(path, internal):
    assert grammar.parse_path(path, BAD) == internal


@pytest.mark.parametrize("path", REJECTED)
def test_paths_postfix_rejects(path):
    with pytest.raises(GrammarError) as exc:
        grammar.parse_path(path, BAD)
    assert exc.value.reply is BAD


def test_utf8_domain_needs_smtputf8():
    assert grammar.parse_path("<a@\u00e9.example>", BAD, utf8=True) == "a@\u00e9.example"


def test_null_recipient_refused():
    for path in ("<>", '<"">'):
        with pytest.raises(GrammarError):
            grammar.parse_path(path, replies.BAD_RECIPIENT, allow_empty=False)


def test_strict_rfc821():
    assert grammar.parse_path("<a@b.example>", BAD, strict=True) == "a@b.example"
    assert grammar.parse_path("<>", BAD, strict=True) == ""
    assert grammar.parse_path("<@r.example:a@b.example>", BAD, strict=True) == "a@b.example"
    for path in ("a@b.example", "<a(c)@b.example>", "<<a@b>>", "< a@b >"):
        with pytest.raises(GrammarError):
            grammar.parse_path(path, BAD, strict=True)


def test_split_mail_from():
    assert grammar.split_mail_from("FROM:<a@b> SIZE=1") == ("<a@b>", ["SIZE=1"])
    assert grammar.split_mail_from("from: <a b@c>  BODY=8BITMIME") == ("<a b@c>", ["BODY=8BITMIME"])
    assert grammar.split_mail_from("FROM:<a@b>SIZE=1") == ("<a@b>SIZE=1", [])
    for bad in ("FROM:", "FROM <a@b>", "", "TO:<a@b>"):
        with pytest.raises(GrammarError) as exc:
            grammar.split_mail_from(bad)
        assert exc.value.reply is replies.MAIL_SYNTAX
    assert grammar.split_rcpt_to("TO:<x@y> NOTIFY=NEVER") == ("<x@y>", ["NOTIFY=NEVER"])


def mail(tokens, **kw):
    return grammar.parse_mail_params(tokens, **kw)


def test_mail_params():
    p = mail(["size=100", "BODY=8bitmime", "SMTPUTF8", "RET=hdrs", "ENVID=abc+2Bx"])
    assert (p.size, p.body, p.smtputf8, p.ret, p.envid) == (100, "8BITMIME", True, "HDRS", "abc+x")
    # Duplicates of SIZE and BODY are accepted (the last wins), as Postfix does.
    assert mail(["SIZE=100", "SIZE=200", "BODY=8BITMIME", "BODY=7BIT"]).size == 200
    # AUTH= is ignored unless SASL is on, then checked as xtext.
    assert mail(["AUTH=x+ZZ"]).auth is None
    assert mail(["AUTH=<>"], auth=True).auth == "<>"
    assert mail(["AUTH=a+2Bb"], auth=True).auth == "a+b"


@pytest.mark.parametrize("tokens,reply", [
    (["SIZE=abc"], replies.BAD_SIZE),
    (["SIZE=-1"], replies.BAD_SIZE),
    (["SIZE="], replies.BAD_SIZE),
    (["SIZE=+1"], replies.BAD_SIZE),
    (["SIZE=99999999999999999999999"], replies.SIZE_OVERFLOW),
    (["RET=bogus"], replies.BAD_RET),
    (["RET=FULL", "RET=HDRS"], replies.BAD_RET),
    (["RET="], replies.BAD_RET),
    (["ENVID=bad\x01"], replies.BAD_ENVID),
    (["ENVID=a+ZZ"], replies.BAD_ENVID),
    (["ENVID="], replies.BAD_ENVID),
    (["ENVID=a", "ENVID=b"], replies.BAD_ENVID),
])
def test_mail_param_errors(tokens, reply):
    with pytest.raises(GrammarError) as exc:
        mail(tokens)
    assert exc.value.reply == reply


@pytest.mark.parametrize("token", [
    "FOO=bar", "SIZE", "BODY=FOO", "BODY=", "BODY", "BODY=BINARYMIME", "SMTPUTF8=yes", "=x",
    "<c@d>",
])
def test_mail_param_unsupported(token):
    with pytest.raises(GrammarError) as exc:
        mail([token])
    assert exc.value.reply == replies.unsupported_option(token)


def test_size_against_limit():
    assert mail(["SIZE=200"], size_limit=200).size == 200
    with pytest.raises(GrammarError) as exc:
        mail(["SIZE=201"], size_limit=200)
    assert exc.value.reply is replies.SIZE_EXCEEDED
    assert mail(["BODY=BINARYMIME"], binarymime=True).body == "BINARYMIME"
    with pytest.raises(GrammarError):
        mail(["SMTPUTF8"], smtputf8=False)


def test_rcpt_params():
    p = grammar.parse_rcpt_params(["NOTIFY=success,delay", "ORCPT=rfc822;a+40b"])
    assert p.notify == ("SUCCESS", "DELAY")
    assert p.orcpt == "rfc822;a@b"
    assert grammar.parse_rcpt_params(["NOTIFY=never"]).notify == ("NEVER",)
    assert grammar.parse_rcpt_params(["ORCPT=foo;a@b"]).orcpt == "foo;a@b"
    assert grammar.parse_rcpt_params(["ORCPT=rfc822;"]).orcpt == "rfc822;"
    for tokens in (["NOTIFY=NEVER,SUCCESS"], ["NOTIFY="], ["NOTIFY=SUCCESS", "NOTIFY=DELAY"],
                   ["NOTIFY=MAYBE"]):
        with pytest.raises(GrammarError) as exc:
            grammar.parse_rcpt_params(tokens)
        assert exc.value.reply is replies.BAD_NOTIFY
    for tokens in (["ORCPT=rfc822"], ["ORCPT=rfc822;a+4"], ["ORCPT=rfc822;a@b", "ORCPT=rfc822;c@d"]):
        with pytest.raises(GrammarError) as exc:
            grammar.parse_rcpt_params(tokens)
        assert exc.value.reply is replies.BAD_ORCPT
    for token in ("SIZE=10", "BODY=8BITMIME", "b"):
        with pytest.raises(GrammarError) as exc:
            grammar.parse_rcpt_params([token])
        assert exc.value.reply == replies.unsupported_option(token)


@given(st.text(max_size=40))
def test_xtext_round_trip(text):
    encoded = grammar.xtext_encode(text)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert grammar.xtext_decode(encoded) == text


def _xtext_bytewise(text):
    return "".join(chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}"
                   for b in text.encode("utf-8", "surrogateescape"))


@given(st.text(max_size=40) | st.text(st.characters(min_codepoint=0, max_codepoint=130), max_size=40))
def test_xtext_encode_is_bytewise(text):
    # the shortcut for text with nothing to encode gives what the byte loop gives
    assert grammar.xtext_encode(text) == _xtext_bytewise(text)
    assert grammar.xtext_encode("rfc822-user@example.com") == "rfc822-user@example.com"
    assert grammar.xtext_encode("a+b=c d\x7f\x1f") == "a+2Bb+3Dc+20d+7F+1F"


def test_xtext_lenient():
    assert grammar.xtext_decode("+2", strict=False) == "+2"
    assert grammar.xtext_decode("+2", strict=True) is None
    assert grammar.xtext_decode("a+41") == "aA"


def test_vrfy_and_etrn():
    assert grammar.parse_vrfy("<postmaster@x.example>") == ("<postmaster@x.example>", "postmaster@x.example", False)
    assert grammar.parse_vrfy("x@y SMTPUTF8") == ("x@y", "x@y", True)
    assert grammar.parse_vrfy('"a b"@x') == ('"a b"@x', "a b@x", False)
    for bad, reply in (("", replies.VRFY_SYNTAX), ("a b c", replies.BAD_RECIPIENT),
                       ("<>", replies.BAD_RECIPIENT)):
        with pytest.raises(GrammarError) as exc:
            grammar.parse_vrfy(bad)
        assert exc.value.reply is reply
    assert grammar.parse_etrn("x.example") == "x.example"
    assert grammar.parse_etrn("@x.example") == "x.example"
    assert grammar.parse_etrn("#x.example") == "x.example"
    for bad, reply in (("", replies.ETRN_SYNTAX), ("bad..", replies.ETRN_BAD_DOMAIN)):
        with pytest.raises(GrammarError) as exc:
            grammar.parse_etrn(bad)
        assert exc.value.reply is reply


def test_xclient_attributes():
    attrs = grammar.parse_attributes(
        "XCLIENT", "ADDR=IPv6:0:0::1 NAME=foo.example PROTO=esmtp HELO=+20x PORT=99999 "
                   "LOGIN=joe DESTADDR=1.2.3.4 DESTPORT=25 REVERSE_NAME=[UNAVAILABLE]")
    assert dict(attrs) == {
        "ADDR": "::1", "NAME": "foo.example", "PROTO": "ESMTP", "HELO": " x", "PORT": "99999",
        "LOGIN": "joe", "DESTADDR": "1.2.3.4", "DESTPORT": "25", "REVERSE_NAME": "[UNAVAILABLE]"}
    assert dict(grammar.parse_attributes("XCLIENT", "HELO=+2")) == {"HELO": "+2"}
    cases = [
        ("", replies.XCLIENT_SYNTAX),
        ("NAME", replies.ATTR_EXPECTED),
        ("FOO=bar", replies.bad_attribute_name("XCLIENT", "FOO")),
        ("ADDR=bogus", replies.bad_attribute_value("ADDR", "bogus")),
        ("ADDR=1.2.3.4.5", replies.bad_attribute_value("ADDR", "1.2.3.4.5")),
        ("ADDR=IPV6:::1", replies.bad_attribute_value("ADDR", "IPV6:::1")),
        ("ADDR=[TEMPUNAVAIL]", replies.bad_attribute_value("ADDR", "[TEMPUNAVAIL]")),
        ("PORT=abc", replies.bad_attribute_value("PORT", "abc")),
        ("PROTO=FOO", replies.bad_attribute_value("PROTO", "FOO")),
        ("NAME=bad..name", replies.bad_attribute_value("NAME", "bad..name")),
    ]
    for args, reply in cases:
        with pytest.raises(GrammarError) as exc:
            grammar.parse_attributes("XCLIENT", args)
        assert exc.value.reply == reply, args
    assert dict(grammar.parse_attributes("XFORWARD", "SOURCE=local IDENT=ABC PROTO=ESMTPSA")) == {
        "SOURCE": "LOCAL", "IDENT": "ABC", "PROTO": "ESMTPSA"}
    with pytest.raises(GrammarError) as exc:
        grammar.parse_attributes("XFORWARD", "")
    assert exc.value.reply is replies.XFORWARD_SYNTAX


def test_split_args_keeps_quotes_and_brackets():
    assert grammar.split_args('FROM:<a b> SIZE=1') == ["FROM:<a b>", "SIZE=1"]
    assert grammar.split_args('FROM:"a b"@c  x') == ['FROM:"a b"@c', "x"]
    assert grammar.split_args("a\tb") == ["a", "b"]
    assert grammar.split_args("FROM:<a") == ["FROM:<a"]


path_chars = st.sampled_from(list("ab.@<>\"()[]:,; \t-_+%!") + ["\u00e9", "\x00", "1.2.3.4", "IPv6:", "::1"])


@given(st.lists(path_chars, max_size=25).map("".join), st.booleans(), st.booleans())
def test_fast_paths_agree_with_the_general_parsers(text, utf8, allow_empty):
    def outcome(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except GrammarError as exc:
            return exc.reply
    assert grammar.split_args(text) == grammar._split_args_general(text)
    assert outcome(grammar.parse_path, text, BAD, utf8=utf8, allow_empty=allow_empty) == \
        outcome(grammar._parse_path_general, text, BAD, utf8=utf8, strict=False, allow_empty=allow_empty)
    simple = f"<{text.replace(' ', '')}@example.org>"
    assert outcome(grammar.parse_path, simple, BAD) == \
        outcome(grammar._parse_path_general, simple, BAD, utf8=False, strict=False, allow_empty=True)
