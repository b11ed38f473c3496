"""cleanup's common-case pass (CleanupState._fast, header_pass) against the general path.

For each generated message and setting: two CleanupServices on one queue store, the
same settings, one with the fast path and one without, each behind its own unix socket
and fed by the real cleanup client (the smtpd -> cleanup protocol); trivial-rewrite's
answers come over its real protocol from an attr service in this process (the same
Rewriter the daemon uses). The message goes to the fast service twice (the first fills
the rewrite caches, so the second can take the fast path) and to the general one once:
the replies, the queue files (queue IDs replaced) and the log lines must be the same.
A third service runs the fast path with CleanupState's core interpreted
(fastpost.daemons.cleanup._statecore_py, the source of the compiled _statecore_c): it
must write and log what the compiled core does, and take the fast path for the same
messages. The kernel is also held to its pure-Python reference.
"""

from __future__ import annotations

import asyncio
import io
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpost.daemons.cleanup import _statecore_c, _statecore_py
from fastpost.daemons.cleanup.service import CleanupService
from fastpost.daemons.cleanup.state import CleanupState
from fastpost.daemons.cleanup.settings import CleanupSettings
from fastpost.mail import _hdrpass_c, _hdrpass_py
from fastpost.mail import cleanup_proto as P
from fastpost.mail import header as H
from fastpost.mail.cleanup_clnt import CleanupClient
from fastpost.mail.config import Config
from fastpost.mail.ipc import AttrServerProtocol
from fastpost.mail.queue import QueueStore
from fastpost.mail.record import split_records
from fastpost.mail.rewrite import Rewriter, rewrites_to_itself
from fastpost.mail.rewrite_clnt import RewriteClient
from fastpost.util import log

BASE = ("compatibility_level = 3.7\nmyhostname = mx.example.test\nmydomain = example.test\n"
        "myorigin = $myhostname\ninet_interfaces = 127.0.0.1\n"
        # answers must not expire between the warm-up and the fast send (a fast path
        # that declines an expired answer is right, but this test checks it is taken)
        "fastpost_rewrite_cache_time = 1h\n")

# CleanupState on the interpreted core: the same methods over _statecore_py.StateCore.
PyCoreState = type("PyCoreState", (_statecore_py.StateCore,),
                   {k: v for k, v in vars(CleanupState).items()
                    if k not in ("__dict__", "__weakref__")})


def test_core_is_compiled_with_its_pxd():
    """Production's CleanupState sits on the compiled core, typed by its .pxd (a cdef
    method is not visible from Python there; interpreted it is an ordinary method)."""
    assert issubclass(CleanupState, _statecore_c.StateCore)
    assert _statecore_c.__file__.endswith(".so")
    assert not hasattr(_statecore_c.StateCore, "_c_fast")
    assert hasattr(_statecore_py.StateCore, "_c_fast")
    core = _statecore_c.StateCore()
    assert (core.sender, core.blocked, core.error, core.in_headers) == ("", False, None, True)


@given(st.text(st.sampled_from("a@.b:x\u00e9 "), max_size=12))
@settings(max_examples=300, deadline=None)
def test_to_itself_is_rewrites_to_itself(address):
    """The fast pass's compiled shortcut for rewrite_cached (its twin) and the
    rewriting module's own rule agree on every address."""
    want = rewrites_to_itself(address)
    assert _statecore_c._to_itself(address) == want
    assert _statecore_py._to_itself(address) == want


SETTINGS = [
    "",
    "always_add_missing_headers = yes\n",
    "remote_header_rewrite_domain = domain.invalid\n",
    "message_drop_headers = x-drop, bcc, Content-Length\n",
    "message_drop_headers =\n",
    "hopcount_limit = 3\nstrict_7bit_headers = yes\n",
    "disable_mime_input_processing = yes\n",
    "undisclosed_recipients_header = To: undisclosed-recipients:;\n"
    "always_add_missing_headers = yes\nheader_from_format = obsolete\n",
    "enable_original_recipient = no\n",
]


