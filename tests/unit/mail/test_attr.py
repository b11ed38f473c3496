"""The attribute-frame codec: the compiled kernel against its pure-Python reference."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import _attr_c as C
from fastpost.mail import _attr_py as P
from fastpost.mail.attrtype import AttrError

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]

names = st.text(max_size=12)
scalars = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=60),
    st.integers(-(1 << 63), (1 << 63) - 1),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(names, inner, max_size=5)),
    max_leaves=10,
)
shallow_values = st.one_of(scalars, st.lists(scalars, max_size=4),
                           st.dictionaries(names, st.lists(scalars, max_size=3), max_size=3))
attr_lists = st.dictionaries(names, values, max_size=8)


def depth(value) -> int:
    """Nesting depth of a value as the decoder counts it (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("impl", IMPLS)
def test_known_encoding(impl):
    frame = impl.encode({"protocol": "cleanup_protocol", "n": -2, "b": b"\x00", "l": ["x"], "d": {}})
    assert frame == (
        b"\x00\x00\x00\x2f"
        b"\x08protocols\x10cleanup_protocol"
        b"\x01ni\x03"
        b"\x01bb\x01\x00"
        b"\x01ll\x01s\x01x"
        b"\x01dd\x00"
    )
    assert impl.encode({}) == b"\0\0\0\0"
    assert impl.decode(frame[4:]) == {"protocol": "cleanup_protocol", "n": -2, "b": b"\x00",
                                     "l": ["x"], "d": {}}


@pytest.mark.parametrize("impl", IMPLS)
def test_round_trip_of_edge_values(impl):
    attrs = {
        "min": -(1 << 63), "max": (1 << 63) - 1, "zero": 0, "true": True,
        "eight_bit": "caf\udcff \udcfe",  # surrogateescape'd non-UTF-8 bytes survive
        "unicode": "smörgåsbord ✉", "empty": "", "nested": [[{"a": [b"x"]}]],
        "bytearray": bytearray(b"ba"), "memoryview": memoryview(b"mv"), "tuple": (1, 2),
    }
    got = impl.decode(impl.encode(attrs)[4:])
    assert got["min"] == -(1 << 63) and got["max"] == (1 << 63) - 1
    assert got["true"] == 1 and got["eight_bit"] == "caf\udcff \udcfe"
    assert got["unicode"] == "smörgåsbord ✉" and got["nested"] == [[{"a": [b"x"]}]]
    assert got["bytearray"] == b"ba" and got["memoryview"] == b"mv" and got["tuple"] == [1, 2]


@pytest.mark.parametrize("impl", IMPLS)
def test_encode_errors(impl):
    with pytest.raises(TypeError, match="cannot encode a value of type float"):
        impl.encode({"x": 1.5})
    with pytest.raises(TypeError, match="cannot encode a value of type NoneType"):
        impl.encode({"x": [None]})
    with pytest.raises(TypeError, match="attribute name must be str"):
        impl.encode({1: "x"})
    with pytest.raises(TypeError, match="must be a dict"):
        impl.encode([("a", "b")])
    with pytest.raises(OverflowError, match="'big': integer out of 64-bit range"):
        impl.encode({"big": 1 << 63})


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "body,message",
    [
        (b"\x05abc", "truncated attribute frame at offset 1"),
        (b"\x01as", "truncated attribute frame at offset 3"),
        (b"\x01az\x00", "bad attribute value type 0x7a at offset 2"),
        (b"\x01ai" + b"\xff" * 10, "varint too long at offset 3"),
        (b"\x01as\x00\x01as\x00", "duplicate attribute name 'a' at offset 4"),
        (b"\x01al\x05s\x00", "truncated attribute frame at offset 4"),
        (b"\x01al\x01l\x01l\x01l\x00", "attribute nesting deeper than 2 at offset 6"),
    ],
)
def test_decode_errors(impl, body, message):
    with pytest.raises(AttrError) as info:
        impl.decode(body, 2)
    assert str(info.value) == message
    assert not info.value.fatal


