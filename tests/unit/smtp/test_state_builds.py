"""ServerState (fastpost.smtp._state_py), compiled and interpreted: the same transitions.

- every reply transition, verb by verb, as docs/smtp.md states them, in both builds;
- random sequences of replies (verb, code, BDAT LAST) applied to both builds leave the
  same fields, and check() / in_transaction() / no_rcpt_reply() answer the same after
  each step (the markers compared by what they stand for: each build has its own);
- the selector (fastpost.smtp.state) hands out one module's names.
"""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.smtp import _state_py as ref
from fastpost.smtp import state as selected

comp = importlib.import_module("fastpost.smtp._state_c")
BUILDS = [ref, comp]
FIELDS = ("phase", "helo", "esmtp", "tls", "authenticated", "rcpt_accepted", "rcpt_tried",
          "bdat_first")
VERBS = sorted(ref.REPLY_TRANSITIONS) + ["QUIT", "DATA", "NOOP", "VRFY"]


def _fields(s):
    return tuple(getattr(s, f) for f in FIELDS)


def _rule(mod, rule):
    if rule is mod._NO_RCPT:
        return "no-rcpt"
    if rule is mod._DISCARD:
        return "discard"
    return rule


def test_selector_is_one_module():
    impl = selected._impl
    assert selected.SEQUENCE is impl.SEQUENCE and selected._NO_RCPT is impl._NO_RCPT
    assert selected._DISCARD is impl._DISCARD and selected.ServerState is impl.ServerState
    assert isinstance(selected.ServerState(), impl.ServerState)


def test_compiled_state_is_a_cdef_class():
    s = comp.ServerState()
    with pytest.raises(AttributeError):
        s.no_such_field = 1
    with pytest.raises(TypeError):
        s.rcpt_tried = "x"  # a C long field


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(VERBS),
                          st.sampled_from([220, 235, 250, 334, 354, 421, 451, 503, 535, 550]),
                          st.booleans()), max_size=25),
       st.booleans())
def test_builds_agree_on_reply_sequences(steps, reset_session):
    a, b = ref.ServerState(), comp.ServerState()
    for s in (a, b):
        s.helo, s.esmtp, s.tls = "client.example.com", True, True
    for verb, code, last in steps:
        a.on_reply(verb, code, last)
        b.on_reply(verb, code, last)
        assert _fields(a) == _fields(b)
        assert a.in_transaction() == b.in_transaction()
        assert a.no_rcpt_reply() == b.no_rcpt_reply()
        for cmd in ("MAIL", "RCPT", "DATA", "BDAT"):
            assert _rule(ref, a.check(cmd)) == _rule(comp, b.check(cmd))
    if reset_session:
        a.reset_session()
        b.reset_session()
    else:
        a.reset_transaction()
        b.reset_transaction()
    assert _fields(a) == _fields(b)


@pytest.mark.parametrize("mod", BUILDS, ids=["reference", "compiled"])
def test_on_reply_transitions(mod):
    state = mod
    s = mod.ServerState()
    s.on_reply("MAIL", 550)
    assert s.phase == state.READY
    s.on_reply("MAIL", 250)
    assert s.phase == state.MAIL
    s.on_reply("RCPT", 554)
    assert (s.phase, s.rcpt_tried, s.rcpt_accepted) == (state.MAIL, 1, 0)
    s.on_reply("RCPT", 250)
    assert (s.phase, s.rcpt_tried, s.rcpt_accepted) == (state.RCPT, 2, 1)
    s.on_reply("QUIT", 221)  # no transition
    assert s.phase == state.RCPT
    s.on_reply("EOD", 451)  # the end of data ends the transaction whatever it says
    assert (s.phase, s.rcpt_tried, s.rcpt_accepted) == (state.READY, 0, 0)
    for verb in ("HELO", "EHLO", "RSET"):
        s.phase = state.RCPT
        s.on_reply(verb, 501)
        assert s.phase == state.RCPT
        s.on_reply(verb, 250)
        assert s.phase == state.READY
    s.phase = state.RCPT
    s.on_reply("CHUNK", 250)
    assert (s.phase, s.bdat_first) == (state.BDAT_OPEN, False)
    s.on_reply("CHUNK", 552)
    assert s.phase == state.BDAT_FAILED
    s.on_reply("CHUNK", 250, True)
    assert (s.phase, s.bdat_first) == (state.READY, True)
    s.on_reply("BDAT-ERROR", 503)
    assert s.phase == state.BDAT_FAILED_IDLE
    s.phase = state.RCPT
    s.on_reply("BDAT-ERROR", 503)
    assert s.phase == state.BDAT_FAILED
    s.on_reply("BDAT-ERROR", 503, True)
    assert s.phase == state.READY
    s.on_reply("AUTH", 535)
    assert not s.authenticated
    s.on_reply("AUTH", 235)
    assert s.authenticated
    s.helo, s.esmtp = "x", True
    s.on_reply("XCLIENT", 550)
    assert s.authenticated and s.helo == "x"
    s.on_reply("XCLIENT", 220)
    assert (s.authenticated, s.helo, s.esmtp) == (False, None, False)
    assert state.REPLY_TRANSITIONS == {"HELO", "EHLO", "MAIL", "RCPT", "EOD", "CHUNK",
                                       "BDAT-ERROR", "RSET", "AUTH", "XCLIENT"}


