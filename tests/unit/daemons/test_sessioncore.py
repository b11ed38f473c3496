"""The compiled SessionCore against the same source interpreted: generated sessions.

_session_py.py is one source built twice (Cython's pure-Python mode): the interpreter
imports it as _session_py, setup.py compiles it with ext/.../_session_c.pxd as
_session_c. SmtpdProtocol is SessionLogic over the compiled SessionCore; here the
same SessionLogic is put over the interpreted core (_session_py) and both are driven
with the same generated client input (pieces of every common command, pipelined or
split anywhere, junk, bare LF, overlong lines, unknown and non-SMTP commands, under
option sets that make the error limits and the recipient limit bite). After every
piece the reply bytes, the log lines, the counters, the per-command statistics and
whether the session closed must be the same. The sink is a small in-memory one that
answers at once or, as CleanupSink, in a later turn of the loop (both runs get the same
queue IDs); the policy is the real
RestrictionPolicy of the configuration.
"""

from __future__ import annotations

import asyncio
import pathlib
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastpost.daemons.smtpd import _session_py
from fastpost.daemons.smtpd.service import SmtpdService
from fastpost.daemons.smtpd.session import SessionLogic, SmtpdProtocol, _SLOTS
from fastpost.daemons.smtpd.sink import SinkError
from fastpost.daemons.smtpd.testing import CapturedLog
from fastpost.mail.config import Config
from fastpost.smtp import replies
from fastpost.util import log

pytest.importorskip("fastpost.daemons.smtpd._session_c")


class ReferenceProtocol(SessionLogic, _session_py.SessionCore, asyncio.BufferedProtocol):
    """The same session over the reference core."""

    __slots__ = _SLOTS + ("__dict__",)
    _handlers = {**SessionLogic._handlers, **_session_py.CORE_HANDLERS}


def test_production_class_uses_the_compiled_core():
    from fastpost.daemons.smtpd import _session_c

    assert issubclass(SmtpdProtocol, _session_c.SessionCore)
    assert issubclass(SmtpdProtocol, asyncio.BufferedProtocol)


def test_one_source_two_builds():
    """_session_c is _session_py.py compiled with its .pxd applied, _session_py the .py."""
    from fastpost.daemons.smtpd import _session_c

    assert _session_py.__file__.endswith("_session_py.py")
    assert _session_c.__file__.endswith(".so")
    # The .pxd was applied: its cdef methods are C functions, invisible from Python
    # (a .pxd that Cython ignored would leave them plain methods), and the fields are
    # typed (an int field refuses a str).
    pxd = pathlib.Path(__file__).resolve().parents[3] / "ext/fastpost/daemons/smtpd/_session_c.pxd"
    cdef_methods = set(re.findall(r"^    cdef (?:\w+ )?(\w+)\(self", pxd.read_text(), re.M))
    assert {"_c_run", "_c_flush", "_c_respond", "_idle"} <= cdef_methods
    for name in cdef_methods:
        assert not hasattr(_session_c.SessionCore, name), name
        assert callable(getattr(_session_py.SessionCore, name)), name
    core = _session_c.SessionCore.__new__(_session_c.SessionCore)
    with pytest.raises(TypeError):
        core.errors = "1"
    # The same Python-visible surface, and the sentinel compared by identity is one object.
    public = {n for n in dir(_session_py.SessionCore) if not n.startswith("__")}
    assert public - cdef_methods <= set(dir(_session_c.SessionCore))
    assert _session_c.HANGUP is _session_py.HANGUP
    assert set(_session_c.CORE_HANDLERS) == set(_session_py.CORE_HANDLERS)


class MemorySink:
    """Every message accepted, kept in memory (queue IDs counted). Modes: "now" (the
    answers at once), "deferred" (the queue ID as ``id_pending`` and the commit as a
    future, in a later turn of the loop), "direct" (as CleanupSink: a direct
    transaction that calls the session back in a later turn; sink.py), "refused"
    (direct, and the queue ID refused as by a full disk)."""

    def __init__(self, loop, mode="now"):
        self.n = 0
        self.messages = []
        self.loop = loop
        self.deferred = mode == "deferred"
        self.direct = mode in ("direct", "refused")
        self.refuse = mode == "refused"

    def begin(self, client, envelope):
        self.n += 1
        if self.direct:
            return DirectTxn(self, f"Q{self.n:05d}")
        return MemoryTxn(self, f"Q{self.n:05d}")


