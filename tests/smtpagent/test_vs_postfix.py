"""Live comparison with Debian's C Postfix smtp client: the same smtp-sink failures,
the same status (dsn, status, text) from both.

Postfix runs as a private instance (its own -c directory, ports and log) relaying
through ``relayhost = [127.0.0.1]:P``; fastpost's agent gets the same next hop.
"""

import os
import shutil
import smtplib
import subprocess
import tempfile
import time

import pytest

from helpers.instance import free_port
from smtpagent.agent import AgentSite
from smtpagent.sink import Sink

PF_MASTER = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
postlog   unix-dgram n  -       n       -       1       postlogd
"""

BODY = "Subject: t\n\n" + "y" * 2500 + "\n.dot\n." + "z" * 1500 + "\n"


class Postfix:
    def __init__(self, relay_port: int):
        self.root = tempfile.mkdtemp(prefix="pf-smtp-cmp-", dir="/var/tmp")
        os.chmod(self.root, 0o755)
        etc, spool, data = (os.path.join(self.root, d) for d in ("etc", "spool", "data"))
        for d in (etc, spool, data):
            os.makedirs(d)
        shutil.chown(data, "postfix")
        self.etc = etc
        self.port = free_port()
        self.log = os.path.join(self.root, "maillog")
        main = {
            "compatibility_level": "3.7", "queue_directory": spool, "data_directory": data,
            "mail_owner": "postfix", "myhostname": "pf.localdomain", "mydomain": "localdomain",
            "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
            "maillog_file": self.log, "maillog_file_prefixes": self.root, "syslog_name": "pfcmp",
            "mydestination": "", "alias_maps": "", "alias_database": "", "local_recipient_maps": "",
            "relayhost": f"[127.0.0.1]:{relay_port}", "default_transport": "smtp",
            "relay_transport": "relay", "queue_run_delay": "1h"}
        with open(os.path.join(etc, "main.cf"), "w") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in main.items())
        open(self.log, "a").close()
        os.chmod(self.log, 0o666)
        with open(os.path.join(etc, "master.cf"), "w") as fh:
            fh.write(PF_MASTER.format(port=f"127.0.0.1:{self.port}"))
        subprocess.run(["postfix", "-c", etc, "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                smtplib.SMTP("127.0.0.1", self.port, timeout=2).quit()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def configure(self, *settings: str) -> None:
        """``postconf -e`` each name=value, then reload (its processes restart lazily)."""
        subprocess.run(["postconf", "-c", self.etc, "-e", *settings], check=True,
                       capture_output=True)
        subprocess.run(["postfix", "-c", self.etc, "reload"], check=True, capture_output=True)
        time.sleep(0.5)

    def send(self) -> str:
        """Relay one message; return its status line's ``dsn=..., status=... (...)``."""
        with open(self.log) as fh:
            start = len(fh.read())
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
            s.sendmail("a@example.org", ["x@remote.example"], BODY.replace("\n", "\r\n"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.log) as fh:
                text = fh.read()[start:]
            for line in text.splitlines():
                if " to=<x@remote.example>, " in line and " status=" in line:
                    return line.split(", dsn=", 1)[1], text
            time.sleep(0.05)
        raise AssertionError("no status line from Postfix")

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def both():
    from conftest import need_program, need_root

    need_root()
    need_program("postfix")
    need_program("smtp-sink")
    port = free_port()
    pf = Postfix(port)
    try:
        with AgentSite() as site:
            site.start()
            yield pf, site, port
    finally:
        pf.stop()


@pytest.mark.parametrize("options", [
    "", "-f rcpt", "-r rcpt", "-f mail", "-r data", "-f .", "-Q mail", "-Q rcpt", "-q rcpt",
    "-q .", "-f connect", "-Q connect", "-f ehlo", "-e",
])
def test_same_status_as_postfix(both, options):
    pf, site, port = both
    with Sink(*options.split(), port=port) as sink:
        want, pf_log = pf.send()
        qid = site.submit(["x@remote.example"], BODY)
        site.deliver(qid, f"[127.0.0.1]:{port}", transport="relay")
        (line,) = site.status_lines(qid, keep_conn_use=False)
        assert line.split(", dsn=", 1)[1] == want
        if options == "":
            # Both broke the 2500-byte line the same way and said so.
            assert "breaking line > 998 bytes with <CR><LF>SPACE" in pf_log
            assert "breaking line > 998 bytes with <CR><LF>SPACE" in "\n".join(site.log_lines(qid))
            a, b = sink.messages()  # Postfix's cleanup added headers: compare bodies
            body = lambda m: m.split("\n\n", 1)[1]  # noqa: E731
            assert body(a) == body(b)
            assert [len(x) for x in body(b).split("\n")][:3] == [998, 998, 506]
