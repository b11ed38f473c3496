"""soft_bounce = yes: what would bounce is deferred, and every status line says so as
Postfix 3.7's do (``dsn=4.x.x, status=SOFTBOUNCE (reason)``): the agents' (the error
agent, an agent on the delivery protocol) and qmgr's own. Compared with Debian's
Postfix on the same configuration."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "delivery"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "queue"))
from dlv import DeliveryInstance  # noqa: E402
from postfix_instance import PostfixInstance, need_postfix, postfix_tmpdir  # noqa: E402

TRANSPORT = ("inline:{{err.example=error:5.1.2 no such domain here}, {plain.example=error:}, "
             "{same.example=error:no such domain here}}")
#: What Postfix 3.7's error agent logs for error:no such domain here (test below).
POSTFIX_TAIL = "dsn=4.0.0, status=SOFTBOUNCE (no such domain here)"
TAIL = re.compile(r"dsn=\S+, status=.*$")


def test_soft_bounce_defers_and_logs_softbounce(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path,
                         main_cf={"soft_bounce": "yes", "transport_maps": TRANSPORT,
                                  "minimal_backoff_time": "1h", "maximal_backoff_time": "2h",
                                  "queue_run_delay": "1h"})
    said = "host mx.remote.example[192.0.2.7] said: 550 5.1.1 <nouser@remote.example>: User unknown"
    d.rules([{"rcpt": "^nouser@", "status": "bounced", "dsn": "5.1.1", "text": said}])
    ids = d.inject([{"rcpts": ["a@err.example"]}, {"rcpts": ["b@plain.example"]},
                    {"rcpts": ["nouser@remote.example", "ok@remote.example"]},
                    {"rcpts": ["user@bad..example"]}, {"rcpts": ["c@same.example"]}])
    text = d.wait_log(rf"{ids[3]}: to=<user@bad..example>, relay=none, .*status=SOFTBOUNCE")
    text = d.wait_log(r"to=<nouser@remote.example>, .*status=SOFTBOUNCE")
    text = d.wait_log(r"to=<b@plain.example>, .*status=SOFTBOUNCE")
    assert re.search(rf"/error\[\d+\]: {ids[0]}: to=<a@err.example>, relay=none, .*"
                     r"dsn=4\.1\.2, status=SOFTBOUNCE \(no such domain here\)", text)
    assert re.search(rf"/smtp\[\d+\]: {ids[2]}: to=<nouser@remote.example>, relay=none, .*"
                     rf"dsn=4\.1\.1, status=SOFTBOUNCE \({re.escape(said)}\)", text)
    assert re.search(rf"/qmgr\[\d+\]: {ids[3]}: to=<user@bad..example>, relay=none, .*"
                     r"dsn=4\.1\.3, status=SOFTBOUNCE \(bad address syntax\)", text)
    same = d.wait_log(r"to=<c@same.example>, .*status=SOFTBOUNCE")
    line = next(ln for ln in same.splitlines() if "to=<c@same.example>" in ln)
    assert TAIL.search(line).group() == POSTFIX_TAIL
    assert "status=bounced" not in text
    # deferred, with the reason in the defer log (mailq shows it); no notice was sent
    d.wait(lambda: all((i := d.info(q)) and i.state_name == "deferred" for q in ids), what="deferred")
    assert b"reason=no such domain here" in b"".join(d.logs(ids[0], "defer"))
    assert d.notices() == []
    listing = d.command("queue", "-p", check=True).stdout
    assert "(no such domain here)" in listing
    # soft_bounce off again (reload): the next attempt bounces for real
    d.inst.update_main_cf(soft_bounce="no")
    d.inst.reload()
    d.command("queue", "-i", ids[0], check=True)  # through the flush service
    d.wait_log(rf"{ids[0]}: to=<a@err.example>, .*dsn=5\.1\.2, status=bounced \(no such domain here\)")


def test_same_status_line_as_postfix():
    """The error agent's line under soft_bounce, fastpost vs Debian's Postfix 3.7."""
    need_postfix()
    with postfix_tmpdir() as root:
        pfx = PostfixInstance(root, soft_bounce="yes", default_transport="error:no such domain here")
        pfx.start()
        try:
            subprocess.run(["sendmail", "-C", str(pfx.etc), "-f", "a@example.org", "x@remote.example"],
                           input=b"Subject: t\n\nhi\n", check=True, timeout=30)
            deadline = time.monotonic() + 30
            line = None
            while line is None:
                assert time.monotonic() < deadline, open(pfx.maillog).read()[-3000:]
                line = next((ln for ln in open(pfx.maillog).read().splitlines()
                             if "to=<x@remote.example>" in ln), None)
                time.sleep(0.05)
        finally:
            pfx.stop()
    from fastpost.mail import deliver as D

    D.set_soft_bounce(True)
    try:
        ours = D.format_status_line(
            "ID", D.Recipient(1, "x@remote.example"),
            D.RecipientResult(1, D.BOUNCED, "5.0.0", "no such domain here"),
            arrival_time=0, active_time=0, request_time=0, conn_time=0, done_time=0)
    finally:
        D.set_soft_bounce(False)
    assert TAIL.search(ours).group() == TAIL.search(line).group() == POSTFIX_TAIL
