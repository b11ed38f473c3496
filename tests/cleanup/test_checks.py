"""header_checks, mime_header_checks, nested_header_checks and body_checks: every action.

Replies, queue contents and log lines are what C Postfix 3.7 gives for the same
tables and messages (run here while writing this; see docs/accept.md).
"""

from __future__ import annotations

import re

import pytest

HEADER_TABLE = r"""
/^Subject: reject-me/ REJECT bad subject here
/^Subject: reject-plain/ REJECT
/^Subject: reject-dsn/ REJECT 5.7.9 with its own code
/^Subject: warn-me/ WARN warned text
/^Subject: info-me/ INFO info text
/^Subject: hold-me/ HOLD hold text
/^Subject: discard-me/ DISCARD discard text
/^Subject: filter-me/ FILTER smtp:[127.0.0.1]:10025
/^Subject: redirect-me/ REDIRECT redir@example.com
/^Subject: bcc-me/ BCC bcc1@example.com
/^Subject: prepend-me/ PREPEND X-Prepended: yes
/^Subject: replace-me/ REPLACE Subject: replaced
/^Subject: ignore-me/ IGNORE
/^Subject: strip-me/ STRIP strip text
/^Subject: dunno-me/ DUNNO
/^Subject: ok-me/ OK
/^Subject: pass-me/ PASS
/^Subject: 4xx-me/ 450 4.7.0 not a header_checks action
/^X-After: 2/ REJECT after
/^Subject: fold1\n b/ WARN folded
"""

BODY_TABLE = r"""
/^reject body/ REJECT body bad
/^warn body/ WARN body warn
/^replace body/ REPLACE replaced body line
/^prepend body/ PREPEND prepended body line
/^ignore body/ IGNORE
"""

BODY = b"line1\r\nwarn body\r\nreplace body\r\nprepend body\r\nignore body\r\nlast\r\n"
FROM = "from unknown[127.0.0.1]; from=<a@example.org> to=<b@example.net> proto=ESMTP helo=<client.example>"


@pytest.fixture(scope="module")
def checks_instance(tmp_path_factory):
    """One instance with both tables for the whole module (start-up is the slow part)."""
    from helpers.accept import MASTER, Accept
    from helpers.instance import Instance, free_port

    port = free_port()
    tmp = tmp_path_factory.mktemp("checks")
    inst = Instance(tmp, master_cf=MASTER.format(port=port), main_cf={
        "mynetworks": "127.0.0.0/8", "smtpd_peername_lookup": "no", "myhostname": "mx.example.com",
        "mydestination": "$myhostname"})
    (inst.etc / "hc").write_text(HEADER_TABLE)
    (inst.etc / "bc").write_text(BODY_TABLE)
    inst.update_main_cf(header_checks=f"pcre:{inst.etc}/hc", body_checks=f"regexp:{inst.etc}/bc")
    inst.start()
    yield Accept(inst, port)
    inst.cleanup()


def send(acc, subject: str, body: bytes = BODY, extra: bytes = b"X-After: 3\r\n"):
    return acc.send("a@example.org", ["b@example.net"], f"Subject: {subject}\r\n".encode() + extra
                    + b"\r\n" + body)


@pytest.mark.parametrize("subject, reply", [
    ("reject-me", "550 5.7.1 bad subject here"),
    ("reject-plain", "550 5.7.1 message content rejected"),
    ("reject-dsn", "550 5.7.9 with its own code"),
])
def test_reject(checks_instance, subject, reply):
    acc = checks_instance
    code, text = send(acc, subject)
    assert f"{code} {text}" == reply
    log = acc.inst.wait_log(rf": reject: header Subject: {subject} ")
    line = [x for x in log.splitlines() if f"reject: header Subject: {subject} " in x][-1]
    assert line.endswith(f"reject: header Subject: {subject} {FROM}: {reply[4:]}")


def test_a_refused_messages_message_id_as_postfix_logs_it(checks_instance):
    """An SMTP message refused at a header: the Message-ID before it is logged before
    the reject line, the one after it not at all (Postfix 3.7 on a private instance,
    the same header_checks: ``ID: message-id=<before@x.example>``, then ``ID: reject:
    header Subject: ...``, nothing more; session 10)."""
    acc = checks_instance
    code, _ = acc.send("a@example.org", ["b@example.net"],
                       b"Message-ID: <before@x.example>\r\nSubject: reject-me ids\r\n"
                       b"Message-ID: <after@x.example>\r\n\r\nbody\r\n")
    assert code == 550
    log = acc.inst.wait_log(r": reject: header Subject: reject-me ids ")
    (qid,) = re.findall(r"(\w+): reject: header Subject: reject-me ids ", log)
    lines = [re.sub(r".*? " + qid + r": ", "", x) for x in log.splitlines() if f" {qid}: " in x]
    assert [x.split(" header ")[0] for x in lines if "message-id" in x or "reject" in x] == [
        "message-id=<before@x.example>", "reject:"]


