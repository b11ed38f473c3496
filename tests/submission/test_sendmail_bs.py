"""sendmail -bs: SMTP over a pipe, spoken by a real client (this test, through a
subprocess's standard input and output), through smtpd's session layer and the SMTP
core, into maildrop, through pickup and cleanup into the queue.

One instance for the module (cleanup, trivial-rewrite, pickup, postlogd; no qmgr, so
messages stay in the queue). The replies were compared with Postfix 3.7's
``sendmail -bs`` on a private configuration (docs/submission.md): the same texts, but
for the banner's mail_name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.accept import MASTER  # noqa: E402
from helpers.instance import Instance, free_port  # noqa: E402

PICKUP = ("pickup unix n - n 60 1 pickup\n"
          "trace unix - - n - 0 bounce\n"
          "bounce unix - - n - 0 bounce\n")


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    inst = Instance(tmp_path_factory.mktemp("bs"), master_cf=MASTER.format(port=free_port()) + PICKUP,
                    main_cf={"myhostname": "mx.example.com", "mydomain": "example.com",
                             "myorigin": "$myhostname", "alias_maps": "",
                             "alias_database": "",
                             # VRFY x answers 252 (no local recipient table), as Postfix
                             # with the same setting; with one, x is an unknown user
                             "local_recipient_maps": ""})
    with inst:
        inst.start()
        yield inst


class Pipe:
    """A client on sendmail -bs's standard input and output."""

    def __init__(self, inst):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastpost", "-c", str(inst.etc), "sendmail", "-bs"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=inst.env())

    def reply(self) -> list[str]:
        lines = []
        while True:
            line = self.proc.stdout.readline()
            assert line.endswith(b"\r\n"), (line, self.proc.stderr.read() if not line else b"")
            lines.append(line[:-2].decode())
            if line[3:4] == b" ":
                return lines

    def say(self, text: bytes) -> list[str]:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()
        return self.reply()

    def close(self) -> int:
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        assert rest == b""
        return self.proc.wait(timeout=30)


def test_a_conversation_on_stdin_stdout(inst):
    c = Pipe(inst)
    assert c.reply() == ["220 mx.example.com ESMTP fastpost"]
    ehlo = c.say(b"EHLO me\r\n")
    assert ehlo[0] == "250-mx.example.com" and ehlo[-1] == "250 CHUNKING"
    assert "250-PIPELINING" in ehlo and "250-DSN" in ehlo
    assert c.say(b"MAIL FROM:<a@b.example>\r\n") == ["250 2.1.0 Ok"]
    assert c.say(b"RCPT TO:<bob@example.net> NOTIFY=SUCCESS\r\n") == ["250 2.1.5 Ok"]
    assert c.say(b"DATA\r\n") == ["354 End data with <CR><LF>.<CR><LF>"]
    (final,) = c.say(b"Subject: bs\r\n\r\nhello\r\n..dot\r\n.\r\n")
    m = re.fullmatch(r"250 2\.0\.0 Ok: queued as (\w+)", final)
    assert m, final
    assert c.say(b"VRFY x\r\n") == ["252 2.0.0 x"]
    assert c.say(b"FOO\r\n") == ["500 5.5.2 Error: command not recognized"]
    assert c.say(b"MAIL FROM:<a@b.example> SIZE=999999999999\r\n") == \
        ["552 5.3.4 Message size exceeds fixed limit"]
    assert c.say(b"QUIT\r\n") == ["221 2.0.0 Bye"]
    assert c.close() == 0
    inst.wait_log(rf"pickup\[\d+\]: (\w+): uid={os.getuid()} from=<a@b\.example>")
    # pickup may log before postlogd has written the session's last lines, which the
    # exited sendmail sent last: wait for those too
    log = inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1/2")
    assert f"smtpd[" in log and "connect from localhost[127.0.0.1]" in log
    assert f"{m.group(1)}: client=localhost[127.0.0.1]" in log
    assert "disconnect from localhost[127.0.0.1] ehlo=1 mail=1/2 rcpt=1 data=1 vrfy=1 " \
           "quit=1 unknown=0/1 commands=6/8" in log
    qid = re.findall(rf"pickup\[\d+\]: (\w+): uid={os.getuid()} from=<a@b\.example>", log)[-1]
    cat = inst.command("cat", "-q", qid, check=True).stdout
    assert "Subject: bs" in cat and ".dot" in cat and "..dot" not in cat
    assert "Received: from me (localhost [127.0.0.1])" in cat
    assert "bob@example.net" in cat
    assert not os.listdir(inst.queue / "maildrop")


def test_end_of_input_without_quit(inst):
    c = Pipe(inst)
    c.reply()
    assert c.say(b"HELO me\r\n") == ["250 mx.example.com"]
    assert c.close() == 0
    inst.wait_log(r"lost connection after HELO from localhost\[127\.0\.0\.1\]")


def test_sendmail_bv_reports_to_the_sender_and_delivers_nothing(inst):
    """-bv: a local user, an unknown local user and a remote address; the report is
    a notice from MAILER-DAEMON to the sender, and the request leaves the queue."""
    import json

    proc = subprocess.run([sys.executable, "-m", "fastpost", "-c", str(inst.etc), "sendmail",
                           "-bv", "-f", "checker@example.org", "root", "nosuchuser9",
                           "someone@remote.example"],
                          input=b"", capture_output=True, env=inst.env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    # what Postfix 3.7's sendmail -bv prints
    assert proc.stdout == b"Mail Delivery Status Report will be mailed to <checker@example.org>.\n"
    log = inst.wait_log(r"(\w+): sender delivery status notification: (\w+)")
    req, notice = re.findall(r"(\w+): sender delivery status notification: (\w+)", log)[-1]
    assert f"{req}: verify request from=<checker@example.org>" in log
    assert f"{req}: to=<root@mx.example.com>, relay=local, delay=0, dsn=2.0.0, " \
           "status=deliverable (delivers to mailbox)" in log
    assert f'{req}: to=<nosuchuser9@mx.example.com>, relay=local, delay=0, dsn=5.1.1, ' \
           'status=undeliverable (unknown user: "nosuchuser9")' in log
    assert f"{req}: to=<someone@remote.example>, relay=smtp, delay=0, dsn=2.0.0, " \
           "status=deliverable (delivery via smtp to remote.example" in log
    listed = {m["queue_id"]: m for m in map(json.loads, inst.command(
        "queue", "-j", check=True).stdout.splitlines())}
    assert req not in listed
    assert [r["address"] for r in listed[notice]["recipients"]] == ["checker@example.org"]
    text = inst.command("cat", "-bq", notice, check=True).stdout
    assert "Action: undeliverable" in text and "Action: deliverable" in text
    from fastpost.mail import bounce_template as BT
    header = inst.command("cat", "-hq", notice, check=True).stdout
    assert f"Subject: {BT.BUILTIN[BT.VERIFY].subject}" in header  # the verify template's
    assert 'unknown user: "nosuchuser9"' in text
