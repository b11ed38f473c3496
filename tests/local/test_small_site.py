"""The common aliases of a small site (issue 8), as written, with Maildirs in the homes.

    postmaster: root
    root: alice
    mailguys: alice, bob
    clients: :include:/etc/fastpost/clientlist.txt
    spam-reports: /home/alice/spambucket.txt

alice and bob are real users created for the test (their names and homes differ from
the example's), and the include list lives in the test's directory instead of
/etc/fastpost (a shared machine); the aliases are otherwise exactly these.
home_mailbox = Maildir/, so what reaches alice must be readable as her Maildir, by
Python's mailbox module as by mutt. Mail for root (as cron sends it) ends there.
"""

import mailbox
import os
import pwd

import pytest

from helpers.mailsite import DOMAIN, Site

ALIASES = """\
postmaster: root
root: {alice}
mailguys: {alice}, {bob}
clients: :include:{W}/clientlist.txt
spam-reports: {home_alice}/spambucket.txt
"""

CRON_MAIL = (b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> run-parts\n"
             b"Content-Type: text/plain; charset=UTF-8\n\n"
             b"/etc/cron.daily/logrotate:\nerror: skipping \"/var/log/x\"\n")


@pytest.fixture(scope="module")
def small():
    s = Site(users=("alice", "bob", "carol"), aliases=ALIASES,
             main_cf={"home_mailbox": "Maildir/"})
    (s.dir / "clientlist.txt").write_text(s.fill("{carol}\n{bob}@" + DOMAIN + "\n"))
    # The administrator provides the bucket (deliveries for root-owned aliases run as
    # default_privs, which may not create files in alice's home).
    bucket = f"{s.user['alice'].pw_dir}/spambucket.txt"
    open(bucket, "w").close()
    nobody = pwd.getpwnam("nobody")
    os.chown(bucket, nobody.pw_uid, nobody.pw_gid)
    os.chmod(bucket, 0o600)
    with s:
        yield s


def maildir(site, tag):
    return mailbox.Maildir(os.path.join(site.user[tag].pw_dir, "Maildir"), factory=None,
                           create=False)


def test_mail_for_root_lands_in_alice_maildir(small):
    qid, res = small.send("root", CRON_MAIL, sender="root@" + DOMAIN)
    assert (res.status, res.text) == ("sent", "delivered to maildir")
    msgs = [m for m in maildir(small, "alice") if m["Subject"].startswith("Cron")]
    assert len(msgs) == 1
    m = msgs[0]
    assert m["Return-Path"] == f"<root@{DOMAIN}>"
    assert m["X-Original-To"] == m["Delivered-To"] == f"root@{DOMAIN}"
    assert m.get_payload().startswith("/etc/cron.daily/logrotate:")
    pw = small.user["alice"]
    top = os.path.join(pw.pw_dir, "Maildir")
    for sub in ("", "tmp", "new", "cur"):
        st = os.stat(os.path.join(top, sub))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (pw.pw_uid, pw.pw_gid, 0o700)
    (name,) = [n for n in os.listdir(os.path.join(top, "new"))
               if open(os.path.join(top, "new", n)).read().find("Cron <root@host>") > 0]
    st = os.stat(os.path.join(top, "new", name))
    assert (st.st_uid, st.st_mode & 0o777) == (pw.pw_uid, 0o600)
    assert not os.listdir(os.path.join(top, "tmp"))


def test_postmaster_goes_the_same_way(small):
    qid, res = small.send("postmaster", b"Subject: pm\n\nx\n")
    assert small.status_lines(qid) == [
        f"to=<{small.addr('alice')}>, orig_to=<postmaster@{DOMAIN}>, relay=local, dsn=2.0.0, "
        "status=sent (delivered to maildir)"]


def test_mailguys_reach_both(small):
    qid, res = small.send("mailguys", b"Subject: guys\n\nx\n")
    for tag in ("alice", "bob"):
        assert [m["Subject"] for m in maildir(small, tag) if m["Subject"] == "guys"] == ["guys"]


def test_clients_list_is_forwarded_to_its_members(small):
    qid, res = small.send("clients", b"Subject: to-clients\n\nx\n")
    new = small.forwarded_id(res)
    assert sorted(r.address for r in small.feed.recipients(new)) == sorted(
        [small.addr("carol"), small.addr("bob")])
    results = small.deliver(new)
    assert {r.text for r in results.values()} == {"delivered to maildir"}
    for tag in ("carol", "bob"):
        assert [m["Subject"] for m in maildir(small, tag) if m["Subject"] == "to-clients"]


def test_spam_reports_are_appended_to_the_bucket(small):
    small.send("spam-reports", b"Subject: report-1\n\nspam 1\n")
    qid, res = small.send("spam-reports", b"Subject: report-2\n\nFrom spammer\n")
    path = f"{small.user['alice'].pw_dir}/spambucket.txt"
    assert res.text == f"delivered to file: {path}"
    box = mailbox.mbox(path, create=False)
    assert [m["Subject"] for m in box] == ["report-1", "report-2"]
    assert list(box)[1].get_payload() == ">From spammer\n"
