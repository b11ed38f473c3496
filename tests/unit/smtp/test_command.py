"""The common-command kernel and the compiled server core, against their references.

Three layers: (1) _command_c and _command_py give the same answer for any input;
(2) what the kernel accepts, the general grammar parses to the same address, name
and size; (3) four ServerConnections - the compiled class (_server_c) and its
reference (_server_py), each with the fast path and with it switched off - driven
by the same generated command sequences and the same generated replies, produce the
same events, reply bytes, notes and protocol state at every step.
"""

import contextlib
import dataclasses
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastpost.smtp import _command_c as C
from fastpost.smtp import _command_py as P
from fastpost.smtp import events as ev
from fastpost.smtp import grammar, replies
from fastpost.smtp import _server_c, _server_py
from fastpost.smtp import _server_py as core
from fastpost.smtp.errors import RemoteProtocolError
from fastpost.smtp.events import NEED_DATA, PAUSED
from fastpost.smtp.replies import Reply

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]

VERBS = [b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"QUIT", b"VRFY",
         b"HELP", b"MAI", b"MAILX", b""]

# Pieces an argument is made of: the simple forms and everything near them.
PIECES = [b"FROM:", b"from:", b"TO:", b"to:", b"FROM: ", b"<", b">", b"@", b".", b"a", b"Z",
          b"0", b"9", b"-", b"_", b"+", b"'", b" ", b"\t", b"SIZE=", b"size=", b"12",
          b"BODY=8BITMIME", b"\"", b"[", b"]", b"\xc3\xa9", b"\x00", b"\x7f", b",", b":",
          b"example.com", b"x" * 64, b"1.2.3.4", b"IPv6:", b"=", b"\r"]
args_st = st.lists(st.sampled_from(PIECES), max_size=14).map(b"".join) | st.binary(max_size=30)


@pytest.mark.parametrize("impl", IMPLS)
def test_simple_forms(impl):
    q = impl.quick_command
    assert q(b"EHLO", b"client.example") == (impl.EHLO, "client.example", -1)
    assert q(b"HELO", b"[1.2.3.4]") == (impl.HELO, "[1.2.3.4]", -1)
    assert q(b"MAIL", b"FROM:<a.b+c@example.com>") == (impl.MAIL, "a.b+c@example.com", -1)
    assert q(b"MAIL", b"from:<a@b.c.> Size=1024") == (impl.MAIL, "a@b.c.", 1024)
    assert q(b"RCPT", b"To:<x_y@mail-1.example>") == (impl.RCPT, "x_y@mail-1.example", -1)
    for verb, kind in ((b"DATA", impl.DATA), (b"RSET", impl.RSET), (b"NOOP", impl.NOOP),
                       (b"QUIT", impl.QUIT)):
        assert q(verb, b"") == (kind, "", -1)
        assert q(verb, b"x") is None
    for verb, args in ((b"EHLO", b""), (b"EHLO", b"a b"), (b"MAIL", b"FROM:<>"),
                       (b"MAIL", b"FROM: <a@b.c>"), (b"MAIL", b"FROM:<a@b.c> BODY=8BITMIME"),
                       (b"MAIL", b"FROM:<a@b.c> SIZE="), (b"MAIL", b"FROM:<a@b.c> SIZE=1x"),
                       (b"MAIL", b"FROM:<a@b.c>  SIZE=1"), (b"RCPT", b"TO:<a@1.2.3.4>"),
                       (b"RCPT", b"TO:<a@-b.c>"), (b"RCPT", b"TO:<a..b@c.d>"),
                       (b"RCPT", b"TO:<.a@c.d>"), (b"RCPT", b"TO:<a@[1.2.3.4]>"),
                       (b"RCPT", b"TO:<@r:a@c.d>"), (b"RCPT", b"TO:<\"a\"@c.d>"),
                       (b"RCPT", b"TO:<a@" + b"x" * 64 + b".d>"), (b"RCPT", b"TO:<a@c..d>"),
                       (b"RCPT", b"TO:<postmaster>"), (b"VRFY", b"a"), (b"MAIL", b"FROM:<a@b.c>SIZE=1")):
        assert q(verb, args) is None, (verb, args)


@settings(max_examples=1500, deadline=None)
@given(verb=st.sampled_from(VERBS), args=args_st)
def test_compiled_matches_reference(verb, args):
    assert C.quick_command(verb, args) == P.quick_command(verb, args)
    assert C.quick_command(memoryview(verb), bytearray(args)) == P.quick_command(verb, args)