class Pair:
    """Fast and general cleanup services for one setting, and their clients."""

    def __init__(self, loop, root: str, text: str):
        self.loop = loop
        os.makedirs(os.path.join(root, "private"), exist_ok=True)
        self.cfg = cfg = Config(root, text=BASE + text)
        rewriter = Rewriter(cfg)

        def handle(request, conn):
            return {"status": 0, "address": rewriter.rewrite(request["rule"], request["address"])}

        self.servers = []
        rw_path = os.path.join(root, "private", "rewrite")
        self._serve(lambda: AttrServerProtocol(None, "trivial_rewrite_protocol", handle), rw_path)
        self.store = QueueStore.open(queue_directory=os.path.join(root, "queue"))
        csettings = CleanupSettings.from_config(cfg)
        self.svcs = []
        self.clients = []
        # 0: the fast path (compiled core), 1: the general path only, 2: the fast path
        # with the interpreted core (_statecore_py), the compiled one's reference
        for i, fast in enumerate((True, False, True)):
            svc = CleanupService(csettings, self.store, self.store.committer(f"c{i}"),
                                 RewriteClient(cfg, queue_directory=root), loop=loop,
                                 long_ids=True, trigger_qmgr=False)
            svc.fast_path = fast
            if i == 2:
                svc.state_class = PyCoreState
            path = os.path.join(root, f"cleanup-{i}")
            self._serve(svc.protocol, path)
            self.svcs.append(svc)
            self.clients.append(CleanupClient(path))

    def _serve(self, factory, path: str) -> None:
        self.servers.append(self.loop.run_until_complete(self.loop.create_unix_server(factory, path)))

    def send(self, which: int, meta: dict, rcpts, content: bytes, extra: dict):
        """(code, text, queue file records or None, log lines) of one message."""
        buf = io.StringIO()
        old = log._state.stream
        log._state.stream = buf
        try:
            code, text, qid = self.loop.run_until_complete(self._send(which, meta, rcpts, content, extra))
        finally:
            log._state.stream = old
        lines = [line.split("]: ", 1)[1] for line in buf.getvalue().splitlines()]
        recs = None
        if code == 250 and self.store.exists(qid):  # (a discarded message is not)
            recs = split_records(self.store.read(qid), 1 << 24)[0]
        return code, text, qid, recs, lines

    async def _send(self, which, meta, rcpts, content, extra):
        txn = self.clients[which].open(meta)
        for r in rcpts:
            txn.add_recipient(*r)
        qid = await txn.opened
        txn.write(content)
        code, text, got = await txn.finish(extra)
        await self.svcs[which].committer.drain(10)  # indexed: the store can read it
        return code, text, got or qid

    def close(self):
        for c in self.clients:
            c.close()
        for s in self.servers:
            s.close()
        for svc in self.svcs:
            self.loop.run_until_complete(svc.committer.close())
        self.store.close()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    loop = asyncio.new_event_loop()
    made = {}

    def get(i: int) -> Pair:
        if i not in made:
            made[i] = Pair(loop, str(tmp_path_factory.mktemp(f"fast{i}")), SETTINGS[i])
        return made[i]

    yield get
    for p in made.values():
        p.close()
    loop.close()


def normalize(result, qid_len: int):
    code, text, qid, recs, lines = result
    q = qid.encode()
    if recs is not None:
        recs = [(t, d.replace(q, b"QID")) for t, d in recs
                if not (t == ord("C") and len(qid) != qid_len)]
    return code, text, recs, [line.replace(qid, "QID") for line in lines]


ADDRS = ["a@example.org", "user", "b@host", "Some One <c@x.example>", "d@[127.0.0.1]",
         "e@example.org.", '"quoted name"@example.net', "f!g", "", "undisclosed:;"]
