"""local(8): real users, a real master, delivery requests over the real protocol.

The test acts as qmgr: messages go into the queue through the store's Committer, and
delivery requests go to private/local. Mailboxes are read with Python's ``mailbox``
module (what a mail reader would see), ownership and modes with os.stat, the status
lines from the instance's maillog. The expected texts are Postfix 3.7's (recorded by
running Debian's local(8) with the same aliases; test_vs_postfix.py compares live).
"""

import os
import pwd
import re
import time

import pytest

from helpers.mailsite import DOMAIN, Site, mail_gid

NOBODY = pwd.getpwnam("nobody")

ALIASES = """\
postmaster: root
root: {a}
mailguys: {a}, {b}
clients: :include:{W}/clientlist.txt
spam-reports: {W}/out/spambucket.txt
idcmd: "|/usr/bin/id > {W}/out/idcmd.out"
envcmd: "|/usr/bin/env > {W}/out/envcmd.out"
ex75: "|exit 75"
ex67: "|exit 67"
exout: "|echo 5.7.1 custom failure text; exit 1"
sleeper: "|sleep 30"
loopa: loopb
loopb: loopa
remote: someone@elsewhere.test
lst: {a}
owner-lst: {b}
self: self, {a}
tilde: ~/x
mdir: {W}/out/md/
barrier: "|/bin/sh {W}/barrier.sh"
"""

# Each delivery checks in, then waits (up to 20 s) until 4 have checked in: it succeeds
# only if 4 deliveries run at the same time.
BARRIER = """d={W}/out/barrier
touch $d/$$
n=0
while [ $(ls $d | wc -l) -lt 4 ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n+1)); done
[ $(ls $d | wc -l) -ge 4 ] || exit 75
"""

FORWARDS = {
    "a": {
        ".forward+fwd": "{b}\n",
        ".forward+file": "{home_a}/fwdfile.txt\n",
        ".forward+cmd": '"|/usr/bin/id > {home_a}/cmd.out; /usr/bin/env > {home_a}/cmd.env"\n',
        ".forward+selfish": "\\{a}, {b}\n",
        ".forward+empty": "",
        ".forward+comment": "# only a comment line here\n{b}\n",
    },
}


@pytest.fixture(scope="module")
def site():
    s = Site(users=("a", "b"), aliases=ALIASES, forward=FORWARDS,
             main_cf={"command_time_limit": "3s"})
    (s.dir / "clientlist.txt").write_text(s.fill("{b}\n"))
    (s.dir / "barrier.sh").write_text(s.fill(BARRIER))
    (s.dir / "out" / "barrier").mkdir()
    os.chmod(s.dir / "out" / "barrier", 0o1777)
    with s:
        yield s


MSG = b"Subject: hello\nFrom: sender@example.org\n\nFrom me to you\n.dot line\nend\n"


def messages_with(box, subject_part: str):
    return [m for m in box if subject_part in (m["Subject"] or "")]


def test_mailbox_delivery_headers_and_ownership(site):
    qid, res = site.send("a", b"Subject: mbox-1\n\nFrom me to you\nbody\n")
    assert (res.status, res.dsn, res.text) == ("sent", "2.0.0", "delivered to mailbox")
    assert site.status_lines(qid) == [
        f"to=<{site.addr('a')}>, relay=local, dsn=2.0.0, status=sent (delivered to mailbox)"]
    (m,) = messages_with(site.mbox("a"), "mbox-1")
    assert m.get_from().startswith("sender@example.org  ")
    assert m["Return-Path"] == "<sender@example.org>"
    assert m["X-Original-To"] == site.addr("a")
    assert m["Delivered-To"] == site.addr("a")
    assert m.get_payload() == ">From me to you\nbody\n"  # mbox quoting
    assert site.spool_path("a").read_bytes().endswith(b"body\n\n")  # blank line after
    st = site.spool_path("a").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (site.user["a"].pw_uid, mail_gid(), 0o600)
    assert not os.path.exists(str(site.spool_path("a")) + ".lock")


def test_alias_fan_out_delivers_each_member(site):
    qid, res = site.send("mailguys", b"Subject: fanout\n\nhi\n")
    assert (res.status, res.text) == ("sent", "delivered to mailbox")
    assert site.status_lines(qid) == [
        f"to=<{site.addr('a')}>, orig_to=<mailguys@{DOMAIN}>, relay=local, dsn=2.0.0, "
        "status=sent (delivered to mailbox)",
        f"to=<{site.addr('b')}>, orig_to=<mailguys@{DOMAIN}>, relay=local, dsn=2.0.0, "
        "status=sent (delivered to mailbox)"]
    for tag in ("a", "b"):
        (m,) = messages_with(site.mbox(tag), "fanout")
        assert m["X-Original-To"] == f"mailguys@{DOMAIN}"
        assert m["Delivered-To"] == f"mailguys@{DOMAIN}"  # frozen_delivered_to


