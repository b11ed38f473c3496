"""fastpost queue / super / cat as real processes on a queue built by a committer.

(Byte-for-byte comparisons with Postfix's own tools are in tests/queue/test_postfix_compat.py;
these run without Postfix and pin the formats and the selectors.)
"""

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from fastpost.mail.config import Config
from fastpost.mail.queue import DEFERRED, HOLD, QueueStore
from fastpost.mail.queue import index as ix

T0 = 1700000000.0  # Tue Nov 14 22:13:20 2023 UTC


def run(cfg, *args, input=None):
    env = dict(os.environ, TZ="UTC")
    return subprocess.run([sys.executable, "-m", "fastpost", "-c", str(cfg), *args], capture_output=True,
                          input=input, timeout=60, env=env)


@pytest.fixture
def queue(tmp_path):
    """A queue with: two deferred (one with a defer log), one held, one incoming."""
    cfg = tmp_path / "etc"
    cfg.mkdir()
    (cfg / "main.cf").write_text(f"queue_directory = {tmp_path / 'q'}\nmaillog_file = {tmp_path / 'log'}\n"
                                     f"maillog_file_prefixes = {tmp_path}\n")
    store = QueueStore.open(cfg=Config(str(cfg)))

    async def fill():
        c = store.committer("t")
        ids = []
        specs = [("alice@example.org", ["bob@example.net", "carol@example.com"], T0),
                 ("", ["dave@example.net"], T0 + 60),
                 ("erin@example.org", ["frank@other.example"], T0 + 120),
                 ("gina@example.org", ["hal@example.net"], time.time())]
        for sender, rcpts, when in specs:
            b = c.builder()
            b.time(when)
            b.set_sender(sender)
            for r in rcpts:
                b.add_recipient(r)
            await b.write(b"Subject: x\r\n\r\n" + b"y" * 700 + b"\r\n")
            ids.append(await c.commit(b))
        await c.close()
        return ids

    ids = asyncio.run(fill())
    with store.edit() as ed:
        ed.set_state(ids[0], DEFERRED, next_retry=T0 + 1000)
        ed.append_log(ids[0], "defer", b"recipient=carol@example.com\nreason=mailbox full\n")
        ed.append_log(ids[0], "defer", b"recipient=bob@example.net\nreason=mailbox full\n")
        ed.set_state(ids[1], DEFERRED, next_retry=T0 + 2000)
        ed.append_log(ids[1], "defer", b"recipient=dave@example.net\nreason=tab\there\n")
        ed.set_state(ids[2], HOLD)
        ed.set_flags(ids[2], add=ix.FLAG_FORCE_EXPIRE)
    store.close()
    return cfg, ids


def test_mailq_format(queue):
    cfg, ids = queue
    out = run(cfg, "queue", "-p").stdout.decode().split("\n")
    assert out[0] == "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
    size = 12 + 2 + 703  # N records: "Subject: x", "", 700 bytes (a 2-byte length)
    assert out[1].startswith(f"{ids[3]:<11}{size:>8} ") and out[1].endswith("  gina@example.org")
    text = "\n".join(out)
    assert f"{ids[0]:<11}{size:>8} Tue Nov 14 22:13:20  alice@example.org\n" + " " * 64 + "(mailbox full)\n" \
        + " " * 41 + "carol@example.com\n" + " " * 41 + "bob@example.net\n" in text
    assert f"{ids[1]:<11}{size:>8} Tue Nov 14 22:14:20  MAILER-DAEMON\n" + " " * 68 + "(tab?here)\n" in text
    assert f"{ids[2] + '!#':<11}{size:>8} Tue Nov 14 22:15:20  erin@example.org\n" in text
    assert out[-2] == f"-- {4 * size // 1024} Kbytes in 4 Requests."


def test_json_format(queue):
    cfg, ids = queue
    lines = run(cfg, "queue", "-j").stdout.decode().splitlines()
    objs = {json.loads(line)["queue_id"]: json.loads(line) for line in lines}
    assert lines[0].startswith('{"queue_name": "incoming", "queue_id": ')
    assert objs[ids[0]]["recipients"] == [{"address": "carol@example.com", "delay_reason": "mailbox full"},
                                          {"address": "bob@example.net", "delay_reason": "mailbox full"}]
    assert objs[ids[1]]["sender"] == "MAILER-DAEMON"
    assert objs[ids[2]]["forced_expire"] is True and objs[ids[2]]["queue_name"] == "hold"
    assert objs[ids[0]]["arrival_time"] == int(T0)


