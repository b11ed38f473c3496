"""The fast-flush service: per-destination logs, ETRN in smtpd, ``queue -s``, refresh
and purge, with real daemons (smtpd, qmgr, flush, the scripted agent as smtp)."""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "delivery"))
from dlv import DeliveryInstance  # noqa: E402
from helpers.instance import Instance, free_port, read_line, talk  # noqa: E402

from fastpost.mail import flush_clnt as fc  # noqa: E402
from fastpost.mail.config import Config  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("flush")
    made = []

    def factory(**kw):
        inst = Instance(base, **kw)
        made.append(inst)
        return inst

    port, broken = free_port(), free_port()
    extra = (f"127.0.0.1:{port} inet n - n - - smtpd\n"
             f"127.0.0.1:{broken} inet n - n - - smtpd\n  -o flush_service_name=noflush\n")
    d = DeliveryInstance(factory, base, master_extra=extra, main_cf={
        # retries far away: only a flush brings deferred mail back soon
        "minimal_backoff_time": "1h", "maximal_backoff_time": "2h", "queue_run_delay": "1h",
        "fast_flush_domains": "etrn.example, sub.example, refresh.example",
        "mynetworks": "127.0.0.0/8"})
    d.port, d.broken = port, broken
    try:
        yield d
    finally:
        for inst in made:
            inst.cleanup()


def _log(d, site: str) -> str:
    return os.path.join(d.queue, "flush", site)


def _deferred(d, messages: list, sites: list[str]) -> list[str]:
    """Inject messages that the agent defers; wait until each site's log names them."""
    d.rules([{"status": "deferred", "text": "not yet"}])
    ids = d.inject(messages)
    d.wait(lambda: all((i := d.info(q)) and i.state_name == "deferred" for q in ids), what="deferred")
    for s in sites:
        d.wait(lambda s=s: os.path.exists(_log(d, s)) and set(ids) & set(open(_log(d, s)).read().split()),
               what=f"flush log of {s}")
    d.rules([])
    return ids


def _etrn(port: int, domain: str) -> str:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        read_line(sock)
        talk(sock, "HELO client.example")
        reply = talk(sock, f"ETRN {domain}")
        talk(sock, "QUIT")
    return reply


def test_only_eligible_sites_get_a_log(site):
    d = site
    one, two = _deferred(d, [{"rcpts": ["a@etrn.example", "b@other.example"]},
                             {"rcpts": ["c@x.sub.example"]}], ["etrn.example", "x.sub.example"])
    assert open(_log(d, "etrn.example")).read().split() == [one]
    assert open(_log(d, "x.sub.example")).read().split() == [two]
    assert not os.path.exists(_log(d, "other.example"))
    # parent-style list (parent_domain_matches_subdomains names fast_flush_domains)
    assert fc.FlushClient(Config(d.etc)).send_site("other.example")[0] == fc.FLUSH_STAT_DENY
    assert d.command("queue", "-s", "x.sub.example").returncode == 0
    d.wait_gone([two])
    assert open(_log(d, "x.sub.example")).read() == ""  # emptied by the flush
    assert d.command("queue", "-s", "etrn.example").returncode == 0
    d.wait_gone([one])  # both recipients: the message is retried whole


def test_etrn_starts_delivery_of_the_sites_mail(site):
    d = site
    (qid,) = _deferred(d, [{"rcpts": ["x@etrn.example"]}], ["etrn.example"])
    assert _etrn(d.port, "etrn.example").startswith("250 Queuing started")
    d.wait_gone([qid])
    d.wait_log(r"flush\[\d+\]: etrn.example: sent 1 message\(s\)")
    # nothing left: still "started" (Postfix says the same for an empty log)
    assert _etrn(d.port, "@etrn.example").startswith("250 Queuing started")


def test_etrn_for_a_site_that_is_not_eligible(site):
    d = site
    reply = _etrn(d.port, "elsewhere.example")
    assert reply.startswith("459 <elsewhere.example>: service unavailable"), reply
    d.wait_log(r"warning: reject: ETRN elsewhere\.example\.\.\. from localhost\[127\.0\.0\.1\]")


def test_etrn_when_the_flush_service_fails(site):
    d = site
    reply = _etrn(d.broken, "etrn.example")
    assert reply.startswith("458 Unable to queue messages"), reply
    d.wait_log(r"ETRN etrn\.example\.\.\. from localhost\[127\.0\.0\.1\]: fast flush service failed")


def test_bad_requests(site):
    d = site
    with fc.FlushClient(Config(d.etc)) as f:
        assert f.send_site("../index")[0] == fc.FLUSH_STAT_BAD
        assert f.send_site("a/b.example")[0] == fc.FLUSH_STAT_BAD
        assert f.send_file("not-a-queue-id!")[0] == fc.FLUSH_STAT_BAD
        assert f._request({"request": "frobnicate"})[0] == fc.FLUSH_STAT_BAD
    r = d.command("queue", "-s", "bad/site")
    assert r.returncode == 69 and 'not configured for destination "bad/site"' in r.stderr
    assert set(os.listdir(os.path.join(d.queue, "flush"))) <= {"etrn.example", "refresh.example",
                                                                "x.sub.example"}