def test_postmaster_reaches_root_alias_target(site):
    qid, res = site.send("postmaster", b"Subject: to-postmaster\n\nhi\n")
    assert res.status == "sent"
    assert site.status_lines(qid) == [
        f"to=<{site.addr('a')}>, orig_to=<postmaster@{DOMAIN}>, relay=local, dsn=2.0.0, "
        "status=sent (delivered to mailbox)"]
    assert messages_with(site.mbox("a"), "to-postmaster")


def test_include_list_is_forwarded_as_a_new_message(site):
    qid, res = site.send("clients", b"Subject: incl\n\nlist mail\n")
    assert res.status == "sent"
    new = site.forwarded_id(res)
    assert site.status_lines(qid) == [
        f"to=<clients@{DOMAIN}>, relay=local, dsn=2.0.0, status=sent (forwarded as {new})"]
    rcpts = site.feed.recipients(new)
    assert [(r.address, r.orig) for r in rcpts] == [(site.addr("b"), f"clients@{DOMAIN}")]
    results = site.deliver(new)
    assert results[site.addr("b")].text == "delivered to mailbox"
    (m,) = messages_with(site.mbox("b"), "incl")
    received = m.get_all("Received")
    assert re.fullmatch(rf"by {re.escape(site.inst.main_settings['myhostname'])} \(\S+\)\s+"
                        rf"id {new}; .*", " ".join(received[0].split()))
    assert m.get_all("Delivered-To") == [site.addr("b"), f"clients@{DOMAIN}"]
    assert m["X-Original-To"] == f"clients@{DOMAIN}"


def test_file_in_root_owned_alias_is_written_as_default_privs(site):
    qid, res = site.send("spam-reports", b"Subject: spam\n\nbuy now\n")
    path = site.dir / "out" / "spambucket.txt"
    assert (res.status, res.text) == ("sent", f"delivered to file: {path}")
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o600)
    import mailbox
    (m,) = list(mailbox.mbox(path, create=False))
    assert m["Subject"] == "spam" and m["Delivered-To"] == f"spam-reports@{DOMAIN}"


def test_command_in_root_owned_alias_runs_as_default_privs(site):
    qid, res = site.send("idcmd")
    assert (res.status, res.text) == ("sent", "delivered to command: /usr/bin/id > "
                                      f"{site.dir}/out/idcmd.out")
    out = (site.dir / "out" / "idcmd.out").read_text()
    assert out.startswith(f"uid={NOBODY.pw_uid}(nobody) gid={NOBODY.pw_gid}(")
    assert "groups=" in out and ",0(" not in out  # no root group left over


def test_command_environment_is_postfix_s(site):
    site.send("envcmd", client={"name": "client.example", "addr": "192.0.2.1", "helo": "h",
                                "proto": "ESMTP"})
    env = dict(line.split("=", 1) for line in
               (site.dir / "out" / "envcmd.out").read_text().splitlines())
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["USER"] == env["LOGNAME"] == "envcmd"
    assert env["LOCAL"] == "envcmd" and env["DOMAIN"] == DOMAIN
    assert env["RECIPIENT"] == env["ORIGINAL_RECIPIENT"] == f"envcmd@{DOMAIN}"
    assert env["SENDER"] == "sender@example.org"
    assert (env["CLIENT_HOSTNAME"], env["CLIENT_ADDRESS"], env["CLIENT_HELO"],
            env["CLIENT_PROTOCOL"]) == ("client.example", "192.0.2.1", "h", "ESMTP")
    assert "HOME" not in env and "SHELL" not in env  # no user context in a root alias
    assert set(env) <= {"PATH", "USER", "LOGNAME", "LOCAL", "DOMAIN", "RECIPIENT",
                        "ORIGINAL_RECIPIENT", "SENDER", "CLIENT_HOSTNAME", "CLIENT_ADDRESS",
                        "CLIENT_HELO", "CLIENT_PROTOCOL", "TZ", "MAIL_CONFIG", "LANG", "PWD"}


