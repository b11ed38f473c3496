"""local(8) options that need a main.cf of their own: mailbox_transport(_maps),
fallback_transport, mailbox_command, luser_relay, mailbox_size_limit,
strict_mailbox_ownership, command_execution_directory, allow_mail_to_commands/files.
"""

import mailbox
import os

import pytest

from helpers.mailsite import DOMAIN, Site

AGENTS = """\
local unix - n n - - local
discard unix - - n - - discard
error unix - - n - - error
"""


@pytest.fixture(scope="module")
def transports():
    s = Site(users=("a", "b", "c"), master_cf=AGENTS)
    (s.dir / "mbt").write_text(s.fill("{a} discard:went to discard via the map\n"
                                      "{c} nosuchservice\n"))
    s.inst.update_main_cf(mailbox_transport_maps=f"texthash:{s.dir}/mbt",
                          fallback_transport="error:5.1.1 no such user here")
    with s:
        yield s


def test_mailbox_transport_map_passes_the_recipient_on(transports):
    qid, res = transports.send("a")
    assert (res.status, res.dsn, res.text, res.relay) == (
        "sent", "2.0.0", "went to discard via the map", "none")
    lines = [line for line in transports.inst.log_text().splitlines() if f" {qid}: " in line]
    assert len(lines) == 1 and "/discard[" in lines[0]  # the other agent logs, local does not


def test_users_not_in_the_map_get_their_mailbox(transports):
    qid, res = transports.send("b")
    assert (res.status, res.text) == ("sent", "delivered to mailbox")


def test_mailbox_transport_takes_everyone_even_unknown_users():
    with Site(users=("a",), master_cf=AGENTS,
              main_cf={"mailbox_transport": "discard:mailbox_transport",
                       "fallback_transport": "error:never used"}) as s:
        for rcpt in ("a", "nobody-such"):
            qid, res = s.send(rcpt)
            assert (res.status, res.text) == ("sent", "mailbox_transport")


def test_unreachable_transport_defers(transports):
    qid, res = transports.send("c")
    assert (res.status, res.dsn, res.text) == ("deferred", "4.3.0", "mail transport unavailable")
    assert "delivery via nosuchservice failed" in transports.inst.log_text()


def test_fallback_transport_for_unknown_users(transports):
    qid, res = transports.send("nobody-such")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.1.1", "no such user here")


@pytest.fixture(scope="module")
def commands():
    s = Site(users=("a", "b", "c"),
             aliases="incl: :include:{W}/cmds.txt\nincfile: :include:{W}/files.txt\n")
    (s.dir / "cmds.txt").write_text('"|/bin/true"\n')
    (s.dir / "files.txt").write_text(f"{s.dir}/out/x.txt\n")
    (s.dir / "work").mkdir()
    os.chmod(s.dir / "work", 0o700)  # only root may enter
    s.inst.update_main_cf(
        mailbox_command=f'/usr/bin/env > {s.dir}/out/mc.$USER.env; cat > {s.dir}/out/mc.$USER.msg',
        luser_relay=s.fill("{b}+$local"),
        command_execution_directory="$home",
        mailbox_size_limit="20000000")
    with s:
        yield s


def test_mailbox_command_runs_as_the_user(commands):
    qid, res = commands.send("a+tag", b"Subject: mc\n\nFrom here\n")
    pw = commands.user["a"]
    assert res.status == "sent"
    assert res.text == "delivered to command: " + commands.inst.main_settings["mailbox_command"]
    env_file = commands.dir / "out" / f"mc.{pw.pw_name}.env"
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert (env["USER"], env["HOME"], env["EXTENSION"], env["PWD"]) == (
        pw.pw_name, pw.pw_dir, "tag", pw.pw_dir)  # command_execution_directory = $home
    assert env_file.stat().st_uid == pw.pw_uid
    msg = (commands.dir / "out" / f"mc.{pw.pw_name}.msg").read_bytes()
    assert msg.startswith(b"From sender@example.org  ")
    assert b"\nDelivered-To: " + commands.addr("a+tag").encode() + b"\n" in msg
    assert msg.endswith(b"\nFrom here\n")  # no >From quoting, no blank line for commands


def test_luser_relay_catches_unknown_users(commands):
    qid, res = commands.send("whoever")
    assert res.status == "sent"
    assert commands.status_lines(qid)[0].startswith(
        f"to=<{commands.user['b'].pw_name}+whoever@{DOMAIN}>, orig_to=<whoever@{DOMAIN}>")


def test_commands_and_files_from_include_are_restricted_by_default(commands):
    qid, res = commands.send("incl")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.7.1", "mail to command is restricted")
    qid, res = commands.send("incfile")
    assert (res.status, res.dsn, res.text) == ("bounced", "5.7.1", "mail to file is restricted")


def test_execution_directory_the_user_cannot_enter_defers():
    with Site(users=("a",), main_cf={"mailbox_command": "/bin/true",
                                     "command_execution_directory": "/root"}) as s:
        qid, res = s.send("a")
        assert (res.status, res.dsn) == ("deferred", "4.3.0")
        assert res.text == ("temporary failure. Command output: local: fatal: chdir /root: "
                            "Permission denied ")


def test_mailbox_size_limit_and_strict_ownership():
    with Site(users=("a", "b"), main_cf={"mailbox_size_limit": "12000000",
                                         "message_size_limit": "10240000"}) as s:
        path = s.spool_path("a")
        with open(path, "wb") as fh:
            fh.truncate(11_999_990)
        os.chown(path, s.user["a"].pw_uid, s.user["a"].pw_gid)
        os.chmod(path, 0o600)
        qid, res = s.send("a", b"Subject: too much\n\nx\n")
        assert (res.status, res.dsn, res.text) == (
            "bounced", "5.2.2", f"cannot update mailbox {path} for user {s.user['a'].pw_name}. "
            "error writing message: File too large")
        assert path.stat().st_size == 11_999_990  # nothing appended
        other = s.spool_path("b")
        other.touch()
        os.chown(other, s.user["a"].pw_uid, s.user["a"].pw_gid)
        os.chmod(other, 0o666)
        qid, res = s.send("b")
        assert (res.status, res.dsn, res.text) == (
            "deferred", "4.2.0", f"cannot update mailbox {other} for user "
            f"{s.user['b'].pw_name}. destination {other} is not owned by recipient")
        assert 'specify "strict_mailbox_ownership = no"' in s.inst.log_text()
        assert not mailbox.mbox(other, create=False).keys()


def test_mailbox_size_limit_below_message_size_limit_is_fatal(fastpost_instance):
    inst = fastpost_instance(master_cf="local unix - n n - - local\n",
                             main_cf={"mailbox_size_limit": "1000"})
    inst.start()
    try:
        inst.connect_unix("local").close()
    except OSError:
        pass
    inst.wait_log(r"fatal: .*mailbox_size_limit is smaller than message_size_limit")
