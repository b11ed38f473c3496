"""pipe(8): argv macros, flags, user=, size=, eol=, null_sender=, directory=, exit status.

Expected texts and argument forms were recorded by running Debian's Postfix 3.7 pipe(8)
with the same master.cf attributes.
"""

import os
import pwd

import pytest

from helpers.mailsite import Site

CAPTURE = """#!/bin/sh
d={W}/out
n=$(date +%s%N)
{{ for a in "$@"; do echo "ARG[$a]"; done; id; pwd; }} > $d/$n.args
cat > $d/$n.in
case "$2" in *fail75*) echo "some output"; exit 75;; *fail67*) exit 67;; *out*) echo "hello from pipe"; exit 0;; esac
exit 0
"""


@pytest.fixture(scope="module")
def psite():
    s = Site(users=("p",), master_cf="")
    script = s.dir / "capture.sh"
    script.write_text(s.fill(CAPTURE))
    os.chmod(script, 0o755)
    user = s.user["p"].pw_name
    s.inst.write_master_cf(
        "mypipe unix - n n - - pipe\n"
        f"  flags=DROFhqu.> eol=\\r\\n user={user} null_sender=NULLSND directory=/tmp\n"
        f"  argv={script} ${{sender}} ${{recipient}} ${{user}} ${{extension}} ${{domain}} "
        "${mailbox} ${nexthop} ${original_recipient} ${size} ${queue_id} ${client_address} "
        "{ a b } x${user}y $$HOME\n"
        "multi unix - n n - - pipe\n"
        f"  user={user} size=2000 argv={script} ${{sender}} ${{recipient}}\n")
    with s:
        yield s


def captured(site):
    runs = sorted(p for p in (site.dir / "out").iterdir() if p.suffix == ".args")
    last = runs[-1]
    args = last.read_text().splitlines()
    data = last.with_suffix(".in").read_bytes()
    return args, data


def test_macros_flags_and_privileges(psite):
    qid = psite.submit(["Ok+Ext@P.Test"], b"Subject: p\n\nFrom here\n.dot line\nend\n",
                       sender="")
    results = psite.deliver(qid, "mypipe", nexthop="nh.example", client={"addr": "192.0.2.7"})
    (res,) = results.values()
    assert (res.status, res.dsn, res.text, res.relay) == (
        "sent", "2.0.0", "delivered via mypipe service", "mypipe")
    args, data = captured(psite)
    size = psite.feed.store.parsed(qid).size
    assert args[:14] == [
        "ARG[NULLSND]", "ARG[ok+ext@p.test]", "ARG[ok]", "ARG[ext]", "ARG[p.test]",
        "ARG[ok+ext]", "ARG[nh.example]", "ARG[ok+ext@p.test]", f"ARG[{size}]", f"ARG[{qid}]",
        "ARG[192.0.2.7]", "ARG[a b]", "ARG[xoky]", "ARG[$HOME]"]
    pw = psite.user["p"]
    assert args[14].startswith(f"uid={pw.pw_uid}({pw.pw_name}) gid={pw.pw_gid}(")
    assert args[15] == "/tmp"  # directory=
    lines = data.split(b"\r\n")
    assert lines[0].startswith(b"From NULLSND  ")
    assert lines[1:4] == [b"Return-Path: <NULLSND>", b"X-Original-To: Ok+Ext@P.Test",
                          b"Delivered-To: Ok+Ext@P.Test"]
    assert b"\r\n>From here\r\n..dot line\r\nend\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")


@pytest.mark.parametrize("rcpt, status, dsn, text", [
    ("fail75@p.test", "deferred", "4.3.0", "temporary failure. Command output: some output "),
    ("fail67@p.test", "bounced", "5.1.1", "user unknown"),
    ("out@p.test", "sent", "2.0.0", "delivered via mypipe service (hello from pipe)"),
])
def test_exit_status(psite, rcpt, status, dsn, text):
    qid, res = psite.send(rcpt, transport="mypipe")
    assert (res.status, res.dsn, res.text) == (status, dsn, text)
    assert psite.status_lines(qid) == [
        f"to=<{rcpt}>, relay=mypipe, dsn={dsn}, status={status} ({text})"]


def test_delivered_to_loop(psite):
    qid, res = psite.send("loop@p.test", b"Delivered-To: loop@p.test\n\nx\n", transport="mypipe")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.4.6", "mail forwarding loop for loop@p.test")


def test_d_flag_needs_single_recipient(psite):
    qid = psite.submit(["a@p.test", "b@p.test"], b"Subject: two\n\nx\n")
    results = psite.deliver(qid, "mypipe")
    assert {(r.status, r.dsn, r.text) for r in results.values()} == {
        ("deferred", "4.3.5", "mail system configuration error")}
    assert "pipe flag `D' requires mypipe_destination_recipient_limit = 1" in psite.inst.log_text()


def test_recipient_macro_repeats_per_recipient_and_size_limit(psite):
    qid = psite.submit(["x@m.test", "y@m.test"], b"Subject: multi\n\nsmall\n")
    results = psite.deliver(qid, "multi")
    assert [r.text for r in results.values()] == ["delivered via multi service"] * 2
    args, _ = captured(psite)
    assert args[:3] == ["ARG[sender@example.org]", "ARG[x@m.test]", "ARG[y@m.test]"]
    qid = psite.submit(["x@m.test"], b"Subject: big\n\n" + b"y" * 3000 + b"\n")
    (res,) = psite.deliver(qid, "multi").values()
    assert (res.status, res.dsn, res.text) == ("bounced", "5.2.3", "message too large")


def test_bad_attributes_are_fatal_at_start(fastpost_instance):
    inst = fastpost_instance(master_cf="bad unix - n n - - pipe user=root argv=/bin/true\n")
    inst.start()
    try:
        inst.connect_unix("bad").close()  # the first client starts a worker
    except OSError:
        pass
    inst.wait_log(r"fatal: master.cf: service bad: user= command-line attribute specifies "
                  r"root privileges")
    inst.wait_log(r"bad command startup -- throttling")


def test_parse_attrs_errors():
    from fastpost.daemons.pipe import parse_attrs
    from fastpost.mail.config import ConfigError

    nobody = pwd.getpwnam("nobody")
    cases = {
        ("flags=Z", "user=nobody", "argv=/bin/true"): "unknown flag: Z",
        ("argv=/bin/true",): "missing user= command-line attribute",
        ("user=nobody",): "missing argv= command-line attribute",
        ("user=nobody", "argv=/bin/x", "${bogus}"): 'unknown macro name: "bogus"',
        ("user=nobody", "chroot=/x", "argv=/bin/true"): "chroot= is not supported",
        ("user=nosuchuser_fp", "argv=/bin/true"): "unknown username: nosuchuser_fp",
        ("user=nobody", "size=abc", "argv=/bin/true"): "bad size= value: abc",
        ("oops", "argv=/bin/true"): "unknown attribute name: oops",
    }
    for args, text in cases.items():
        with pytest.raises(ConfigError, match=text.replace("$", r"\$")
                           .replace("{", r"\{").replace("}", r"\}")):
            parse_attrs(list(args), "svc", nobody.pw_uid + 1, nobody.pw_gid + 1, "postfix")
    with pytest.raises(ConfigError, match="mail system owner"):
        parse_attrs(["user=nobody", "argv=/bin/true"], "svc", nobody.pw_uid, 99999, "nobody")
