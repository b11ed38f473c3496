"""One message with very many recipients is listed (mailq, JSON, through the showq
service's parts), selected and exported without holding its recipient list: the tools
stream the rcp chunks (store.iter_recipients) and the defer log (store.iter_logs).

What is held is counted with tracemalloc (the Python heap's peak), against what the
whole list costs when it is loaded, as the tools did before."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest

from fastpost.cli.postsuper import Selector
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.message import parse
from fastpost.mail.queue.showq import (Entry, _defer_entries, entries, from_parts, json_object,
                                       render_json, render_mailq, write_json, write_mailq)

from .conftest import fill

N = 20000
DEFERRED_LOGGED = 300  # recipients named in the defer log


class Sink:
    """An output stream that keeps a count and a digest, not the text."""

    def __init__(self):
        self.chars = 0
        self.lines = 0

    def write(self, text):
        self.chars += len(text)
        self.lines += text.count("\n")


def heap_peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def _reference_listing(store) -> tuple[str, str]:
    """The listing as the former code built it: each message's whole recipient list
    from Index.get, the defer log in one piece (a list of pairs per message)."""
    listed = []
    for info in store.messages(("active", "incoming", "deferred", "hold")):
        log = store.logs(info.queue_id, "defer")
        live = [r.address for r in info.recipients if r.status != ix.RCPT_DONE]
        if log:
            logged = _defer_entries(log)
            named = {a for a, _ in logged}
            rcpts = logged + [(a, None) for a in live if a not in named]
        else:
            rcpts = [(a, None) for a in live]
        listed.append(Entry(info.state_name, info.queue_id, int(info.arrival), info.size,
                            bool(info.flags & ix.FLAG_FORCE_EXPIRE), info.sender, rcpts, bool(log)))
    mailq, js = io.StringIO(), io.StringIO()
    render_mailq(listed, mailq)
    render_json(listed, js)
    return mailq.getvalue(), js.getvalue()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from fastpost.mail.queue.store import QueueSettings, QueueStore

    store = QueueStore.open(settings=QueueSettings(str(tmp_path_factory.mktemp("big") / "queue")))
    small = fill(store, 3, rcpts=["one@small.example", "two@small.example"])
    (qid,) = fill(store, 1, rcpts=[f"recipient{i}@d{i % 7}.example" for i in range(N)])
    rcpts = store.recipients(qid)
    with store.edit() as ed:
        # some delivered, some deferred with a log (one entry names a recipient twice,
        # one names a recipient the message no longer has)
        ed.mark_recipients(qid, [r.offset for r in rcpts[100:200]], ix.RCPT_DONE)
        ed.mark_recipients(qid, [r.offset for r in rcpts[1000:1000 + DEFERRED_LOGGED]],
                           ix.RCPT_DEFERRED)
        ed.set_state(qid, ix.DEFERRED, next_retry=2e9)
        for r in rcpts[1000:1000 + DEFERRED_LOGGED]:
            ed.append_log(qid, "defer", b"recipient=%s\noffset=%d\nstatus=4.4.1\n"
                          b"reason=connect to %s: Connection refused\n"
                          % (r.address.encode(), r.offset, r.domain.encode()))
        ed.append_log(qid, "defer", b"recipient=gone@elsewhere.example\nstatus=4.0.0\n"
                      b"reason=it went away\n")
    yield store, qid, small
    store.close()


def test_the_streamed_listing_is_the_former_listing(big):
    store, qid, small = big
    mailq, js = io.StringIO(), io.StringIO()
    assert write_mailq(store, mailq) == 4
    assert write_json(store, js) == 4
    assert (mailq.getvalue(), js.getvalue()) == _reference_listing(store)
    objs = [json.loads(line) for line in js.getvalue().splitlines()]
    one = next(o for o in objs if o["queue_id"] == qid)
    # the log's entries first (in log order), then the rest of the undelivered ones
    assert len(one["recipients"]) == N - 100 + 1
    assert one["recipients"][0] == {"address": "recipient1000@d6.example",
                                    "delay_reason": "connect to d6.example: Connection refused"}
    assert one["recipients"][DEFERRED_LOGGED]["address"] == "gone@elsewhere.example"
    assert "delay_reason" not in one["recipients"][DEFERRED_LOGGED + 1]
    assert "recipient150@" not in js.getvalue()  # delivered: not listed
    # json_object (one string) and the streamed writer agree
    e = next(x for x in entries(store) if x.queue_id == small[0])
    assert json_object(e) in js.getvalue().splitlines()


def test_showq_parts_carry_the_listing_in_bounded_pieces(big):
    store, qid, _ = big
    parts = [p for e in entries(store) for p in e.to_parts()]
    assert max(len(p["recipients"]) for p in parts) == 1000
    firsts = [p for p in parts if not p.get("continued")]
    assert len(firsts) == 4
    assert sum(1 for p in parts if p.get("queue_id") == qid) == (N - 100 + 1 + 999) // 1000
    direct, through = io.StringIO(), io.StringIO()
    write_mailq(store, direct)
    render_mailq(from_parts(iter(parts)), through)
    assert through.getvalue() == direct.getvalue()
    # a stream that stops inside a message's recipients is an error, not a short list
    cut = [p for p in parts if not (p.get("queue_id") == qid and p.get("continued"))]
    from fastpost.mail.queue.showq import ListingError
    with pytest.raises(ListingError):
        render_json(from_parts(iter(cut)), Sink())


def test_listing_selecting_and_exporting_hold_no_recipient_list(big):
    store, qid, _ = big
    # what the former code held: the message's whole recipient list
    whole, info = heap_peak(lambda: store.get(qid))
    assert len(info.recipients) == N
    assert whole > 3 << 20, whole  # about 3.3 MiB of RcptInfo objects for 20,000

    def direct():
        mailq, js = Sink(), Sink()
        write_mailq(store, mailq)
        write_json(store, js)
        return mailq.lines, js.lines

    def through_parts():  # showq's side and the client's, here in one process
        out = Sink()
        render_json(from_parts(p for e in entries(store) for p in e.to_parts()), out)
        return out.lines

    direct(), through_parts()  # once before counting: imports and caches are not held
    peak, lines = heap_peak(direct)
    assert lines[0] > N and lines[1] == 4
    assert peak < 512 << 10, peak  # a chunk of 512 recipients at a time
    peak, lines = heap_peak(through_parts)
    assert lines == 4
    # two parts of 1,000 recipients as attribute lists: a constant, whatever N is
    assert peak < 1536 << 10, peak

    def selecting():
        found = []
        for spec in ({"recipient": "recipient19999@d0.example"}, {"domain": "d3.example"},
                     {"recipient": "nobody@nowhere.example"}, {"reason": "went away"}):
            sel = Selector()
            for k, v in spec.items():
                setattr(sel, k, v)
            found.append([i.queue_id for i in store.messages(recipients=False)
                          if sel.matches(store, i, 2e9)])
        return found

    selecting()
    peak, found = heap_peak(selecting)
    assert found == [[qid], [qid], [], [qid]]
    assert peak < 512 << 10, peak

    size = len(store.read(qid))
    peak, data = heap_peak(lambda: store.export(qid))
    assert len(data) == size
    assert sum(1 for r in parse(data).recipients if r.done) == 100
    # the file itself (as read, a copy being marked, the marked result) and 8 bytes
    # per done offset: proportional to the file, no recipient objects
    assert peak < 3 * size + (256 << 10), (peak, size)
