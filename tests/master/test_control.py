"""`fastpost check`, `set-permissions` and first-time set-up, run as real commands."""

import grp
import os
import pwd
import subprocess

import pytest

from conftest import need_root


def check(inst):
    return inst.command("check")


def test_check_passes_on_a_good_configuration(fastpost_instance):
    inst = fastpost_instance(master_cf="s unix - - n - - testdaemons.echo\n")
    result = check(inst)
    assert result.returncode == 0, result.stderr
    assert "fatal" not in result.stderr and "warning" not in result.stderr


def test_check_names_file_and_line_of_a_bad_value(fastpost_instance):
    inst = fastpost_instance(master_cf="s unix - - n - - testdaemons.echo\n",
                             main_cf={"max_use": "lots", "max_idle": "soon"})
    result = check(inst)
    assert result.returncode == 1
    lines = (inst.etc / "main.cf").read_text().splitlines()
    n_use = lines.index("max_use = lots") + 1
    n_idle = lines.index("max_idle = soon") + 1
    main_cf = inst.etc / "main.cf"
    # the global values first, judged as Postfix's postfix(1) judges them (session 10):
    # the first bad one in Postfix's order (numbers before times), in its words
    assert f"postfix: fatal: {main_cf}, line {n_use}: bad numerical configuration: " \
        "max_use = lots" in result.stderr
    assert "max_idle" not in result.stderr
    (inst.etc / "main.cf").write_text(main_cf.read_text().replace("max_use = lots\n", ""))
    result = check(inst)
    assert result.returncode == 1
    assert f"postfix: fatal: {main_cf}, line {n_idle - 1}: parameter max_idle: bad time " \
        "value or unit: soon" in result.stderr
    start = inst.command("start")
    assert start.returncode == 1 and start.stderr == result.stderr


def test_check_names_unsupported_postfix_parameters(fastpost_instance):
    inst = fastpost_instance(
        master_cf="s unix - - n - - testdaemons.echo -o smtp_address_verify_target=data\n",
        main_cf={"lmtp_address_verify_target": "data"})
    result = check(inst)
    assert result.returncode == 0, result.stderr
    assert "lmtp_address_verify_target is a Postfix parameter that fastpost does not implement" \
        in result.stderr
    assert f"{inst.etc / 'master.cf'}, line 1: -o smtp_address_verify_target: a Postfix " \
        "parameter that fastpost does not implement" in result.stderr


def test_check_reports_daemons_that_cannot_be_loaded(fastpost_instance):
    inst = fastpost_instance(master_cf=(
        "good unix - - n - - testdaemons.echo\n"
        "bad unix - - n - - no-such-daemon\n"))
    result = check(inst)
    assert result.returncode == 1
    assert (f'{inst.etc / "master.cf"}, line 2: cannot load daemon "no-such-daemon": '
            "no module named fastpost.daemons.no_such_daemon") in result.stderr


def test_check_rejects_unsupported_service_types(fastpost_instance):
    inst = fastpost_instance(master_cf="smtpd pass - - n - - testdaemons.echo\n")
    result = check(inst)
    assert result.returncode == 1
    assert "line 1: service type pass is not supported by fastpost" in result.stderr


def test_check_finds_and_set_permissions_repairs_owners_and_modes(fastpost_instance):
    need_root()
    inst = fastpost_instance(master_cf="s unix - - n - - testdaemons.echo\n")
    assert check(inst).returncode == 0  # creates the tree
    private, public = inst.queue / "private", inst.queue / "public"
    st = os.stat(public)
    assert st.st_mode & 0o7777 == 0o710
    assert st.st_uid == pwd.getpwnam("postfix").pw_uid
    assert st.st_gid == grp.getgrnam("postdrop").gr_gid
    os.chown(private, 0, 0)
    os.chmod(public, 0o777)
    result = check(inst)
    assert result.returncode == 0
    assert f"warning: not owned by postfix: {private}" in result.stderr
    assert f"warning: mode of {public} is 0777, expected 0710" in result.stderr
    fixed = inst.command("set-permissions")
    assert fixed.returncode == 0, fixed.stderr
    assert f"owner of {private} set to" in fixed.stderr
    result = check(inst)
    assert "warning" not in result.stderr, result.stderr


def test_mail_owner_must_not_be_root(fastpost_instance):
    need_root()
    inst = fastpost_instance(master_cf="s unix - - y - - testdaemons.echo\n",
                             main_cf={"mail_owner": "root"})
    result = inst.command("start")
    assert result.returncode == 1
    # Postfix's words (postfix(1) judges the accounts: session 10)
    assert f"postfix: fatal: file {inst.etc / 'main.cf'}: parameter mail_owner: user root " \
        "has privileged user ID" in result.stderr


def test_first_time_setup_creates_mail_owner_and_setgid_group(fastpost_instance):
    need_root()
    owner, group = f"fpo{os.getpid()}", f"fpg{os.getpid()}"
    inst = fastpost_instance(master_cf="s unix - - y - - testdaemons.single_echo\n",
                             main_cf={"mail_owner": owner, "setgid_group": group})
    try:
        result = inst.command("set-permissions")
        assert result.returncode == 0, result.stderr
        assert f"created group {group}" in result.stderr
        assert f"created user {owner}" in result.stderr
        pw = pwd.getpwnam(owner)
        assert pw.pw_uid != 0 and pw.pw_shell == "/usr/sbin/nologin"
        assert os.stat(inst.queue / "public").st_gid == grp.getgrnam(group).gr_gid
        assert os.stat(inst.queue / "private").st_uid == pw.pw_uid
        again = inst.command("set-permissions")
        assert "created user" not in again.stderr  # idempotent
    finally:
        subprocess.run(["userdel", owner], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)
        subprocess.run(["groupdel", owner], capture_output=True)


@pytest.mark.parametrize("argv,code", [(["start", "now"], 64), (["-x", "status"], 64),
                                       (["frobnicate"], 64)])
def test_usage_errors(fastpost_instance, argv, code):
    inst = fastpost_instance(master_cf="")
    result = inst.command(*argv)
    assert result.returncode == code
    assert "usage" in result.stderr
