"""The header-section kernel: behaviour, and the compiled kernel against its reference.

Every input is fed whole, byte by byte and in random chunks, with body text after the
section that must come back untouched (``rest`` + the unread part of the last chunk).
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import _header_c as C
from fastpost.mail import _header_py as P
from fastpost.mail.header import KINDS

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]
K = {b"subject": 1, b"to": 2, b"received": 3}


def run(impl, data: bytes, cuts=(), limit: int = 1000):
    """Feed data cut at ``cuts``; return (headers, body, finished_inside_headers)."""
    r = impl.HeaderReader(K, limit)
    out = []
    pos = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
        chunk = data[pos:cut]
        used = r.feed(chunk)
        out += r.take()
        if r.done:
            assert 0 <= used <= len(chunk)
            return out, r.rest + chunk[used:] + data[cut:], False
        assert used == len(chunk)
        pos = cut
    r.finish()
    out += r.take()
    assert r.done
    return out, r.rest, True


@pytest.mark.parametrize("impl", IMPLS)
def test_basic_section(impl):
    msg = b"Subject: hello\r\n world\r\nTo: a@b\r\nX-Space : v\r\nX-8: \xc3\xa9\r\n\r\nbody\r\n"
    headers, body, _ = run(impl, msg)
    assert headers == [
        (1, 7, b"Subject: hello\n world", 0),
        (2, 2, b"To: a@b", 0),
        (0, 7, b"X-Space: v", P.SPACE_BEFORE_COLON),
        (0, 3, b"X-8: \xc3\xa9", P.EIGHT_BIT),
    ]
    assert body == b"\r\nbody\r\n"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("data, headers, body", [
    # a line that is not a header ends the section and starts the body
    (b"Subject: x\nnot a header\nmore\n", [(1, 7, b"Subject: x", 0)], b"not a header\nmore\n"),
    # a continuation with nothing before it is body
    (b" cont\nSubject: x\n\n", [], b" cont\nSubject: x\n\n"),
    # no colon at all; a bad byte in the name; a colon first
    (b"From x@y\nSubject: a\n", [], b"From x@y\nSubject: a\n"),
    (b"Bad\x01Name: v\n", [], b"Bad\x01Name: v\n"),
    (b": v\n\n", [], b": v\n\n"),
    (b"Ok:v\n\n", [(0, 2, b"Ok:v", 0)], b"\n"),
    (b"Tab\t:v\n\n", [(0, 3, b"Tab:v", P.SPACE_BEFORE_COLON)], b"\n"),
    # a bare CR inside a header stays; CR LF and LF both end lines
    (b"Subject: a\rb\r\n\n", [(1, 7, b"Subject: a\rb", 0)], b"\n"),
    # only headers, no body, no final newline
    (b"To: a", [(2, 2, b"To: a", 0)], b""),
    (b"To: a\r\n", [(2, 2, b"To: a", 0)], b""),
    (b"", [], b""),
    # a blank-only line after a header continues it
    (b"To: a\n \nSubject: b\n\n", [(2, 2, b"To: a\n ", 0), (1, 7, b"Subject: b", 0)], b"\n"),
])
def test_section_rules(impl, data, headers, body):
    got_headers, got_body, _ = run(impl, data)
    assert got_headers == headers
    assert got_body == body


@pytest.mark.parametrize("impl", IMPLS)
def test_size_limit(impl):
    data = b"Subject: " + b"x" * 300 + b"\n more\nTo: b\n\nbody"
    headers, body, _ = run(impl, data, limit=20)
    assert headers[0] == (1, 7, b"Subject: " + b"x" * 11, P.TRUNCATED)
    assert headers[1] == (2, 2, b"To: b", 0)
    assert body == b"\nbody"


@pytest.mark.parametrize("impl", IMPLS)
def test_name_longer_than_limit_is_body(impl):
    data = b"x" * 50 + b": v\n\n"
    headers, body, _ = run(impl, data, cuts=range(0, 60, 7), limit=20)
    assert headers == []
    assert body == data


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_limit(impl):
    with pytest.raises(ValueError):
        impl.HeaderReader(K, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_kinds_are_case_insensitive(impl):
    headers, _, _ = run(impl, b"SUBJECT: a\nsubject: b\nReceived: c\n\n")
    assert [h[0] for h in headers] == [1, 1, 3]


def test_cleanup_table_covers_address_headers():
    for name in (b"from", b"to", b"cc", b"bcc", b"resent-to", b"message-id", b"received"):
        assert KINDS[name] > 0


pieces = st.sampled_from([
    b"Subject", b"To", b"Received", b"X-A", b":", b" ", b"\t", b"v", b"\xc3\xa9", b"\r",
    b"\n", b"\r\n", b"\x00", b"\x01", b"From ", b"a@b", b"  ", b"--",
])
section_st = st.lists(pieces, max_size=60).map(b"".join) | st.binary(max_size=200)


@settings(max_examples=400)
@given(section_st, st.binary(max_size=30), st.lists(st.integers(0, 300), max_size=8),
       st.integers(1, 40))
def test_compiled_matches_reference(section, tail, cuts, limit):
    data = section + b"\n\n" + tail if len(section) % 3 == 0 else section + tail
    whole = run(P, data, limit=limit)
    assert run(C, data, limit=limit) == whole
    assert run(C, data, cuts=cuts, limit=limit) == whole
    assert run(P, data, cuts=cuts, limit=limit) == whole
    if len(data) <= 120:
        every = range(len(data) + 1)
        assert run(C, data, cuts=every, limit=limit) == whole
        assert run(P, data, cuts=every, limit=limit) == whole


@settings(max_examples=300)
@given(st.lists(st.text(alphabet="aAzZsSuUbBjJ-@[`{", min_size=1, max_size=70), min_size=1, max_size=6),
       st.booleans())
def test_kinds_of_any_name_match_reference(names, proxy):
    """The compiled reader lower-cases a name of up to 64 bytes itself and looks it up
    in a dict directly; longer names and mappings that are not dicts take .lower() and
    .get(): every road gives the reference's kinds."""
    import types

    kinds = {n.lower().encode(): i + 1 for i, n in enumerate(names)}
    kinds[b"a" * 64] = 99
    if proxy:
        kinds = types.MappingProxyType(kinds)
    data = b"".join(n.encode() + b": v\r\n" for n in names) + b"A" * 64 + b": w\n" + b"A" * 65 + b": x\n\n"
    got = []
    for impl in (C, P):
        r = impl.HeaderReader(kinds, 1000)
        r.feed(data)
        got.append(r.take())
    assert got[0] == got[1]
    assert [h[0] for h in got[0][-2:]] == [99, 0]