class MemoryTxn:
    def __init__(self, sink, queue_id):
        self.sink, self.queue_id, self.rcpts, self.parts = sink, queue_id, [], []
        if sink.deferred:
            self.id_pending = sink.loop.create_future()
            sink.loop.call_soon(self.id_pending.set_result, queue_id)

    def add_recipient(self, rcpt):
        self.rcpts.append(rcpt.address)

    def write(self, data):
        self.parts.append(bytes(data))

    def finish(self):
        self.sink.messages.append((self.queue_id, self.rcpts, b"".join(self.parts)))
        if not self.sink.deferred:
            return self.queue_id
        done = self.sink.loop.create_future()
        self.sink.loop.call_soon(done.set_result, self.queue_id)
        return done

    def abort(self):
        pass


class DirectTxn(MemoryTxn):
    """A direct transaction (sink.py): the session is called back, no futures."""

    direct = True

    def __init__(self, sink, queue_id):
        self.sink, self.queue_id, self.rcpts, self.parts = sink, "", [], []
        self.refusal = self.session = None
        sink.loop.call_soon(self._opened, queue_id)

    def _opened(self, queue_id):
        if self.sink.refuse:
            self.refusal = SinkError(replies.INSUFFICIENT_STORAGE)
        else:
            self.queue_id = queue_id
        if self.session is not None:
            self.session._sink_opened(self)

    def finish(self):
        self.sink.messages.append((self.queue_id, self.rcpts, b"".join(self.parts)))
        self.sink.loop.call_soon(self._answered)

    def _answered(self):
        session, self.session = self.session, None
        if session is not None:
            session._sink_answered(self, self.queue_id, None)

    def abort(self):
        self.session = None


class RecordingTransport(asyncio.Transport):
    """The client side: keeps what the session writes and how it controls reading."""

    def __init__(self, port):
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.paused = False
        self.extra = {"peername": ("127.0.0.1", port), "sockname": ("127.0.0.1", 25)}

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    def write(self, data):
        self.out += data

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True


MAIN_CF = """\
compatibility_level = 3.6
myhostname = fastpost.localdomain
mydomain = localdomain
mydestination =
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
local_recipient_maps =
smtpd_peername_lookup = no
smtputf8_enable = no
smtpd_error_sleep_time = 0
smtpd_forbid_unauth_pipelining = no
"""

OPTION_SETS = [
    "",
    "smtpd_hard_error_limit = 6\nsmtpd_junk_command_limit = 2\n",
    "smtpd_recipient_limit = 2\nsmtpd_recipient_overshoot_limit = 1\n",
    "smtpd_helo_required = yes\nsmtpd_forbid_unauth_pipelining = yes\n",
    "mynetworks = 10.0.0.0/8\nsmtpd_recipient_restrictions = reject_unauth_destination\n",
    "",
    "smtpd_hard_error_limit = 6\n",
]
#: The sink of each option set (MemorySink's modes).
SINK_MODES = ["now", "deferred", "direct", "now", "deferred", "direct", "refused"]

_log = CapturedLog()


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    log.init("smtpd", syslog_name="fastpost", use_syslog=False, stream=_log)
    loop = asyncio.new_event_loop()
    out = []
    for i, extra in enumerate(OPTION_SETS):
        d = tmp_path_factory.mktemp(f"core{i}")
        cfg = Config(str(d), text=MAIN_CF + extra + f"queue_directory = {d}\n")
        out.append(SmtpdService.from_config(cfg, sink=MemorySink(loop, SINK_MODES[i]), loop=loop))
    yield out
    loop.close()


PIECES = [
    b"EHLO client.example.com\r\n", b"HELO client.example.com\r\n", b"EHLO\r\n",
    b"MAIL FROM:<sender@example.com>\r\n", b"MAIL FROM:<sender@example.com> SIZE=100\r\n",
    b"MAIL FROM:<>\r\n", b"MAIL FROM:<bad address>\r\n", b"MAIL TO:<x@y>\r\n",
    b"RCPT TO:<rcpt@example.net>\r\n", b"RCPT TO:<other@localdomain>\r\n", b"RCPT TO:<>\r\n",
    b"DATA\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n", b"..dot\r\n", b".\r\n",
    b"BDAT 5\r\nabcde", b"BDAT 0 LAST\r\n", b"BDAT x\r\n",
    b"RSET\r\n", b"NOOP\r\n", b"NOOP x\r\n", b"VRFY someone\r\n", b"ETRN example.com\r\n",
    b"HELP\r\n", b"FOO\r\n", b"GET / HTTP/1.1\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n",
    b"bare\nlf\n", b"\r\n", b"X" * 2100 + b"\r\n", b"QUIT\r\n",
]


