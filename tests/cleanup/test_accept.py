"""The accept path end to end: real clients -> smtpd -> cleanup -> the queue store.

What lands in the queue is compared with what C Postfix 3.7 writes for the same input
(found with postcat on this machine; the notes in docs/accept.md): record order and
attributes, added headers, rewritten header addresses, DSN attributes, log lines.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import need_program


def test_a_message_through_smtpd_and_cleanup(accept):
    acc = accept()
    code, text = acc.send("a@example.org", ["b@example.net", "c"],
                          b"Subject: hello\r\nTo: c\r\n\r\nbody line\r\n")
    assert code == 250 and text.startswith("2.0.0 Ok: queued as ")
    qid = acc.queued_id(text)
    env = acc.envelope(qid)
    # Postfix's envelope order: time, create_time, log_ident, rewrite_context, sender,
    # the client attributes, then per recipient dsn_orig_rcpt, O, R.
    names = [line.split(":")[0] for line in env]
    assert names[:3] == ["message_size", "message_arrival_time", "create_time"]
    assert env[3] == f"named_attribute: log_ident={qid}"
    assert env[4] == "named_attribute: rewrite_context=local"
    assert env[5] == "sender: a@example.org"
    assert "named_attribute: log_client_address=127.0.0.1" in env
    assert env[-6:] == [
        "named_attribute: dsn_orig_rcpt=rfc822;b@example.net",
        "original_recipient: b@example.net", "recipient: b@example.net",
        "named_attribute: dsn_orig_rcpt=rfc822;c",
        "original_recipient: c", "recipient: c@mx.example.com"]
    headers = acc.headers(qid)
    assert headers[0].startswith("Received: from client.example (unknown [127.0.0.1])")
    assert f"by mx.example.com (fastpost) with ESMTP id {qid};" in headers[1]
    # the local client gets its header addresses rewritten and missing headers added
    assert headers[3:5] == ["Subject: hello", "To: c@mx.example.com"]
    assert re.fullmatch(rf"Message-Id: <\d{{14}}\.{qid}@mx\.example\.com>", headers[5])
    assert re.fullmatch(r"Date: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)", headers[6])
    assert headers[7] == "From: a@example.org"
    assert acc.body(qid) == ["", "body line"]
    log = acc.inst.wait_log(rf"{qid}: message-id=<")
    assert f"{qid}: client=unknown[127.0.0.1]" in log
    assert re.search(rf"fptest/cleanup\[\d+\]: {qid}: message-id=<\d{{14}}\.{qid}@mx\.example\.com>", log)


def test_remote_client_gets_no_headers_and_no_rewriting(accept):
    acc = accept()
    code, text = acc.send("a@example.org", ["b@mx.example.com"],
                          b"Subject: hello\r\nTo: joe\r\n\r\nbody\r\n", source="127.0.0.2")
    qid = acc.queued_id(text)
    assert "named_attribute: rewrite_context=remote" in acc.envelope(qid)
    assert acc.headers(qid)[3:] == ["Subject: hello", "To: joe"]
    acc.inst.wait_log(rf"{qid}: message-id=<>")


def test_always_add_missing_headers_for_remote_clients(accept):
    acc = accept({"always_add_missing_headers": "yes"})
    _, text = acc.send("", ["b@mx.example.com"], b"Subject: x\r\n\r\nbody\r\n", source="127.0.0.2")
    qid = acc.queued_id(text)
    headers = acc.headers(qid)
    assert headers[-1] == "From: MAILER-DAEMON"
    assert any(h.startswith("Message-Id: <") for h in headers)


def test_message_id_of_the_message_is_logged_and_kept(accept):
    acc = accept()
    _, text = acc.send("a@example.org", ["b@example.net"],
                       b"Message-Id: <abc.123@client.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                       b"From: x@example.org\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    acc.inst.wait_log(rf"{qid}: message-id=<abc\.123@client\.example>")
    assert acc.headers(qid)[3:] == ["Message-Id: <abc.123@client.example>",
                                     "Date: Mon, 1 Jan 2024 00:00:00 +0000", "From: x@example.org"]


def test_resent_headers_get_resent_variants(accept):
    acc = accept()
    _, text = acc.send("a@example.org", ["b@example.net"],
                       b"Subject: fwd\r\nResent-To: joe\r\nFrom: x@example.org\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    headers = acc.headers(qid)
    assert headers[4] == "Resent-To: joe@mx.example.com"
    assert headers[6].startswith("Resent-Message-Id: <")
    assert headers[7].startswith("Resent-Date: ")
    assert headers[8] == "Resent-From: a@example.org"
    assert not any(h.startswith(("Message-Id:", "Date:")) for h in headers)
    log = acc.inst.wait_log(rf"{qid}: message-id=<>")
    assert f"{qid}: resent-message-id=<" in log


def test_dropped_headers_and_the_blank_line_after_headers(accept):
    acc = accept()
    _, text = acc.send("a@example.org", ["b@example.net"],
                       b"Subject: x\r\nBcc: hidden@example.net\r\nReturn-Path: <x@y>\r\n"
                       b"Content-Length: 5\r\nbody without a blank line\r\n")
    qid = acc.queued_id(text)
    headers = acc.headers(qid)
    assert not any(h.split(":")[0] in ("Bcc", "Return-Path", "Content-Length") for h in headers)
    assert acc.body(qid) == ["", "body without a blank line"]


def test_first_line_fixups(accept):
    acc = accept()
    _, text = acc.send("a@example.org", ["b@example.net"],
                       b"From someone@example.org Sat Nov 21\r\nSubject: x\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    assert acc.headers(qid)[3] == "X-Mailbox-Line: From someone@example.org Sat Nov 21"
    _, text = acc.send("a@example.org", ["b@example.net"], b" leading white space\r\nSubject: x\r\n\r\nb\r\n")
    qid = acc.queued_id(text)
    assert acc.body(qid)[:3] == ["", " leading white space", "Subject: x"]


@pytest.mark.parametrize("header, expected", [
    # (what the client sent, what Postfix 3.7's cleanup made of it for a local client)
    ("To: joe (comment)", "To: joe@mx.example.com (comment)"),
    ("To: (comment) joe", "To: joe@mx.example.com (comment)"),
    ("To: Joe.Smith <joe>", "To: Joe.Smith <joe@mx.example.com>"),
    ("To: Joe<joe>", "To: Joe <joe@mx.example.com>"),
    ("Cc: (c1) Joe   Smith <joe> (c2)", "Cc: (c1) Joe Smith <joe@mx.example.com>(c2)"),
    ("To: Carl <carl@x.example> (comment),   d@x.example", "To: Carl <carl@x.example> (comment),   d@x.example"),
    ("To: joe bob", "To: joe@mx.example.com, bob@mx.example.com"),
    ("To: \"a b\"", 'To: "a b"@mx.example.com'),
    ("To: Joe <@route.example:joe@x.example>, joe", "To: Joe <joe@x.example>, joe@mx.example.com"),
    ("Cc: undisclosed-recipients:;", "Cc: undisclosed-recipients:;"),
    ("To: a, g: b@x.example, c;, d", "To: a@mx.example.com, g: b@x.example, c@mx.example.com;,\n\td@mx.example.com"),
    # folding: at most 69 columns with the next address and its comma
    ("To: x, " + "y" * 32, "To: x@mx.example.com, " + "y" * 32 + "@mx.example.com"),
    ("To: x, " + "y" * 33, "To: x@mx.example.com,\n\t" + "y" * 33 + "@mx.example.com"),
    ("X-To: joe", "X-To: joe"),
])
def test_header_address_rewriting_as_postfix(accept, header, expected):
    acc = accept()
    _, text = acc.send("a@example.org", ["b@example.net"],
                       header.encode() + b"\r\nSubject: x\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    got = "\n".join(acc.headers(qid)[3:3 + expected.count("\n") + 1])
    assert got == expected


def test_dsn_parameters_as_postfix_records_them(accept):
    acc = accept()
    with acc.smtp() as s:
        s.ehlo()
        s.mail("a@example.org", ["RET=HDRS", "ENVID=abc+2Bdef"])
        s.rcpt("r1@example.net", ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;orig+40x@example.net"])
        s.rcpt("r2@example.net", ["NOTIFY=NEVER"])
        code, text = s.data(b"Subject: dsn\r\n\r\nx\r\n")
    qid = acc.queued_id(text.decode())
    env = acc.envelope(qid)
    assert env[0].split()[4] == "22"  # qmgr flags: NEVER 2 + SUCCESS 4 + DELAY 16
    i = env.index("named_attribute: rewrite_context=local")
    assert env[i + 1:i + 4] == ["named_attribute: envelope_id=abc+def",
                                "named_attribute: ret_flags=2", "sender: a@example.org"]
    assert env[-8:] == [
        "named_attribute: notify_flags=10", "named_attribute: dsn_orig_rcpt=rfc822;orig@x@example.net",
        "original_recipient: r1@example.net", "recipient: r1@example.net",
        "named_attribute: notify_flags=1", "named_attribute: dsn_orig_rcpt=rfc822;r2@example.net",
        "original_recipient: r2@example.net", "recipient: r2@example.net"]


def test_encoding_attribute(accept):
    acc = accept()
    # BODY=8BITMIME: the envelope and the extracted section say 8bit
    _, text = acc.send("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nbody \xc3\xa9\r\n",
                       mail_options=["BODY=8BITMIME"])
    cat = acc.cat(acc.queued_id(text), "-e")
    assert cat.count("named_attribute: encoding=8bit") == 2
    # raw 8-bit without a declaration: no encoding attribute at all
    _, text = acc.send("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nbody \xc3\xa9\r\n")
    assert "encoding=" not in acc.cat(acc.queued_id(text), "-e")
    # a MIME part declared 8bit makes the message 8bit
    _, text = acc.send("a@example.org", ["b@example.net"],
                       b"Subject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n"
                       b"\r\npre\r\n--BB\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n"
                       b"\r\nx\r\n--BB--\r\n")
    cat = acc.cat(acc.queued_id(text), "-e")
    assert cat.split("*** HEADER EXTRACTED")[1].count("encoding=8bit") == 1


def test_long_and_large_messages(accept):
    acc = accept()
    big = b"".join(b"line %07d of a large message, padded to make it longer than a MiB\r\n" % i
                   for i in range(20000))
    long_header = b"X-Long: " + b"v" * 5000
    _, text = acc.send("a@example.org", ["b@example.net"], long_header + b"\r\nSubject: big\r\n\r\n" + big)
    qid = acc.queued_id(text)
    body = acc.body(qid)
    assert len(body) == 20001 and body[-1].startswith("line 0019999 ")
    assert acc.headers(qid)[3] == long_header.decode()


def test_bdat_through_cleanup(accept):
    acc = accept()
    with acc.smtp() as s:
        s.ehlo()
        assert s.has_extn("chunking")
        s.mail("a@example.org")
        s.rcpt("b@example.net")
        chunk = b"Subject: chunked\r\n\r\nhi"
        s.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        assert s.getreply()[0] == 250
        s.send(b"BDAT 2 LAST\r\n\r\n")
        code, text = s.getreply()
    assert code == 250
    qid = acc.queued_id(text.decode())
    assert acc.headers(qid)[3] == "Subject: chunked"
    assert acc.body(qid) == ["", "hi"]


def test_export_reads_with_real_postcat(accept, tmp_path):
    postcat = need_program("postcat")
    acc = accept()
    _, text = acc.send("a@example.org", ["b@example.net", "c@example.net"],
                       b"Subject: export\r\nTo: b@example.net\r\n\r\nline 1\r\nline 2\r\n")
    qid = acc.queued_id(text)
    data = acc.export(qid)
    path = tmp_path / qid
    path.write_bytes(data)
    real = subprocess.run([postcat, "-ebh", str(path)], capture_output=True, text=True, check=True)
    ours = acc.cat(qid, "-ebh")
    strip = lambda t: [line for line in t.splitlines() if not line.startswith("***")]  # noqa: E731
    assert strip(real.stdout) == strip(ours)
    assert "recipient: c@example.net" in real.stdout
