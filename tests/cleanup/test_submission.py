"""Local submission on the accept path: sendmail -> maildrop -> pickup -> cleanup -> queue,
and `fastpost super -r` (requeue) through pickup and cleanup.

A real instance (smtpd, cleanup, trivial-rewrite, pickup; no qmgr, so messages stay in
the queue to be read). As root (CI) the daemons run as mail_owner `postfix`.
"""

import contextlib
import os
import pwd
import re
import subprocess
import sys
import time

import pytest

from fastpost.mail import maildrop

PICKUP = "pickup unix n - n 60 1 pickup\nbounce unix - - n - 0 bounce\n"


@pytest.fixture(scope="module")
def acc(request, tmp_path_factory):
    # module scope: one instance for every test here
    from helpers.accept import MASTER, Accept
    from helpers.instance import Instance, free_port

    port = free_port()
    settings = {"mynetworks": "127.0.0.0/8", "smtpd_peername_lookup": "no",
                "myhostname": "mx.example.com", "mydomain": "example.com",
                "myorigin": "$myhostname", "mydestination": "$myhostname, localhost"}
    inst = Instance(tmp_path_factory.mktemp("submission"),
                    master_cf=MASTER.format(port=port) + PICKUP, main_cf=settings)
    (inst.etc / "hc").write_text("/^Subject: reject-me/ REJECT no thanks\n")
    inst.update_main_cf(header_checks=f"regexp:{inst.etc}/hc")
    with inst:
        inst.start()
        yield Accept(inst, port)


def sendmail(acc, *args, data: bytes):
    env = dict(acc.inst.env())
    return subprocess.run([sys.executable, "-m", "fastpost", "-c", str(acc.inst.etc),
                           "sendmail", *args], input=data, env=env, capture_output=True,
                          timeout=60)


def picked(acc, uid: int, sender: str, count: int = 1) -> list[str]:
    text = acc.inst.wait_log(rf"pickup\[\d+\]: \w+: uid={uid} from=<{re.escape(sender)}>",
                             count=count)
    return re.findall(rf"pickup\[\d+\]: (\w+): uid={uid} from=<{re.escape(sender)}>", text)


def test_sendmail_message_lands_in_the_queue_with_its_records(acc):
    proc = sendmail(acc, "-f", "owner@example.org", "-F", "The Owner", "-N", "success,delay",
                    "-R", "hdrs", "-V", "env-42", "alice@example.net", "bob",
                    data=b"Subject: records\n\nbody line\n")
    assert proc.returncode == 0, proc.stderr
    (qid,) = picked(acc, os.getuid(), "owner@example.org")
    parsed = acc.parsed(qid)
    assert parsed.sender == "owner@example.org"
    assert [r.address for r in parsed.recipients] == ["alice@example.net", "bob@mx.example.com"]
    assert all(r.dsn_notify == 2 | 8 for r in parsed.recipients)
    assert parsed.attrs["rewrite_context"] == "local"
    assert parsed.attrs["ret_flags"] == "2" and parsed.attrs["envelope_id"] == "env-42"
    headers = acc.headers(qid)
    assert headers[0] == "Received: by mx.example.com (fastpost, from userid 0)"
    assert headers[1].startswith(f"\tid {qid}; ")
    assert "From: The Owner <owner@example.org>" in headers  # added (local submission)
    assert any(h.startswith("Message-Id: <") for h in headers)
    assert acc.body(qid) == ["", "body line"]
    # the same as postcat reads it (exported queue file)
    assert not os.listdir(acc.inst.queue / "maildrop")


