"""Building and parsing Postfix-format queue files (fastpost.mail.queue.message)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import rectype as R
from fastpost.mail.queue import message as M
from fastpost.mail.record import encode_record


def build(text=b"Subject: hi\r\n\r\nbody\r\n", rcpts=("bob@example.net",), sender="alice@example.org",
          line_limit=2048, extracted=()):
    b = M.QueueFileBuilder(line_limit)
    b.time(1700000000.25)
    b.attr("rewrite_context", "local")
    b.set_sender(sender)
    for r in rcpts:
        b.add_recipient(r, r, dsn_orcpt="rfc822;" + r)
    b.write(text)
    for addr in extracted:
        b.extracted(R.REC_TYPE_RCPT, addr)
    return b, b.build()


def test_layout_matches_postfix():
    b, data = build()
    recs = list(M.read_records(data))
    types = [chr(t) for _, t, _ in recs]
    assert types[:3] == ["C", "T", "A"] and types[-3:] == ["N", "X", "E"]
    assert recs[1][2] == b"1700000000 250000"
    assert recs[2][2] == b"create_time=1700000000"
    # C: content length, data offset, recipient count, flags, length, smtputf8
    fields = [int(x) for x in recs[0][2].split()]
    p = M.parse(data)
    assert fields == [p.xtra_offset - p.data_offset, p.data_offset, 1, 0, p.xtra_offset - p.data_offset, 0]
    assert len(recs[0][2]) == M.SIZE_PAYLOAD_LEN
    m_rec = [o for o, t, _ in recs if t == R.REC_TYPE_MESG][0]
    assert p.data_offset == m_rec + 2  # empty M record, as Postfix 3.7 writes it


def test_parse_round_trip():
    b, data = build(rcpts=("a@x.example", "b@Y.Example"), extracted=("c@z.example",))
    p = M.parse(data)
    assert p.sender == "alice@example.org"
    assert [r.address for r in p.recipients] == ["a@x.example", "b@Y.Example", "c@z.example"]
    assert [r.offset for r in p.recipients] == [r.offset for r in b.recipients]
    assert p.recipients[1].domain == "y.example"
    assert p.recipients[0].orig == "a@x.example" and p.recipients[0].dsn_orcpt == "rfc822;a@x.example"
    assert p.recipients[2].extracted and not p.recipients[0].extracted
    assert p.rcpt_count == 3 and p.arrival == 1700000000.25
    assert p.attrs == {"create_time": "1700000000", "rewrite_context": "local"}
    assert M.content_text(data, p) == b"Subject: hi\n\nbody\n"


def test_null_sender_and_done_marks():
    b, data = build(sender="")
    assert M.parse(data).sender == ""
    off = b.recipients[0].offset
    done = M.mark_done(data, [off])
    assert M.parse(done).recipients[0].done
    with pytest.raises(ValueError):
        M.mark_done(data, [0])


@settings(max_examples=100)
@given(st.binary(max_size=3000), st.integers(1, 100))
def test_any_text_round_trips(text, limit):
    _, data = build(text=text, line_limit=limit)
    p = M.parse(data)
    out = M.content_text(data, p)
    norm = text.replace(b"\r\n", b"\n")
    if norm and not norm.endswith(b"\n"):
        norm += b"\n"
    assert out == norm
    assert p.size == p.xtra_offset - p.data_offset


def test_streaming_chunks_equal_whole():
    text = b"".join(b"line %d\r\n" % i for i in range(500)) + b"x" * 5000 + b"\r\n"
    b1 = M.QueueFileBuilder()
    b2 = M.QueueFileBuilder()
    for b in (b1, b2):
        b.time(1.0)
        b.set_sender("")
        b.add_recipient("r@x")
    b1.write(text)
    for i in range(0, len(text), 7):
        b2.write(text[i : i + 7])
    assert b1.build() == b2.build()


def test_pointer_records_are_followed():
    # A Postfix-style edited file: the envelope jumps over a dead record to the rest.
    head = encode_record(R.REC_TYPE_SIZE, M.size_payload(0, 0, 1)) + encode_record(R.REC_TYPE_TIME, b"5 0")
    dead = encode_record(R.REC_TYPE_FROM, b"old@x")
    # layout: C T p(->tail) S(dead) ... tail: S R M N X E
    tail_at = len(head) + 17 + len(dead)
    ptr = encode_record(R.REC_TYPE_PTR, b"%15d" % tail_at)
    assert len(ptr) == 17
    tail = (encode_record(R.REC_TYPE_FROM, b"new@x") + encode_record(R.REC_TYPE_RCPT, b"r@x")
            + encode_record(R.REC_TYPE_MESG, b"") + encode_record(R.REC_TYPE_NORM, b"hi")
            + encode_record(R.REC_TYPE_XTRA, b"") + encode_record(R.REC_TYPE_END, b""))
    data = head + ptr + dead + tail
    p = M.parse(data)
    assert p.sender == "new@x" and [r.address for r in p.recipients] == ["r@x"]
    assert M.content_text(data, p) == b"hi\n"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[:-2], "end"),
    (lambda d: b"T" + d[1:], "size record"),
    (lambda d: d.replace(b"S\x11alice@example.org", b"Q\x11alice@example.org"), "unexpected record type"),
    (lambda d: d[:97] + b"\x00" + d[98:], "illegal record type 0"),
])
def test_corrupt_files(mutate, message):
    _, data = build()
    with pytest.raises(M.CorruptQueueFile, match=message):
        M.parse(mutate(data))


def test_builder_order_is_enforced():
    b = M.QueueFileBuilder()
    b.time(1.0)
    b.set_sender("")
    b.write(b"x\n")
    with pytest.raises(ValueError):
        b.add_recipient("late@x")
    b.extracted(R.REC_TYPE_RCPT, "ok@x")
    with pytest.raises(ValueError):
        b.write(b"more\n")
    with pytest.raises(ValueError):
        b.extracted(R.REC_TYPE_NORM, b"x")
    with pytest.raises(ValueError):
        M.QueueFileBuilder().build()


_names = st.sampled_from(["log_client_name", "rewrite_context", "dsn_orig_rcpt", "notify_flags",
                          "x=y", "client_address", ""])


@settings(max_examples=100)
@given(st.lists(st.tuples(_names, st.text(max_size=40))))
def test_add_attrs_equals_attr_one_by_one(pairs):
    """add_attrs (one buffer for many A records) builds what attr() in a loop builds."""
    b1 = M.QueueFileBuilder()
    b2 = M.QueueFileBuilder()
    for b in (b1, b2):
        b.time(1.0)
        b.set_sender("s@x")
    for name, value in pairs:
        b1.attr(name, value)
    b2.add_attrs(pairs)
    assert b1.attrs == b2.attrs and b1._pending_rcpt == b2._pending_rcpt
    for b in (b1, b2):
        b.add_recipient("r@x")
    assert b1.build() == b2.build()


def test_odd_notify_flags_value_is_an_attribute():
    """A notify_flags value that is not ASCII digits ('¹' passes str.isdigit) is kept as an attribute."""
    b = M.QueueFileBuilder()
    b.attr("notify_flags", "\u00b9")
    assert b.attrs["notify_flags"] == "\u00b9" and not b._pending_rcpt


_types = st.sampled_from([R.REC_TYPE_ATTR, R.REC_TYPE_FULL, R.REC_TYPE_FILT, R.REC_TYPE_TIME, R.REC_TYPE_FROM,
                          R.REC_TYPE_RCPT, R.REC_TYPE_ORCP, R.REC_TYPE_DSN_NOTIFY])
_payloads = st.one_of(st.sampled_from(["a=b", "notify_flags=8", "dsn_orig_rcpt=rfc822;x@y", "12 34", "u@x", "7"]),
                      st.text(max_size=20))


@settings(max_examples=150)
@given(st.lists(st.tuples(_types, _payloads), max_size=12), st.floats(0, 2e9))
def test_envelope_many_equals_envelope_one_by_one(records, when):
    """envelope_many (one buffer where it can) builds what envelope() in a loop builds."""
    b1 = M.QueueFileBuilder()
    b2 = M.QueueFileBuilder()
    out = []
    for b, many in ((b1, False), (b2, True)):
        try:
            if many:
                b.envelope_many(M.QueueFileBuilder.time_records(when) + records)
            else:
                b.time(when)
                for rtype, data in records:
                    b.envelope(rtype, data)
            b.set_sender("s@x")
            b.add_recipient("r@x")
            out.append(("ok", b.build(), b.attrs, [(r.offset, r.address, r.orig, r.dsn_notify) for r in b.recipients]))
        except ValueError as exc:
            out.append(("error", type(exc)))
    assert out[0] == out[1]
