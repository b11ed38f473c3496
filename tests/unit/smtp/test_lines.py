"""The command-line kernel: behaviour, and the compiled kernel against its reference.

Every input is fed three ways (h11's pattern): whole, one byte at a time, and in
random pieces; the lines that come out must be the same, and the same in both
implementations.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.smtp import _lines_c as C
from fastpost.smtp import _lines_py as P

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]

# Bytes that matter to the kernel, plus a few ordinary ones.
alphabet = st.sampled_from([b"\r", b"\n", b".", b" ", b"\t", b"A", b"m", b"\x00", b"\xff", b"\r\n"])
streams = st.lists(alphabet, max_size=200).map(b"".join)


def drain(reader, commands=False):
    out = []
    while True:
        got = reader.read_command() if commands else reader.read_line()
        if got is None:
            return out
        out.append(got)


def run(impl, data, pieces, limit, commands=False):
    """Feed data split at ``pieces`` offsets; return every line read, and what is left."""
    reader = impl.LineReader(limit)
    out = []
    last = 0
    for cut in sorted(set(pieces)) + [len(data)]:
        reader.feed(data[last:cut])
        last = cut
        out += drain(reader, commands)
    return out, reader.buffered


@pytest.mark.parametrize("impl", IMPLS)
def test_line_endings(impl):
    r = impl.LineReader(100)
    r.feed(b"EHLO a\r\nNOOP\nRSET\r\r\nQUIT x\r")
    assert r.read_line() == (b"EHLO a", 0)
    assert r.read_line() == (b"NOOP", impl.BARE_LF)
    # Only the CR right before the LF is part of the ending.
    assert r.read_line() == (b"RSET\r", 0)
    assert r.read_line() is None
    assert r.buffered == len(b"QUIT x\r")
    r.feed(b"\n")
    assert r.read_line() == (b"QUIT x", 0)
    assert r.buffered == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_commands(impl):
    r = impl.LineReader(100)
    r.feed(b"mail FROM:<a@b> SIZE=1\r\n  noop  \r\n\r\nNO\x00OP\r\n\tHelo\tx y \r\n")
    assert r.read_command() == (b"MAIL", b"FROM:<a@b> SIZE=1", 0)
    assert r.read_command() == (b"NOOP", b"", 0)
    assert r.read_command() == (b"", b"", 0)
    assert r.read_command() == (b"NO\x00OP", b"", 0)
    assert r.read_command() == (b"HELO", b"x y ", 0)
    assert impl.split_command(b"  ehlo\x0bx") == (b"EHLO", b"x")
    assert impl.split_command(b"") == (b"", b"")


@pytest.mark.parametrize("impl", IMPLS)
def test_overlong_is_truncated_and_not_buffered(impl):
    r = impl.LineReader(10)
    r.feed(b"NOOP 123456789")  # 14 bytes, no LF: at least 12 means overlong
    assert r.read_line() == (b"NOOP 12345", impl.OVERLONG)
    assert r.buffered == 0
    # The rest of that line is dropped as it arrives.
    r.feed(b"x" * 100000)
    assert r.buffered == 0
    r.feed(b"yyy\r\nQUIT\r\n")
    assert r.read_line() == (b"QUIT", 0)
    # A line exactly at the limit is whole, even when its CR arrives last.
    r.feed(b"0123456789\r")
    assert r.read_line() is None
    r.feed(b"\n")
    assert r.read_line() == (b"0123456789", 0)
    # With the LF already there, an overlong line is cut and the rest kept.
    r.feed(b"0123456789AB\nNOOP\n")
    assert r.read_line() == (b"0123456789", impl.OVERLONG)
    assert r.read_line() == (b"NOOP", impl.BARE_LF)


@pytest.mark.parametrize("impl", IMPLS)
def test_take_clear_peek(impl):
    r = impl.LineReader(100)
    r.feed(b"BDAT 5\r\nhelloQUIT\r\n")
    assert r.read_command() == (b"BDAT", b"5", 0)
    assert r.peek(3) == b"hel"
    assert r.take(5) == b"hello"
    assert r.take(0) == b""
    assert r.buffered == 6
    assert r.clear() == 6
    assert r.take_all() == b""
    r.feed(b"abc")
    assert r.take(10) == b"abc"
    with pytest.raises(ValueError):
        r.take(-1)
    with pytest.raises(ValueError):
        impl.LineReader(-1)


def test_buffer_grows_and_shrinks():
    r = C.LineReader(2048)
    r.feed(b"x" * 100000 + b"\n")  # one read may hold many pipelined lines
    assert r.buffered == 100001
    assert r.read_line() == (b"x" * 2048, C.OVERLONG)
    assert r.buffered == 0


@settings(max_examples=400, deadline=None)
@given(data=streams, limit=st.integers(0, 12), pieces=st.lists(st.integers(0, 200), max_size=10))
def test_differential_and_split_independent(data, limit, pieces):
    pieces = [p for p in pieces if p <= len(data)]
    whole_c = run(C, data, [], limit)
    whole_py = run(P, data, [], limit)
    assert whole_c == whole_py
    assert run(C, data, list(range(len(data))), limit) == whole_c
    assert run(P, data, list(range(len(data))), limit) == whole_c
    assert run(C, data, pieces, limit) == whole_c
    assert run(C, data, pieces, limit, commands=True) == run(P, data, pieces, limit, commands=True)


@settings(max_examples=200, deadline=None)
@given(data=streams, n=st.integers(0, 50))
def test_differential_take(data, n):
    results = []
    for impl in (C, P):
        r = impl.LineReader(20)
        r.feed(data)
        first = r.read_line()
        results.append((first, r.peek(n), r.take(n), r.buffered, r.take_all(), r.buffered))
    assert results[0] == results[1]


@pytest.mark.parametrize("impl", IMPLS)
def test_limit_can_change(impl):
    # The server core raises the limit for SASL responses (smtpd_sasl_response_limit).
    r = impl.LineReader(4)
    r.limit = 10
    r.feed(b"0123456789\r\n")
    assert r.read_line() == (b"0123456789", 0)
