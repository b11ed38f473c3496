"""Unprivileged local submission through the set-gid helpers (fastpost.cli.setgid).

As root: a real user made with useradd (not in group postdrop), an instance in a
directory everyone may traverse (pickup, cleanup, trivial-rewrite, showq, flush; no
qmgr, so messages stay listed), and the helpers built by ``fastpost -c DIR
link-commands -g`` into the instance's command_directory. The user runs Debian's
python3 with the worktree on PYTHONPATH (as tests/accept/test_dev_run.py). What the
user can do (sendmail, mailq, queue -i) works; what must stay out of reach fails with a
clear message.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.accept import MASTER  # noqa: E402
from helpers.instance import Instance, free_port  # noqa: E402
from helpers.mailsite import make_user, need_root, remove_users  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
EXTRA = ("pickup unix n - n 60 1 pickup\n"
         "showq unix n - n - - showq\n"
         "flush unix n - n - 0 flush\n"
         "trace unix - - n - 0 bounce\n"
         "bounce unix - - n - 0 bounce\n")


class Site:
    def __init__(self, inst, pw, bindir: Path):
        self.inst, self.pw, self.bin = inst, pw, bindir
        site_packages = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
        self.env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "LANG": "C",
                    "LOGNAME": pw.pw_name, "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPATH": f"{REPO / 'src'}:{site_packages}"}
        self.as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                        "--init-groups"]

    def run(self, *args, data: bytes = b"", argv0: list | None = None):
        cmd = argv0 or [SYSTEM_PYTHON, "-m", "fastpost", "-c", str(self.inst.etc)]
        return subprocess.run(self.as_user + cmd + list(args), input=data, env=self.env,
                              capture_output=True, timeout=60, cwd="/")

    def picked(self, sender: str) -> str:
        text = self.inst.wait_log(
            rf"pickup\[\d+\]: \w+: uid={self.pw.pw_uid} from=<{re.escape(sender)}>")
        return re.findall(rf"pickup\[\d+\]: (\w+): uid={self.pw.pw_uid} "
                          rf"from=<{re.escape(sender)}>", text)[-1]


@pytest.fixture(scope="module")
def site():
    need_root()
    for tool in ("setpriv", "cc"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True)
    if proc.stdout.strip() != str(tuple(sys.version_info[:2])):
        pytest.skip(f"{SYSTEM_PYTHON} is not this Python")
    pw = make_user("subm")
    assert pw.pw_name not in grp.getgrnam("postdrop").gr_mem
    base = Path(tempfile.mkdtemp(prefix="fastpost-setgid-", dir="/tmp"))
    os.chmod(base, 0o755)
    bindir = base / "bin"
    bindir.mkdir(mode=0o755)
    port = free_port()
    inst = Instance(base, master_cf=MASTER.format(port=port) + EXTRA,
                    main_cf={"myhostname": "mx.example.com", "mydomain": "example.com",
                             "myorigin": "$myhostname", "command_directory": str(bindir)})
    os.chmod(inst.dir, 0o755)
    os.chmod(inst.etc, 0o755)
    try:
        made = inst.command("link-commands", "-g", "-d", str(bindir))
        assert made.returncode == 0, made.stderr
        inst.start()
        yield Site(inst, pw, bindir)
        log = inst.log_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        inst.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        remove_users()


def test_compiled_sendmail_submits_through_the_compiled_postdrop(site):
    """The compiled front end (fastpost-sendmail), run by a user who cannot write
    maildrop, hands its stream to fastpost-postdrop on a pipe: no interpreter on the
    way (docs/submission.md, "The compiled postdrop")."""
    front = REPO / ".venv" / "bin" / "fastpost-sendmail"
    if not front.exists():
        pytest.skip("no compiled front end (./dev build makes it)")
    copy = site.bin / "fastpost-sendmail-test"
    shutil.copy(front, copy)
    os.chmod(copy, 0o755)
    try:
        proc = subprocess.run(site.as_user + [str(copy), "-c", str(site.inst.etc), "-f",
                                              "compiled@example.org", "rcpt@example.net"],
                              input=b"Subject: compiled\n\nall the way\n", env=site.env,
                              capture_output=True, timeout=60, cwd="/")
        assert (proc.returncode, proc.stderr) == (0, b"")
        site.picked("compiled@example.org")
    finally:
        copy.unlink()


def test_helpers_are_set_gid_postdrop_and_root_owned(site):
    for name in ("fastpost-postdrop", "fastpost-postqueue"):
        st = os.stat(site.bin / name)
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("postdrop").gr_gid)
        assert st.st_mode & 0o7777 == 0o2755


def test_unprivileged_sendmail_goes_through_postdrop(site):
    proc = site.run("sendmail", "-f", "me@example.org", "rcpt@example.net",
                    data=b"Subject: setgid\n\nfrom an ordinary user\n")
    assert proc.returncode == 0, proc.stderr
    qid = site.picked("me@example.org")
    cat = site.inst.command("cat", "-q", qid, check=True).stdout
    assert f"from userid {site.pw.pw_uid}" in cat
    assert "from an ordinary user" in cat
    # the listing, as that user (mailq and sendmail -bp go through fastpost-postqueue)
    for argv in (["mailq"], ["sendmail", "-bp"], ["queue", "-p"]):
        out = site.run(*argv)
        assert out.returncode == 0, (argv, out.stderr)
        assert qid in out.stdout.decode() and "rcpt@example.net" in out.stdout.decode()
    # queue -i through the flush service (the message is not deferred: a warning, 0)
    out = site.run("queue", "-i", qid)
    assert out.returncode == 0, out.stderr
    assert out.stderr.decode() == f"postqueue: warning: {qid}: no such deferred message\n"


def test_the_user_cannot_forge_a_uid_or_a_requeue(site):
    """A hand-made stream with requeue/uid attributes, fed to the helper directly:
    pickup still logs the caller's uid and adds its Received: header."""
    from fastpost.mail import maildrop

    forged = maildrop.encode(maildrop.DropMessage(
        sender="forger@example.org", recipients=[("victim@example.net", "", 0)],
        content=b"Subject: forged\n\nx\n", attrs=[("requeue", "1"), ("uid", "0")],
        arrival=1000.0))
    proc = site.run(data=forged, argv0=[str(site.bin / "fastpost-postdrop")])
    assert proc.returncode == 0, proc.stderr
    qid = site.picked("forger@example.org")
    cat = site.inst.command("cat", "-q", qid, check=True).stdout
    assert f"from userid {site.pw.pw_uid}" in cat
    assert "uid=0 from=<forger@example.org>" not in site.inst.log_text()
    # garbage on the helper's input: refused, nothing left in maildrop
    proc = site.run(data=b"not a maildrop stream", argv0=[str(site.bin / "fastpost-postdrop")])
    assert proc.returncode == 65
    assert b"postdrop: fatal: uid=%d: malformed input" % site.pw.pw_uid in proc.stderr


