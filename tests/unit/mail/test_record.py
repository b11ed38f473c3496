"""The record codec: the compiled kernel against its pure-Python reference."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import _record_c as C
from fastpost.mail import _record_py as P
from fastpost.mail.rectype import CorruptRecord

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]

records_st = st.lists(
    st.tuples(st.integers(1, 255), st.binary(max_size=600)), max_size=20
)


@pytest.mark.parametrize("impl", IMPLS)
def test_known_encodings(impl):
    # Postfix's rec_put: length in 7-bit groups, least significant first.
    assert impl.encode_record(ord("N"), b"") == b"N\x00"
    assert impl.encode_record(ord("N"), b"abc") == b"N\x03abc"
    assert impl.encode_record(ord("N"), b"x" * 127)[:2] == b"N\x7f"
    assert impl.encode_record(ord("N"), b"x" * 128)[:3] == b"N\x80\x01"
    assert impl.encode_record(ord("N"), b"x" * 300)[:3] == b"N\xac\x02"


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_type(impl):
    with pytest.raises(ValueError):
        impl.encode_record(0, b"")
    with pytest.raises(ValueError):
        impl.encode_record(256, b"")
    with pytest.raises(ValueError):
        impl.encode_records([(0, b"")])


@pytest.mark.parametrize("impl", IMPLS)
def test_oversize_and_garbage(impl):
    rec = impl.encode_record(ord("N"), b"x" * 100)
    with pytest.raises(CorruptRecord) as info:
        impl.split_records(rec, 99)
    assert "illegal length 100 at offset 0" in str(info.value)
    with pytest.raises(CorruptRecord):
        impl.split_records(b"\x00\x01a", 10)
    with pytest.raises(CorruptRecord):
        impl.split_records(b"N\xff\xff\xff\xff\xff\x01", 1 << 40)


@pytest.mark.parametrize("impl", IMPLS)
def test_decoder_reports_stream_offset(impl):
    dec = impl.RecordDecoder(10)
    dec.feed(impl.encode_record(ord("N"), b"ok"))
    assert dec.records() == [(ord("N"), b"ok")]
    dec.feed(impl.encode_record(ord("N"), b"y" * 11))
    with pytest.raises(CorruptRecord) as info:
        dec.records()
    assert info.value.offset == 4


@settings(max_examples=300, deadline=None)
@given(records_st)
def test_encode_parity(records):
    enc = P.encode_records(records)
    assert C.encode_records(records) == enc
    assert b"".join(C.encode_record(t, d) for t, d in records) == enc


@settings(max_examples=300, deadline=None)
@given(records_st, st.integers(1, 50), st.integers(0, 700))
def test_decode_parity_any_split(records, chunk, max_length):
    """Whole, in chunks, and with trailing garbage: both decoders agree exactly."""
    data = P.encode_records(records)
    for impl_c, impl_p in ((C, P),):
        outcomes = []
        for impl in (impl_c, impl_p):
            dec = impl.RecordDecoder(max_length)
            got = []
            try:
                for i in range(0, len(data), chunk):
                    dec.feed(data[i : i + chunk])
                    got += dec.records()
                outcomes.append(("ok", got, dec.buffered))
            except CorruptRecord as exc:
                outcomes.append(("err", str(exc), exc.offset))
        assert outcomes[0] == outcomes[1]
        if all(len(d) <= max_length for _, d in records):
            assert outcomes[0] == ("ok", [(t, d) for t, d in records], 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 200))
def test_decode_parity_fuzz(data, max_length):
    """Arbitrary bytes: same records or the same error from both."""
    results = []
    for impl in (C, P):
        try:
            results.append(impl.split_records(data, max_length))
        except CorruptRecord as exc:
            results.append(("err", str(exc)))
    assert results[0] == results[1]


def test_selector_picks_compiled():
    from fastpost.mail import record

    assert record.encode_record is C.encode_record