@st.composite
def scripts(draw):
    # Mostly commands (random bytes end most sessions at once: non-SMTP command), each
    # its own read or pipelined with the next, and some reads cut anywhere.
    pieces = draw(st.lists(st.sampled_from(range(len(PIECES) + 1)), min_size=1, max_size=20))
    chunks = [b""]
    for i in pieces:
        chunks[-1] += PIECES[i] if i < len(PIECES) else draw(st.binary(max_size=12))
        if draw(st.integers(0, 3)):
            chunks.append(b"")
    data = b"".join(chunks)
    cuts = set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=3)))
    out, last, pos = [], 0, 0
    bounds = sorted({sum(len(c) for c in chunks[:k]) for k in range(1, len(chunks) + 1)} | cuts)
    for b in bounds:
        if b > last:
            out.append(data[last:b])
            last = b
    return draw(st.integers(0, len(OPTION_SETS) - 1)), out, draw(st.booleans())


def _play(service, cls, chunks, eof):
    """One session of ``cls``: the state after the greeting and after each chunk."""
    service.sink.n = 0
    _log.take()
    proto = cls(service)
    tr = RecordingTransport(40000)
    proto.connection_made(tr)
    seen = []

    def snap():
        seen.append((bytes(tr.out), tr.closed, tr.paused, _log.take(), proto.errors,
                     proto.bytes_in, proto.bytes_out, proto.waiting, proto.where,
                     proto._busy, proto._closed, proto._in_data,
                     {k: list(v) for k, v in proto.stats.items()}))
        tr.out.clear()

    snap()
    view = service.read_view
    loop = service.sink.loop
    for chunk in chunks:
        if tr.closed:
            break
        view[:len(chunk)] = chunk
        proto.buffer_updated(len(chunk))
        for _ in range(3):  # a deferred sink's answers (call_soon), then the session's
            loop.run_until_complete(asyncio.sleep(0))
        snap()
    if eof and not tr.closed:
        proto.eof_received()
        snap()
    proto.connection_lost(None)
    snap()
    return seen


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
@example((1, [b"FOO\r\n"] * 8, False))  # the hard error limit
@example((1, [b"EHLO x\r\n"] + [b"NOOP\r\n", b"RSET\r\n"] * 4, False))  # the junk limit
@example((2, [b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n"] + [b"RCPT TO:<r@example.net>\r\n"] * 4
          + [b"RSET\r\n", b"MAIL FROM:<a@b.c>\r\n"] + [b"RCPT TO:<r@example.net>\r\n"] * 4,
          True))  # the recipient limit and its overshoot, across transactions
def test_compiled_core_matches_reference(services, script):
    which, chunks, eof = script
    service = services[which]
    compiled = _play(service, SmtpdProtocol, chunks, eof)
    reference = _play(service, ReferenceProtocol, chunks, eof)
    assert compiled == reference


@pytest.mark.parametrize("which", [0, 1, 5], ids=["now", "deferred", "direct"])
def test_a_whole_transaction_both_ways(services, which):
    """A plain session end to end: the same replies, log lines and stored message."""
    service = services[which]
    script = [b"EHLO client.example.com\r\n", b"MAIL FROM:<sender@example.com>\r\n",
              b"RCPT TO:<rcpt@example.net>\r\n", b"DATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n",
              b"QUIT\r\n"]
    compiled = _play(service, SmtpdProtocol, script, False)
    stored = service.sink.messages[-1]
    reference = _play(service, ReferenceProtocol, script, False)
    assert compiled == reference
    replies = b"".join(step[0] for step in compiled)
    assert replies.startswith(b"220 ") and b"250 2.0.0 Ok: queued as Q00001\r\n" in replies
    assert replies.endswith(b"221 2.0.0 Bye\r\n")
    assert stored[0] == "Q00001" and stored[1] == ["rcpt@example.net"]
    assert stored[2].endswith(b"Subject: x\r\n\r\nhi\r\n")
    last_log = compiled[-1][3]
    assert any("disconnect from" in line and "commands=5" in line for line in last_log)


def test_a_refused_queue_id_answers_data_both_ways(services):
    """A direct transaction whose queue ID is refused (cleanup's full disk): DATA gets
    the refusal, again at a second DATA, and RSET starts over; nothing is stored."""
    service = services[6]
    stored = len(service.sink.messages)
    script = [b"EHLO client.example.com\r\n", b"MAIL FROM:<sender@example.com>\r\n",
              b"RCPT TO:<rcpt@example.net>\r\n", b"DATA\r\n", b"DATA\r\n", b"RSET\r\n",
              b"QUIT\r\n"]
    compiled = _play(service, SmtpdProtocol, script, False)
    reference = _play(service, ReferenceProtocol, script, False)
    assert compiled == reference
    replies_ = b"".join(step[0] for step in compiled)
    assert replies_.count(b"452 4.3.1 Insufficient system storage\r\n") == 2
    assert b"354" not in replies_ and len(service.sink.messages) == stored


# ---------------------------------------------------------------- set-up and tear-down
# The connection's shortcuts (branch conn11) answer what the long way answers, in
# both builds.

_NEUTERED = ' <>()\\";@'


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=st.sampled_from(list("ab.-1" + _NEUTERED)))))
def test_neuter_helo_both_builds(name):
    from fastpost.daemons.smtpd import _session_c

    want = "".join("?" if ch in _NEUTERED else ch for ch in name)
    assert _session_py.neuter_helo(name) == want
    assert _session_c.neuter_helo(name) == want