def test_what_the_user_must_not_do(site):
    inst = site.inst
    # write into the queue directly
    proc = site.run(argv0=[SYSTEM_PYTHON, "-c",
                           f"open({str(inst.queue / 'maildrop' / 'x')!r}, 'w')"])
    assert proc.returncode != 0 and b"PermissionError" in proc.stderr
    # read the queue (other users' mail): the index and segments are mail_owner's
    proc = site.run("cat", "-q", "NOSUCHID")
    assert proc.returncode != 0
    proc = site.run(argv0=[SYSTEM_PYTHON, "-c",
                           f"import os; os.listdir({str(inst.queue / 'segments')!r})"])
    assert proc.returncode != 0 and b"PermissionError" in proc.stderr
    # choose another configuration through the helper
    proc = site.run("-c", "/tmp", "-p", argv0=[str(site.bin / "fastpost-postqueue")])
    assert proc.returncode == 64
    assert b"option -c not recognized (the configuration is fixed" in proc.stderr
    # talk to cleanup (which trusts a uid attribute) directly
    proc = site.run(argv0=[SYSTEM_PYTHON, "-c",
                           "import socket; s = socket.socket(socket.AF_UNIX); "
                           f"s.connect({str(inst.queue / 'public' / 'cleanup')!r})"])
    assert proc.returncode != 0 and b"PermissionError" in proc.stderr


def test_without_helpers_the_user_is_told_why(site, tmp_path):
    """Another configuration (its command_directory without helpers): EX_NOPERM, and
    the message names the helper and the group."""
    etc = Path(tempfile.mkdtemp(prefix="fastpost-setgid-etc-", dir="/tmp"))
    try:
        os.chmod(etc, 0o755)
        (etc / "main.cf").write_text(
            (site.inst.etc / "main.cf").read_text() + f"\ncommand_directory = {etc}\n")
        os.chmod(etc / "main.cf", 0o644)
        proc = site.run("sendmail", "x@example.net", data=b"Subject: no\n\n.\n",
                        argv0=[SYSTEM_PYTHON, "-m", "fastpost", "-c", str(etc)])
        assert proc.returncode == 77
        err = proc.stderr.decode()
        assert "no permission to submit mail" in err and "fastpost-postdrop" in err
        assert "postdrop" in err
    finally:
        shutil.rmtree(etc, ignore_errors=True)


