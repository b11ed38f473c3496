"""Text <-> content records: the compiled kernel against its pure-Python reference.

Each input is fed whole, in random chunks (the result must not depend on the cut), and
byte by byte; decoding gets trailing non-content records and incomplete tails.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import _content_c as C
from fastpost.mail import _content_py as P
from fastpost.mail.rectype import CorruptRecord

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]

text_st = st.binary(max_size=400) | st.lists(
    st.sampled_from([b"a", b"xyz", b"\r", b"\n", b"\r\n", b" ", b"\x00", b"\xff" * 5]), max_size=80
).map(b"".join)


def encode_chunked(impl, data, limit, cuts):
    out = []
    pending = b""
    pos = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        pending += data[pos:cut]
        pos = max(pos, cut)
        recs, used = impl.encode_text(pending, limit, False)
        out.append(recs)
        pending = pending[used:]
        assert len(pending) <= limit + 1 or b"\n" in pending
    recs, used = impl.encode_text(pending, limit, True)
    assert used == len(pending)
    out.append(recs)
    return b"".join(out)


@pytest.mark.parametrize("impl", IMPLS)
def test_known_encodings(impl):
    assert impl.encode_text(b"abc\r\ndef\n", 2048, False) == (b"N\x03abcN\x03def", 9)
    assert impl.encode_text(b"abc", 2048, False) == (b"", 0)
    assert impl.encode_text(b"abc", 2048, True) == (b"N\x03abc", 3)
    assert impl.encode_text(b"\n\n", 2048, False) == (b"N\x00N\x00", 2)
    # a long line: L pieces of exactly the limit, then N with the rest
    assert impl.encode_text(b"x" * 10 + b"\r\n", 4, False)[0] == b"L\x04xxxxL\x04xxxxN\x02xx"
    # an exact multiple gives no empty N
    assert impl.encode_text(b"x" * 8 + b"\n", 4, False)[0] == b"L\x04xxxxN\x04xxxx"
    # a bare CR inside a line stays
    assert impl.encode_text(b"a\rb\n", 10, False)[0] == b"N\x03a\rb"


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_limit(impl):
    with pytest.raises(ValueError):
        impl.encode_text(b"x\n", 0, False)


@settings(max_examples=300)
@given(text_st, st.integers(1, 40), st.booleans())
def test_encode_differential(data, limit, final):
    assert C.encode_text(data, limit, final) == P.encode_text(data, limit, final)


@settings(max_examples=200)
@given(text_st, st.integers(1, 40), st.lists(st.integers(0, 400), max_size=8))
def test_chunking_does_not_matter(data, limit, cuts):
    whole = P.encode_text(data, limit, True)[0]
    cuts = [c for c in cuts if c <= len(data)]
    assert encode_chunked(P, data, limit, cuts) == whole
    assert encode_chunked(C, data, limit, cuts) == whole
    assert encode_chunked(C, data, limit, range(len(data) + 1)) == whole  # byte by byte


@settings(max_examples=200)
@given(text_st, st.integers(1, 40), st.sampled_from([b"\n", b"\r\n", b""]), st.binary(max_size=6))
def test_decode_differential_and_round_trip(data, limit, eol, trailer):
    recs = C.encode_text(data, limit, True)[0]
    text, end, stop = C.decode_text(recs + b"X\x00" + trailer, 0, 1 << 20, eol)
    assert (text, end, stop) == P.decode_text(recs + b"X\x00" + trailer, 0, 1 << 20, eol)
    assert end == len(recs) and stop == ord("X")
    # the text comes back with every line ending normalised to eol
    if eol == b"\n":
        lines = data.split(b"\n")
        expect = b"\n".join(l[:-1] if l.endswith(b"\r") else l for l in lines[:-1])
        expect = expect + b"\n" if len(lines) > 1 else b""
        if lines[-1]:
            expect += lines[-1] + b"\n"
        assert text == expect
    # an incomplete tail stops decoding without error
    for cut in range(len(recs)):
        a = C.decode_text(recs[:cut], 0, 1 << 20, eol)
        assert a == P.decode_text(recs[:cut], 0, 1 << 20, eol)
        assert a[2] == 0 and a[1] <= cut


@pytest.mark.parametrize("impl", IMPLS)
def test_decode_errors(impl):
    with pytest.raises(CorruptRecord):
        impl.decode_text(b"N\x05hello" + b"\x00\x00", 0, 100)
    with pytest.raises(CorruptRecord):
        impl.decode_text(b"N\xff\xff\xff\xff\xff\x01", 0, 100)
    with pytest.raises(CorruptRecord):
        impl.decode_text(b"N\x7f" + b"x" * 127, 0, 100)
    with pytest.raises(ValueError):
        impl.decode_text(b"N\x00", 5, 100)
    assert impl.decode_text(b"N\x02hiE\x00", 0, 100) == (b"hi\n", 4, ord("E"))
    assert impl.decode_text(b"N\x02hiL\x01aN\x01b", 0, 100, b"\r\n") == (b"hi\r\nab\r\n", 10, 0)


@settings(max_examples=200)
@given(text_st, st.integers(1, 40), st.booleans(), st.sampled_from(["bytearray", "memoryview", "strided"]))
def test_encode_other_buffers(data, limit, final, kind):
    """bytes are read directly; any other buffer takes the memoryview road: the same."""
    if kind == "bytearray":
        arg = bytearray(data)
    elif kind == "memoryview":
        arg = memoryview(data)
    else:  # every other byte of a doubled buffer: not contiguous
        arg = memoryview(bytes(b for c in data for b in (c, 0)))[::2]
    assert C.encode_text(arg, limit, final) == P.encode_text(data, limit, final)


@pytest.mark.parametrize("size", [65535, 65536, 200_000])
def test_encode_large_input(size):
    """Inputs from 64 KiB are encoded with the GIL let go: the same records."""
    line = b"x" * 300 + b"\r\n" + b"short\n" + b"\n"
    data = (line * (size // len(line) + 1))[:size]
    for final in (False, True):
        assert C.encode_text(data, 2048, final) == P.encode_text(data, 2048, final)
        assert C.encode_text(data, 100, final) == P.encode_text(data, 100, final)


@pytest.mark.parametrize("impl", IMPLS)
def test_encode_argument_errors(impl):
    with pytest.raises(ValueError):
        impl.encode_text(bytearray(b"x\n"), 0, False)
    with pytest.raises(TypeError):
        impl.encode_text(None, 10, False)
    with pytest.raises(TypeError):
        impl.encode_text("text\n", 10, False)