def test_refresh_and_purge_follow_their_times(site):
    d = site
    (qid,) = _deferred(d, [{"rcpts": ["r@refresh.example"]}], ["refresh.example"])
    empty = _log(d, "x.sub.example")  # emptied by the first test; make it so here too
    open(empty, "w").close()
    cfg = Config(d.etc)
    with fc.FlushClient(cfg) as f:
        # fresh logs: refresh (12h, 7d) leaves both alone
        assert f.refresh() == (fc.FLUSH_STAT_OK, {"status": 0, "sent": 0, "removed": 0})
        assert os.path.getsize(_log(d, "refresh.example")) > 0 and os.path.exists(empty)
        # as if last sent 13 hours ago, and the empty one untouched for 8 days
        old = time.time() - 13 * 3600
        os.utime(_log(d, "refresh.example"), (old, os.stat(_log(d, "refresh.example")).st_mtime))
        os.utime(empty, (time.time() - 8 * 86400, time.time() - 8 * 86400))
        status, reply = f.refresh()
        assert (status, reply["sent"], reply["removed"]) == (fc.FLUSH_STAT_OK, 1, 1)
    d.wait_gone([qid])
    assert not os.path.exists(empty)
    assert os.path.getsize(_log(d, "refresh.example")) == 0
    # purge ignores the times: the (now empty, fresh) log goes
    with fc.FlushClient(cfg) as f:
        status, reply = f.purge()
    assert status == fc.FLUSH_STAT_OK and reply["removed"] >= 1
    assert not os.path.exists(_log(d, "refresh.example"))


def test_fastpost_flush_refreshes_the_logs(site):
    d = site
    (qid,) = _deferred(d, [{"rcpts": ["s@refresh.example"]}], ["refresh.example"])
    old = time.time() - 13 * 3600
    os.utime(_log(d, "refresh.example"), (old, os.stat(_log(d, "refresh.example")).st_mtime))
    d.flush()
    d.wait_gone([qid])
    d.wait_log(r"flush\[\d+\]: refresh.example: sent 1 message\(s\)")


def test_master_wakeup_refreshes(tmp_path):
    """master.cf's wakeup column (Postfix: ``1000?``) refreshes the logs periodically:
    here every second, with a refresh time of 0, a site's log is sent without a command."""
    inst = Instance(tmp_path, master_cf="flush unix n - n 1 0 flush\n",
                    main_cf={"fast_flush_domains": "wake.example", "fast_flush_refresh_time": "0"})
    try:
        inst.start()
        with fc.FlushClient(Config(str(inst.etc))) as f:
            assert f._request({"request": "add", "site": "wake.example",
                               "queue_id": "ABCDEF12345"})[0] == fc.FLUSH_STAT_OK
        path = os.path.join(inst.queue, "flush", "wake.example")
        assert open(path).read() == "ABCDEF12345\n"
        deadline = time.monotonic() + 30
        while os.path.getsize(path) > 0:  # emptied by a refresh the wakeup ran
            assert time.monotonic() < deadline, inst.log_text()[-3000:]
            time.sleep(0.05)
        assert "malformed" not in inst.log_text()
    finally:
        inst.cleanup()


ETRN_DIALOGUE = ["ETRN etrn.example", "HELO client.example", "ETRN etrn.example",
                 "ETRN other.example", "ETRN @etrn.example", "ETRN #etrn.example",
                 "ETRN bad..example", "ETRN", "MAIL FROM:<a@example.org>", "ETRN etrn.example"]


def _dialogue(port: int) -> list[str]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        read_line(sock)
        replies = [talk(sock, line).rstrip("\r\n") for line in ETRN_DIALOGUE]
    replies[1] = replies[1].split()[0]  # the HELO reply names the host
    return replies


def test_etrn_replies_same_as_postfix(site, tmp_path):
    """The same ETRN dialogue against Debian's Postfix 3.7 (fast_flush_domains =
    etrn.example) and fastpost: the same replies, line for line."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "queue"))
    from postfix_instance import PostfixInstance, need_postfix, postfix_tmpdir

    need_postfix()
    with postfix_tmpdir() as root:
        pfx = PostfixInstance(root, fast_flush_domains="etrn.example")
        pfx.start()
        try:
            theirs = _dialogue(pfx.port)
        finally:
            pfx.stop()
    ours = _dialogue(site.port)
    assert theirs[2] == "250 Queuing started" and theirs[3].startswith("459 ")  # the premise
    assert ours == theirs
