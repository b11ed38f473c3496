"""The accept path for tests: a running instance with smtpd, cleanup, trivial-rewrite and
postlogd, and helpers to read what landed in the queue store (tests/cleanup/ uses it
through its ``accept`` fixture; see tests/cleanup/conftest.py).
"""

from __future__ import annotations

import re
import smtplib
import time

from fastpost.mail.queue import QueueStore
from fastpost.mail.queue.message import parse

MASTER = ("{port} inet n - n - - smtpd\n"
          "cleanup unix n - n - 0 cleanup\n"
          "rewrite unix - - n - - trivial-rewrite\n"
          "postlog unix-dgram n - n - 1 postlogd\n")


class Accept:
    """A running instance with the accept path (see the module docstring)."""

    def __init__(self, inst, port: int):
        self.inst = inst
        self.port = port

    # -- sending -----------------------------------------------------------------------

    def smtp(self, source: str = "127.0.0.1", helo: str = "client.example") -> smtplib.SMTP:
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname=helo, timeout=60,
                         source_address=(source, 0))
        return s

    def send(self, sender: str, recipients, message: bytes, *, source: str = "127.0.0.1",
             mail_options=(), rcpt_options=()):
        """One transaction; return the DATA reply (code, text)."""
        with self.smtp(source) as s:
            s.ehlo()
            code, text = s.mail(sender, list(mail_options))
            assert code == 250, (code, text)
            for r in recipients:
                code, text = s.rcpt(r, list(rcpt_options))
                assert code == 250, (r, code, text)
            code, text = s.data(message)
            return code, text.decode("utf-8", "replace")

    def queued_id(self, text: str) -> str:
        m = re.search(r"queued as (\S+)", text)
        if not m:
            warnings = [line for line in self.log().splitlines() if "warning:" in line][-10:]
            raise AssertionError(f"not queued: {text}\n" + "\n".join(warnings))
        return m.group(1)

    # -- reading the queue ------------------------------------------------------------------

    def store(self) -> QueueStore:
        return QueueStore.open(str(self.inst.queue), readonly=True)

    def wait_indexed(self, qid: str, timeout: float = 20) -> None:
        """Wait until qid is in the index (indexing follows the acknowledgement)."""
        deadline = time.monotonic() + timeout
        while True:
            store = self.store()
            try:
                if store.get(qid) is not None:
                    return
            finally:
                store.close()
            if time.monotonic() > deadline:
                raise AssertionError(f"{qid} was never indexed\n{self.log()}")
            time.sleep(0.02)

    def queue_file(self, qid: str) -> bytes:
        self.wait_indexed(qid)
        store = self.store()
        try:
            return store.read(qid)
        finally:
            store.close()

    def export(self, qid: str) -> bytes:
        self.wait_indexed(qid)
        store = self.store()
        try:
            return store.export(qid)
        finally:
            store.close()

    def state(self, qid: str) -> str:
        from fastpost.mail.queue.index import STATE_NAMES

        self.wait_indexed(qid)
        store = self.store()
        try:
            info = store.get(qid)
            return STATE_NAMES[info.state] if info is not None else "missing"
        finally:
            store.close()

    def parsed(self, qid: str):
        return parse(self.queue_file(qid))

    def cat(self, qid: str, flags: str = "-ebh") -> str:
        self.wait_indexed(qid)
        proc = self.inst.command("cat", flags, "-q", qid, check=True)
        return proc.stdout

    def headers(self, qid: str) -> list[str]:
        """The header section as postcat -h prints it, one physical line per entry."""
        text = self.cat(qid, "-h")
        lines = text.splitlines()
        return [line for line in lines if not line.startswith("***")]

    def body(self, qid: str) -> list[str]:
        text = self.cat(qid, "-b")
        return [line for line in text.splitlines() if not line.startswith("***")]

    def envelope(self, qid: str) -> list[str]:
        text = self.cat(qid, "-e")
        return [line for line in text.splitlines() if not line.startswith("***")]

    def log(self) -> str:
        return self.inst.log_text()

    def count(self) -> int:
        store = self.store()
        try:
            return sum(1 for _ in store.messages())
        finally:
            store.close()
