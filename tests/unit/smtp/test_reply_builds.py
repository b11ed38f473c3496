"""Reply: the compiled build (_reply_c, production's) against the reference (_reply_py).

fastpost.smtp._reply_py is the one source of both; compiled, Reply is a cdef class
whose fields the protocol core and smtpd's session read as C members. Both builds must
make the same fields and wire bytes for any code, text and enhanced code, compare and
hash alike, and the protocol core must send a reply of either build the same way.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpost.smtp import _reply_py, replies
from fastpost.smtp.server import ServerConnection

_reply_c = pytest.importorskip("fastpost.smtp._reply_c")

texts = st.text(max_size=40)
lines = st.one_of(texts, st.lists(texts, max_size=4), st.lists(texts, max_size=4).map(tuple))
enhanced = st.sampled_from(["", "2.0.0", "4.7.1", "5.1.1"])


def test_the_replies_module_hands_out_the_compiled_type():
    assert replies.Reply is _reply_c.Reply
    assert type(replies.OK) is _reply_c.Reply


@given(code=st.integers(200, 599), text=lines, enh=enhanced)
def test_both_builds_make_the_same_reply(code, text, enh):
    c, p = _reply_c.Reply(code, text, enh), _reply_py.Reply(code, text, enh)
    assert (c.code, c.enhanced, c.lines, c.wire) == (p.code, p.enhanced, p.lines, p.wire)
    assert (str(c), repr(c), c.text) == (str(p), repr(p), p.text)
    assert (c.is_positive, c.is_transient, c.is_permanent) == (
        p.is_positive, p.is_transient, p.is_permanent)
    assert hash(c) == hash(p) == hash(c.wire)
    assert c == _reply_c.Reply(code, text, enh)
    assert pickle.loads(pickle.dumps(c)) == c


@pytest.mark.parametrize("code", [199, 600, 0])
def test_a_bad_code_is_refused_by_both(code):
    for cls in (_reply_c.Reply, _reply_py.Reply):
        with pytest.raises(ValueError):
            cls(code, "x")


def test_the_protocol_core_sends_either_build_alike():
    # The core reads a compiled Reply's fields as C members and any other object's
    # through its attributes: the same bytes and the same state either way.
    for cls in (_reply_c.Reply, _reply_py.Reply):
        conn = ServerConnection()
        assert conn.send(cls(220, "fastpost ESMTP")) == b"220 fastpost ESMTP\r\n"
        conn.receive_data(b"QUIT\r\n")
        conn.next_event()
        assert conn.send(cls(221, "Bye", "2.0.0")) == b"221 2.0.0 Bye\r\n"
        assert conn.input == "CLOSED"
