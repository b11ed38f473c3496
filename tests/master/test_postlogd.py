"""postlogd: the postlog service writes maillog_file for processes that may not."""

import os
import pwd
import grp
import re
import subprocess
import sys
import time

from conftest import need_program, need_root
from fastpost.daemons.postlogd import MAX_LINE, format_line
from fastpost.mail import ipc

POSTLOG = "postlog unix-dgram n - n - 1 postlogd\n"


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_format_line_is_one_printable_bounded_line():
    line = format_line(b"evil/tag[1]: a\nforged line\x1b[31m" + b"x" * 10000, now=0)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b"\x1b" not in line and b"a?forged line?[31m" in line
    assert len(line) < MAX_LINE + 64


def test_datagrams_are_written_to_maillog(fastpost_instance):
    inst = fastpost_instance(master_cf=POSTLOG)
    inst.start()
    ipc.trigger(inst.endpoint("postlog", public=True), b"someone/thing[42]: hello there")
    text = inst.wait_log(r"someone/thing\[42\]: hello there")
    assert re.search(r"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ someone/thing\[42\]: hello there$",
                     text, re.M)


def test_unprivileged_command_logs_through_postlog(fastpost_instance):
    need_root()
    setpriv = need_program("setpriv")
    inst = fastpost_instance(master_cf=POSTLOG)
    inst.start()
    os.chmod(inst.maillog, 0o644)  # root's file: nobody may not open it for writing
    nobody = pwd.getpwnam("nobody").pw_uid
    postdrop = grp.getgrnam("postdrop").gr_gid  # public/ is 0710 group postdrop
    for path in (inst.dir, inst.etc):
        os.chmod(path, 0o755)
    # setgid-postdrop, as Postfix's postlog(1) is; CAP_DAC_READ_SEARCH only reaches the
    # interpreter under /root (it gives no write access to the log file).
    proc = subprocess.run(
        [setpriv, f"--reuid={nobody}", f"--regid={postdrop}", "--clear-groups",
         "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
         sys.executable, "-m", "fastpost", "-c", str(inst.etc), "log", "-t", "cron",
         "from an unprivileged user"],
        env=inst.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "warning: open" not in proc.stderr
    inst.wait_log(r" cron\[\d+\]: from an unprivileged user")
