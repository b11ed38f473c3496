"""showq: an unprivileged user lists the queue through the service, and sees exactly
what root sees reading the index directly (mailq format and JSON lines)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "delivery"))
from dlv import inject  # noqa: E402
from helpers.instance import Instance  # noqa: E402
from svc import as_mail_owner, need_unprivileged_runner, public_base, unprivileged  # noqa: E402

MASTER_CF = "showq  unix  n  -  n  -  -  showq\nflush  unix  n  -  n  -  0  flush\n"


def _defer_one(queue_id: str):
    """As qmgr would: deferred, with a defer log naming one of two recipients."""
    def run():
        from fastpost.mail.queue import DEFERRED, QueueSettings, QueueStore

        with QueueStore.open(settings=QueueSettings("."), recover=False) as store:
            with store.edit() as ed:
                ed.set_state(queue_id, DEFERRED, next_retry=2e9)
                ed.append_log(queue_id, "defer", b"recipient=late@slow.example\n"
                              b"status=4.4.1\nreason=connect to slow.example: Connection refused\n")
        return True
    return run


@pytest.fixture(scope="module")
def site():
    need_unprivileged_runner()
    base = public_base()
    inst = Instance(base, master_cf=MASTER_CF, main_cf={"myhostname": "test.localdomain",
                                                        "fast_flush_domains": "slow.example"})
    os.chmod(inst.dir, 0o755)
    os.chmod(inst.etc, 0o755)
    try:
        inst.start()
        ids = inject(str(inst.etc), [
            {"sender": "alice@example.org", "rcpts": ["bob@remote.example"], "state": "hold"},
            {"sender": "", "rcpts": ["postmaster@example.org"], "size": 5000},
            {"sender": "carol@example.org", "rcpts": ["late@slow.example", "other@slow.example"]},
            {"sender": "dave@example.org", "rcpts": [f"r{i}@many.example" for i in range(30)]},
            # more recipients than one showq part carries (1,000): continuation parts
            {"sender": "erin@example.org", "rcpts": [f"m{i}@big.example" for i in range(2345)]},
        ], trigger=False)
        as_mail_owner(_defer_one(ids[2]), str(inst.queue))
        yield inst, ids
    finally:
        inst.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_queue_is_not_readable_by_the_user(site):
    inst, _ = site
    # the premise: nobody cannot open the index, only the service can help
    probe = unprivileged(["-c", str(inst.etc), "cat", "-q", "NOSUCHID"])
    assert probe.returncode != 0
    assert (os.stat(inst.queue / "index").st_mode & 0o777) == 0o700


def test_mailq_through_showq_matches_the_direct_listing(site):
    inst, ids = site
    direct = inst.command("queue", "-p", check=True).stdout
    assert all(i in direct for i in ids)
    assert "(connect to slow.example: Connection refused)" in direct
    assert "(reason unavailable)" in direct
    for argv in (["queue", "-p"], ["mailq"]):
        out = unprivileged(["-c", str(inst.etc), *argv], egid="postdrop")
        assert out.returncode == 0, out.stderr
        assert out.stdout == direct, argv


def test_json_through_showq_matches_the_direct_listing(site):
    inst, ids = site
    direct = inst.command("queue", "-j", check=True).stdout
    out = unprivileged(["-c", str(inst.etc), "queue", "-j"], egid="postdrop")
    assert out.returncode == 0, out.stderr
    assert out.stdout == direct
    listed = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(m["queue_id"] for m in listed) == sorted(ids)
    many = next(m for m in listed if m["sender"] == "dave@example.org")
    assert len(many["recipients"]) == 30
    big = next(m for m in listed if m["sender"] == "erin@example.org")
    assert [r["address"] for r in big["recipients"]] == [f"m{i}@big.example" for i in range(2345)]


def test_without_the_group_the_report_is_unavailable(site):
    inst, _ = site
    out = unprivileged(["-c", str(inst.etc), "queue", "-p"])
    assert out.returncode == 69
    assert "Queue report unavailable - mail system is down" in out.stderr
    assert "postdrop" in out.stderr  # the hint names the group


def test_many_batches_and_an_empty_queue(tmp_path):
    """A listing longer than one batch (1,000) arrives whole; an empty queue says so."""
    need_unprivileged_runner()
    base = public_base()
    inst = Instance(base, master_cf=MASTER_CF)
    os.chmod(inst.dir, 0o755)
    os.chmod(inst.etc, 0o755)
    try:
        inst.start()
        out = unprivileged(["-c", str(inst.etc), "mailq"], egid="postdrop")
        assert (out.returncode, out.stdout) == (0, "Mail queue is empty\n"), \
            out.stderr + inst.log_text()[-3000:]
        ids = inject(str(inst.etc), [{"rcpts": [f"u{i}@x.example"]} for i in range(2100)],
                     trigger=False)
        out = unprivileged(["-c", str(inst.etc), "queue", "-j"], egid="postdrop")
        assert out.returncode == 0, out.stderr
        assert sorted(json.loads(line)["queue_id"] for line in out.stdout.splitlines()) == sorted(ids)
    finally:
        inst.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_unprivileged_flush_requests_go_through_the_flush_service(site):
    """queue -s / -i as nobody: the flush service does the work (Postfix's postqueue
    lets any user ask); without the group the service is out of reach."""
    inst, ids = site
    out = unprivileged(["-c", str(inst.etc), "queue", "-s", "slow.example"], egid="postdrop")
    assert out.returncode == 0, out.stderr
    out = unprivileged(["-c", str(inst.etc), "queue", "-i", "ABCDEF123"], egid="postdrop")
    assert (out.returncode, out.stderr) == (0, "postqueue: warning: ABCDEF123: no such deferred message\n")
    out = unprivileged(["-c", str(inst.etc), "queue", "-s", "other.example"], egid="postdrop")
    assert out.returncode == 69 and 'not configured for destination "other.example"' in out.stderr
    out = unprivileged(["-c", str(inst.etc), "queue", "-s", "slow.example"])
    assert out.returncode == 69
    assert out.stderr.endswith("postqueue: fatal: Cannot flush mail queue - mail system is down\n")