@pytest.mark.parametrize("alias, status, dsn, text", [
    ("ex75", "deferred", "4.3.0", "temporary failure"),
    ("ex67", "bounced", "5.1.1", "user unknown"),
    ("exout", "bounced", "5.7.1", "custom failure text "),
])
def test_command_exit_status_decides(site, alias, status, dsn, text):
    qid, res = site.send(alias)
    assert (res.status, res.dsn, res.text) == (status, dsn, text)
    assert site.status_lines(qid) == [
        f"to=<{alias}@{DOMAIN}>, relay=local, dsn={dsn}, status={status} ({text})"]


def test_command_time_limit_kills_and_bounces(site):
    t0 = time.monotonic()
    qid, res = site.send("sleeper")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.3.0",
                                               'Command time limit exceeded: "sleep 30"')
    assert time.monotonic() - t0 < 25  # the 30-second command was killed


def test_forward_to_another_user_is_resubmitted(site):
    qid, res = site.send("a+fwd", b"Subject: fwd-1\n\nforward me\n")
    new = site.forwarded_id(res)
    (r,) = site.feed.recipients(new)
    assert (r.address, r.orig) == (site.addr("b"), site.addr("a+fwd"))
    assert site.deliver(new)[site.addr("b")].status == "sent"
    (m,) = messages_with(site.mbox("b"), "fwd-1")
    assert m["Return-Path"] == "<sender@example.org>"  # .forward keeps the sender
    assert f"{site.addr('a+fwd')}" in m.get_all("Delivered-To")


def test_forward_file_is_written_as_the_user(site):
    qid, res = site.send("a+file", b"Subject: fwd-file\n\nto a file\n")
    path = f"{site.user['a'].pw_dir}/fwdfile.txt"
    assert (res.status, res.text) == ("sent", f"delivered to file: {path}")
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (site.user["a"].pw_uid, site.user["a"].pw_gid)


def test_forward_command_runs_as_the_user_with_its_environment(site):
    qid, res = site.send("a+cmd")
    assert res.status == "sent", res.text
    pw = site.user["a"]
    out = open(f"{pw.pw_dir}/cmd.out").read()
    assert out.startswith(f"uid={pw.pw_uid}({pw.pw_name}) gid={pw.pw_gid}({pw.pw_name})")
    env = dict(line.split("=", 1) for line in open(f"{pw.pw_dir}/cmd.env").read().splitlines())
    assert (env["HOME"], env["SHELL"], env["USER"], env["EXTENSION"]) == (
        pw.pw_dir, pw.pw_shell, pw.pw_name, "cmd")
    assert env["LOCAL"] == f"{pw.pw_name}+cmd"


def test_user_listed_in_own_forward_gets_mailbox_copy(site):
    qid, res = site.send("a+selfish", b"Subject: selfish\n\nx\n")
    assert res.status == "sent"
    lines = site.status_lines(qid)
    assert lines[0] == (f"to=<{site.addr('a')}>, orig_to=<{site.addr('a+selfish')}>, relay=local, "
                        "dsn=2.0.0, status=sent (delivered to mailbox)")
    assert re.fullmatch(rf"to=<{re.escape(site.addr('a+selfish'))}>, relay=local, dsn=2.0.0, "
                        r"status=sent \(forwarded as \w+\)", lines[1])


def test_empty_forward_means_mailbox(site):
    qid, res = site.send("a+empty", b"Subject: empty-fwd\n\nx\n")
    assert res.text == "delivered to mailbox"
    (m,) = messages_with(site.mbox("a"), "empty-fwd")
    assert m["Delivered-To"] == site.addr("a+empty")


def test_forward_comment_lines_are_skipped(site):
    qid, res = site.send("a+comment")
    assert res.text.startswith("forwarded as ")
    assert [r.address for r in site.feed.recipients(site.forwarded_id(res))] == [site.addr("b")]


@pytest.mark.parametrize("name, mode, owner, warning", [
    (".forward+ww", 0o666, None, "is world writable"),
    (".forward+badowner", 0o644, "b", "has bad owner uid"),
])
def test_unsafe_forward_is_ignored_with_a_warning(site, name, mode, owner, warning):
    path = site.write_home_file("a", name, "{b}\n", mode=mode, owner=owner)
    ext = name.split("+")[1]
    qid, res = site.send(f"a+{ext}")
    assert res.text == "delivered to mailbox"
    assert re.search(rf"warning: file {re.escape(str(path))} {warning}", site.inst.log_text())


def test_delivered_to_loop_bounces(site):
    content = f"Delivered-To: {site.addr('a')}\nSubject: looped\n\nx\n".encode()
    qid, res = site.send("a", content)
    assert (res.status, res.dsn, res.text) == (
        "bounced", "5.4.6", f"mail forwarding loop for {site.addr('a')}")


