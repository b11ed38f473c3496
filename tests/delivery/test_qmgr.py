"""qmgr with real daemons: delivery, scheduling, retries, expiry, notices, recovery."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dlv import DeliveryInstance  # noqa: E402


def test_delivers_and_removes(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    ids = d.inject([{"sender": "alice@example.org", "rcpts": ["bob@remote.example"]}])
    d.wait_gone(ids)
    text = d.wait_log(rf"{ids[0]}: removed")
    assert f"{ids[0]}: from=<alice@example.org>, size=" in text
    assert "nrcpt=1 (queue active)" in text
    assert f"{ids[0]}: to=<bob@remote.example>, relay=remote.example[127.0.0.1]:25" in text
    (a,) = d.attempts()
    assert (a["queue_id"], a["recipient"], a["nexthop"], a["transport"]) == \
        (ids[0], "bob@remote.example", "remote.example", "smtp")


# -- helpers -------------------------------------------------------------------------------

def notice_of(d: DeliveryInstance, timeout: float = 30):
    """Wait for one notice (a message from <>) and return (queue id, parsed email)."""
    import email
    import email.policy

    from fastpost.mail.queue.message import content_text

    (n,) = d.wait(lambda: d.notices() or None, timeout, "a notice in the queue")
    text = content_text(d.read(n.queue_id))
    return n, email.message_from_bytes(text, policy=email.policy.compat32)


KEEP_NOTICES = {"rcpt": "^alice@", "status": "deferred", "text": "kept for the test"}


def test_bounce_notice_rfc3464(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    said = ("host mx.remote.example[192.0.2.7] said: 550 5.1.1 <nouser@remote.example>: "
            "User unknown (in reply to RCPT TO command)")
    d.rules([KEEP_NOTICES, {"rcpt": "^nouser@", "status": "bounced", "dsn": "5.1.1", "text": said,
                            "relay": "mx.remote.example[192.0.2.7]:25"}])
    body = "From: Alice <alice@example.org>\nTo: x\nSubject: lunch?\n\nAre you free?\n"
    (qid,) = d.inject([{"sender": "alice@example.org", "envid": "env-42", "body": body,
                        "rcpts": [{"address": "nouser@remote.example", "orig": "NoUser@Remote.Example",
                                   "orcpt": "rfc822;NoUser@Remote.Example", "notify": 4},
                                  "ok@remote.example"]}])
    d.wait_gone([qid])
    n, msg = notice_of(d)
    log_text = d.wait_log(rf"{qid}: sender non-delivery notification: {n.queue_id}")
    assert f"{qid}: removed" in log_text
    assert (f"{qid}: to=<nouser@remote.example>, orig_to=<NoUser@Remote.Example>, "
            "relay=mx.remote.example[192.0.2.7]:25, delay=") in log_text
    assert [r.address for r in n.recipients] == ["alice@example.org"]
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@test.localdomain>"
    assert msg["To"] == "<alice@example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, report, original = msg.get_payload()
    assert human.get_content_type() == "text/plain"
    text = human.get_payload()
    assert "nouser@remote.example" in text and "User unknown" in text
    assert "ok@remote.example" not in text
    assert report.get_content_type() == "message/delivery-status"
    per_message, per_rcpt = report.get_payload()
    assert per_message["Reporting-MTA"] == "dns; test.localdomain"
    assert per_message["X-Postfix-Queue-ID"] == qid
    assert per_message["X-Postfix-Sender"] == "rfc822; alice@example.org"
    assert per_message["Original-Envelope-Id"] == "env-42"
    assert per_message["Arrival-Date"]
    assert per_rcpt["Final-Recipient"] == "rfc822; nouser@remote.example"
    assert per_rcpt["Original-Recipient"] == "rfc822;NoUser@Remote.Example"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.remote.example"
    assert per_rcpt["Diagnostic-Code"] == \
        "smtp; 550 5.1.1 <nouser@remote.example>: User unknown"
    assert original.get_content_type() == "message/rfc822"
    inner = original.get_payload()[0]
    assert inner["Subject"] == "lunch?" and inner.get_payload() == "Are you free?\n"


def test_defer_then_retry_after_backoff(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    d.rules([{"rcpt": "^later@", "status": "deferred", "dsn": "4.2.2", "text": "mailbox full"}])
    (qid,) = d.inject([{"rcpts": ["later@remote.example"]}])
    info = d.wait(lambda: (i := d.info(qid)) is not None and i.state_name == "deferred" and i,
                  what="message deferred")
    first = d.attempts()[0]
    # next retry = the attempt + minimal_backoff_time (2s; the message is younger)
    assert info.next_retry >= first["end"] + 2 - 0.5
    (block,) = d.logs(qid, "defer")
    assert b"reason=mailbox full" in block and b"status=4.2.2" in block and b"action=delayed" in block
    listing = d.command("queue", "-p", check=True).stdout
    assert qid in listing and "(mailbox full)" in listing
    assert f"{qid}: to=<later@remote.example>" in d.log() and "status=deferred (mailbox full)" in d.log()
    d.rules([])
    d.wait_gone([qid])
    assert [a["status"] for a in d.attempts()] == ["deferred", "sent"]
    assert d.attempts()[1]["start"] >= info.next_retry - 0.01


def test_expired_message_returned_to_sender(fastpost_instance, tmp_path):
    import time

    d = DeliveryInstance(fastpost_instance, tmp_path)
    d.rules([KEEP_NOTICES, {"rcpt": "^stuck@", "status": "deferred", "dsn": "4.4.1",
                            "text": "connect to mx.stuck.example[192.0.2.9]:25: Connection timed out"}])
    six_days = time.time() - 6 * 86400
    (qid,) = d.inject([{"sender": "alice@example.org", "arrival": six_days,
                        "rcpts": ["stuck@stuck.example"]}])
    d.wait_gone([qid])
    n, msg = notice_of(d)
    text = d.wait_log(rf"{qid}: from=<alice@example.org>, status=expired, returned to sender")
    assert f"{qid}: sender non-delivery notification: {n.queue_id}" in text
    assert f"{qid}: removed" in text
    _human, report, _orig = msg.get_payload()
    per_rcpt = report.get_payload()[1]
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "4.4.1"
    assert "Connection timed out" in per_rcpt["Diagnostic-Code"]


def test_delay_warning_once(fastpost_instance, tmp_path):
    import time

    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"delay_warning_time": "5s"})
    d.rules([KEEP_NOTICES, {"rcpt": "^slow@", "status": "deferred", "text": "greylisted"}])
    (qid,) = d.inject([{"sender": "alice@example.org", "arrival": time.time() - 60,
                        "rcpts": ["slow@remote.example"]}])
    n, msg = notice_of(d)
    d.wait_log(rf"{qid}: sender delay notification: {n.queue_id}")
    per_rcpt = msg.get_payload()[1].get_payload()[1]
    assert per_rcpt["Action"] == "delayed" and per_rcpt["Will-Retry-Until"]
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
    # later attempts do not warn again
    d.wait(lambda: len([a for a in d.attempts() if a["recipient"] == "slow@remote.example"]) >= 3,
           what="two more attempts")
    assert d.log().count("sender delay notification") == 1


def test_hold_is_respected_until_released(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    (held,) = d.inject([{"rcpts": ["held@remote.example"], "state": "hold"}])
    (other,) = d.inject([{"rcpts": ["other@remote.example"]}])
    d.wait_gone([other])
    d.flush()
    (after,) = d.inject([{"rcpts": ["after@remote.example"]}])  # handled after the flush
    d.wait_gone([after])
    assert d.info(held).state_name == "hold"
    assert [a["recipient"] for a in d.attempts()] == ["other@remote.example", "after@remote.example"]
    d.command("super", "-H", held, check=True)
    d.flush()
    d.wait_gone([held])


def test_defer_transports_until_flush(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"defer_transports": "smtp"})
    (qid,) = d.inject([{"rcpts": ["x@remote.example"]}])
    d.wait_log(rf"{qid}: to=<x@remote.example>, relay=none, .*status=deferred \(deferred transport\)")
    assert d.attempts() == []
    d.flush()  # sendmail -q / postqueue -f: delivers through deferred transports
    d.wait_gone([qid])
    assert len(d.attempts()) == 1


def test_error_retry_discard_agents(fastpost_instance, tmp_path):
    transport = ("inline:{{err.example=error:5.1.2 no such domain here}, "
                 "{later.example=retry:4.3.5 system not accepting mail}, "
                 "{drop.example=discard:silently dropped}, {plain.example=error:}}")
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"transport_maps": transport})
    d.rules([KEEP_NOTICES])
    ids = d.inject([{"rcpts": ["a@err.example"]}, {"rcpts": ["b@later.example"]},
                    {"rcpts": ["c@drop.example"]}])
    text = d.wait_log(r"to=<c@drop.example>, relay=none, .*dsn=2.0.0, status=sent \(silently dropped\)")
    text = d.wait_log(r"to=<a@err.example>, relay=none, .*dsn=5.1.2, status=bounced \(no such domain here\)")
    text = d.wait_log(r"to=<b@later.example>, relay=none, .*dsn=4.3.5, status=deferred "
                      r"\(system not accepting mail\)")
    assert "/error[" in text and "/discard[" in text
    d.wait_gone([ids[0], ids[2]])
    assert d.info(ids[1]).state_name == "deferred"
    # none of these went to the smtp agent; only the notice for the bounce did
    d.wait(lambda: d.attempts(), what="the notice delivered")
    assert [(a["sender"], a["recipient"]) for a in d.attempts()] == [("", "sender@example.org")]


def test_malformed_address_bounces_and_unknown_transport_defers(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path,
                         main_cf={"transport_maps": "inline:{nowhere.example=nosuch:}"})
    d.rules([KEEP_NOTICES])
    bad, unknown = d.inject([{"rcpts": ["user@bad..example"]}, {"rcpts": ["u@nowhere.example"]}])
    d.wait_log(rf"{bad}: to=<user@bad..example>, relay=none, .*dsn=5.1.3, status=bounced "
               r"\(bad address syntax\)")
    d.wait_log(rf"{unknown}: to=<u@nowhere.example>, relay=none, .*dsn=4.3.0, status=deferred "
               r"\(mail transport unavailable\)")
    d.wait_log(r"warning: connect to transport .*nosuch")
    d.wait_gone([bad])


def max_overlap(attempts, key=None) -> int:
    """Largest number of deliveries in progress at once (per request, from the agent's
    start and end times)."""
    requests = {(a["queue_id"], a["start"]): a for a in attempts if key is None or key(a)}
    events = sorted([(a["start"], 1) for a in requests.values()] +
                    [(a["end"], -1) for a in requests.values()])
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def test_concurrency_window_grows_to_the_limit(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "initial_destination_concurrency": "2", "smtp_destination_concurrency_limit": "6"})
    d.rules([{"nexthop": "busy.example", "delay": 0.25}])
    ids = d.inject([{"rcpts": [f"u{i}@busy.example"]} for i in range(40)])
    d.wait_gone(ids, timeout=60)
    peak = max_overlap(d.attempts())
    assert peak == 6  # started at 2, grew with positive feedback, never above the limit


def test_process_limit_caps_a_transport(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, smtp_maxproc="3")
    d.rules([{"delay": 0.2}])
    ids = d.inject([{"rcpts": [f"u@d{i}.example"]} for i in range(15)])
    d.wait_gone(ids, timeout=60)
    assert max_overlap(d.attempts()) == 3  # master.cf maxproc of smtp


def test_dead_destination_is_throttled_others_flow(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"minimal_backoff_time": "30s",
                                                               "maximal_backoff_time": "60s"})
    refused = "connect to dead.example[192.0.2.1]:25: Connection refused"
    d.rules([{"nexthop": "^dead.example$", "status": "deferred", "dsn": "4.4.1", "text": refused,
              "hop": True, "delay": 0.1}])
    dead = d.inject([{"rcpts": [f"u{i}@dead.example"]} for i in range(30)])
    live = d.inject([{"rcpts": [f"u{i}@live.example"]} for i in range(10)])
    d.wait_gone(live)
    d.wait(lambda: all((i := d.info(q)) and i.state_name == "deferred" for q in dead),
           what="all dead-site mail deferred")
    tried = [a for a in d.attempts() if a["nexthop"] == "dead.example"]
    # a failed cohort (about one window's worth) was tried; the rest waited for the site
    assert 1 <= len(tried) <= 5
    text = d.log()
    assert text.count(f"status=deferred (delivery temporarily suspended: {refused})") == 30 - len(tried)
    assert "destination dead.example is not responding" in text
    # fastpost flush forgets the dead site: everything is tried again at once
    d.rules([{"nexthop": "^dead.example$", "delay": 0.05}])
    d.flush()
    d.wait_gone(dead, timeout=60)


def test_recipient_limit_splits_requests(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"smtp_destination_recipient_limit": "2"})
    (qid,) = d.inject([{"rcpts": [f"u{i}@one.example" for i in range(5)] + ["v@two.example"]}])
    d.wait_gone([qid])
    sizes = sorted(a["nrcpt"] for a in d.attempts() if a["nexthop"] == "one.example")
    assert sizes == [1, 2, 2, 2, 2]  # five recipients in requests of 2, 2 and 1
    assert len({(a["start"]) for a in d.attempts() if a["nexthop"] == "one.example"}) == 3


def test_rate_delay_spaces_deliveries(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"smtp_destination_rate_delay": "1s"})
    ids = d.inject([{"rcpts": [f"u{i}@slow.example"]} for i in range(4)])
    d.wait_gone(ids, timeout=60)
    assert max_overlap(d.attempts()) == 1
    # spaced as qmgr sent them (the agent's own clock adds the variable IPC latency)
    sent = sorted(a["request_time"] for a in d.attempts())
    assert all(b - a >= 0.9 for a, b in zip(sent, sent[1:]))  # 1s, less scheduling noise


def test_small_message_is_not_stuck_behind_a_large_one(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, smtp_maxproc="1")
    d.rules([{"delay": 0.02}])
    (big,) = d.inject([{"rcpts": [f"u@list{i}.example" for i in range(120)]}])
    d.wait(lambda: len(d.attempts()) >= 5, what="the list started")
    (small,) = d.inject([{"rcpts": ["boss@small.example"]}])
    arrived = len(d.attempts())  # deliveries made while inject ran (many on a busy machine)
    d.wait_gone([big, small], timeout=60)
    order = [a["queue_id"] for a in d.attempts()]
    position = order.index(small)
    # the one-recipient message went out within a few deliveries of its arrival, not
    # after the whole list (fair turns per message, see scheduler.py)
    assert position - arrived < 15 and position < 100, (arrived, position)


def test_queue_i_and_s_deliver_deferred_mail_now(fastpost_instance, tmp_path):
    # retries far away: only the commands can bring these back soon
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "minimal_backoff_time": "1h", "maximal_backoff_time": "2h", "queue_run_delay": "1h",
        "fast_flush_domains": "two.example"})
    d.rules([{"status": "deferred", "text": "not yet"}])
    one, two, three = d.inject([{"rcpts": ["a@one.example"]}, {"rcpts": ["b@two.example"]},
                                {"rcpts": ["c@two.example", "d@three.example"]}])
    d.wait(lambda: all((i := d.info(q)) and i.state_name == "deferred" for q in (one, two, three)),
           what="deferred")
    log_file = os.path.join(d.queue, "flush", "two.example")  # the fast-flush log
    d.wait(lambda: os.path.exists(log_file) and
           set(open(log_file).read().split()) == {two, three}, what="flush log")
    assert not os.path.exists(os.path.join(d.queue, "flush", "one.example"))
    d.rules([])
    assert d.command("queue", "-i", one).returncode == 0
    d.wait_gone([one])
    assert d.info(two).state_name == "deferred"
    assert d.command("queue", "-s", "two.example").returncode == 0
    d.wait_gone([two, three])  # three had a recipient at two.example: it is retried whole
    denied = d.command("queue", "-s", "one.example")
    assert denied.returncode == 69
    assert 'Flush service is not configured for destination "one.example"' in denied.stderr
    assert b"no such deferred message" in d.command("queue", "-i", one).stderr.encode()
    # -f: everything, retry times ignored
    (four,) = d.inject([{"rcpts": ["e@four.example"]}])
    d.wait_gone([four])


def test_queue_f_retries_everything(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "minimal_backoff_time": "1h", "maximal_backoff_time": "2h", "queue_run_delay": "1h"})
    d.rules([{"status": "deferred", "text": "not yet"}])
    ids = d.inject([{"rcpts": [f"x@d{i}.example"]} for i in range(5)])
    d.wait(lambda: all((i := d.info(q)) and i.state_name == "deferred" for q in ids), what="deferred")
    d.rules([])
    assert d.command("queue", "-f").returncode == 0
    d.wait_gone(ids)


def test_null_sender_gets_no_bounce(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    d.rules([{"rcpt": "^gone@", "status": "bounced", "text": "no such user"}])
    (qid,) = d.inject([{"sender": "", "rcpts": ["gone@remote.example"]}])
    d.wait_gone([qid])
    d.wait_log(rf"{qid}: non-delivery notification to the null sender not sent")
    assert d.notices() == [] and "sender non-delivery notification" not in d.log()


def test_double_bounce_to_postmaster_with_2bounce(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "notify_classes": "2bounce", "2bounce_notice_recipient": "pm@admin.example"})
    d.rules([{"rcpt": "^gone@", "status": "bounced", "text": "no such user"},
             {"rcpt": "^pm@", "status": "deferred", "text": "kept"}])
    (qid,) = d.inject([{"sender": "", "rcpts": ["gone@remote.example"]}])
    # by queue ID: a listing reads each queue state in its own transaction, so a notice
    # moving from active to deferred during it can be listed twice (as showq's walk can)
    (n,) = d.wait(lambda: list({m.queue_id: m for m in d.messages() if m.queue_id != qid}.values())
                  or None, what="notice")
    d.wait_log(rf"{qid}: postmaster non-delivery notification: {n.queue_id}")
    assert n.sender == "double-bounce@test.localdomain"
    assert [r.address for r in n.recipients] == ["pm@admin.example"]


def test_success_notice_for_notify_success(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    d.rules([KEEP_NOTICES])
    (qid,) = d.inject([{"sender": "alice@example.org", "rcpts": [
        {"address": "told@remote.example", "notify": 2 | 4}, "quiet@remote.example"]}])
    d.wait_gone([qid])
    n, msg = notice_of(d)
    d.wait_log(rf"{qid}: sender delivery status notification: {n.queue_id}")
    report = msg.get_payload()[1].get_payload()
    assert [r["Final-Recipient"] for r in report[1:]] == ["rfc822; told@remote.example"]
    assert report[1]["Action"] == "relayed" and report[1]["Status"] == "2.0.0"


def test_crash_recovery_delivers_everything(fastpost_instance, tmp_path):
    import signal

    d = DeliveryInstance(fastpost_instance, tmp_path)
    d.rules([{"delay": 0.05}])
    ids = d.inject([{"rcpts": [f"u{i}@d{i % 7}.example"]} for i in range(300)])
    d.wait(lambda: len(d.attempts()) >= 30, what="deliveries under way")
    qmgr = [p for p in d.inst.workers() if b"qmgr" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(qmgr) == 1
    os.kill(qmgr[0], signal.SIGKILL)
    d.wait_log(r"qmgr.*killed by signal 9|process .*qmgr.* pid \d+ killed")
    d.flush()  # the next trigger starts a new qmgr, which recovers the active queue
    d.wait_log(r"recovered \d+ message\(s\) from the active queue")
    d.wait_gone(ids, timeout=120)
    delivered = {a["queue_id"] for a in d.attempts() if a["status"] == "sent"}
    assert delivered == set(ids)  # every message at least once, none lost
    assert d.counts()["active"] == 0


def test_pflogsumm_counts_match(fastpost_instance, tmp_path):
    import re
    import subprocess

    from conftest import need_program

    pflogsumm = need_program("pflogsumm")
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "minimal_backoff_time": "1h", "maximal_backoff_time": "2h", "queue_run_delay": "1h"})
    d.rules([{"rcpt": "^bad", "status": "bounced", "dsn": "5.1.1", "text": "no such user"},
             {"rcpt": "^later", "status": "deferred", "text": "try later"}])
    sent = d.inject([{"rcpts": [f"ok{i}@d{i % 3}.example"], "size": 1000} for i in range(10)])
    bounced = d.inject([{"sender": "", "rcpts": [f"bad{i}@d.example"]} for i in range(3)])
    deferred = d.inject([{"rcpts": [f"later{i}@d.example"]} for i in range(2)])
    d.wait_gone(sent + bounced)
    d.wait(lambda: d.log().count("status=deferred") == 2, what="two deferrals")
    out = subprocess.run([pflogsumm, "--syslog-name=fptest", str(d.inst.maillog)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    totals = {m.group(2): int(m.group(1))
              for m in re.finditer(r"^\s+(\d+)\s+([a-z][a-z ]*?)(?:\s+\(.*\))?\s*$", out, re.M)}
    assert totals["delivered"] == 10
    assert totals["bounced"] == 3
    assert totals["deferred"] == 2 and "(2  deferrals)" in out
    assert totals["recipients"] == 10
    assert len(deferred) == 2


def test_active_limit_bounds_messages_in_core(fastpost_instance, tmp_path):
    import re

    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"qmgr_message_active_limit": "4"})
    d.rules([{"delay": 0.1}])
    ids = d.inject([{"rcpts": [f"u@d{i}.example"]} for i in range(20)])
    d.wait_gone(ids, timeout=60)
    active = peak = 0
    for line in d.log().splitlines():
        if re.search(r"\(queue active\)$", line):
            active += 1
        elif line.endswith(": removed"):
            active -= 1
        peak = max(peak, active)
    assert peak == 4


def test_postmaster_copy_of_bounces(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "notify_classes": "bounce", "bounce_notice_recipient": "pm@admin.example"})
    d.rules([{"rcpt": "^(alice|pm)@", "status": "deferred", "text": "kept"},
             {"rcpt": "^gone@", "status": "bounced", "text": "no such user"}])
    (qid,) = d.inject([{"sender": "alice@example.org", "rcpts": ["gone@remote.example"]}])
    d.wait_gone([qid])
    text = d.wait_log(rf"{qid}: postmaster non-delivery notification: ")
    assert f"{qid}: sender non-delivery notification: " in text
    notices = d.wait(lambda: len(d.notices()) + len([m for m in d.messages() if m.sender.startswith(
        "double-bounce@")]) == 2 and d.messages(), what="two notices")
    senders = sorted(m.sender for m in notices)
    assert senders == ["", "double-bounce@test.localdomain"]


def test_agent_crash_suspends_the_transport_for_a_while(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"transport_retry_time": "2s"})
    d.rules([{"rcpt": "^boom@", "crash": True}])
    (boom,) = d.inject([{"rcpts": ["boom@remote.example"]}])
    d.wait_log(rf"{boom}: to=<boom@remote.example>, relay=none, .*dsn=4.3.0, status=deferred "
               r"\(unknown mail transport error\)")
    d.wait_log(r"warning: transport smtp: ")
    # Hold it: retried beside other mail it would take the other deliveries of the same
    # (multi-client) agent process down with it, and a second quick crash makes the
    # master throttle the service for service_throttle_time.
    d.wait(lambda: (i := d.info(boom)) and i.state_name == "deferred", what="deferred")
    d.command("super", "-h", boom, check=True)
    (ok,) = d.inject([{"rcpts": ["fine@remote.example"]}])
    d.wait_gone([ok], timeout=60)  # after transport_retry_time the transport works again
    assert d.info(boom).state_name == "hold"
    assert "exit status 3" in d.log()  # the master saw the agent die


def test_reload_lets_deliveries_in_flight_finish(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    d.rules([{"delay": 1.0}])
    ids = d.inject([{"rcpts": [f"u@d{i}.example"]} for i in range(8)])
    d.wait(lambda: d.log().count("(queue active)") == 8, what="all active")
    d.inst.reload()  # the old qmgr retires: it lets the eight deliveries finish first
    d.wait_gone(ids, timeout=60)
    sent = [a["queue_id"] for a in d.attempts()]
    assert sorted(sent) == sorted(ids)  # each once: nothing delivered again by the new qmgr


def test_chrooted_unprivileged_daemons(fastpost_instance, tmp_path):
    from conftest import need_root

    need_root()
    d = DeliveryInstance(fastpost_instance, tmp_path, start=False, main_cf={
        "transport_maps": "inline:{{err.example=error:5.1.2 nope}}"})
    # every delivery-side service chrooted into the queue directory, as mail_owner
    chrooted = "".join(
        " ".join(line.split()[:4] + ["y"] + line.split()[5:]) + "\n"
        for line in (d.inst.etc / "master.cf").read_text().splitlines())
    d.inst.write_master_cf(chrooted)
    d.inst.start()
    d.rules([KEEP_NOTICES])
    ok, err = d.inject([{"rcpts": ["x@remote.example"]},
                        {"sender": "alice@example.org", "rcpts": ["y@err.example"]}])
    d.wait_gone([ok, err])
    n, msg = notice_of(d)
    assert msg.get_payload()[1].get_payload()[1]["Status"] == "5.1.2"
    roots = {os.readlink(f"/proc/{p}/root") for p in d.inst.workers()}
    assert roots == {str(d.inst.queue)}


def test_recipient_limit_bounds_recipients_in_core(fastpost_instance, tmp_path):
    import re

    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={"qmgr_message_recipient_limit": "7"})
    d.rules([{"delay": 0.1}])
    ids = d.inject([{"rcpts": [f"u{j}@d{i}.example" for j in range(3)]} for i in range(10)])
    d.wait_gone(ids, timeout=60)
    incore = peak = 0
    for line in d.log().splitlines():
        m = re.search(r"nrcpt=(\d+) \(queue active\)$", line)
        if m:
            incore += int(m.group(1))
        elif line.endswith(": removed"):
            incore -= 3
        peak = max(peak, incore)
    assert peak == 6  # two messages of three fit under seven; a third would not


def test_bounce_template_file_gives_the_words(fastpost_instance, tmp_path):
    """bounce_template_file (bounce(5)): the failure template's From, Subject, charset and
    expanded text in the sender's notice; its Postmaster-Subject and no text in the
    postmaster copy (notify_classes = bounce)."""
    templates = tmp_path / "bounce.cf"
    templates.write_text(
        "# a site's own words\n\n"
        "failure_template = <<END\n"
        "charset: utf-8\n"
        "FROM: Postmeister <MAILER-DAEMON>\n"
        "Subject: Zustellung fehlgeschlagen\n"
        "Postmaster-Subject: Kopie: Zustellung fehlgeschlagen\n"
        "\n"
        "Hier spricht $myhostname; Nachrichten bleiben ${maximal_queue_lifetime_days} Tage.\n"
        "Kosten: 5 $$ (gr\u00fc\u00dfe)\n"
        "END\n", encoding="utf-8")
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "bounce_template_file": str(templates), "maximal_queue_lifetime": "3d",
        "notify_classes": "bounce", "bounce_notice_recipient": "pm@admin.example"})
    d.rules([KEEP_NOTICES, {"rcpt": "^pm@", "status": "deferred", "text": "kept"},
             {"rcpt": "^gone@", "status": "bounced", "dsn": "5.1.1", "text": "no such user"}])
    (qid,) = d.inject([{"sender": "alice@example.org", "rcpts": ["gone@remote.example"]}])
    d.wait_gone([qid])
    d.wait_log(rf"{qid}: postmaster non-delivery notification")
    import email
    import email.policy

    from fastpost.mail.queue.message import content_text

    by_rcpt = {}
    for m in d.wait(lambda: (lambda ms: ms if len(ms) == 2 else None)(
            [m for m in d.messages() if m.queue_id != qid]), what="two notices"):
        text = content_text(d.read(m.queue_id))
        by_rcpt[m.recipients[0].address] = email.message_from_bytes(text, policy=email.policy.compat32)
    sender_copy, pm_copy = by_rcpt["alice@example.org"], by_rcpt["pm@admin.example"]
    assert sender_copy["From"] == "Postmeister <MAILER-DAEMON@test.localdomain>"
    assert sender_copy["Subject"] == "Zustellung fehlgeschlagen"
    human = sender_copy.get_payload()[0]
    assert human.get_content_charset() == "utf-8"
    words = human.get_payload(decode=True).decode("utf-8")
    assert words.startswith("Hier spricht test.localdomain; Nachrichten bleiben 3 Tage.\n"
                            "Kosten: 5 $ (gr\u00fc\u00dfe)\n")
    assert "<gone@remote.example>: no such user" in words
    assert pm_copy["Subject"] == "Kopie: Zustellung fehlgeschlagen"
    pm_words = pm_copy.get_payload()[0].get_payload(decode=True).decode("utf-8")
    assert "Hier spricht" not in pm_words and "<gone@remote.example>: no such user" in pm_words
