"""qmgr's next recipient slice read in place (envelope.read_recipient_window) gives
exactly what reading the whole queue file gives (read_envelope with ``only``), reads
only the slice's stretch of the file, and declines (None) whatever it cannot read
that way, so that the caller falls back to the whole file."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import rectype as R
from fastpost.mail.envelope import read_envelope, read_recipient_window
from fastpost.mail.queue import message as M

address = st.from_regex(r"[a-z0-9.]{1,20}@[a-z]{1,12}\.example", fullmatch=True)
recipient = st.tuples(address, st.booleans(), st.one_of(st.none(), address),
                      st.sampled_from([0, 1, 2, 6, 14]), st.booleans())


def build(rcpts, extracted=(), body=b"Subject: s\r\n\r\nbody\r\n"):
    b = M.QueueFileBuilder()
    b.time(1700000000.5)
    b.attr("rewrite_context", "local")
    b.set_sender("alice@example.org")
    offsets = []
    for addr, with_orig, orcpt, notify, _done in rcpts:
        offsets.append(b.add_recipient(addr, addr.upper() if with_orig else None,
                                       dsn_orcpt=None if orcpt is None else "rfc822;" + orcpt,
                                       dsn_notify=notify))
    b.write(body)
    for addr in extracted:
        offsets.append(b.extracted(R.REC_TYPE_RCPT, addr))
    data = b.build()
    done = [o for o, r in zip(offsets, rcpts) if r[4]]
    return (M.mark_done(data, done) if done else data), offsets, set(done)


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.read_bytes = 0

    def __call__(self, offset: int, length: int) -> bytes:
        out = self.data[offset : offset + length]
        self.read_bytes += len(out)
        return out


@settings(max_examples=150, deadline=None)
@given(st.lists(recipient, min_size=2, max_size=60), st.data())
def test_a_window_reads_what_the_whole_file_gives(rcpts, data):
    qf, offsets, done = build(rcpts)
    live = [o for o in offsets if o not in done]
    # a slice: consecutive live recipients after some recipient record ("after")
    i = data.draw(st.integers(0, len(offsets) - 2))
    after = offsets[i]
    rest = [o for o in live if o > after]
    if not rest:
        return
    wanted = rest[: data.draw(st.integers(1, len(rest)))]
    got = read_recipient_window(Reader(qf), after, wanted)
    assert got == read_envelope(qf, set(wanted)).recipients


def test_only_the_slice_is_read():
    rcpts = [(f"user{i}@big.example", True, f"user{i}@big.example", 2, False) for i in range(5000)]
    qf, offsets, _ = build(rcpts, body=b"Subject: s\r\n\r\n" + b"x" * 70 + b"\r\n" * 20000)
    reader = Reader(qf)
    got = read_recipient_window(reader, offsets[2999], offsets[3000:3100])
    assert [r.address for r in got] == [f"user{i}@big.example" for i in range(3000, 3100)]
    assert got[0].orig == "USER3000@BIG.EXAMPLE" and got[0].orcpt == "rfc822;user3000@big.example"
    assert got[0].notify == 2
    # the stretch from the previous recipient to the slice's last, plus one read-ahead
    assert reader.read_bytes < (offsets[3100] - offsets[2999]) + 4096 + 1
    assert reader.read_bytes * 20 < len(qf)


def test_what_a_window_cannot_read_is_declined():
    rcpts = [(f"u{i}@x.example", False, None, 0, i == 3) for i in range(6)]
    qf, offsets, _ = build(rcpts, extracted=["e1@y.example", "e2@y.example"])
    # across the content into the extracted section: the whole file is needed
    assert read_recipient_window(Reader(qf), offsets[5], offsets[6:8]) is None
    # a wanted recipient that is done (a D record): declined, not silently delivered
    assert read_recipient_window(Reader(qf), offsets[1], [offsets[2], offsets[3]]) is None
    # "after" that is not a recipient record, or an offset that is not one
    assert read_recipient_window(Reader(qf), 0, offsets[1:2]) is None
    assert read_recipient_window(Reader(qf), offsets[0], [offsets[1] + 1]) is None
    # inside the envelope section both agree
    assert read_recipient_window(Reader(qf), offsets[0], offsets[1:3]) == \
        read_envelope(qf, set(offsets[1:3])).recipients
    # a record longer than the first read-ahead is read whole
    long = "l" * 9000 + "@x.example"
    qf, offsets, _ = build([("a@x.example", False, None, 0, False), (long, True, long, 0, False)])
    got = read_recipient_window(Reader(qf), offsets[0], offsets[1:])
    assert got and got[0].address == long and got[0].orig == long.upper()
