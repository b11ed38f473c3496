"""Fuzzing the sans-IO cores: whatever the peer sends, only protocol errors come out.

The invariant (h11's fuzz/afl-server.py): fed any bytes in any split, a
ServerConnection either yields events or raises RemoteProtocolError (whose reply
the session sends, after which the connection goes on or closes) - never any other
exception, never a reply it cannot send, never a hang. A session stand-in answers
every event with a plausible reply (accepting or refusing at random), so the fuzzer
walks through every state. The ClientConnection gets the same treatment with
garbage server replies.

The default run keeps a few hundred examples; FASTPOST_FUZZ_EXAMPLES raises it
(``./dev torture`` style long runs).
"""

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpost.smtp import events as ev
from fastpost.smtp import replies
from fastpost.smtp.client import ClientConnection, Recipient
from fastpost.smtp.errors import RemoteProtocolError
from fastpost.smtp.server import ServerConnection, ServerOptions

EXAMPLES = int(os.environ.get("FASTPOST_FUZZ_EXAMPLES", "300"))

TOKENS = [
    b"EHLO x\r\n", b"HELO y\r\n", b"MAIL FROM:<a@b>\r\n", b"MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME\r\n",
    b"RCPT TO:<c@d>\r\n", b"RCPT TO:<c@d> NOTIFY=NEVER\r\n", b"DATA\r\n", b"BDAT 3\r\n",
    b"BDAT 2 LAST\r\n", b"BDAT 0 LAST\r\n", b"BDAT x\r\n", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n",
    b"VRFY a\r\n", b"ETRN d.example\r\n", b"HELP\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n",
    b"AUTH LOGIN dXNlcg==\r\n", b"*\r\n", b"dXNlcg==\r\n", b"XCLIENT NAME=h.example\r\n",
    b"XFORWARD ADDR=1.2.3.4\r\n", b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\r\n", b"\n", b"\r",
    b".", b"..", b"x", b"\x00", b"\xff", b"\xc3\xa9", b" ", b"GET / HTTP/1.1\r\n", b"A" * 300,
    b"MAIL FROM:<\xc3\xa9@\xc3\xa9.example> SMTPUTF8\r\n", b"RCPT TO:<@r:a@[1.2.3.4]>\r\n",
]

stream = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=20)), max_size=60).map(b"".join)


def answer(event, rng: random.Random):
    """A reply a session could give: accept, refuse, or close."""
    roll = rng.random()
    if roll < 0.05:
        return replies.timeout("mx")  # 421: the session ends
    t = type(event)
    if roll < 0.25:
        return replies.rejected(550, "5.7.1", "no")
    return {
        ev.Helo: replies.helo("mx"),
        ev.Ehlo: replies.ehlo("mx", ["PIPELINING", "CHUNKING"]),
        ev.Mail: replies.MAIL_OK,
        ev.Rcpt: replies.RCPT_OK,
        ev.Data: replies.START_DATA,
        ev.EndOfData: replies.queued("Q"),
        ev.ChunkEnd: replies.bdat_ok(1),
        ev.Quit: replies.BYE,
        ev.StartTls: replies.START_TLS,
        ev.Auth: replies.auth_challenge(""),
        ev.AuthResponse: replies.AUTH_OK,
        ev.Xclient: replies.greeting("mx"),
    }.get(t, replies.OK)


def drive(data: bytes, cuts: list[int], seed: int, options: ServerOptions) -> int:
    rng = random.Random(seed)
    conn = ServerConnection(options)
    conn.send(replies.greeting("mx ESMTP"))
    steps = 0
    last = 0
    for cut in sorted(set(c for c in cuts if c <= len(data))) + [len(data), None]:
        piece = b"" if cut is None else data[last:cut]
        if cut is not None:
            last = cut
            if not piece:
                continue
        conn.receive_data(piece)
        while not conn.closed:
            steps += 1
            assert steps < 10_000, "the core does not make progress"
            try:
                event = conn.next_event()
            except RemoteProtocolError as err:
                conn.send(err.reply, close=err.fatal)
                continue
            if event is ev.NEED_DATA or event is ev.PAUSED:
                if event is ev.PAUSED and conn.input == "TLS":
                    conn.tls_started()  # the session would run the handshake here
                    continue
                break
            if event.needs_reply:
                conn.send(answer(event, rng))
            if isinstance(event, ev.ConnectionClosed):
                return steps
        if conn.closed:
            break
    return steps


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream, cuts=st.lists(st.integers(0, 2000), max_size=8), seed=st.integers(0, 1 << 30),
       bare=st.sampled_from(["no", "normalize", "note", "reject"]), auth=st.booleans())
def test_server_core_only_raises_protocol_errors(data, cuts, seed, bare, auth):
    options = ServerOptions(hostname="mx", line_length_limit=64, message_size_limit=100,
                            recipient_limit=3, bare_lf=bare, auth=auth, starttls=True,
                            xclient=True, xforward=True)
    drive(data, cuts, seed, options)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.lists(st.one_of(
    st.sampled_from([b"220 hi\r\n", b"250-x\r\n", b"250 ok\r\n", b"354 go\r\n", b"421 bye\r\n",
                     b"550 no\r\n", b"250 2.1.5 Ok\r\n", b"220-a\r\n", b"xyz\r\n", b"\r\n",
                     b"250-PIPELINING\r\n", b"250 CHUNKING\r\n", b"5", b"\n"]),
    st.binary(max_size=10)), max_size=40).map(b"".join), lmtp=st.booleans())
def test_client_core_only_raises_protocol_errors(data, lmtp):
    from fastpost.smtp.client import ClientOptions

    c = ClientConnection(ClientOptions(helo_name="me", lmtp=lmtp))
    c.hello()
    c.receive_data(data)
    c.receive_data(b"")
    for _ in range(1000):
        try:
            event = c.next_event()
        except RemoteProtocolError as err:
            assert err.fatal
            return
        if event is ev.NEED_DATA or isinstance(event, ev.ConnectionClosed):
            return
        if isinstance(event, ev.Response) and event.command in ("EHLO", "LHLO") and event.reply.code == 250:
            if not c.closed:
                c.mail("a@b", [Recipient("c@d"), "e@f"])
        if isinstance(event, ev.Response) and event.command == "DATA" and event.reply.code == 354:
            if not c.closed:
                c.send_content(b"x\r\n.y\r\n")
                c.end_content()
    raise AssertionError("the client core does not make progress")