@pytest.mark.parametrize("impl", IMPLS)
def test_decoder_survives_bad_body_but_not_bad_length(impl):
    dec = impl.FrameDecoder(max_frame=100)
    good = impl.encode({"a": "b"})
    dec.feed(b"\0\0\0\x02\x01a" + good)  # a frame whose body is truncated, then a good one
    with pytest.raises(AttrError) as info:
        dec.next_frame()
    assert not info.value.fatal
    assert dec.next_frame() == {"a": "b"}
    assert dec.next_frame() is None and dec.buffered == 0
    dec.feed(b"\0\0\0\x65")  # 101 > max_frame: refused before the body arrives
    for _ in range(2):
        with pytest.raises(AttrError) as info:
            dec.next_frame()
        assert info.value.fatal
        assert str(info.value) == "attribute frame length 101 exceeds the limit 100"


@pytest.mark.parametrize("impl", IMPLS)
def test_get_buffer_path(impl):
    """The BufferedProtocol path: write into get_buffer(), then buffer_updated()."""
    frames = [{"i": i, "pad": b"x" * (i * 1000)} for i in range(200)]
    data = impl.encode_many(frames)
    dec = impl.FrameDecoder()
    got = []
    pos = 0
    while pos < len(data):
        buf = dec.get_buffer(-1)
        n = min(len(buf), 7777, len(data) - pos)
        buf[:n] = data[pos : pos + n]
        del buf
        dec.buffer_updated(n)
        pos += n
        while (frame := dec.next_frame()) is not None:
            got.append(frame)
    assert got == frames
    with pytest.raises(ValueError):
        dec.buffer_updated(1 << 30)


def test_encode_parity_of_text_forms():
    """Every form of text the kernel writes on its own path or the general one: ASCII
    (compact), Latin-1, BMP, astral, surrogate-escaped bytes, a str subclass; as a
    name, a value, an item of a list or of smtpd's (name, value) pair tuples."""
    class Sub(str):
        pass

    texts = ["", "a", "client.example", "caf\u00e9", "\u4e2d\u6587", "\U0001f600x",
             b"\xff\xfeok".decode("utf-8", "surrogateescape"), Sub("sub"), Sub("s\u00fcb"),
             "x" * 200, "y" * 20000]
    frame = {t: t for t in texts}
    frame["a"] = [(t, u) for t in texts for u in texts[:4]]
    frame["l"] = list(texts) + [1, b"b", [texts[3]]]
    assert C.encode(frame) == P.encode(frame)
    assert C.encode_many([frame, {"o": 1}]) == P.encode_many([frame, {"o": 1}])


@settings(max_examples=200, deadline=None)
@given(st.lists(attr_lists, max_size=4))
def test_encode_parity(frames):
    data = P.encode_many(frames)
    assert C.encode_many(frames) == data
    assert b"".join(C.encode(f) for f in frames) == data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(attr_lists, st.dictionaries(names, shallow_values, max_size=6)),
                max_size=4), st.integers(1, 64), st.integers(0, 4),
       st.binary(max_size=12))
def test_decode_parity_any_split(frames, chunk, max_depth, trailing):
    """Whole, in chunks, with trailing bytes: both decoders give the same frames or error."""
    data = P.encode_many(frames) + trailing
    outcomes = []
    for impl in (C, P):
        dec = impl.FrameDecoder(max_frame=1 << 16, max_depth=max_depth)
        got = []
        try:
            for i in range(0, len(data), chunk):
                dec.feed(data[i : i + chunk])
                while (frame := dec.next_frame()) is not None:
                    got.append(frame)
            outcomes.append(("ok", got, dec.buffered))
        except AttrError as exc:
            outcomes.append(("err", got, str(exc), exc.fatal))
    assert outcomes[0] == outcomes[1]
    # What comes out is the real frames, in order (then whatever the trailing bytes make).
    got = outcomes[0][1]
    n = min(len(got), len(frames))
    assert got[:n] == frames[:n]
    if not trailing and all(depth(v) <= max_depth for f in frames for v in f.values()):
        assert outcomes[0] == ("ok", frames, 0)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 5))
