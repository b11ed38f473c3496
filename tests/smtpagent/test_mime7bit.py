"""8BITMIME -> quoted-printable for a server without 8BITMIME, compared with C Postfix.

Postfix's smtp-sink runs with -8 (no 8BITMIME). Each message goes once through Debian's
Postfix (smtpd, cleanup, smtp with BODY=8BITMIME) and once through fastpost's smtp agent
(queued with encoding 8bit); what the sink received must be the same bytes, apart from
the Received: lines and smtp-sink's own X- lines. The messages carry their own
Message-Id and Date, so Postfix's cleanup adds nothing to them.
"""

from __future__ import annotations

import smtplib

import pytest

from fastpost.daemons.smtp.mime7bit import downgrade, qp_line
from helpers.instance import free_port
from smtpagent.agent import AgentSite
from smtpagent.sink import Sink
from smtpagent.test_vs_postfix import Postfix

HEAD = "From: a@example.org\nMessage-Id: <{n}.m7@example.org>\nDate: Sat, 21 Nov 2026 12:00:00 +0000\n"

MESSAGES = {
    "simple": "Subject: s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
              "Content-Transfer-Encoding: 8bit\n\n"
              "Gr\u00fc\u00dfe aus K\u00f6ln, a = sign and trailing space \nand a tab\t\n"
              + "x" * 70 + "\u00e9" * 6 + " long\n.dot line\n" + "a" * 71 + "\u00e9\n"
              + "b" * 72 + "\u00e9\n\nafter an empty line\n",
    "ascii declared 8bit, header first": "MIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n"
              "Content-Type: text/plain\n\nplain = sign\n" + "y" * 100 + "\n" + "z" * 74 + " \n"
              + "w" * 75 + "\n" + "v" * 76 + "\n",
    "no MIME": "Subject: s\n\nGr\u00fc\u00dfe\n",
    "MIME without CTE": "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nGr\u00fc\u00dfe\n",
    "8-bit headers": "Subject: Gr\u00fc\u00dfe\nMIME-Version: 1.0\n"
              "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8BIT\n\nx\u00ff\n",
    "multipart": "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=BB\n\npreamble\n"
              "--BB\nContent-Transfer-Encoding: 8bit\nContent-Type: text/plain; charset=utf-8\n\n"
              "Gr\u00fc\u00dfe\n--BB\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\n"
              "plain\n--BB\nContent-Type: message/rfc822\n\nSubject: inner\nMIME-Version: 1.0\n"
              "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
              "inner \u00fc\n--BB\nContent-Type: multipart/alternative; boundary=\"C C\"\n\n"
              "--C C\nContent-Type: text/html\nContent-Transfer-Encoding: 8bit\n\n<p>\u00e9t\u00e9</p>\n"
              "--C C--\n--BB\nContent-Type: application/octet-stream\n"
              "Content-Transfer-Encoding: 8bit\n\n\u00ff\u00fe data\n--BB--\nepilogue \u00e9\n",
}


def _take(sink) -> str:
    """The one message the sink has dumped (waiting for it), then an empty dump file."""
    (message,) = sink.wait(1)
    sink.dump.write_text("")
    return message


@pytest.fixture(scope="module")
def dumps():
    from conftest import need_program, need_root

    need_root()
    need_program("postfix")
    need_program("smtp-sink")
    port = free_port()
    pf = Postfix(port)
    out = {}
    try:
        with AgentSite() as site, Sink("-8", port=port) as sink:
            site.start()
            for i, (name, body) in enumerate(MESSAGES.items()):
                text = HEAD.format(n=i) + body
                with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
                    s.sendmail("a@example.org", ["x@remote.example"],
                               text.replace("\n", "\r\n").encode(), mail_options=["BODY=8BITMIME"])
                postfix_out = _take(sink)
                qid = site.submit(["x@remote.example"], text, sender="a@example.org")
                site.deliver(qid, f"[127.0.0.1]:{port}", transport="relay", encoding="8bit")
                out[name] = (postfix_out, _take(sink))
            yield out
    finally:
        pf.stop()


def _strip(dump: str) -> str:
    lines, out, skipping = dump.split("\n"), [], False
    for line in lines:
        if line[:1] in (" ", "\t") and skipping:
            continue
        skipping = line.startswith(("X-", "Received:"))
        if not skipping:
            out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("name", list(MESSAGES))
def test_same_bytes_as_postfix(dumps, name):
    postfix_out, fastpost_out = dumps[name]
    assert _strip(fastpost_out) == _strip(postfix_out)


def test_qp_lines():
    assert qp_line(b"a = b \t") == [b"a =3D b =09"]
    assert qp_line(b"y" * 74) == [b"y" * 73 + b"=", b"y"]
    assert qp_line("\u00e9".encode()) == [b"=C3=A9"]
    assert qp_line(b"") == [b""]


def test_nothing_to_do_is_identity():
    text = b"Subject: x\r\n\r\nhello\r\n"
    assert downgrade(text) == text


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_LINES = st.lists(st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=B", b"Content-Transfer-Encoding: 8bit",
    b"Content-Type: message/rfc822", b"--B", b"--B--", b"", b" folded", b"x: y",
    "\u00e9t\u00e9 = ".encode(), b"." * 80]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_LINES)
def test_any_line_soup_converts_to_7bit_or_stays(lines):
    text = b"\r\n".join(lines) + b"\r\n"
    out = downgrade(text)
    if b"8bit" not in text:
        assert out == text
    assert out.endswith(b"\r\n")
    # every output line is an input line, the new header, or a quoted-printable line
    # (7-bit, at most 76 characters)
    given_lines = set(lines)
    for line in out[:-2].split(b"\r\n"):
        assert line in given_lines or (line.isascii() and len(line) <= 76), line
