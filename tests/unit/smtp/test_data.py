"""DATA and BDAT content kernels: behaviour, smuggling, and compiled vs reference.

The end-of-data rule is the SMTP-smuggling defence, so it is tested three ways: the
known smuggling byte sequences one by one, every sequence fed whole / byte by byte /
with trailing data, and random streams against the reference.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.smtp import _data_c as C
from fastpost.smtp import _data_py as P

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]

#: Byte sequences used to smuggle a second message past a lenient server
#: (SEC Consult 2023, Postfix's smtp-smuggling.html). None may end DATA in strict mode.
SMUGGLING = [
    b"\n.\n", b"\n.\r\n", b"\r\n.\r", b"\r.\r", b"\r\n.\n", b"\r\r\n.\r\r\n",
    b"\r.\n", b"\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n .\r\n",
    b"\r\n.\r\r\n", b"\n\r.\r\n", b"\r\n.\n\r\n",
]


def decode(impl, data, pieces=(), limit=0, strict=True):
    """Feed data in pieces; return (output, end offset or None, size, bare_lf, too_big)."""
    dec = impl.DotDecoder(limit, strict)
    out = []
    last = 0
    end = None
    for cut in sorted(set(pieces)) + [len(data)]:
        piece = data[last:cut]
        got, used, done = dec.feed(piece)
        out.append(got)
        if done:
            end = last + used
            break
        assert used == len(piece)
        last = cut
    return b"".join(out), end, dec.size, dec.bare_lf, dec.too_big, dec.raw_lines


@pytest.mark.parametrize("impl", IMPLS)
def test_unstuffing_and_terminator(impl):
    msg = b"Subject: x\r\n\r\n..leading dot\r\n.\r\n"
    assert decode(impl, msg + b"QUIT\r\n") == (
        b"Subject: x\r\n\r\n.leading dot\r\n", len(msg), 28, 0, False, len(msg))
    # The terminator right after DATA: an empty message.
    assert decode(impl, b".\r\nNOOP\r\n")[:2] == (b"", 3)
    # "..\r\n" is a line with one dot, not the end.
    assert decode(impl, b"..\r\n.\r\n")[:2] == (b".\r\n", 7)


@pytest.mark.parametrize("impl", IMPLS)
def test_bare_lf_and_cr(impl):
    out, end, size, bare, _, _ = decode(impl, b"a\nb\rc\r\r\nd\r\n.\r\n")
    assert out == b"a\r\nb\rc\r\r\nd\r\n"
    assert bare == 1
    assert end == 14
    assert size == len(out)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seq", SMUGGLING, ids=repr)
def test_smuggling_sequences_never_end_data(impl, seq):
    # An attacker's message: the smuggling sequence, then a second envelope.
    smuggled = b"MAIL FROM:<spoof@victim.example>\r\nRCPT TO:<x@y>\r\nDATA\r\nspoofed\r\n"
    data = b"Subject: innocent\r\n\r\nhello" + seq + smuggled
    for pieces in ([], list(range(len(data))), [5, 26, 27, 28, 29, 30]):
        out, end, *_ = decode(impl, data, pieces)
        assert end is None, f"{seq!r} ended DATA"
        assert b"MAIL FROM:<spoof@victim.example>" in out
    # Only the real terminator ends it, and the rest is left for the command reader.
    real = data + b"\r\n.\r\nQUIT\r\n"
    out, end, *_ = decode(impl, real)
    assert end == len(real) - len(b"QUIT\r\n")


@pytest.mark.parametrize("impl", IMPLS)
def test_lenient_mode_is_postfix_no(impl):
    # smtpd_forbid_bare_newline = no: any lone dot line ends the message.
    assert decode(impl, b"a\n.\nb", strict=False)[1] == 4
    assert decode(impl, b"a\r\n.\nb", strict=False)[1] == 5
    assert decode(impl, b"a\n.\r\nb", strict=False)[1] == 5


@pytest.mark.parametrize("impl", IMPLS)
def test_lone_dot_non_terminators_are_dropped(impl):
    # What Postfix 3.7.11 stores for the same input in normalize mode.
    data = (b"Subject: t\r\n\r\nline1\n.\nline2\n.\r\nline3\r\n.\rline4\r.\rline5\r\n.\n"
            b"line6\r\r\n.\r\r\nline7\n.\r\n..x\r\n\x00nul\r\n\r\n.\r\n")
    out = decode(impl, data)[0]
    assert out.split(b"\r\n") == [
        b"Subject: t", b"", b"line1", b"line2", b"line3", b"\rline4\r.\rline5",
        b"line6\r", b"\r", b"line7", b".x", b"\x00nul", b"", b""]


@pytest.mark.parametrize("impl", IMPLS)
def test_size_limit_cuts_output_but_reads_to_the_end(impl):
    data = b"x" * 50 + b"\r\n" + b"y" * 50 + b"\r\n.\r\nQUIT\r\n"
    out, end, size, _, too_big, _ = decode(impl, data, limit=60)
    assert out == (b"x" * 50 + b"\r\n" + b"y" * 50)[:60]
    assert end == len(data) - 6
    assert size == 104
    assert too_big
    out, end, size, _, too_big, _ = decode(impl, data, limit=104)
    assert not too_big and size == 104


@pytest.mark.parametrize("impl", IMPLS)
def test_feed_after_end(impl):
    dec = impl.DotDecoder()
    dec.feed(b".\r\n")
    assert dec.done
    with pytest.raises(ValueError):
        dec.feed(b"x")
    with pytest.raises(ValueError):
        impl.DotDecoder(-1)


@pytest.mark.parametrize("impl", IMPLS)
def test_chunk_decoder_counts_as_postfix(impl):
    # Postfix 3.7.11's "Ok: N bytes" for these BDAT LAST chunks.
    for chunk, count in [(b"abc\r\n", 5), (b"ab\rc", 6), (b"ab\nc", 7), (b"abc\r", 6), (b"", 0)]:
        dec = impl.ChunkDecoder()
        out = dec.feed(chunk) + dec.finish()
        assert dec.size == count == len(out)
    dec = impl.ChunkDecoder()
    assert dec.feed(b"ab") == b"ab"
    assert dec.size == 2
    assert dec.feed(b"\r") == b""
    assert dec.feed(b"\n") == b"\r\n"
    assert dec.finish() == b""
    with pytest.raises(ValueError):
        dec.finish()


chars = st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\r\n.", b".\r\n", b"\x00"])
streams = st.lists(chars, max_size=120).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(data=streams, pieces=st.lists(st.integers(0, 300), max_size=8),
       limit=st.sampled_from([0, 1, 7, 40]), strict=st.booleans())
def test_dot_decoder_differential(data, pieces, limit, strict):
    pieces = [p for p in pieces if p <= len(data)]
    whole = decode(P, data, [], limit, strict)
    assert decode(C, data, [], limit, strict) == whole
    assert decode(C, data, list(range(len(data))), limit, strict) == whole
    assert decode(P, data, list(range(len(data))), limit, strict) == whole
    assert decode(C, data, pieces, limit, strict) == whole
    # Trailing data after the terminator is never consumed.
    if whole[1] is not None:
        assert decode(C, data + b"TRAILER\r\n.\r\n", pieces, limit, strict) == whole


@settings(max_examples=300, deadline=None)
@given(data=streams, pieces=st.lists(st.integers(0, 300), max_size=8),
       limit=st.sampled_from([0, 3, 50]))
def test_chunk_decoder_differential(data, pieces, limit):
    results = []
    for impl in (C, P):
        for cuts in ([], sorted(p for p in pieces if p <= len(data)), list(range(len(data)))):
            dec = impl.ChunkDecoder(limit)
            out = []
            last = 0
            for cut in cuts + [len(data)]:
                out.append(dec.feed(data[last:cut]))
                last = cut
            out.append(dec.finish())
            results.append((b"".join(out), dec.size, dec.bare_lf, dec.too_big))
    assert all(r == results[0] for r in results)
    if not limit:
        assert results[0][1] == len(results[0][0])


@pytest.mark.parametrize("impl", IMPLS)
def test_raw_lines_counts_complete_lines(impl):
    dec = impl.DotDecoder()
    dec.feed(b"Subject: unfinished\r\n\r\nsome text")
    assert dec.raw_lines == 23  # Postfix's "lost connection after DATA (23 bytes)"
    dec.feed(b" more\n")
    assert dec.raw_lines == 38