def _stats_text_long_way(stats):
    parts, ok_total, total = [], 0, 0
    for name in _session_py.STATS_ORDER:
        if name in stats:
            ok, n = stats[name]
            ok_total, total = ok_total + ok, total + n
            parts.append(f"{name}={ok}" if ok == n else f"{name}={ok}/{n}")
    parts.append(f"commands={ok_total}" if ok_total == total and total
                 else f"commands={ok_total}/{total}")
    return " ".join(parts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_session_py.STATS_ORDER),
                          st.sampled_from([(1, 1), (1, 1), (0, 1), (1, 2), (2, 2), (0, 0)])),
                max_size=8))
def test_stats_text_both_builds(services, pairs):
    """The disconnect line's statistics: the text kept for sessions whose commands
    came once each and were accepted is the one the long way makes, in any order."""
    for cls in (SmtpdProtocol, ReferenceProtocol):
        proto = cls(services[0])
        proto.stats = {name: list(counts) for name, counts in pairs}
        want = _stats_text_long_way(proto.stats)
        assert proto._stats_text() == want  # the first time (perhaps kept)
        assert proto._stats_text() == want  # and again (perhaps from what was kept)


@pytest.mark.parametrize("lists", [
    "",
    "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n",
    "smtpd_authorized_xforward_hosts = 10.0.0.0/8, 127.0.0.2\n"
    "smtpd_forbid_bare_newline_exclusions = 127.0.0.3\n",
    "smtpd_authorized_xclient_hosts = inline:{127.0.0.1=OK}\n",
])
def test_greeting_options_and_ehlo_reply_both_builds(tmp_path, lists):
    """The core's options at the greeting (kept per client by the service) are those
    _core_options() makes, and the EHLO reply (kept by its flags) the service's
    ehlo_reply() for them: several clients, each twice."""
    loop = asyncio.new_event_loop()
    try:
        cfg = Config(str(tmp_path), text=MAIN_CF + lists + f"queue_directory = {tmp_path}\n")
        service = SmtpdService.from_config(cfg, sink=MemorySink(loop), loop=loop)
        assert (service.greet_options is None) == ("inline:" in lists)
        for addr in ["127.0.0.1", "127.0.0.2", "127.0.0.3", "10.1.2.3", "192.0.2.1"] * 2:
            for cls in (SmtpdProtocol, ReferenceProtocol):
                proto = cls(service)
                tr = RecordingTransport(40000)
                tr.extra["peername"] = (addr, 40000)
                proto.connection_made(tr)
                opts = proto.conn.options
                assert opts == proto._core_options(), (addr, cls)
                view = service.read_view
                view[:8] = b"EHLO x\r\n"
                proto.buffer_updated(8)
                want = service.ehlo_reply(starttls=opts.starttls, auth=False,
                                          xclient=opts.xclient, xforward=opts.xforward)
                assert bytes(tr.out).endswith(want.wire), (addr, cls)
                proto.connection_lost(None)
    finally:
        loop.close()


def test_a_handler_put_in_place_of_the_cores_is_called(services):
    """_c_run calls the core's message handlers directly only when they are the
    handlers of the event's type: a subclass's own handler in _handlers still runs
    (both builds)."""
    from fastpost.smtp import events as ev

    seen = []

    def on_mail(self, event):
        seen.append(event.address)
        self._respond("mail", replies.Reply(451, "not now", "4.3.0"))

    class Compiled(SmtpdProtocol):
        __slots__ = ()
        _handlers = {**SmtpdProtocol._handlers, ev.Mail: on_mail}

    class Reference(ReferenceProtocol):
        __slots__ = ()
        _handlers = {**ReferenceProtocol._handlers, ev.Mail: on_mail}

    script = [b"EHLO client.example.com\r\n", b"MAIL FROM:<sender@example.com>\r\n",
              b"QUIT\r\n"]
    for cls in (Compiled, Reference):
        steps = _play(services[0], cls, script, False)
        assert b"451 4.3.0 not now\r\n" in b"".join(step[0] for step in steps)
    assert seen == ["sender@example.com", "sender@example.com"]