def test_decode_parity_fuzz(body, max_depth):
    """Arbitrary bodies: the same dict or the same error from both."""
    results = []
    for impl in (C, P):
        try:
            results.append(impl.decode(body, max_depth))
        except AttrError as exc:
            results.append(("err", str(exc)))
    assert results[0] == results[1]


def test_selector_picks_compiled():
    from fastpost.mail import attr

    assert attr.encode is C.encode and attr.FrameDecoder is C.FrameDecoder


def test_encoder_keeps_nothing_after_success_or_failure():
    """The compiled encoder writes into the bytes object it returns: grown frames,
    and frames that fail half-way (after growing), leave no memory behind."""
    import tracemalloc

    frame = {"a": [("x" * 50, "y")] * 2000, "d": b"z" * 100_000}
    bad = [frame, {"x": 1.5}]

    def rounds(n):
        for _ in range(n):
            assert C.encode_many([frame]) == C.encode(frame)
            with pytest.raises(TypeError):
                C.encode_many(bad)

    tracemalloc.start()
    try:
        rounds(20)
        before = tracemalloc.take_snapshot()
        rounds(300)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024  # (300 rounds of 250 KB each, had one been kept)


def test_recurring_short_texts_decode_to_equal_values():
    """The compiled decoder hands back a recurring short ASCII text as one str object
    (its cache of recent texts); whatever shares or overwrites a cache slot, every
    decoded text equals what was encoded, and non-ASCII texts are decoded each time."""
    texts = [f"k{i}" for i in range(3000)] + ["x" * 32, "x" * 33, "caf\u00e9", "a\udcff", "ab"]
    frames = [{t: [t, t.upper()], "v": t} for t in texts]
    for _ in range(2):
        for frame in frames:
            body = C.encode(frame)[4:]
            assert C.decode(body) == frame == P.decode(body)
    first = C.decode(C.encode({"client_name": "localhost"})[4:])
    again = C.decode(C.encode({"client_name": "localhost"})[4:])
    assert next(iter(first)) is next(iter(again)) and first["client_name"] is again["client_name"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=34), st.binary(max_size=9)),
                min_size=1, max_size=6))
def test_text_cache_words_at_every_length_and_frame_end(pairs):
    """Texts of 0..34 bytes (one-byte texts from their table, 2..32 through the cache,
    its last word read whole inside the frame or copied at the frame's end), each
    followed by other bytes: decoded as the reference does, twice (cached)."""
    frame = {}
    for i, (text, after) in enumerate(pairs):
        frame[f"t{i}"] = [text.decode("utf-8", "surrogateescape"), after]
    body = P.encode(frame)[4:]
    tail_only = P.encode({"z": pairs[-1][0].decode("utf-8", "surrogateescape")})[4:]
    for _ in range(2):
        assert C.decode(body) == P.decode(body) == frame
        assert C.decode(tail_only) == P.decode(tail_only)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "body,message",
    [
        # a value that fails under a duplicate name reports the duplicate
        (b"\x01as\x00\x01al\x02s\x00z", "duplicate attribute name 'a' at offset 4"),
        (b"\x01as\x00\x01as\x05ab", "duplicate attribute name 'a' at offset 4"),
        # a list that fails after some of its items (as strings and as other values)
        (b"\x01al\x03s\x01xs\x01y", "truncated attribute frame at offset 10"),
        (b"\x01al\x03s\x01xi\x02q", "bad attribute value type 0x71 at offset 9"),
        (b"\x01al\x02s\x01x", "truncated attribute frame at offset 7"),
        # a name that fails after a good attribute; a one-byte text past the end
        (b"\x01as\x00\x05ab", "truncated attribute frame at offset 5"),
        (b"\x01as\x01", "truncated attribute frame at offset 4"),
    ],
)
def test_decode_errors_in_lists_and_names(impl, body, message):
    with pytest.raises(AttrError) as info:
        impl.decode(body, 4)
    assert str(info.value) == message


def test_one_byte_texts():
    """Every one-byte text: ASCII from the table, the others surrogate-escaped."""
    for c in range(256):
        body = bytes([1, ord("a"), ord("s"), 1, c, 1, ord("b"), ord("l"), 1, ord("s"), 1, c])
        assert C.decode(body) == P.decode(body)
