"""The embedded development set-up (`./dev run`): a real master that Ctrl-C stops."""

import os
import signal
import socket
import subprocess
import sys
import time

from fastpost.mail import ipc


def test_embedded_configuration_runs_and_stops_on_ctrl_c(tmp_path):
    root = tmp_path / "var"
    with socket.socket() as s:  # 2525 may be taken on a shared machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    made = subprocess.run([sys.executable, "-m", "fastpost", "embedded-config",
                           "--smtp", f"127.0.0.1:{port}", str(root)],
                          capture_output=True, text=True, check=True)
    etc = made.stdout.strip()
    out = open(tmp_path / "out", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "fastpost", "-c", etc, "start-fg"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "daemon started" not in (tmp_path / "out").read_text():
            assert proc.poll() is None, (tmp_path / "out").read_text()
            assert time.monotonic() < deadline, (tmp_path / "out").read_text()
            time.sleep(0.05)
        # Every service of the embedded master.cf has a real daemon: postlog answers.
        ipc.trigger(str(root / "spool" / "public" / "postlog"), b"dev/test[7]: it works")
        while "dev/test[7]: it works" not in (tmp_path / "out").read_text():
            assert time.monotonic() < deadline, (tmp_path / "out").read_text()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        assert proc.wait(timeout=30) == 0
        text = (tmp_path / "out").read_text()
        assert "terminating on signal 2" in text
        assert "warning" not in text and "Traceback" not in text
        assert not (root / "spool" / "pid" / "master.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
