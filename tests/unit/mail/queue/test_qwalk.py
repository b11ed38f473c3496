"""The queue-file record walk: the compiled kernel against its pure-Python reference.

Both walk real queue files (fastpost's builder, with and without the content
skipped, Postfix-style pointer records) to the same records, and any bytes at all
(hypothesis: random records, random splices of a real file, random garbage) to the
same result or the same CorruptRecord text.
"""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import rectype as R
from fastpost.mail.queue import _qwalk_c as C
from fastpost.mail.queue import _qwalk_py as P
from fastpost.mail.queue import message as M
from fastpost.mail.rectype import CorruptRecord
from fastpost.mail.record import encode_record, encode_records

MAX = 1 << 24


def _outcome(impl, fn, *args):
    try:
        return ("ok", getattr(impl, fn)(*args))
    except CorruptRecord as exc:
        return ("corrupt", str(exc), exc.offset)


def _both(data, follow=True, skip=False, max_record=MAX):
    c = _outcome(C, "walk_records", data, follow, skip, max_record)
    p = _outcome(P, "walk_records", data, follow, skip, max_record)
    assert c == p
    return c


def queue_file(rcpts: int = 2, attrs: int = 5) -> bytes:
    b = M.QueueFileBuilder()
    b.time(1_700_000_000.25)
    for i in range(attrs):
        b.attr(f"log_client_name{i}", f"client{i}.example")
    b.set_sender("sender@example.org")
    for i in range(rcpts):
        b.add_recipient(f"user{i}@example.com", orig=f"orig{i}@example.com")
    b.write(b"Subject: test\n\n" + b"line of text\n" * 30)
    return b.build()


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("follow", [False, True])
def test_builder_files_walk_alike(skip, follow):
    data = queue_file()
    kind, records = _both(data, follow, skip)
    assert kind == "ok"
    types = [r[1] for r in records]
    assert types[0] == R.REC_TYPE_SIZE and types[-1] == R.REC_TYPE_END
    assert (R.REC_TYPE_NORM in types) == (not skip)
    # every buffer kind the readers pass
    assert _both(bytearray(data), follow, skip) == _both(memoryview(data), follow, skip) \
        == (kind, records)


def test_pointer_records_are_followed():
    # C, T, a pointer over a killed S record to a later S, then the rest: as Postfix's
    # in-place edits leave a file
    head = encode_records([(R.REC_TYPE_SIZE, b"%15d %15d %15d %15d %15d %15d" % (0, 0, 1, 0, 0, 0)),
                           (R.REC_TYPE_TIME, b"1700000000 0")])
    ptr_len = len(encode_record(R.REC_TYPE_PTR, b"%15d" % 0))
    dead = encode_record(R.REC_TYPE_FROM, b"old@example.org")
    target = len(head) + ptr_len + len(dead)
    tail = encode_records([(R.REC_TYPE_FROM, b"new@example.org"), (R.REC_TYPE_MESG, b"%15d" % 0),
                           (R.REC_TYPE_XTRA, b""), (R.REC_TYPE_END, b"")])
    data = head + encode_record(R.REC_TYPE_PTR, b"%15d" % target) + dead + tail
    kind, records = _both(data)
    assert kind == "ok"
    assert (R.REC_TYPE_FROM, b"new@example.org") in [(t, p) for _o, t, p in records]
    assert b"old@example.org" not in [p for _o, _t, p in records]
    kind, unfollowed = _both(data, follow=False)
    assert R.REC_TYPE_PTR in [t for _o, t, _p in unfollowed]


@pytest.mark.parametrize("data, text", [
    (b"", "no end record (file ends at offset 0)"),
    (b"\x00\x00", "illegal record type 0 at offset 0"),
    (b"N", "truncated record at offset 0"),
    (b"N\x05ab", "illegal length 5 at offset 0, record type 78"),
    (b"N\xff\xff\xff\xff\xff\x01", "illegal length varint at offset 0, record type 78"),
    (b"N\x00", "no end record (file ends at offset 2)"),
    (b"p\x03abc", "bad number b'abc'"),
    (b"p\x0299E\x00", "bad pointer record at offset 0"),
    (b"p\x02-1E\x00", "bad pointer record at offset 0"),
    (b"p\x01" + b"9" * 1 + b"E\x00", "bad pointer record at offset 0"),
    (b"p\x01\x30E\x00", None),  # a null pointer: the walk goes on
])
def test_errors_alike(data, text):
    result = _both(data)
    if text is None:
        assert result[0] == "ok"
    else:
        assert result[:2] == ("corrupt", text)


def test_pointer_loop():
    # offset 0 points at offset 3, which points at itself: 100,000 jumps, then refused
    looping = b"p\x013" + b"p\x013"
    assert _both(looping)[:2] == ("corrupt", "bad pointer record at offset 3")


def test_length_limit():
    data = encode_records([(R.REC_TYPE_NORM, b"x" * 100), (R.REC_TYPE_END, b"")])
    assert _both(data, max_record=99)[:2] == ("corrupt", "illegal length 100 at offset 0, record type 78")
    assert _both(data, max_record=100)[0] == "ok"


def test_record_at_alike():
    data = queue_file()
    pos = 0
    while True:
        c = _outcome(C, "record_at", data, pos, MAX)
        assert c == _outcome(P, "record_at", data, pos, MAX)
        if c[0] != "ok":
            break
        pos = c[1][2]
    assert c[1] == f"unexpected end of file at offset {len(data)}"


def test_message_module_uses_the_walk():
    data = queue_file()
    assert M.read_records(data, skip_content=True) == C.walk_records(data, True, True, M.MAX_RECORD)
    with pytest.raises(M.CorruptQueueFile, match="no end record"):
        M.read_records(data[:-2])
    with pytest.raises(M.CorruptQueueFile, match="illegal record type 0"):
        M.record_at(b"\x00\x00", 0)


records_st = st.lists(st.tuples(st.sampled_from(b"CTSARODMNLXEpwF>n"), st.binary(max_size=40)),
                      max_size=25)


@settings(max_examples=400, deadline=None)
@given(records_st, st.booleans(), st.booleans())
def test_random_records_alike(records, follow, skip):
    _both(encode_records(records), follow, skip)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 2000), st.binary(max_size=8), st.booleans(), st.booleans())
def test_spliced_files_alike(cut, length, junk, follow, skip):
    data = queue_file(rcpts=3)
    cut %= len(data)
    _both(data[:cut] + junk + data[cut + length % 16:], follow, skip)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.booleans(), st.booleans())
def test_garbage_alike(data, follow, skip):
    _both(data, follow, skip)


def test_parse_still_reads_a_file():
    data = queue_file(rcpts=2)
    parsed = M.parse(data)
    assert parsed.sender == "sender@example.org"
    assert [r.address for r in parsed.recipients] == ["user0@example.com", "user1@example.com"]
    assert parsed.arrival == pytest.approx(1_700_000_000.25)
    assert time.time() > parsed.arrival