def test_reject_stops_inspection_and_no_message_is_queued(checks_instance):
    acc = checks_instance
    before = acc.count()
    code, _ = send(acc, "reject-me", body=b"reject body\r\n")
    assert code == 550
    assert acc.count() == before


@pytest.mark.parametrize("subject, action, text", [
    ("warn-me", "warning", "warned text"), ("info-me", "info", "info text"),
])
def test_warn_and_info_only_log(checks_instance, subject, action, text):
    acc = checks_instance
    code, reply = send(acc, subject)
    assert code == 250
    qid = acc.queued_id(reply)
    log = acc.inst.wait_log(rf"{qid}: {action}: header Subject: {subject} ")
    assert f"{qid}: {action}: header Subject: {subject} {FROM}: {text}" in log
    assert acc.headers(qid)[3:5] == [f"Subject: {subject}", "X-After: 3"]


def test_hold(checks_instance):
    acc = checks_instance
    code, reply = send(acc, "hold-me")
    qid = acc.queued_id(reply)
    assert acc.state(qid) == "hold"
    assert f"{qid}: hold: header Subject: hold-me {FROM}: hold text" in acc.inst.wait_log(f"{qid}: hold:")


def test_discard_accepts_and_drops(checks_instance):
    acc = checks_instance
    before = acc.count()
    code, reply = send(acc, "discard-me", body=b"reject body\r\n", extra=b"X-After: 2\r\n")
    assert code == 250  # the client is told it was queued; inspection stopped at DISCARD
    qid = acc.queued_id(reply)
    acc.inst.wait_log(rf"{qid}: discard: header Subject: discard-me {re.escape(FROM)}: discard text")
    assert acc.count() == before


def test_filter_goes_to_the_extracted_section(checks_instance):
    acc = checks_instance
    _, reply = send(acc, "filter-me")
    qid = acc.queued_id(reply)
    extracted = acc.cat(qid, "-e").split("*** HEADER EXTRACTED")[1]
    assert "content_filter: smtp:[127.0.0.1]:10025" in extracted


def test_redirect_stops_inspection(checks_instance):
    acc = checks_instance
    _, reply = send(acc, "redirect-me", body=b"reject body\r\n", extra=b"X-After: 2\r\n")
    qid = acc.queued_id(reply)
    extracted = acc.cat(qid, "-e").split("*** HEADER EXTRACTED")[1]
    assert "redirect_to: redir@example.com" in extracted


def test_bcc_adds_a_recipient_that_wants_no_notices(checks_instance):
    acc = checks_instance
    _, reply = send(acc, "bcc-me")
    qid = acc.queued_id(reply)
    extracted = acc.cat(qid, "-e").split("*** HEADER EXTRACTED")[1].splitlines()
    assert extracted[1:3] == ["named_attribute: notify_flags=1", "recipient: bcc1@example.com"]
    assert acc.envelope(qid)[0].split()[3] == "2"  # two recipients in the C record


@pytest.mark.parametrize("subject, headers", [
    ("prepend-me", ["X-Prepended: yes", "Subject: prepend-me", "X-After: 3"]),
    ("replace-me", ["Subject: replaced", "X-After: 3"]),
    ("ignore-me", ["X-After: 3"]),
    ("strip-me", ["X-After: 3"]),
    ("dunno-me", ["Subject: dunno-me", "X-After: 3"]),
    ("ok-me", ["Subject: ok-me", "X-After: 3"]),
    ("4xx-me", ["Subject: 4xx-me", "X-After: 3"]),
])
def test_header_edits(checks_instance, subject, headers):
    acc = checks_instance
    _, reply = send(acc, subject)
    qid = acc.queued_id(reply)
    assert acc.headers(qid)[3:3 + len(headers)] == headers
    # body_checks ran: WARN logged, REPLACE/PREPEND/IGNORE applied
    assert acc.body(qid) == ["", "line1", "warn body", "replaced body line", "prepended body line",
                             "prepend body", "last"]
    log = acc.inst.wait_log(rf"{qid}: prepend: body prepend body ")
    assert f"{qid}: warning: body warn body {FROM}: body warn" in log
    assert f"{qid}: replace: body replace body {FROM}: replaced body line" in log


def test_unknown_action_is_a_warning(checks_instance):
    acc = checks_instance
    send(acc, "4xx-me")
    assert "warning: unknown command in header_checks map: 450 4.7.0 not a header_checks action" in \
        acc.inst.wait_log("unknown command in header_checks")


def test_pass_stops_all_inspection(checks_instance):
    acc = checks_instance
    code, reply = send(acc, "pass-me", body=b"reject body\r\n", extra=b"X-After: 2\r\n")
    assert code == 250
    qid = acc.queued_id(reply)
    assert f"{qid}: pass: header Subject: pass-me {FROM}" in acc.inst.wait_log(f"{qid}: pass:")