@settings(max_examples=1500, deadline=None)
@given(verb=st.sampled_from([b"MAIL", b"RCPT", b"EHLO", b"HELO"]), args=args_st)
def test_accepted_forms_parse_the_same_in_the_grammar(verb, args):
    got = P.quick_command(verb, args)
    if got is None:
        return
    kind, text, size = got
    line = args.decode("ascii")
    if verb in (b"EHLO", b"HELO"):
        assert text == line.strip(" \t") and text
    elif verb == b"MAIL":
        path, tokens = grammar.split_mail_from(line)
        params = grammar.parse_mail_params(tokens)
        assert grammar.parse_path(path, replies.BAD_SENDER, utf8=params.smtputf8) == text
        assert params.size == (None if size < 0 else size)
        assert (params.body, params.smtputf8, params.ret, params.envid) == (None, False, None, None)
    else:
        path, tokens = grammar.split_rcpt_to(line)
        params = grammar.parse_rcpt_params(tokens)
        assert grammar.parse_path(path, replies.BAD_RECIPIENT, utf8=True,
                                  allow_empty=False) == text
        assert (params.notify, params.orcpt) == (None, None)


# ------------------------------------------------------------ the core, both paths

LINES = [b"EHLO client.example\r\n", b"HELO c\r\n", b"EHLO\r\n", b"MAIL FROM:<s@example.com>\r\n",
         b"MAIL FROM:<s@example.com> SIZE=100\r\n", b"MAIL FROM:<s@example.com> SIZE=99999\r\n",
         b"MAIL FROM:<>\r\n", b"mail from:<s@x.y>\r\n", b"RCPT TO:<r@example.net>\r\n",
         b"RCPT TO:<r@1.2.3.4>\r\n", b"rcpt to:<r2@example.net>\r\n", b"DATA\r\n", b"DATA x\r\n",
         b"RSET\r\n", b"NOOP\r\n", b"NOOP x\r\n", b"QUIT\r\n", b"VRFY a\r\n", b"MAIL FROM:<a@b.c>\n",
         b"Subject: x\r\n.\r\n", b"MAIL FROM:<" + b"a" * 3000 + b"@b.c>\r\n",
         # the rest of the protocol: the compiled core runs these too
         b"BDAT 5\r\nabcde", b"BDAT 0 LAST\r\n", b"BDAT 3 LAST\r\nxyz", b"BDAT x\r\n",
         b"AUTH PLAIN dGVzdA==\r\n", b"AUTH LOGIN\r\n", b"dGVzdA==\r\n", b"*\r\n",
         b"STARTTLS\r\n", b"STARTTLS\r\nEHLO x\r\n", b"XCLIENT NAME=x.example\r\n", b"XFORWARD ADDR=1.2.3.4\r\n",
         b"ETRN example.com\r\n", b"HELP\r\n", b"GET / HTTP/1.1\r\n", b"\r\n", b"VRFY <a@b.c>\r\n",
         b"MAIL FROM:<s@example.com> BODY=8BITMIME SMTPUTF8\r\n", b"RCPT TO:<r@x.y> NOTIFY=NEVER\r\n",
         b"EHLO caf\xc3\xa9\r\n", b"NOOP \xff\r\n", b"x.\r\n..y\r\n", b"", b"DATA\r\nbody\r\n.\r\nQUIT\r\n"]

#: The lines of an ordinary transaction: a script starts with some of them.
COMMON = [b"EHLO client.example\r\n", b"MAIL FROM:<s@example.com>\r\n",
          b"RCPT TO:<r@example.net>\r\n", b"DATA\r\n", b"Subject: x\r\n.\r\n"]

OPTIONS = [core.ServerOptions(), core.ServerOptions(helo_required=True, recipient_limit=1),
           core.ServerOptions(strict_rfc821=True, message_size_limit=1000),
           core.ServerOptions(tls_required=True, bare_lf="note"),
           core.ServerOptions(access_denied=Reply(503, "Error: access denied", "5.7.0")),
           core.ServerOptions(auth=True, xclient=True, xforward=True, starttls=True,
                              bare_lf="reject", smtputf8=False, soft_bounce=True),
           core.ServerOptions(chunking=False, vrfy=False, line_length_limit=40)]