def test_super_r_requeues_through_pickup_and_cleanup(acc):
    code, text = acc.send("s@example.org", ["r1@example.net", "r2@example.net"],
                          b"Subject: again\r\n\r\nonce more\r\n")
    old = acc.queued_id(text)
    before = acc.headers(old)
    arrival = acc.parsed(old).arrival
    proc = acc.inst.command("super", "-r", old)
    assert proc.returncode == 0, proc.stderr
    assert f"{old}: requeued" in proc.stderr and "Requeued: 1 message" in proc.stderr
    owner = pwd.getpwnam(acc.inst.main_settings.get("mail_owner", "postfix")).pw_uid \
        if os.geteuid() == 0 else os.getuid()
    (new,) = picked(acc, owner, "s@example.org")
    assert new != old
    store = acc.store()
    try:
        assert store.get(old) is None
    finally:
        store.close()
    parsed = acc.parsed(new)
    assert [r.address for r in parsed.recipients] == ["r1@example.net", "r2@example.net"]
    assert abs(parsed.arrival - arrival) < 0.001  # the original arrival time
    after = acc.headers(new)
    assert after == before  # no second Received:, nothing added twice
    assert acc.body(new) == ["", "once more"]


def test_a_broken_maildrop_file_goes_to_corrupt(acc):
    good = maildrop.encode(maildrop.DropMessage("x@example.org", [("y@example.net", "", 0)],
                                                b"Subject: cut\n\nbody\n"))
    name = maildrop.drop(str(acc.inst.queue / "maildrop"), good[: len(good) // 2])
    subprocess.run([sys.executable, "-c", "import sys; from fastpost.cli.sendmail import "
                    "wake_pickup; wake_pickup(sys.argv[1])", str(acc.inst.queue)], check=True)
    acc.inst.wait_log(rf"warning: maildrop/{name}: truncated file: moved to corrupt")
    assert (acc.inst.queue / "corrupt" / name).exists()


def test_maildrop_stream_round_trip():
    msg = maildrop.DropMessage("a@b", [("c@d", "rfc822;c@d", 2), ("e", "", 0)],
                               b"Subject: x\n\n" + b"y" * 5000 + b"\n.\n", arrival=1700000000.25,
                               flags=64, fullname="A B", ret="1", envid="E", attrs=[("k", "v")])
    back = maildrop.parse(maildrop.encode(msg))
    assert back == msg
    with pytest.raises(maildrop.MaildropError):
        maildrop.parse(maildrop.encode(msg)[:-1])


def test_queue_tools_run_by_root_before_the_first_message_leave_the_queue_usable(accept):
    # `fastpost super` as root on a new queue creates its index: mail_owner must keep it.
    acc2 = accept()
    proc = acc2.inst.command("super", "-d", "ALL")
    assert proc.returncode == 0, proc.stderr
    code, text = acc2.send("s@example.org", ["r@example.net"], b"Subject: first\r\n\r\nx\r\n")
    assert code == 250, text
    index = acc2.inst.queue / "index"
    for path in index.iterdir():
        assert path.stat().st_uid == index.stat().st_uid


def test_a_rejected_submission_is_returned_to_the_sender(acc):
    """header_checks REJECT on a sendmail message: a non-delivery notice from <> to
    the sender with cleanup's reason, through the bounce service; the message itself
    is not left in the queue (Postfix's cleanup does the same with pickup's mail)."""
    import json

    proc = sendmail(acc, "-f", "author@example.org", "one@example.net", "two@example.net", "bare",
                    data=b"Subject: reject-me please\n\nnot wanted\n")
    assert proc.returncode == 0, proc.stderr
    log = acc.inst.wait_log(r"sender non-delivery notification: \w+", count=1)
    # the lines of Postfix 3.7, all under the refused message's ID (cleanup gives the
    # stand-in that ID again: docs/submission.md); Postfix 3.7 here logged
    #   postfix/pickup[P]: ORIG: uid=0 from=<author@example.org>
    #   postfix/cleanup[P]: ORIG: reject: header Subject: reject-me please from local;
    #       from=<author@example.org> to=<one@example.net>: 5.7.1 no thanks
    #   postfix/cleanup[P]: ORIG: message-id=<...>
    #   postfix/cleanup[P]: ORIG: to=<one@example.net>, relay=none, delay=0.04,
    #       delays=0.04/0/0/0, dsn=5.7.1, status=bounced (no thanks)   (one per rcpt;
    #       for "bare": to=<bare@example.test>, orig_to=<bare>, relay=none, ... (session 8))
    #   postfix/bounce[P]: ORIG: sender non-delivery notification: NOTICE
    (orig,) = re.findall(r"(\w+): reject: header Subject: reject-me please from local; "
                         r"from=<author@example.org> to=<[\w.@]+>: 5\.7\.1 no thanks",
                         log)
    assert re.search(rf"{orig}: uid={os.getuid()} from=<author@example.org>", log)
    for rcpt in ("one@example.net", "two@example.net"):
        assert re.search(rf"cleanup\[\d+\]: {orig}: to=<{rcpt}>, relay=none, delay=([\d.]+), "
                         r"delays=\1/0/0/0, dsn=5\.7\.1, status=bounced \(no thanks\)", log), log
    assert re.search(rf"cleanup\[\d+\]: {orig}: to=<bare@mx.example.com>, orig_to=<bare>, "
                     r"relay=none, delay=([\d.]+), delays=\1/0/0/0, dsn=5\.7\.1, "
                     r"status=bounced \(no thanks\)", log), log
    # once: the refused message's line (cleanup logs none for the stand-in, session 10)
    assert len(re.findall(rf"cleanup\[\d+\]: {orig}: message-id=<", log)) == 1, log
    assert "returned to the sender through" not in log  # the ID was reused
    standin = orig
    (notice,) = re.findall(rf"bounce\[\d+\]: {orig}: sender non-delivery notification: (\w+)", log)
    assert not re.search(rf"pickup\[\d+\]: warning: {orig}", log)  # none: as Postfix
    listed = {m["queue_id"]: m for m in map(json.loads, acc.inst.command(
        "queue", "-j", check=True).stdout.splitlines())}
    assert standin not in listed and orig not in listed
    assert listed[notice]["sender"] == "MAILER-DAEMON"  # postqueue -j names <> so
    assert [r["address"] for r in listed[notice]["recipients"]] == ["author@example.org"]
    text = acc.inst.command("cat", "-bq", notice, check=True).stdout
    assert "no thanks" in text and "one@example.net" in text
    assert "Subject: reject-me please" in text  # the returned message's headers
    assert not os.listdir(acc.inst.queue / "maildrop")


def test_cleanup_reuses_a_refused_id_only_for_the_connection_told_it(acc):
    """OPEN's reuse_id (pickup's returned rejects): a connection that was refused a
    message with a 5xx may give that ID to its next message, once; another connection,
    an ID not refused, or a second reuse gets an ID of its own."""
    import asyncio

    from fastpost.mail.cleanup_clnt import CleanupClient

    path = str(acc.inst.queue / "public" / "cleanup")

    async def message(client, subject: bytes, reuse=None):
        meta = {"s": "s@example.org", "time": int(time.time() * 1e6)}
        if reuse:
            meta["reuse_id"] = reuse
        txn = client.open(meta)
        opened = await txn.opened
        txn.add_recipient("r@example.net")
        txn.write(b"Subject: " + subject + b"\n\nbody\n")
        code, _, queue_id = await txn.finish({"hold": 1})
        message.txn = txn
        return opened, code, queue_id

    async def scenario():
        one, two = CleanupClient(path), CleanupClient(path)
        try:
            refused, code, _ = await message(one, b"reject-me now")
            assert code == 550
            other = await message(two, b"other", reuse=refused)
            assert other[0] != refused
            plain = await message(two, b"not a stand-in")
            # RETURNED (the stand-in's recipients bounced, by cleanup): only for a
            # stand-in this connection opened, and once
            assert (await message.txn.returned("5.7.1 no"))[0] == 550
            ok = await message(one, b"stand-in", reuse=refused)
            assert ok[0] == refused and ok[1:] == (250, refused)
            standin = message.txn
            assert await standin.returned("5.7.1 no thanks") == (250, "2.0.0 Ok", refused)
            assert (await standin.returned("5.7.1 no thanks"))[0] == 550
            assert plain[1] == 250 and other[1] == 250
            for queue_id in (plain[2], other[2]):
                assert acc.inst.command("super", "-d", queue_id).returncode == 0
            assert (await message(one, b"again", reuse=refused))[0] != refused
            return refused
        finally:
            one.close()
            two.close()

    refused = asyncio.run(scenario())
    assert acc.inst.command("super", "-d", refused).returncode == 0  # the held copy


def test_a_rejected_submission_under_soft_bounce_stays_in_maildrop(acc):
    """soft_bounce = yes: Postfix 3.7's cleanup logs its reject line and returns nothing;
    the file stays in maildrop (seen on a private Postfix: `reject: ...`, `message-id=`,
    then nothing, and postqueue -p lists the maildrop file). fastpost's pickup leaves it
    there too; once soft_bounce is off again the next scan returns it to the sender."""
    inst = acc.inst
    inst.update_main_cf(soft_bounce="yes")
    inst.reload()
    try:
        before = inst.log_text().count("reject: header Subject: reject-me softly")
        proc = sendmail(acc, "-f", "soft@example.org", "one@example.net",
                        data=b"Subject: reject-me softly\n\nnot wanted\n")
        assert proc.returncode == 0, proc.stderr
        log = inst.wait_log(r"reject: header Subject: reject-me softly", count=before + 1)
        (first,) = re.findall(r"(\w+): reject: header Subject: reject-me softly", log)
        assert len(os.listdir(inst.queue / "maildrop")) == 1
        assert f"{first}: to=<one@example.net>" not in inst.log_text()
    finally:
        inst.update_main_cf(soft_bounce="no")
        inst.reload()
    assert sendmail(acc, "-f", "other@example.org", "one@example.net",
                    data=b"Subject: wakes pickup\n\nhi\n").returncode == 0
    log = inst.wait_log(r"\w+: uid=\d+ from=<soft@example.org>", count=2)
    orig = re.findall(r"(\w+): uid=\d+ from=<soft@example.org>", log)[-1]
    log = inst.wait_log(rf"{orig}: sender non-delivery notification")
    assert re.search(rf"cleanup\[\d+\]: {orig}: to=<one@example.net>, .*status=bounced", log)
    deadline = time.monotonic() + 30  # pickup removes the file after the notice
    while os.listdir(inst.queue / "maildrop") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.listdir(inst.queue / "maildrop")


#: Messages refused by header_checks (their Subject: the `reject-me` pattern), each
#: with a token of its own, and where its ID headers stand around the refused header.
REFUSED_SHAPES = {
    "noid": b"Subject: reject-me noid\n\nbody\n",
    "before": b"Message-ID: <before@x.example>\nSubject: reject-me before\n\nbody\n",
    "after": b"Subject: reject-me after\nMessage-ID: <after@x.example>\n\nbody\n",
    "both": (b"Message-ID: <one@x.example>\nSubject: reject-me both\n"
             b"Message-ID: <two@x.example>\n\nbody\n"),
    "resent": b"Resent-From: r@x.example\nSubject: reject-me resent\n\nbody\n",
    "resentids": (b"Resent-Message-ID: <rm@x.example>\nMessage-ID: <m@x.example>\n"
                  b"Subject: reject-me resentids\n\nbody\n"),
    # the Message-ID in a later frame than the refused header (pickup writes its content
    # 1 MiB at a time: a frame each)
    "late": (b"Subject: reject-me late\n"
             + b"".join(b"X-Pad-%d: %s\n" % (i, b"q" * 60) for i in range(16000))
             + b"Message-ID: <late@x.example>\n\nbody\n"),
    # headers only: the message ends in its header section
    "headersonly": b"Subject: reject-me headersonly\nMessage-ID: <ho@x.example>\n",
}


def _refused_lines(log: str, token: str) -> list[str]:
    """cleanup's lines for the first message refused with Subject ``reject-me TOKEN``,
    the queue ID taken out, a generated message ID as <GENERATED>, the reject line as
    ``reject`` (its client part differs between the two MTAs' submissions)."""
    qid = re.search(rf"cleanup\[\d+\]: (\w+): reject: header Subject: reject-me {token} ",
                    log).group(1)
    out = []
    for text in re.findall(rf"cleanup\[\d+\]: {qid}: (.*)", log):
        text = re.sub(rf"<\d{{14}}\.{qid}@[^>]+>", "<GENERATED>", text)
        out.append("reject" if text.startswith("reject: ") else text)
    return out


def _submit_refused(submit, wait_log, before: dict) -> None:
    """One message at a time (each after the last one's reject line), then an accepted
    one whose message-id= line says that cleanup is done with the ones before it."""
    for token, body in REFUSED_SHAPES.items():
        assert submit(body).returncode == 0
        wait_log(rf"reject: header Subject: reject-me {token} ", before.get(token, 0) + 1)
    assert submit(b"Message-ID: <sentinel@x.example>\nSubject: fine\n\nbody\n").returncode == 0
    wait_log(r"message-id=<sentinel@x.example>", before.get("sentinel", 0) + 1)


def test_refused_submissions_log_their_message_ids_as_postfix(acc):
    """soft_bounce = yes, header_checks REJECT on sendmail messages whose Message-ID /
    Resent- headers stand before, after and around the refused header: cleanup's lines
    for each (message-id=, resent-message-id=, the reject) in Postfix 3.7's order, run
    side by side with a private Postfix on the same header_checks."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "queue"))
    from postfix_instance import PostfixInstance, postfix_tmpdir

    with postfix_tmpdir() as root:
        hc = os.path.join(root, "hc")
        with open(hc, "w") as fh:
            fh.write("/^Subject: reject-me/ REJECT no thanks\n")
        pfx = PostfixInstance(root, soft_bounce="yes", header_checks=f"regexp:{hc}")
        pfx.start()
        try:
            def pfx_log(pattern, count):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    with open(pfx.maillog) as fh:
                        text = fh.read()
                    if len(re.findall(pattern, text)) >= count:
                        return text
                    time.sleep(0.05)
                raise AssertionError(f"Postfix did not log {pattern}")

            _submit_refused(lambda body: subprocess.run(
                ["/usr/sbin/sendmail", "-C", pfx.etc, "-f", "soft@example.org",
                 "one@example.net"], input=body, capture_output=True, timeout=60),
                pfx_log, {})
            with open(pfx.maillog) as fh:
                theirs = fh.read()
        finally:
            pfx.stop()

    inst = acc.inst
    inst.update_main_cf(soft_bounce="yes")
    inst.reload()
    try:
        log = inst.log_text()
        before = {token: log.count(f"reject: header Subject: reject-me {token} ")
                  for token in REFUSED_SHAPES}
        before["sentinel"] = log.count("message-id=<sentinel@x.example>")
        _submit_refused(lambda body: sendmail(acc, "-f", "soft@example.org", "one@example.net",
                                              data=body),
                        lambda pattern, count: inst.wait_log(pattern, count=count), before)
        ours = inst.log_text()[len(log):]
        for name in os.listdir(inst.queue / "maildrop"):  # kept by soft_bounce: not returned
            with contextlib.suppress(FileNotFoundError):  # (the sentinel's, being removed)
                os.unlink(inst.queue / "maildrop" / name)
    finally:
        inst.update_main_cf(soft_bounce="no")
        inst.reload()
    for token in REFUSED_SHAPES:
        assert _refused_lines(ours, token) == _refused_lines(theirs, token), token
    # what Postfix logged, as a reading aid
    assert _refused_lines(theirs, "before") == ["message-id=<before@x.example>", "reject"]
    assert _refused_lines(theirs, "both") == [
        "message-id=<one@x.example>", "reject", "message-id=<two@x.example>"]
    assert _refused_lines(theirs, "resent") == [
        "reject", "resent-message-id=<GENERATED>", "message-id=<>"]
    assert _refused_lines(theirs, "late") == ["reject", "message-id=<late@x.example>"]
    assert _refused_lines(theirs, "headersonly") == ["reject", "message-id=<ho@x.example>"]
