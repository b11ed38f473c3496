"""Fixtures for the accept path: a real fastpost (master, smtpd, cleanup, trivial-rewrite,
postlogd) on loopback, and helpers to read what landed in the queue store.

    acc = accept(main_cf={...}, tables={"virtual": "a b\\n"})   # started
    code, text = acc.send("s@example.org", ["r@example.net"], b"Subject: x\\r\\n\\r\\nbody\\r\\n")
    qid = acc.queued_id(text)
    parsed = acc.parsed(qid)            # fastpost.mail.queue.message.ParsedMessage
    headers = acc.headers(qid)          # the message's header lines, unfolded per record
    acc.cat(qid, "-eh")                 # `fastpost cat` output

Tables are written into the instance's etc/ and indexed with ``fastpost map`` when the
main.cf settings refer to them as ``hash:@ETC@/name``.
"""

from __future__ import annotations

import re
import smtplib
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.instance import free_port  # noqa: E402

from fastpost.mail.queue import QueueStore  # noqa: E402
from fastpost.mail.queue.message import parse  # noqa: E402

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

    @staticmethod
    def queued_id(text: str) -> str:
        m = re.search(r"queued as (\S+)", text)
        assert m, text
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


@pytest.fixture
def accept(fastpost_instance):
    """Factory: accept(main_cf=None, tables=None, master_extra="") -> started Accept."""

    def make(main_cf: dict | None = None, tables: dict | None = None, master_extra: str = "",
             master: str | None = None) -> Accept:
        port = free_port()
        settings = {"mynetworks": "127.0.0.0/8", "smtpd_peername_lookup": "no",
                    "myhostname": "mx.example.com", "mydomain": "example.com",
                    "myorigin": "$myhostname", "mydestination": "$myhostname, localhost"}
        inst = fastpost_instance(master_cf=(master or MASTER).format(port=port) + master_extra,
                                 main_cf=settings)
        main = dict(settings)
        for key, value in (main_cf or {}).items():
            main[key] = value.replace("@ETC@", str(inst.etc))
        inst.write_main_cf({**inst.main_settings, **main})
        for name, text in (tables or {}).items():
            (inst.etc / name).write_text(text)
            for kind in ("hash", "lmdb", "btree"):
                ref = f"{kind}:{inst.etc}/{name}"
                if any(ref in v for v in main.values()):
                    inst.command("map", ref, check=True)
        inst.start()
        return Accept(inst, port)

    return make

