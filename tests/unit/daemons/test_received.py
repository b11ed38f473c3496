"""smtpd's per-message text: the Received: header, compiled and interpreted, and the
shortcuts of session 11 (branch msg11) against the long way.

- received_header / rfc2822_date / protocol_name: the compiled build
  (_received_c) gives the same bytes as the reference (_received_py) for generated
  clients, recipients and options; one header checked byte for byte against the form
  Postfix 3.7 writes (postcat on this machine, _received_py's docstring).
- address.external: its shortcut (a dot-atom local part is returned as it is) equals
  the general quote_local path for generated addresses.
- Reply: a one-line reply built by the shortcut has the wire bytes of the general
  (multi-line) construction; the session core's queued_reply (both builds) makes
  the Reply that replies.queued makes.
"""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.daemons.smtpd import _received_py as ref
from fastpost.daemons.smtpd.info import ClientInfo, TlsInfo
from fastpost.mail import address
from fastpost.smtp.replies import Reply

comp = importlib.import_module("fastpost.daemons.smtpd._received_c")

WHEN = 1_795_000_000.0  # a fixed second (2026-11-19)

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.sampled_from(["unknown", "client.example.com", "localhost", "mx-1.example.org"])
addrs = st.sampled_from(["127.0.0.1", "192.0.2.7", "::1", "2001:db8::5", ""])
locals_ = st.one_of(st.sampled_from(["user", "a.b", "first.last+tag", "", "a b", 'q"x',
                                     "x\\y", "é.t", "a..b", ".a", "a.", "ü ü", "{x}~|", "a.b.c"]), text)
domains = st.sampled_from(["example.com", "[192.0.2.1]", "", "exämple.org"])
recipient = st.builds(lambda lp, d, at: f"{lp}@{d}" if at else lp, locals_, domains, st.booleans())


@st.composite
def clients(draw):
    c = ClientInfo(name=draw(names), addr=draw(addrs), helo=draw(st.one_of(st.none(), text)))
    if draw(st.booleans()):
        c.tls = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, peer_cert=draw(st.booleans()))
    if draw(st.booleans()):
        c.sasl_username = draw(text)
    return c


@settings(max_examples=300, deadline=None)
@given(clients(), st.lists(recipient, max_size=3), st.booleans(), st.booleans(),
       st.booleans(), st.booleans(), st.booleans(), st.booleans(),
       st.floats(0, 2e9))  # (never None: the two calls could fall in different seconds)
def test_compiled_header_equals_reference(client, rcpts, tls_h, auth_h, esmtp, tls, auth, utf8,
                                          when):
    proto = ref.protocol_name(esmtp, tls, auth, utf8)
    assert comp.protocol_name(esmtp, tls, auth, utf8) == proto
    args = (client, "mx.example.com", "Postfix", "4AB1C2D3E", proto, rcpts, tls_h, auth_h)
    expected = ref.received_header(*args, when=when)
    assert comp.received_header(*args, when=when) == expected
    # by keyword, as before this branch
    assert comp.received_header(client, hostname="mx.example.com", mail_name="Postfix",
                                queue_id="4AB1C2D3E", protocol=proto, recipients=rcpts,
                                tls_header=tls_h, auth_header=auth_h, when=when) == expected
    assert comp.rfc2822_date(when) == ref.rfc2822_date(when)


@pytest.mark.parametrize("mod", [ref, comp], ids=["reference", "compiled"])
def test_header_as_postfix_writes_it(mod):
    c = ClientInfo(name="client.example.com", addr="192.0.2.7", helo="helo.example.com")
    date = mod.rfc2822_date(WHEN)
    got = mod.received_header(c, "mx.example.com", "Postfix", "4AB1C2D3E", "ESMTP",
                              ["a b@example.net"], when=WHEN)
    assert got == ("Received: from helo.example.com (client.example.com [192.0.2.7])\r\n"
                   "\tby mx.example.com (Postfix) with ESMTP id 4AB1C2D3E\r\n"
                   f'\tfor <"a b"@example.net>; {date}\r\n').encode()
    c6 = ClientInfo(name="unknown", addr="2001:db8::5")
    got = mod.received_header(c6, "mx.example.com", "Postfix", "4AB1C2D3E", "SMTP",
                              ["x@example.net", "y@example.net"], when=WHEN)
    assert got == ("Received: from unknown (unknown [IPv6:2001:db8::5])\r\n"
                   "\tby mx.example.com (Postfix) with SMTP id 4AB1C2D3E;\r\n"
                   f"\t{date}\r\n").encode()


def _external_long_way(addr: str) -> str:
    if addr == "":
        return ""
    local, domain = address.split_addr(addr)
    quoted = address.quote_local(local)
    return f"{quoted}@{domain}" if "@" in addr else quoted


@settings(max_examples=500, deadline=None)
@given(st.one_of(recipient, text))
def test_external_shortcut_equals_long_way(addr):
    assert address.external(addr) == _external_long_way(addr)
    assert ref._external(addr) == _external_long_way(addr)  # the header's own shortcut
    local = addr.rpartition("@")[0]
    assert ref._dot_atom(local) == (address._DOT_ATOM.fullmatch(local) is not None)


@settings(max_examples=200, deadline=None)
@given(recipient)
def test_header_quotes_the_recipient_as_external_does(rcpt):
    c = ClientInfo(name="client.example.com", addr="192.0.2.7", helo="h")
    for mod in (ref, comp):
        got = mod.received_header(c, "mx", "Postfix", "4AB1C", "ESMTP", [rcpt], when=WHEN)
        assert f"\tfor <{_external_long_way(rcpt)}>; ".encode("utf-8", "surrogateescape") in got


def _wire_long_way(code, lines, enhanced):
    prefix = f"{enhanced} " if enhanced else ""
    return "".join(f"{code}{' ' if i == len(lines) - 1 else '-'}{prefix}{line}\r\n"
                   for i, line in enumerate(lines)).encode("utf-8", "surrogateescape")


@given(st.integers(200, 599), text, st.sampled_from(["", "2.0.0", "5.7.1"]))
def test_one_line_reply_equals_general_form(code, line, enhanced):
    one = Reply(code, line, enhanced)
    assert one.wire == _wire_long_way(code, (line,), enhanced)
    assert one == Reply(code, [line], enhanced)
    assert (one.code, one.enhanced, one.lines) == (code, enhanced, (line,))


@pytest.mark.parametrize("build", ["_session_py", "_session_c"])
@given(st.one_of(st.sampled_from(["4AB1C2D3E", "4dKtZx1rYbz6"]), text))
def test_queued_reply_equals_replies_queued(build, queue_id):
    from fastpost.smtp import replies

    made = importlib.import_module(f"fastpost.daemons.smtpd.{build}").queued_reply(queue_id)
    want = replies.queued(queue_id)
    assert type(made) is Reply
    assert (made.code, made.enhanced, made.lines, made.wire) == (want.code, want.enhanced,
                                                                  want.lines, want.wire)
    assert made == want and str(made) == str(want)