NAMES = ["From", "To", "Cc", "Bcc", "Reply-To", "Sender", "Resent-From", "Resent-To",
         "Subject", "Received", "Message-Id", "Resent-Message-Id", "Date", "Content-Type",
         "Content-Transfer-Encoding", "MIME-Version", "X-Drop", "Content-Length",
         "X-Mailer", "Errors-To", "from", "TO", "Return-Path"]
VALUES = ["<a@example.org>", "a@example.org, user", "Name <user>, b@host (c)", "text",
          " <id.1@example.org> ", "text/plain; charset=us-ascii", "multipart/mixed; boundary=xy",
          "message/rfc822", "8bit", " Binary ", "7bit", "1.0", "from x by y; Sat, 1 Jan 2000",
          "caf\xe9 <a@example.org>", "folded\r\n\tvalue <b@host>", "", "undisclosed:;",
          "a@example.org,\r\n b@example.org"]

header = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES))
message = st.fixed_dictionaries({
    "ctx": st.sampled_from(["local", "remote"]),
    "sender": st.sampled_from(["", "s@example.org", "user", "s@host"]),
    "fullname": st.one_of(st.none(), st.sampled_from(["Joe User", 'Q "x" (y)'])),
    "flags": st.sampled_from([P.FLAGS_EXTERNAL, P.FLAGS_EXTERNAL & ~P.FLAG_MAP_OK,
                              P.FLAG_MAP_OK, P.FLAGS_EXTERNAL | P.FLAG_HOLD,
                              P.FLAGS_EXTERNAL | P.FLAG_DISCARD]),
    "enc": st.sampled_from([None, "8bit", "7bit"]),
    "rcpts": st.lists(st.tuples(st.sampled_from(["r@example.net", "user2", "r@example.net.", "R@host"]),
                                st.sampled_from(["", "rfc822;orig@example.net"]),
                                st.sampled_from([0, P.notify_bits("SUCCESS,DELAY")
                                                 if hasattr(P, "notify_bits") else 0])),
                      min_size=0, max_size=3),
    "headers": st.lists(header, max_size=8),
    "eol": st.sampled_from(["\r\n", "\n"]),
    "body": st.sampled_from([None, "", "body\r\n", "line\r\n.dot\r\n\r\nlast", "\r\nafter blank\r\n"]),
    "hold": st.booleans(),
})


def build(msg):
    eol = msg["eol"]
    text = "".join(f"{n}: {v}".replace("\r\n", eol) + eol for n, v in msg["headers"])
    if msg["body"] is not None:
        text += eol + msg["body"].replace("\r\n", eol)
    meta = {"f": msg["flags"], "time": 1_700_000_000_123_456, "s": msg["sender"],
            "a": [["log_client_name", "client.example"], ["log_client_address", "192.0.2.1"],
                  ["log_protocol_name", "ESMTP"], ["log_helo_name", "client.example"]],
            "ctx": msg["ctx"], "ident": 1}
    if msg["fullname"] is not None:
        meta["fullname"] = msg["fullname"]
    if msg["enc"]:
        meta["enc"] = msg["enc"]
    extra = {"hold": "yes"} if msg["hold"] else {}
    return meta, [list(r) for r in msg["rcpts"]], text.encode("utf-8", "surrogateescape"), extra


@settings(max_examples=int(os.environ.get("FASTPOST_FASTPATH_EXAMPLES", "80")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, len(SETTINGS) - 1), msg=message)
def test_fast_path_writes_what_the_general_path_writes(pairs, which, msg):
    pair = pairs(which)
    meta, rcpts, content, extra = build(msg)
    pair.send(0, meta, rcpts, content, extra)  # fills the rewrite caches
    before = pair.svcs[0].fast_messages
    fast = pair.send(0, meta, rcpts, content, extra)
    general = pair.send(1, meta, rcpts, content, extra)
    assert pair.svcs[1].fast_messages == 0
    assert normalize(fast, len(general[2])) == normalize(general, len(fast[2]))
    took = pair.svcs[0].fast_messages > before
    # The interpreted core (the compiled one's source, run as Python) writes the same
    # and takes the fast path for the same messages.
    pair.send(2, meta, rcpts, content, extra)
    before_py = pair.svcs[2].fast_messages
    interp = pair.send(2, meta, rcpts, content, extra)
    assert normalize(interp, len(fast[2])) == normalize(fast, len(interp[2]))
    assert (pair.svcs[2].fast_messages > before_py) == took
    # The general path's own reasons aside, the fast path takes a plain message.
    plain = (rcpts and not msg["flags"] & P.FLAG_DISCARD and not any(n.lower() in ("content-type", "received") for n, _ in msg["headers"])
             and not any("\xe9" in v for _, v in msg["headers"]))
    if plain and fast[0] == 250:
        assert took