def test_super_selectors(queue):
    cfg, ids = queue
    p = run(cfg, "super", "-h", "ALL", "--domain", "example.net")
    assert p.returncode == 0, p.stderr
    assert p.stderr.decode().splitlines() == ["postsuper: Placed on hold: 3 messages"]
    p = run(cfg, "super", "-H", "ALL", "--reason", "MAILBOX")
    assert p.stderr.decode().splitlines() == ["postsuper: Released from hold: 1 message"]
    p = run(cfg, "super", "-d", "ALL", "--sender", "<>")
    assert p.stderr.decode().splitlines() == ["postsuper: Deleted: 1 message"]
    p = run(cfg, "super", "-e", "ALL", "--older-than", "1d", "--sender", "@example.org")
    assert p.stderr.decode().splitlines() == ["postsuper: Force-expired: 1 message"]  # erin's was already
    p = run(cfg, "super", "-d", ids[3], "--newer-than", "1h")
    assert p.stderr.decode().splitlines() == [f"postsuper: {ids[3]}: removed", "postsuper: Deleted: 1 message"]
    listing = run(cfg, "queue", "-j").stdout.decode()
    assert sorted(json.loads(line)["queue_id"] for line in listing.splitlines()) == sorted([ids[0], ids[2]])
    log = (cfg.parent / "log").read_text()
    assert f"postfix/postsuper[" in log and f"{ids[3]}: removed" in log


def test_super_errors(queue):
    cfg, ids = queue
    p = run(cfg, "super", "-d", "ALL", "bogus")
    assert p.returncode == 1 and b"postsuper: fatal: invalid directory name: bogus" in p.stderr
    p = run(cfg, "super", "-x")
    assert p.returncode == 1 and b"fatal: usage: postsuper" in p.stderr
    p = run(cfg, "super", "-r", "bad!id")  # -r itself: tests/cleanup/test_submission.py
    assert p.returncode == 0 and b"warning: invalid mail queue id: bad!id" in p.stderr
    p = run(cfg, "super", "--domain", "x.example")
    assert p.returncode == 1 and b"selectors need an operation" in p.stderr
    p = run(cfg, "super", "-d", "bad!id")
    assert b"warning: invalid mail queue id: bad!id" in p.stderr
    p = run(cfg, "super", "-d", "-", input=f"{ids[1]}\n{ids[2]}\n".encode())
    assert sorted(p.stderr.decode().splitlines()) == sorted(
        [f"postsuper: {ids[1]}: removed", f"postsuper: {ids[2]}: removed", "postsuper: Deleted: 2 messages"])


def test_queue_flush_needs_daemons(queue):
    cfg, _ = queue
    for args in (["-f"], ["-i", "ABC"]):
        p = run(cfg, "queue", *args)  # no daemons run here (tests/delivery, tests/services: they do)
        assert p.returncode == 69 and p.stderr.endswith(
            b"postqueue: fatal: Cannot flush mail queue - mail system is down\n"), p.stderr
        assert b"postqueue: warning: " in p.stderr  # the reason
    # fast_flush_domains ($relay_domains) is empty: refused before asking, as Postfix does
    p = run(cfg, "queue", "-s", "example.com")
    assert p.returncode == 69
    assert p.stderr == b'postqueue: fatal: Flush service is not configured for destination "example.com"\n'
    p = run(cfg, "queue")
    assert p.returncode == 1 and b"usage: postqueue" in p.stderr


def test_cat_q(queue):
    cfg, ids = queue
    p = run(cfg, "cat", "-q", ids[0])
    assert p.returncode == 0
    out = p.stdout.decode()
    assert out.startswith(f"*** ENVELOPE RECORDS deferred/{ids[0][0]}/{ids[0]} ***\n")
    assert "message_arrival_time: Tue Nov 14 22:13:20 2023\n" in out
    assert "\nSubject: x\n\n" in out and out.endswith(f"*** MESSAGE FILE END deferred/{ids[0][0]}/{ids[0]} ***\n")
    p = run(cfg, "cat", "-q", "NOSUCH1234")
    assert p.returncode == 1 and b"postcat: fatal: open queue file NOSUCH1234: No such file or directory" in p.stderr
    p = run(cfg, "cat", "-bh", "-q", ids[0])
    assert p.stdout == b"Subject: x\n\n" + b"y" * 700 + b"\n"


def test_super_structure_check_reports_damage(queue):
    cfg, ids = queue
    store = QueueStore.open(cfg=Config(str(cfg)))
    info = store.get(ids[1])
    path = os.path.join(store.segment_dir, "%016x.seg" % info.segid)
    store.close()
    with open(path, "r+b") as fh:
        fh.seek(info.offset + info.length - 10)
        fh.write(b"#")
    p = run(cfg, "super", "-s")  # cheap: reads no message
    assert p.returncode == 0 and b"corrupt" not in p.stderr
    p = run(cfg, "super", "-S")
    assert p.returncode == 0
    assert b"postsuper: Moved to corrupt: 1 message" in p.stderr
    assert ids[1] not in run(cfg, "queue", "-p").stdout.decode()
