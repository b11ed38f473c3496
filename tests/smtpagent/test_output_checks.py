"""smtp_header_checks / smtp_body_checks, compared with C Postfix's smtp client.

The same message and the same regexp tables go through Debian's Postfix (smtpd, cleanup,
smtp) and through fastpost's smtp agent into smtp-sink: what the sink received (but for
Received: lines and smtp-sink's X- lines) and the smtp client's log lines about the
checks (queue IDs aside) must be the same.
"""

from __future__ import annotations

import os
import re
import smtplib
import time

import pytest

from helpers.instance import free_port
from smtpagent.agent import AgentSite
from smtpagent.sink import Sink
from smtpagent.test_vs_postfix import Postfix

HEADER_CHECKS = """\
/^Received: from internal/ IGNORE
/^Subject: (.*)/ REPLACE Subject: [ext] $1
/^X-Tag:/ PREPEND X-Before: yes
/^X-Warn:/ WARN careful
/^X-Info:/ INFO fyi
/^X-Rej:/ REJECT no way
/^X-Hold:/ HOLD
/^X-Strip:/ STRIP gone
/^X-Folded: one[[:space:]]+two/ REPLACE X-Folded: joined
"""
BODY_CHECKS = """\
/secret/ REPLACE [redacted]
/^drop me/ IGNORE
/^warnbody/ WARN wb
/^pre/ PREPEND inserted line
"""
MESSAGE = (
    "Received: from internal.example by x\n\tfor <y>\nSubject: hello\nX-Tag: t\nX-Warn: w\n"
    "X-Info: i\nX-Rej: r\nX-Hold: h\nX-Strip: s\nX-Folded: one\n\ttwo\n"
    "Message-Id: <1.checks@example.org>\nDate: Sat, 21 Nov 2026 12:00:00 +0000\n"
    "From: a@example.org\n\nline with secret\ndrop me please\nwarnbody\npre here\nend\n")


def _strip(dump: str) -> str:
    out, skipping = [], False
    for line in dump.split("\n"):
        if line[:1] in (" ", "\t") and skipping:
            continue
        skipping = line.startswith(("X-Client", "X-Helo", "X-Mail", "X-Rcpt", "Received:"))
        if not skipping:
            out.append(line)
    return "\n".join(out)


def _check_lines(text: str) -> list[str]:
    """The smtp client's lines about the checks, queue IDs and prefixes cut."""
    out = []
    for line in text.splitlines():
        m = re.search(r"/smtp\[\d+\]: (?:\w+: )?((?:replace|prepend|warning|info|strip): .*)$", line)
        if m and " to=<" not in line:
            out.append(m.group(1))
    return out


@pytest.fixture(scope="module")
def results():
    from conftest import need_program, need_root

    need_root()
    need_program("postfix")
    need_program("smtp-sink")
    port = free_port()
    pf = Postfix(port)
    try:
        hc, bc = os.path.join(pf.etc, "hc"), os.path.join(pf.etc, "bc")
        with open(hc, "w") as fh:
            fh.write(HEADER_CHECKS)
        with open(bc, "w") as fh:
            fh.write(BODY_CHECKS)
        pf.configure(f"smtp_header_checks=regexp:{hc}", f"smtp_body_checks=regexp:{bc}")
        with AgentSite(main_cf={"smtp_header_checks": f"regexp:{hc}",
                                "smtp_body_checks": f"regexp:{bc}"}) as site, \
                Sink(port=port) as sink:
            site.start()
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
                s.sendmail("a@example.org", ["x@remote.example"], MESSAGE.replace("\n", "\r\n"))
            sink.wait(1)
            qid = site.submit(["x@remote.example"], MESSAGE, sender="a@example.org")
            site.deliver(qid, f"[127.0.0.1]:{port}", transport="relay")
            postfix_out, fastpost_out = sink.messages()
            time.sleep(0.3)
            with open(pf.log) as fh:
                postfix_log = fh.read()
            yield postfix_out, fastpost_out, postfix_log, site.inst.log_text()
    finally:
        pf.stop()


def test_same_output_as_postfix(results):
    postfix_out, fastpost_out, *_ = results
    assert _strip(fastpost_out) == _strip(postfix_out)
    assert "internal.example" not in fastpost_out and "Subject: [ext] hello" in fastpost_out
    assert "X-Folded: joined\n" in fastpost_out  # a folded header is matched whole


def test_same_log_lines_as_postfix(results):
    *_, postfix_log, fastpost_log = results
    theirs = _check_lines(postfix_log)
    assert theirs and _check_lines(fastpost_log) == theirs
    for verb in ("REJECT no way", "HOLD"):
        line = f"warning: unsupported command in smtp_header_checks map: {verb}"
        assert line in postfix_log and line in fastpost_log