def test_alias_loop_bounces_like_postfix(site):
    qid, res = site.send("loopa")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.4.6", "alias database loop for loopb")
    assert site.status_lines(qid) == [
        f"to=<loopb@{DOMAIN}>, orig_to=<loopa@{DOMAIN}>, relay=local, dsn=5.4.6, "
        "status=bounced (alias database loop for loopb)"]
    assert "warning: alias database loop for loopb" in site.inst.log_text()


def test_alias_naming_itself_delivers_to_the_user(site):
    qid, res = site.send("self")
    assert site.status_lines(qid) == [
        f'to=<self@{DOMAIN}>, relay=local, dsn=5.1.1, status=bounced (unknown user: "self")',
        f"to=<{site.addr('a')}>, orig_to=<self@{DOMAIN}>, relay=local, dsn=2.0.0, "
        "status=sent (delivered to mailbox)"]
    assert (res.status, res.text) == ("bounced", 'unknown user: "self"')


def test_unknown_user_bounces(site):
    qid, res = site.send("nosuchuser")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.1.1", 'unknown user: "nosuchuser"')


def test_owner_alias_becomes_the_sender_of_the_forwarded_list(site):
    qid, res = site.send("lst")
    new = site.forwarded_id(res)
    msg = site.feed.store.parsed(new)
    assert msg.sender == f"owner-lst@{DOMAIN}"
    assert [(r.address, r.orig) for r in msg.recipients] == [(site.addr("a"), None)]


def test_remote_alias_target_is_forwarded(site):
    qid, res = site.send("remote")
    new = site.forwarded_id(res)
    assert [r.address for r in site.feed.recipients(new)] == ["someone@elsewhere.test"]
    assert site.feed.store.parsed(new).sender == "sender@example.org"


def test_home_directory_file_without_user_context_is_refused(site):
    qid, res = site.send("tilde")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.3.5", "mail system configuration error")
    assert "warning: unknown home directory for: ~/x" in site.inst.log_text()


def test_maildir_destination_in_alias(site):
    qid, res = site.send("mdir", b"Subject: to-maildir\n\nx\n")
    assert res.text == "delivered to maildir"
    import mailbox
    md = mailbox.Maildir(site.dir / "out" / "md", create=False)
    (m,) = list(md)
    assert m["Subject"] == "to-maildir" and m["Delivered-To"] == f"mdir@{DOMAIN}"
    assert "From " not in m.as_string().splitlines()[0]  # no From_ line in a Maildir file


def test_extension_reaches_mailbox_with_full_delivered_to(site):
    qid, res = site.send("a+nothing", b"Subject: ext\n\nx\n")
    assert res.text == "delivered to mailbox"
    (m,) = messages_with(site.mbox("a"), "ext")
    assert m["Delivered-To"] == site.addr("a+nothing")


def test_several_recipients_in_one_request(site):
    qid = site.submit(["a", "b", "nosuchuser"], b"Subject: multi\n\nx\n")
    results = site.deliver(qid)
    assert [results[site.addr(t)].status for t in ("a", "b")] == ["sent", "sent"]
    assert results[f"nosuchuser@{DOMAIN}"].status == "bounced"


def test_queue_id_that_is_gone_defers(site):
    from fastpost.mail.deliver import DeliveryRequest, Recipient

    req = DeliveryRequest("ABCDE123456", "local", "localhost", "s@example.org",
                          [Recipient(1, site.addr("a"))], time.time(), time.time())
    (res,) = site.feed.send("local", req).values()
    assert (res.status, res.dsn) == ("deferred", "4.3.0")


def test_one_connection_carries_concurrent_deliveries(site):
    """qmgr pipelines requests on one connection: local works on them at the same time
    (a command that waits for three others only succeeds if they overlap)."""
    import asyncio

    from fastpost.mail import ipc
    from fastpost.mail.deliver import PROTOCOL, DeliveryResult

    requests = [site.feed.request("local", site.submit(["barrier"], b"Subject: b\n\nx\n"))
                for _ in range(4)]

    async def go():
        client = ipc.AsyncAttrClient(ipc.endpoint(str(site.inst.queue), "local"), PROTOCOL)
        try:
            replies = await asyncio.gather(*(client.request(r.to_attrs()) for r in requests))
        finally:
            client.close()
        return [DeliveryResult.from_attrs(rep).results[0] for rep in replies]

    results = asyncio.run(go())
    assert [(r.status, r.text) for r in results] == [
        ("sent", f"delivered to command: /bin/sh {site.dir}/barrier.sh")] * 4