ANSWERS = {  # event type -> (accepting reply, refusing reply)
    ev.Helo: (Reply(250, "h"), Reply(550, "no")), ev.Ehlo: (Reply(250, ["h", "PIPELINING"]),
                                                           Reply(550, "no")),
    ev.Mail: (replies.MAIL_OK, Reply(451, "later", "4.3.0")),
    ev.Rcpt: (replies.RCPT_OK, Reply(554, "no", "5.7.1")),
    ev.Data: (replies.START_DATA, Reply(554, "no", "5.5.1")),
    ev.EndOfData: (replies.queued("ABC"), Reply(451, "later", "4.3.0")),
    ev.Auth: (Reply(334, ""), Reply(535, "no", "5.7.8")),
    ev.AuthResponse: (replies.AUTH_OK, Reply(334, "")),
    ev.StartTls: (replies.START_TLS, Reply(454, "no", "4.7.0")),
    ev.Xclient: (Reply(220, "h"), Reply(550, "no")),
    ev.ChunkEnd: (replies.bdat_ok(5), Reply(451, "later", "4.3.0")),
}


class _NoQuick:
    """Stands in for fastpost.smtp.command: the fast path never answers."""

    @staticmethod
    def quick_command(verb, args):
        return None


def _describe(event):
    if isinstance(event, ev.Event):
        return (type(event).__name__, tuple(getattr(event, f) for f in event.__slots__))
    return event


@contextlib.contextmanager
def _fast_path(impl, on: bool):
    """The common-command fast path on or off: the reference's ``quick`` module
    replaced; the compiled core's switch (it calls the kernel at C level)."""
    if impl is _server_c:
        was = impl.use_fast_path(on)
        try:
            yield
        finally:
            impl.use_fast_path(was)
    else:
        with mock.patch.object(impl, "quick", impl.quick if on else _NoQuick):
            yield


def _drive(options, script, refusals, quick: bool, impl=_server_py):
    """Run the script (one piece of input per step); return everything observable."""
    conn = impl.ServerConnection(options)
    seen = [conn.send(replies.greeting("h ESMTP"))]
    answers = iter(refusals)
    with _fast_path(impl, quick):
        for data in script:
            conn.receive_data(data)
            while not conn.closed:
                try:
                    event = conn.next_event()
                except RemoteProtocolError as err:
                    seen.append(("error", err.verb, err.kind, err.detail, err.fatal))
                    seen.append(conn.send(err.reply, close=err.fatal))
                    continue
                seen.append(_describe(event))
                if event is NEED_DATA or event is PAUSED:
                    break
                pair = ANSWERS.get(type(event))
                if pair is None:
                    if not event.needs_reply:
                        continue
                    pair = (replies.BYE if type(event) is ev.Quit else replies.OK,) * 2
                seen.append(conn.send(pair[1] if next(answers, False) else pair[0]))
            st_ = conn.state
            seen.append((conn.input, st_.phase, st_.helo, st_.esmtp, st_.rcpt_accepted,
                         st_.rcpt_tried, conn.awaiting_reply, tuple(conn.take_notes())))
    return seen


@settings(max_examples=800, deadline=None)
@given(options=st.sampled_from(OPTIONS),
       script=st.tuples(st.integers(0, len(COMMON)),
                        st.lists(st.lists(st.sampled_from(COMMON + LINES), min_size=1,
                                          max_size=3).map(b"".join), min_size=1, max_size=10))
       .map(lambda t: COMMON[:t[0]] + t[1]),
       refusals=st.lists(st.sampled_from([False, False, False, True]), max_size=20))
# Rare paths, always run: plaintext pipelined after STARTTLS, a SASL exchange, BDAT.
@example(options=OPTIONS[5], script=[b"STARTTLS\r\nEHLO x\r\n"], refusals=[])
@example(options=OPTIONS[5], script=[b"EHLO c\r\n", b"AUTH LOGIN\r\n", b"dGVzdA==\r\n",
                                     b"MAIL FROM:<a@b.c>\r\n"], refusals=[])
@example(options=OPTIONS[0], script=COMMON[:3] + [b"BDAT 5\r\nabcde", b"BDAT 0 LAST\r\n"],
         refusals=[])
def test_fast_path_and_general_path_agree(options, script, refusals):
    reference = _drive(options, script, refusals, False)
    assert _drive(options, script, refusals, True) == reference
    assert _drive(options, script, refusals, True, _server_c) == reference
    assert _drive(options, script, refusals, False, _server_c) == reference


@pytest.mark.parametrize("core", [pytest.param(_server_c, id="c"), pytest.param(_server_py, id="py")])
def test_fast_path_is_taken(core):
    """The common transaction goes through the kernel (not only the general parser)."""
    calls = []
    if core is _server_c:
        # The compiled core calls the kernel at C level: count what it answered.
        before = core.fast_path_taken()
        _session_through(core)
        assert core.fast_path_taken() - before == 4
        return
    real = core.quick.quick_command

    class Counting:
        @staticmethod
        def quick_command(verb, args):
            got = real(verb, args)
            calls.append(got is not None)
            return got

    with mock.patch.object(core, "quick", Counting):
        _session_through(core)
    assert calls == [True, True, True, True]