def test_smtp_source_message_takes_the_fast_path(pairs):
    pair = pairs(0)
    meta = {"f": P.FLAGS_EXTERNAL, "time": 1_700_000_000_000_000, "s": "src@example.org",
            "a": [["log_client_address", "127.0.0.1"]], "ctx": "local", "ident": 1}
    content = (b"Received: from client (localhost [127.0.0.1])\r\n\tby mx (fastpost)\r\n"
               b"From: <src@example.org>\r\nTo: <dst@example.net>\r\nSubject: test\r\n\r\n"
               b"body\r\n" * 20)
    n0 = pair.svcs[0].fast_messages
    for _ in range(3):
        code, text, qid, recs, lines = pair.send(0, meta, [["dst@example.net", "", 0]], content, {})
        assert code == 250
    assert pair.svcs[0].fast_messages - n0 == 2  # all but the first (cold caches)
    assert any(t == ord("N") and d.startswith(b"Message-Id: <") for t, d in recs)
    assert lines == [f"{qid}: message-id=<{qid}@mx.example.test>"]


# -- the kernel against its reference ---------------------------------------------------

raw_header = st.tuples(
    st.sampled_from([0] + sorted(set(H.KINDS.values()))),
    st.binary(max_size=30).map(lambda b: b"X" + b.replace(b":", b"")),
    st.binary(max_size=40),
    st.integers(0, 7),
)


@settings(max_examples=300, deadline=None)
@given(hs=st.lists(raw_header, max_size=10), drop=st.sets(st.sampled_from([b"xa", b"bcc", b"x"])),
       hop=st.integers(0, 4), strict7=st.booleans(), mime=st.booleans(),
       ctx=st.sampled_from([None, "local"]), sclass=st.sampled_from([None, "header_sender"]),
       cached=st.booleans(), now=st.sampled_from([0.0, 10.0]))
def test_kernel_matches_reference(hs, drop, hop, strict7, mime, ctx, sclass, cached, now):
    headers = [(k, len(name), name + b":" + value, f) for k, name, value, f in hs]
    cache = {}
    if cached:
        for _, n, text, _ in headers:
            for cls in ("header_sender", "header_recipient"):
                cache[(ctx, cls, True, text)] = (b"R:" + text, 5.0)
    args = (H.CLASS_BYTES, frozenset(drop), hop, strict7, mime, cache, ctx, True, sclass,
            "header_recipient", now)
    assert _hdrpass_c.header_pass(list(headers), *args) == _hdrpass_py.header_pass(list(headers), *args)


@pytest.mark.parametrize("value, ct8", [(b" 8BIT ", True), (b"binary", True), (b"8bits", False),
                                        (b"", False), (b"\t7bit\r\n", False)])
def test_kernel_content_transfer_encoding(value, ct8):
    text = b"Content-Transfer-Encoding:" + value
    got = _hdrpass_c.header_pass([(H.HDR_CONTENT_TRANSFER_ENCODING, 25, text, 0)], H.CLASS_BYTES,
                                 frozenset(), 10, False, True, {}, None, True, None, None, 0.0)
    assert got[5] is ct8
    assert re.fullmatch(rb"Content-Transfer-Encoding:.*\n", got[0], re.S)
