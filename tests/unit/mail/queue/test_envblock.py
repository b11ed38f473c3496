"""QueueFileBuilder.plain_envelope (the envelope kernel) against the builder's own calls.

The general cleanup path writes a plain message's envelope with time(), envelope_many(),
attr(), add_attrs() and one envelope() call per recipient record; plain_envelope must
give the same bytes and the same bookkeeping (arrival, sender, attributes, recipients
with their offsets), with the compiled kernel and with its reference.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import _envblock_c, _envblock_py
from fastpost.mail import rectype as R
from fastpost.mail.queue.message import QueueFileBuilder

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", "a@example.org", "caf\udce9", "x=y"])
name = st.text("abcdefghij_", min_size=1, max_size=8) | st.sampled_from(
    ["dsn_orig_rcptx", "dsn_orig_rcp", "notify_flagz", "notify_flags_", "caf\xe9", "x\xe9y"])


def by_calls(arrival, filt, ident, ctx_local, envid, ret, fullname, sender, encoding, attrs,
             rcpts, orig_rcpt, dup_limit, dups):
    """What fastpost.daemons.cleanup.state's general path does (its records, in order)."""
    q = QueueFileBuilder(2048)
    recs = q.time_records(arrival)
    if filt:
        recs.append((R.REC_TYPE_FILT, filt))
    if ident:
        recs.append((R.REC_TYPE_ATTR, f"log_ident={ident}"))
    recs.append((R.REC_TYPE_ATTR, b"rewrite_context=local" if ctx_local else b"rewrite_context=remote"))
    if envid:
        recs.append((R.REC_TYPE_ATTR, f"envelope_id={envid}"))
    if ret:
        recs.append((R.REC_TYPE_ATTR, f"ret_flags={ret}"))
    if fullname is not None:
        recs.append((R.REC_TYPE_FULL, fullname))
    recs.append((R.REC_TYPE_FROM, sender))
    q.envelope_many(recs)
    if encoding:
        q.attr("encoding", encoding)
    q.add_attrs(attrs)
    qmgr = count = 0
    for key in rcpts:
        dsn_orcpt, notify, orig, address = key
        if key in dups:
            continue
        if len(dups) < dup_limit:
            dups.add(key)
        if notify:
            q.envelope(R.REC_TYPE_ATTR, f"notify_flags={notify}")
            qmgr |= (notify & 0xF) << 1
        if dsn_orcpt:
            q.envelope(R.REC_TYPE_ATTR, f"dsn_orig_rcpt={dsn_orcpt}")
        if orig_rcpt:
            q.envelope(R.REC_TYPE_ORCP, orig)
        q.envelope(R.REC_TYPE_RCPT, address)
        count += 1
    return q, (qmgr, count)


def state(q: QueueFileBuilder):
    return (b"".join(q.chunks), q.offset, q.arrival, q.sender, list(q.attrs.items()),
            q.recipients)


args = st.tuples(
    st.floats(0, 4e9, allow_nan=False) | st.sampled_from([1_700_000_000.9999996, 0.5, 1.0000005]),
    st.one_of(st.none(), text), st.one_of(st.none(), st.just("4A7B1C2D3E")), st.booleans(),
    st.one_of(st.none(), text), st.one_of(st.none(), st.sampled_from(["full", "hdrs"])),
    st.one_of(st.none(), text), text, st.sampled_from([None, "", "8bit", "7bit"]),
    st.lists(st.tuples(name, text).map(list), max_size=5),
    st.lists(st.tuples(st.sampled_from(["", "rfc822;a@b"]), st.sampled_from([0, 1, 2, 6, 16, 31]),
                       text, st.sampled_from(["a@example.org", "b@x", "", "c\udcff@d"])), max_size=5),
    st.booleans(), st.integers(0, 3),
)


@settings(max_examples=400, deadline=None)
@given(a=args)
@pytest.mark.parametrize("kernel", [_envblock_c, _envblock_py])
def test_plain_envelope_is_the_builder_calls(kernel, a):
    want, want_ret = by_calls(*a, set())
    got = QueueFileBuilder(2048)
    home = sys.modules[QueueFileBuilder.__module__]  # the builders' module (_builder_c)
    saved = home._envblock
    home._envblock = kernel
    try:
        ret = got.plain_envelope(*a, set())
    finally:
        home._envblock = saved
    assert ret == want_ret
    assert state(got) == state(want)


@pytest.mark.parametrize("attrs, rcpts", [
    ([["a=b", "c"]], []),
    ([["notify_flags", "2"]], []),
    ([["dsn_orig_rcpt", "x"]], []),
    ([["ok", "v"], ["caf\xe9=", "x"]], []),
    ([[b"n", "v"]], []),
    ([["n", 1]], []),
    ([], [("", -1, "a", "a")]),
])
@pytest.mark.parametrize("kernel", [_envblock_c, _envblock_py])
def test_declines_what_the_builder_treats_otherwise(kernel, attrs, rcpts):
    dups: set = set()
    assert kernel.envelope_block(1.0, None, None, True, None, None, None, "", None, attrs, rcpts,
                                 True, 10, dups, 0) is None
    assert not dups


# -- plain_content: the content, the extracted encoding and the end in one call ----------

content_text = st.lists(st.sampled_from([b"line\r\n", b"x" * 70 + b"\n", b"", b"\r\n", b"no eol",
                                         b"\xe9t\xe9\n", b"y" * 150, b"\r", b"z" * 64 + b"\r\n"]),
                        max_size=8).map(b"".join)


def _enveloped(limit: int) -> QueueFileBuilder:
    q = QueueFileBuilder(limit)
    q.time(1_700_000_000.25)
    q.set_sender("s@example.org")
    q.add_recipient("r@example.net", "r@example.net")
    return q


@settings(max_examples=300, deadline=None)
@given(text=content_text, encoding=st.sampled_from([None, "", "8bit", "7bit", "a=b", "caf\xe9"]),
       line_limit=st.sampled_from([1, 5, 64, 2048]))
def test_plain_content_is_the_builder_calls(text, encoding, line_limit):
    ref = _enveloped(line_limit)
    ref.write(text)
    if encoding:
        ref.extracted(R.REC_TYPE_ATTR, f"encoding={encoding}")
    ref.finish()
    q = _enveloped(line_limit)
    assert q.plain_content(text, encoding, 1 << 30) is True
    assert state(q) == state(ref)
    assert q.content_length == ref.content_length
    assert q.build() == ref.build()


def test_plain_content_limit_and_order():
    q = _enveloped(2048)
    assert q.plain_content(b"x" * 100 + b"\n", None, 50) is False  # past the limit: text only
    assert q.section == q.CONTENT and q.xtra_offset == 0
    q = _enveloped(2048)
    q.write(b"text\n")
    with pytest.raises(ValueError):
        q.plain_content(b"more\n", None, 1 << 30)  # not right after the envelope
    q = QueueFileBuilder()
    q.time(1.0)
    before = list(q.chunks)
    with pytest.raises(ValueError):
        q.plain_content(b"text\n", None, 1 << 30)  # no sender: refused before anything is added
    assert q.section == q.ENVELOPE and q.chunks == before