# -- authorized_submit_users, authorized_mailq_users, authorized_flush_users ------------

AUTH_CF = ("authorized_submit_users = !{user}, static:anyone\n"
           "authorized_mailq_users = root\n"
           "authorized_flush_users =\n")

#: (fastpost argv after "fastpost -c ETC", or a helper name; Postfix's argv)
AUTH_CASES = [
    (["sendmail", "x@example.net"], ["/usr/sbin/sendmail", "x@example.net"]),
    (["sendmail", "-bs"], ["/usr/sbin/sendmail", "-bs"]),
    (["sendmail", "-bv", "x@example.net"], ["/usr/sbin/sendmail", "-bv", "x@example.net"]),
    ("fastpost-postdrop", ["/usr/sbin/postdrop"]),
    (["mailq"], ["/usr/bin/mailq"]),
    (["sendmail", "-bp"], ["/usr/sbin/sendmail", "-bp"]),
    (["queue", "-p"], ["/usr/sbin/postqueue", "-p"]),
    (["queue", "-j"], ["/usr/sbin/postqueue", "-j"]),
    (["sendmail", "-q"], ["/usr/sbin/sendmail", "-q"]),
    (["sendmail", "-qRexample.com"], ["/usr/sbin/sendmail", "-qRexample.com"]),
    (["queue", "-f"], ["/usr/sbin/postqueue", "-f"]),
    (["queue", "-s", "example.com"], ["/usr/sbin/postqueue", "-s", "example.com"]),
    (["queue", "-i", "ABCDEF"], ["/usr/sbin/postqueue", "-i", "ABCDEF"]),
]


