"""virtual(8): hosted-domain mailboxes from tables, with table-given owners.

Texts are those Debian's Postfix 3.7 virtual(8) logs for the same situations.
"""

import mailbox
import os

import pytest

from helpers.mailsite import Site

MASTER_CF = "virtual unix - n n - - virtual\n"


@pytest.fixture(scope="module")
def vsite():
    s = Site(users=("v",), master_cf=MASTER_CF)
    base = s.dir / "vmail"
    base.mkdir()
    uid, gid = s.user["v"].pw_uid, s.user["v"].pw_gid
    os.chown(base, uid, gid)
    (s.dir / "vmailbox").write_text(
        "md@v.test md/\nmb@v.test mb\nlow@v.test low\nnouid@v.test nouid\n"
        "@w.test catch/\nbase@v.test base/\n")
    (s.dir / "vuid").write_text(f"md@v.test {uid}\nmb@v.test {uid}\nlow@v.test 10\n"
                                f"@w.test {uid}\nbase@v.test {uid}\n")
    s.inst.update_main_cf(
        virtual_mailbox_domains="v.test, w.test",
        virtual_mailbox_maps=f"texthash:{s.dir}/vmailbox",
        virtual_uid_maps=f"texthash:{s.dir}/vuid",
        virtual_gid_maps=f"static:{gid}",
        virtual_mailbox_base=str(base),
        virtual_mailbox_limit="100000")
    with s:
        yield s


def test_maildir_delivery_as_table_owner(vsite):
    qid, res = vsite.send("md@v.test", b"Subject: vmd\n\nhello\n", transport="virtual")
    assert (res.status, res.dsn, res.text, res.relay) == ("sent", "2.0.0", "delivered to maildir",
                                                          "virtual")
    md = mailbox.Maildir(vsite.dir / "vmail" / "md", create=False)
    (m,) = list(md)
    assert (m["Subject"], m["Delivered-To"], m["X-Original-To"], m["Return-Path"]) == (
        "vmd", "md@v.test", "md@v.test", "<sender@example.org>")
    pw = vsite.user["v"]
    for path in (vsite.dir / "vmail" / "md", *(vsite.dir / "vmail" / "md" / "new").iterdir()):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
    assert (vsite.dir / "vmail" / "md").stat().st_mode & 0o777 == 0o700


def test_mbox_delivery_and_catch_all(vsite):
    qid, res = vsite.send("mb@v.test", b"Subject: vmb\n\nFrom x\n", transport="virtual")
    assert res.text == "delivered to mailbox"
    (m,) = list(mailbox.mbox(vsite.dir / "vmail" / "mb", create=False))
    assert m["Delivered-To"] == "mb@v.test" and m.get_payload() == ">From x\n"
    assert (vsite.dir / "vmail" / "mb").stat().st_mode & 0o777 == 0o600
    qid, res = vsite.send("Anyone@W.test", transport="virtual")
    assert res.text == "delivered to maildir"
    assert len(list(mailbox.Maildir(vsite.dir / "vmail" / "catch", create=False))) == 1


@pytest.mark.parametrize("rcpt, status, dsn, text, warning", [
    ("zz@v.test", "bounced", "5.1.1", 'unknown user: "zz@v.test"', None),
    ("nouid@v.test", "deferred", "4.3.5", "mail system configuration error",
     "recipient nouid@v.test: not found in virtual_uid_maps"),
    ("low@v.test", "deferred", "4.3.5", "mail system configuration error",
     "recipient low@v.test: bad uid 10 in virtual_uid_maps"),
])
def test_problems(vsite, rcpt, status, dsn, text, warning):
    qid, res = vsite.send(rcpt, transport="virtual")
    assert (res.status, res.dsn, res.text) == (status, dsn, text)
    if warning:
        assert f"warning: {warning}" in vsite.inst.log_text()


def test_delivered_to_loop(vsite):
    qid, res = vsite.send("md@v.test", b"Delivered-To: md@v.test\n\nx\n", transport="virtual")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.4.6", "mail forwarding loop for md@v.test")


def test_mailbox_limit(vsite):
    big = b"Subject: big\n\n" + b"x" * 120_000 + b"\n"
    qid, res = vsite.send("base@v.test", big, transport="virtual")
    assert (res.status, res.dsn) == ("bounced", "5.2.2")
    assert res.text.endswith("error writing message: File too large")


def test_unwritable_mailbox_defers(vsite):
    path = vsite.dir / "vmail" / "mb"
    path.touch()
    os.chown(path, 0, 0)
    os.chmod(path, 0o644)
    try:
        qid, res = vsite.send("mb@v.test", transport="virtual")
        assert (res.status, res.dsn, res.text) == (
            "deferred", "4.2.0",
            f"delivery failed to mailbox {path}: cannot open file: Permission denied")
    finally:
        os.chown(path, vsite.user["v"].pw_uid, vsite.user["v"].pw_gid)
