"""smtpd.standalone with --cleanup, --maillog and --accept-handles (benchmarks/smtpd_gap.py).

The standalone runner is a separate process; a cleanup service is played by a small
server in this test (the cleanup protocol's frames over a real UNIX socket) that
answers OPEN with a queue ID and END with 250 and records what it got. One message
through smtplib must come back "queued as" that ID, the cleanup end must have the
envelope and the content, and the log lines must be in the --maillog file.
"""

import os
import smtplib
import socket
import subprocess
import sys
import threading
import time

from fastpost.mail import attr
from fastpost.mail import cleanup_proto as P


class FakeCleanup(threading.Thread):
    """Accepts one connection; OPEN -> {t, id}, END -> {t, c 250, id}."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.frames = []

    def run(self):
        conn, _ = self.listener.accept()
        conn.sendall(attr.encode({"protocol": P.PROTOCOL}))
        decoder = attr.FrameDecoder(attr.DEFAULT_MAX_FRAME, attr.DEFAULT_MAX_DEPTH)
        while True:
            buf = decoder.get_buffer(65536)
            n = conn.recv_into(buf)
            if not n:
                return
            decoder.buffer_updated(n)
            out = []
            while (frame := decoder.next_frame()) is not None:
                self.frames.append(frame)
                if frame["o"] == P.OPEN:
                    out.append({"t": frame["t"], "id": "4FAKE1"})
                elif frame["o"] == P.END:
                    out.append({"t": frame["t"], "c": 250, "id": "4FAKE1"})
            if out:
                conn.sendall(attr.encode_many(out))


def test_standalone_cleanup_sink_and_maillog(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\nmyhostname = standalone.example\n"
        "mynetworks = 127.0.0.0/8\nsmtpd_peername_lookup = no\n"
        f"queue_directory = {tmp_path}\n")
    sock_path = str(tmp_path / "cleanup")
    fake = FakeCleanup(sock_path)
    fake.start()
    port_file = tmp_path / "port"
    maillog = tmp_path / "maillog"
    server = subprocess.Popen(
        [sys.executable, "-m", "fastpost.daemons.smtpd.standalone", "-c", str(conf),
         "-l", "127.0.0.1:0", "-d", str(tmp_path / "spool"), "--cleanup", sock_path,
         "--maillog", str(maillog), "--accept-handles", "2", "--port-file", str(port_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = int(port_file.read_text())
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example")
            client.mail("alice@example.com")
            client.rcpt("bob@example.net")
            code, text = client.data(b"Subject: hi\r\n\r\nbody line\r\n")
        assert code == 250 and text.endswith(b"queued as 4FAKE1"), (code, text)
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out.decode()
    opens = [f for f in fake.frames if f["o"] == P.OPEN]
    ends = [f for f in fake.frames if f["o"] == P.END]
    assert len(opens) == 1 and len(ends) == 1
    assert opens[0]["s"] == "alice@example.com"
    rcpts = [r[0] for f in fake.frames for r in f.get("r", ())]
    content = b"".join(f.get("d", b"") for f in fake.frames)
    assert rcpts == ["bob@example.net"]
    assert b"body line" in content and content.startswith(b"Received: ")
    log_text = maillog.read_text()
    assert "4FAKE1: client=" in log_text
    assert "disconnect from" in log_text
    assert out == b""  # with --maillog the lines go to the file, not stdout
    os.unlink(sock_path)