def _session_through(core):
    conn = core.ServerConnection(core.ServerOptions())
    conn.send(replies.greeting("h"))
    for line, reply in ((b"EHLO c.example\r\n", Reply(250, "h")),
                        (b"MAIL FROM:<a@b.example>\r\n", replies.MAIL_OK),
                        (b"RCPT TO:<c@d.example>\r\n", replies.RCPT_OK),
                        (b"QUIT\r\n", replies.BYE)):
        conn.receive_data(line)
        conn.next_event()
        conn.send(reply)


@pytest.mark.parametrize("core", [pytest.param(_server_c, id="c"), pytest.param(_server_py, id="py")])
@settings(max_examples=200, deadline=None)
@given(script=st.lists(st.sampled_from(COMMON + LINES), min_size=1, max_size=8)
       .map(lambda parts: b"".join(parts)),
       cut=st.integers(1, 64))
def test_receive_from_is_receive_data(core, script, cut):
    """receive_from(shared buffer, n) sees what receive_data(bytes) sees: the session's
    read path (one buffer for every connection, reused between reads)."""
    shared = bytearray(64)

    def play(feed):
        conn = core.ServerConnection(core.ServerOptions())
        seen = [conn.send(replies.greeting("h"))]
        for at in range(0, len(script), cut):
            piece = script[at:at + cut]
            feed(conn, piece)
            while not conn.closed:
                try:
                    event = conn.next_event()
                except RemoteProtocolError as err:
                    seen.append(("error", err.verb, err.kind))
                    seen.append(conn.send(err.reply, close=err.fatal))
                    continue
                seen.append(_describe(event))
                if event is NEED_DATA or event is PAUSED:
                    break
                if event.needs_reply:
                    pair = ANSWERS.get(type(event), (replies.OK,))
                    seen.append(conn.send(replies.BYE if type(event) is ev.Quit else pair[0]))
        feed(conn, b"")  # the peer closed: nbytes 0 is the end, as b"" is
        seen.append((conn.next_event() if not conn.closed else None, conn.input))
        return seen

    def from_buffer(conn, piece):
        shared[:len(piece)] = piece
        shared[len(piece):] = b"\0" * (len(shared) - len(piece))  # stale bytes differ
        conn.receive_from(shared, len(piece))

    assert play(from_buffer) == play(lambda conn, piece: conn.receive_data(piece))


def _options_changed_midway(impl, change):
    """A session whose options are replaced after EHLO (as smtpd does after XCLIENT
    or an access refusal): what the client sees of each command after that."""
    conn = impl.ServerConnection(impl.ServerOptions())
    seen = [conn.send(replies.greeting("h"))]
    lines = (b"EHLO c.example\r\n", b"MAIL FROM:<a@b.example> SIZE=500\r\n",
             b"RCPT TO:<c@d.example>\r\n", b"RCPT TO:<e@f.example>\r\n",
             b"RCPT TO:g@h.example\r\n", b"QUIT\r\n")
    for i, line in enumerate(lines):
        if i == 1:
            conn.options = dataclasses.replace(conn.options, **change)
        conn.receive_data(line)
        try:
            event = conn.next_event()
        except RemoteProtocolError as err:
            seen.append(("error", err.verb, conn.send(err.reply, close=err.fatal)))
            continue
        seen.append(_describe(event))
        reply = {ev.Mail: replies.MAIL_OK, ev.Rcpt: replies.RCPT_OK,
                 ev.Quit: replies.BYE}.get(type(event), Reply(250, "h"))
        seen.append(conn.send(reply))
        if conn.closed:
            break
    return seen


@pytest.mark.parametrize("change", [
    {"access_denied": Reply(554, "Access denied", "5.7.1")},
    {"strict_rfc821": True}, {"recipient_limit": 1}, {"message_size_limit": 100},
    {"helo_required": True}, {"soft_bounce": True}, {}])
def test_options_assigned_later_take_effect(change):
    """ServerConnection.options assigned during a session: the compiled core's copies
    of the fields its quick path reads follow the new object, as the reference does."""
    reference = _options_changed_midway(_server_py, change)
    assert _options_changed_midway(_server_c, change) == reference
    if change and "helo_required" not in change and "soft_bounce" not in change:
        # (the others change what this session sees; helo_required and soft_bounce
        # only what it would after no EHLO or with a 5xx)
        assert reference != _options_changed_midway(_server_py, {})
