"""The builders' one source, run as Python (fastpost.mail.queue._builder_py) and
compiled (_builder_c): the same calls give the same records, fields and errors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import rectype as R
from fastpost.mail.queue import _builder_c, _builder_py
from fastpost.mail.queue import message as M

IMPLS = [_builder_c, _builder_py]

_envtypes = st.sampled_from([R.REC_TYPE_ATTR, R.REC_TYPE_FULL, R.REC_TYPE_FILT, R.REC_TYPE_TIME,
                             R.REC_TYPE_FROM, R.REC_TYPE_RCPT, R.REC_TYPE_ORCP, R.REC_TYPE_DSN_NOTIFY,
                             R.REC_TYPE_DSN_ORCPT, R.REC_TYPE_DONE, R.REC_TYPE_NORM])
_xtypes = st.sampled_from([R.REC_TYPE_RCPT, R.REC_TYPE_ATTR, R.REC_TYPE_ORCP, R.REC_TYPE_NORM])
_payloads = st.one_of(st.sampled_from(["a=b", "notify_flags=8", "dsn_orig_rcpt=rfc822;x@y", "12 34",
                                       "u@x", "7", "x"]),
                      st.text(max_size=20), st.binary(max_size=20))
_text = st.binary(max_size=300).map(lambda b: b.replace(b"\0", b""))
_step = st.one_of(
    st.tuples(st.just("envelope"), _envtypes, _payloads),
    st.tuples(st.just("attrs"), st.lists(st.tuples(st.sampled_from(["a", "b=c", "notify_flags", "x"]),
                                                   st.text(max_size=8)), max_size=3)),
    st.tuples(st.just("rcpt"), st.text(max_size=12), st.one_of(st.none(), st.text(max_size=8)),
              st.integers(0, 15)),
    st.tuples(st.just("write"), _text),
    st.tuples(st.just("content"), st.sampled_from([R.REC_TYPE_NORM, R.REC_TYPE_CONT, R.REC_TYPE_ATTR]),
              st.binary(max_size=20)),
    st.tuples(st.just("extracted"), _xtypes, _payloads),
    st.tuples(st.just("take"),),
)


def _run(impl, line_limit, when, steps, plain):
    """Apply ``steps`` to a QueueFileBuilder of ``impl``; what it did, step by step."""
    try:
        b = impl.QueueFileBuilder(line_limit)
    except ValueError as exc:
        return [("error", str(exc))]
    out = []
    taken = []
    b.time(when)
    b.set_sender("s@x")
    for step in steps:
        try:
            kind = step[0]
            if kind == "envelope":
                got = b.envelope(step[1], step[2])
            elif kind == "attrs":
                got = b.add_attrs(step[1])
            elif kind == "rcpt":
                got = b.add_recipient(step[1], step[2], dsn_orcpt=step[2], dsn_notify=step[3])
            elif kind == "write":
                got = b.write(step[1])
            elif kind == "content":
                got = b.content_record(step[1], step[2])
            elif kind == "extracted":
                got = b.extracted(step[1], step[2])
            else:
                taken.extend(b.take_chunks())
                got = None
            out.append(("ok", got, b.offset, b.section, b.content_length))
        except (ValueError, M.CorruptQueueFile) as exc:
            out.append(("error", type(exc), str(exc)))
    try:
        if plain is not None:
            out.append(("plain", b.plain_content(plain, "8bit", 1 << 20)))
        b.finish()
    except ValueError as exc:  # plain_content after the envelope section
        out.append(("error", str(exc)))
    out.append((b"".join(taken + b.chunks), b.size_record(), b.attrs, b.arrival, b.sender,
                b.data_offset, b.xtra_offset, b.qmgr_flags, b.smtputf8, b._pending, b._pending_rcpt,
                [(r.offset, r.address, r.orig, r.dsn_orcpt, r.dsn_notify, r.done, r.extracted)
                 for r in b.recipients]))
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 80), st.floats(0, 4e9), st.lists(_step, max_size=10),
       st.one_of(st.none(), _text))
def test_queue_file_builder_both_builds(line_limit, when, steps, plain):
    assert _run(_builder_c, line_limit, when, steps, plain) == \
        _run(_builder_py, line_limit, when, steps, plain)


@pytest.mark.parametrize("impl", IMPLS)
def test_queue_file_builder_fields_and_limits(impl):
    with pytest.raises(ValueError):
        impl.QueueFileBuilder(0)
    b = impl.QueueFileBuilder()
    assert (b.line_limit, b.offset, b.section, b.arrival, b.sender, b.recipients, b.attrs,
            b.data_offset, b.xtra_offset, b.qmgr_flags, b.smtputf8) == \
        (2048, M.SIZE_RECORD_LEN, impl.QueueFileBuilder.ENVELOPE, None, None, [], {}, 0, 0, 0, 0)
    assert (impl.QueueFileBuilder.ENVELOPE, impl.QueueFileBuilder.CONTENT,
            impl.QueueFileBuilder.EXTRACTED, impl.QueueFileBuilder.DONE) == (0, 1, 2, 3)
    b.qmgr_flags = 4  # cleanup sets the flags from outside
    assert b.qmgr_flags == 4


class _Committer:
    """Enough of a Committer for the builder's own bookkeeping (no spill)."""


@pytest.mark.parametrize("impl", IMPLS)
def test_message_builder_states(impl):
    c = _Committer()
    mb = impl.MessageBuilder(c, "4AB2C", 2048, 1 << 20)
    assert (mb.committer, mb.queue_id, mb.spill_threshold, mb.large, mb.state) == (c, "4AB2C", 1 << 20, None, "open")
    assert isinstance(mb.records, impl.QueueFileBuilder)
    mb.time(1.5)
    mb.set_sender("s@x")
    mb.add_recipient("r@x", "o@x", dsn_notify=2)
    assert mb.write_nowait(b"Subject: x\n\nbody\n") is False
    assert mb.size == mb.records.offset and mb.content_length == mb.records.content_length
    assert mb.write_nowait(b"x\n" * (1 << 19)) is True  # past the threshold: the caller spills
    mb.abort()
    assert mb.state == "aborted"
    with pytest.raises(RuntimeError, match="4AB2C is aborted"):
        mb.write_nowait(b"more\n")
    mb.state = "open"  # the committer sets it back when a cancelled commit is dropped
    mb.write_nowait(b"again\n")


@pytest.mark.parametrize("impl", IMPLS)
def test_dropped_spilled_builder_removes_its_file(tmp_path, impl):
    """A spilled message's builder freed without commit or abort (its finalizer, compiled
    as the type's tp_finalize) removes the message's own file; a committed one keeps it."""
    import asyncio
    import gc
    import os
    import time

    from fastpost.mail.queue.store import QueueStore

    from .conftest import settings as store_settings

    st = QueueStore.open(settings=store_settings(tmp_path, large_message_size=8192))
    body = b"".join(b"line %06d of a large message\r\n" % i for i in range(1000))

    async def run():
        c = st.committer("t")
        kept = None
        for commit in (False, True):
            b = impl.MessageBuilder(c, c.new_queue_id(), 2048, 8192)
            b.time(time.time())
            b.set_sender("s@x")
            b.add_recipient("r@x")
            await b.write(body)
            assert b.large is not None
            if commit:
                kept = await c.commit(b)
            del b
            await c.run_io(int)  # the I/O thread lets go of its last job (the spill)
            gc.collect()
            if not commit:
                assert not [n for n in os.listdir(st.segment_dir) if n.endswith(".tmp")]
        await c.close()
        return kept

    qid = asyncio.run(run())
    assert st.read(qid)
    st.close()