def _postfix_refusals(site, cf_lines: str) -> list[tuple[int, str]]:
    """Each AUTH_CASES command of C Postfix, run as the site's user with a main.cf of
    cf_lines (bind-mounted over /etc/postfix/main.cf in a mount namespace of its own:
    the system's file is not touched; an empty queue directory is enough for these
    checks, which come before any queue access)."""
    work = Path(tempfile.mkdtemp(prefix="fastpost-authz-pf-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        (work / "q").mkdir(mode=0o755)
        (work / "main.cf").write_text(f"queue_directory = {work / 'q'}\n"
                                      f"compatibility_level = 3.6\n{cf_lines}")
        script = [f"mount --bind {work / 'main.cf'} /etc/postfix/main.cf || exit 99"]
        for i, (_, argv) in enumerate(AUTH_CASES):
            cmd = " ".join(site.as_user + argv)
            script.append(f"echo hi | {cmd} >/dev/null 2>{work}/err{i}; echo $? >{work}/rc{i}")
        proc = subprocess.run(["unshare", "-m", "sh", "-c", "\n".join(script)],
                              capture_output=True, timeout=60, cwd="/")
        assert proc.returncode == 0, proc.stderr
        return [(int((work / f"rc{i}").read_text()), (work / f"err{i}").read_text())
                for i in range(len(AUTH_CASES))]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _with_main_cf(site, extra: str):
    main_cf = site.inst.etc / "main.cf"
    saved = main_cf.read_text()
    main_cf.write_text(saved + extra)
    return main_cf, saved


def test_authorized_users_refuse_as_postfix_does(site):
    """The same messages and exit codes as Debian's Postfix 3.7 for a user that
    authorized_submit/mailq/flush_users refuse, through every command and helper."""
    for tool in ("unshare", "/usr/sbin/postqueue"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    extra = AUTH_CF.format(user=site.pw.pw_name)
    expected = _postfix_refusals(site, extra)
    main_cf, saved = _with_main_cf(site, extra)
    try:
        for (argv, pf_argv), (pf_rc, pf_err) in zip(AUTH_CASES, expected):
            if isinstance(argv, str):
                proc = site.run(data=b"hi\n", argv0=[str(site.bin / argv)])
            else:
                proc = site.run(*argv, data=b"hi\n")
            assert (proc.returncode, proc.stderr.decode()) == (pf_rc, pf_err), pf_argv
            assert "not allowed to" in pf_err
        # postqueue's refusals go to the mail log as well, as Postfix logs them
        # (``postfix/postqueue[PID]: fatal: User ...``, checked on Postfix 3.7), through
        # the postlog service: the user cannot open maillog_file
        who = f"User {site.pw.pw_name}({site.pw.pw_uid}) is not allowed to"
        # (sendmail's own refusals, outside setgid_group, cannot reach it: not logged)
        for action, count in (("view the mail queue", 4), ("flush the mail queue", 5)):
            site.inst.wait_log(rf"/postqueue\[\d+\]: fatal: {re.escape(who)} {action}",
                               count=count)
        site.inst.wait_log(rf"/postdrop\[\d+\]: fatal: {re.escape(who)} submit mail")
    finally:
        main_cf.write_text(saved)


def test_authorized_users_allow_and_exempt(site):
    """A listed user may; root and mail_owner may always list and flush; nobody is
    exempt from authorized_submit_users (Postfix refuses root too)."""
    main_cf, saved = _with_main_cf(
        site, f"authorized_submit_users = {site.pw.pw_name.upper()}\n"
              "authorized_mailq_users = !root, !postfix\n"
              "authorized_flush_users = /nonexistent/list\n")
    try:
        proc = site.run("sendmail", "-f", "listed@example.org", "rcpt@example.net",
                        data=b"Subject: listed\n\nok\n")
        assert proc.returncode == 0, proc.stderr  # names compare case-insensitively
        site.picked("listed@example.org")
        out = site.inst.command("queue", "-p")  # root, although the list excludes it
        assert out.returncode == 0 and "listed@example.org" in out.stdout, out.stderr
        out = subprocess.run([sys.executable, "-m", "fastpost", "-c", str(site.inst.etc),
                              "sendmail", "-f", "root@example.org", "x@example.net"],
                             input=b"Subject: no\n\n", env=site.inst.env(),
                             capture_output=True, timeout=60)
        assert out.returncode == 75
        assert out.stderr == b"sendmail: fatal: User root(0) is not allowed to submit mail\n"
        # a list that cannot be read: refused with the reason, EX_TEMPFAIL
        proc = site.run("queue", "-f")
        assert proc.returncode == 75
        assert b"postqueue: fatal: authorized_flush_users: " in proc.stderr
        assert b"/nonexistent/list" in proc.stderr
    finally:
        main_cf.write_text(saved)


def test_sendmail_bs_and_bv_as_nobody(site):
    """sendmail -bs and -bv run by nobody (outside setgid_group, cannot write the mail
    log nor reach public/postlog). -bs: the conversation works, the message goes
    through fastpost-postdrop (pickup logs uid 65534), and smtpd's own log lines are
    left out without a word on standard error: what Postfix 3.7's stand-alone smtpd
    does for such a user (checked with maillog_file; root's and setgid_group members'
    lines reach the log). -bv: Postfix's "Mail Delivery Status Report will be mailed
    to <SENDER>." on standard output, the request through the helper, the report."""
    nobody = Site(site.inst, pwd.getpwnam("nobody"), site.bin)
    proc = subprocess.Popen(nobody.as_user + [SYSTEM_PYTHON, "-m", "fastpost", "-c",
                                              str(site.inst.etc), "sendmail", "-bs"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=nobody.env, cwd="/")

    def say(line: bytes | None) -> str:
        if line is not None:
            proc.stdin.write(line)
            proc.stdin.flush()
        while True:
            got = proc.stdout.readline().decode()
            assert got.endswith("\r\n"), got
            if got[3] == " ":
                return got[:-2]

    try:
        assert say(None).startswith("220 ")
        assert say(b"EHLO me\r\n").startswith("250 ")
        assert say(b"MAIL FROM:<bs-nobody@example.org>\r\n") == "250 2.1.0 Ok"
        assert say(b"RCPT TO:<rcpt@example.net>\r\n") == "250 2.1.5 Ok"
        assert say(b"DATA\r\n").startswith("354 ")
        assert say(b"Subject: -bs\r\n\r\nfrom nobody\r\n.\r\n").startswith(
            "250 2.0.0 Ok: queued as ")
        assert say(b"QUIT\r\n") == "221 2.0.0 Bye"
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    qid = nobody.picked("bs-nobody@example.org")
    assert f"from userid {nobody.pw.pw_uid}" in site.inst.command("cat", "-q", qid,
                                                                  check=True).stdout
    assert f"smtpd[{proc.pid}]:" not in site.inst.log_text()

    bv = nobody.run("sendmail", "-bv", "-f", "bv-nobody@example.org", "someone@remote.example")
    assert (bv.returncode, bv.stderr) == (0, b""), bv.stderr
    assert bv.stdout == b"Mail Delivery Status Report will be mailed to <bv-nobody@example.org>.\n"
    log = site.inst.wait_log(r"(\w+): verify request from=<bv-nobody@example\.org>")
    req = re.findall(r"(\w+): verify request from=<bv-nobody@example\.org>", log)[-1]
    site.inst.wait_log(rf"{req}: sender delivery status notification: \w+")
