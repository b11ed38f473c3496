"""``sendmail -bd`` / ``-bl`` (daemon mode) side by side with Postfix 3.7's sendmail.

Postfix's sendmail(1): "-bd  Go into daemon mode. This mode of operation is implemented
by executing the "postfix start" command"; -bl is the same (inet_interfaces chooses the
connections). Seen on a private instance (session 10): sendmail runs ``postfix start``
in the background and exits 0 at once, nothing on its standard output or error; the
start logs ``starting the Postfix mail system``, a second -bd or -bl logs ``fatal: the
Postfix mail system is already running`` and still exits 0; -bd with a recipient is
``sendmail: fatal: daemon mode requires no recipient``, exit 75.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "queue"))
from postfix_instance import PostfixInstance, postfix_tmpdir  # noqa: E402


def _run(argv, env=None, settled=None):
    """(exit status, stdout + stderr): into a file, not a pipe, which the started
    mail system would keep open. The start that sendmail leaves running in the
    background would write to the same file (Postfix's start prints nothing there,
    as its output is not a terminal): with ``settled`` (a predicate: that start has
    logged its outcome), the file is read only once it has, so that anything the
    background start printed is in it whatever the machine's load (read at once, it
    was there or not by chance: how fastpost's printing start was found)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                              timeout=60)
        if settled is not None:
            _wait(settled, f"{argv[-1]}: the background start did not log its outcome")
            time.sleep(0.5)  # (its last words follow its log line)
        out.seek(0)
        return proc.returncode, out.read().decode()


def _wait(predicate, what):
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_daemon_mode_starts_the_mail_system_as_postfix(fastpost_instance):
    with postfix_tmpdir() as root:
        pfx = PostfixInstance(root)
        pfx.running = True  # stop() at the end, whatever happened
        sendmail = ["/usr/sbin/sendmail", "-C", pfx.etc]

        def pfx_log():
            with open(pfx.maillog) as fh:
                return fh.read()

        try:
            theirs = [_run(sendmail + ["-bd"], settled=lambda: "daemon started" in pfx_log())]
            theirs.append(_run(sendmail + ["-bl"], settled=lambda: "already running" in pfx_log()))
            theirs.append(_run(sendmail + ["-bd", "x@example.net"]))
        finally:
            pfx.stop()
    assert theirs == [(0, ""), (0, ""), (75, "sendmail: fatal: daemon mode requires no recipient\n")]

    inst = fastpost_instance(master_cf="s unix - - n - - testdaemons.echo\n")
    sendmail = [sys.executable, "-m", "fastpost", "-c", str(inst.etc), "sendmail"]
    ours = [_run(sendmail + ["-bd"], env=inst.env(),
                 settled=lambda: "daemon started" in inst.log_text())]
    inst.master_pid = inst.running_pid()  # for the fixture's clean-up
    ours.append(_run(sendmail + ["-bl"], env=inst.env(),
                     settled=lambda: "already running" in inst.log_text()))
    ours.append(_run(sendmail + ["-bd", "x@example.net"], env=inst.env()))
    assert ours == theirs
    log = inst.log_text()
    assert log.index("starting the fastpost mail system") < log.index("daemon started")