def test_body_reject(checks_instance):
    acc = checks_instance
    code, text = send(acc, "plain", body=b"first\r\nreject body here\r\n")
    assert (code, text) == (550, "5.7.1 body bad")
    assert f"reject: body reject body here {FROM}: 5.7.1 body bad" in acc.inst.wait_log("reject: body ")


def test_a_folded_header_is_matched_whole_and_logged_printable(checks_instance):
    acc = checks_instance
    _, reply = acc.send("a@example.org", ["b@example.net"], b"Subject: fold1\r\n b\r\n\r\nbody\r\n")
    qid = acc.queued_id(reply)
    assert f"{qid}: warning: header Subject: fold1? b {FROM}: folded" in acc.inst.wait_log(f"{qid}: warning:")


def test_mime_header_classes(accept):
    """Which table sees which header, as Postfix 3.7 decides (checked with WARN rules)."""
    acc = accept({"header_checks": "regexp:@ETC@/hc1", "mime_header_checks": "regexp:@ETC@/hc2",
                  "nested_header_checks": "regexp:@ETC@/hc3", "body_checks": "regexp:@ETC@/bc1"},
                 tables={"hc1": "/^/ WARN hc\n", "hc2": "/^/ WARN mime\n", "hc3": "/^/ WARN nested\n",
                         "bc1": "/^/ WARN body\n"})
    msg = (b"Subject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n"
           b"Content-Length: 5\r\nX-Top: 1\r\n\r\npre\r\n--BB\r\nContent-Type: text/plain\r\nX-Part: 1\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\npart1 body\r\n--BB\r\nContent-Type: message/rfc822\r\n\r\n"
           b"Subject: nested\r\nFrom: x\r\nContent-Type: text/plain\r\nX-Nested: 1\r\n\r\nnested body\r\n"
           b"--BB--\r\nepilogue\r\n")
    _, reply = acc.send("a@example.org", ["b@example.net"], msg)
    qid = acc.queued_id(reply)
    log = acc.inst.wait_log(rf"{qid}: warning: body epilogue ")
    got = re.findall(rf"{qid}: warning: (header|body) (.*?) from unknown.*: (\w+)$", log, re.M)
    got = [(w, t.split("??")[0], table) for w, t, table in got]
    assert got == [
        ("header", "Received: from client.example (unknown [127.0.0.1])", "hc"),
        ("header", "Subject: m", "hc"),
        ("header", "MIME-Version: 1.0", "mime"),
        ("header", 'Content-Type: multipart/mixed; boundary="BB"', "mime"),
        ("header", "Content-Length: 5", "hc"),
        ("header", "X-Top: 1", "hc"),
        ("body", "pre", "body"),
        ("body", "--BB", "body"),
        ("header", "Content-Type: text/plain", "mime"),
        ("header", "X-Part: 1", "mime"),
        ("header", "Content-Transfer-Encoding: 8bit", "mime"),
        ("body", "part1 body", "body"),
        ("body", "--BB", "body"),
        ("header", "Content-Type: message/rfc822", "mime"),
        ("header", "Subject: nested", "nested"),
        ("header", "From: x", "nested"),
        ("header", "Content-Type: text/plain", "mime"),
        ("header", "X-Nested: 1", "nested"),
        ("body", "nested body", "body"),
        ("body", "--BB--", "body"),
        ("body", "epilogue", "body"),
    ]
    # the message itself is intact
    assert acc.body(qid)[-3:] == ["nested body", "--BB--", "epilogue"]


def test_no_header_body_checks_for_a_client_that_may_skip_them(accept):
    port_extra = "  -o receive_override_options=no_header_body_checks\n"
    acc = accept({"header_checks": "regexp:@ETC@/hc"}, tables={"hc": "/^Subject: x/ REJECT\n"},
                 master=("{port} inet n - n - - smtpd\n" + port_extra
                         + "cleanup unix n - n - 0 cleanup\nrewrite unix - - n - - trivial-rewrite\n"
                         "postlog unix-dgram n - n - 1 postlogd\n"))
    code, _ = acc.send("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nbody\r\n")
    assert code == 250


def test_strict_8bit_checks(accept):
    acc = accept({"strict_7bit_headers": "yes", "strict_8bitmime_body": "yes"})
    code, text = acc.send("a@example.org", ["b@example.net"], b"Subject: \xc3\xa9\r\n\r\nbody\r\n")
    assert (code, text) == (550, "5.6.0 improper use of 8-bit data in message header")
    code, text = acc.send("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nbody \xc3\xa9\r\n")
    assert (code, text) == (550, "5.6.0 improper use of 8-bit data in message body")
    code, _ = acc.send("a@example.org", ["b@example.net"],
                       b"Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n\r\nbody \xc3\xa9\r\n")
    assert code == 250
    log = acc.log()
    assert "reject: mime-error improper use of 8-bit data in message header: Subject: ?? from unknown" in log
    assert "reject: mime-error improper use of 8-bit data in message body: body ?? from unknown" in log
