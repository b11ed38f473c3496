"""Running delivery commands (fastpost.mail.pipe_command): shell or not, environment,
output, time limit, exit status to delivery status. Texts are Postfix 3.7's."""

import os
import time

import pytest

from fastpost.mail import pipe_command as pc


def run(command, data=b"line\n", **kw):
    kw.setdefault("time_limit", 5)
    return pc.run(data=data, command=command, **kw)


def test_direct_execution_without_shell():
    assert pc.command_argv("/usr/bin/id -u") == ["/usr/bin/id", "-u"]
    assert pc.command_argv("cat -") == ["cat", "-"]  # found in /usr/bin:/bin
    assert pc.command_argv("exit 67") == ["/bin/sh", "-c", "exit 67"]  # a shell built-in
    assert pc.command_argv("echo a > /tmp/x") == ["/bin/sh", "-c", "echo a > /tmp/x"]
    assert pc.command_argv("echo $HOME") == ["/bin/sh", "-c", "echo $HOME"]
    assert pc.command_argv("/usr/bin/id", shell="/bin/bash -c") == ["/bin/bash", "-c", "/usr/bin/id"]


@pytest.mark.parametrize("command, status, dsn, text", [
    ("exit 0", "ok", "2.0.0", ""),
    ("exit 75", "defer", "4.3.0", "temporary failure"),
    ("exit 67", "bounce", "5.1.1", "user unknown"),
    ("exit 1", "bounce", "5.3.0", 'Command died with status 1: "exit 1"'),
    ("echo 5.7.1 custom failure text; exit 1", "bounce", "5.7.1", "custom failure text "),
    ("echo 4.7.1 later; exit 1", "defer", "4.7.1", "later "),
    ("echo 5.1.1 go away; exit 75", "bounce", "5.1.1", "go away "),
    ("echo oops; exit 75", "defer", "4.3.0", "temporary failure. Command output: oops "),
    ("kill -9 $$", "defer", "4.3.0", 'Command died with signal 9: "kill -9 $$"'),
    ("/nonexistent/program", "defer", "4.3.0", "temporary failure. Command output: local: "
     "fatal: execvp /nonexistent/program: No such file or directory "),
])
def test_exit_status_mapping(command, status, dsn, text):
    r = run(command)
    assert (r.status, r.dsn, r.text) == (status, dsn, text)


def test_environment_is_clean(tmp_path):
    out = tmp_path / "env"
    os.environ["FASTPOST_TEST_SECRET"] = "x"
    os.environ["LANG"] = "C"
    try:
        r = run(f"/usr/bin/env > {out}", env={"USER": "u"}, export=["LANG", "NOT_SET"])
    finally:
        del os.environ["FASTPOST_TEST_SECRET"]
    assert r.status == "ok"
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    env.pop("PWD", None)
    env.pop("SHLVL", None)
    env.pop("_", None)
    assert env == {"PATH": "/usr/bin:/bin", "LANG": "C", "USER": "u"}


def test_message_on_stdin_and_early_close(tmp_path):
    out = tmp_path / "copy"
    assert run(f"cat > {out}", data=b"a\nb\n").status == "ok"
    assert out.read_bytes() == b"a\nb\n"
    r = run("head -c 3", data=b"x" * 5_000_000)  # stops reading: not an error
    assert (r.status, r.output) == ("ok", "xxx")


def test_output_is_limited_and_made_printable():
    r = run("printf 'a\\tb\\001c\\n'; exit 1")
    assert r.text.endswith("Command output: a b_c ")
    r = run("yes | head -c 100000; exit 1")
    assert len(r.output) == pc.OUTPUT_LIMIT


def test_time_limit_kills_the_process_group(tmp_path):
    marker = tmp_path / "grandchild"
    t0 = time.monotonic()
    r = run(f"(sleep 3; touch {marker}) & sleep 30", time_limit=1)
    assert (r.status, r.dsn) == ("bounce", "5.3.0")
    assert r.text.startswith('Command time limit exceeded: "(sleep 3; touch')
    assert time.monotonic() - t0 < 10
    time.sleep(3)
    assert not marker.exists()  # the background grandchild was killed with the group


def test_runs_as_the_given_user():
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    import shutil
    import tempfile
    d = tempfile.mkdtemp(dir="/tmp")  # pytest's tmp_path is private to root
    try:
        os.chmod(d, 0o777)
        out = os.path.join(d, "id")
        r = run(f"/usr/bin/id > {out}", uid=65534, gid=65534)
        assert r.status == "ok", r.text
        text = open(out).read().strip()
        assert text.startswith("uid=65534(") and " gid=65534(" in text
        assert text.endswith("groups=65534(nogroup)")  # no supplementary groups
    finally:
        shutil.rmtree(d)
