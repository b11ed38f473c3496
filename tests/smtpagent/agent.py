"""Acting as qmgr for the smtp/lmtp agent: a private instance, messages, requests.

    with AgentSite(tmp_path, main_cf={...}) as site:
        qid = site.submit(["a@example.net"], "Subject: x\\n\\nhi\\n")
        res = site.deliver(qid, "[127.0.0.1]:2525")     # DeliveryResult (results + hop)
        site.status_lines(qid)                          # Postfix status lines, timings cut

Messages are committed by a child running as the mail_owner (tests/delivery/dlv.py's
inject, as cleanup would); the requests go over the real delivery protocol to
private/smtp (or the transport given), as qmgr sends them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from delivery.dlv import inject
from fastpost.mail import ipc
from fastpost.mail.deliver import PROTOCOL, DeliveryRequest, DeliveryResult, Recipient
from fastpost.mail.queue.message import parse
from fastpost.mail.queue.store import QueueStore
from helpers.instance import Instance

MASTER_CF = """\
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
"""


class AgentSite:
    def __init__(self, _unused=None, *, main_cf: dict | None = None, master_cf: str = MASTER_CF,
                 name: str = "fp"):
        # The workers run as the mail_owner: the instance must be reachable (pytest's
        # tmp_path is private to root), as helpers.mailsite does.
        self.dir = Path(tempfile.mkdtemp(prefix="fastpost-smtp-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.inst = Instance(self.dir, master_cf=master_cf, main_cf=main_cf, name=name)
        self.clients: dict[str, ipc.AttrClient] = {}

    def start(self) -> "AgentSite":
        self.inst.start()
        return self

    def read(self, qid: str) -> bytes:
        # Opened for each read: a store left open would be inherited by inject()'s child.
        store = QueueStore.open(str(self.inst.queue), readonly=True)
        try:
            return bytes(store.read(qid))
        finally:
            store.close()

    def submit(self, rcpts, body: str = "Subject: test\n\nhello\n", sender: str = "sender@example.org",
               **extra) -> str:
        message = {"sender": sender, "rcpts": list(rcpts), "body": body, **extra}
        (qid,) = inject(str(self.inst.etc), [message], trigger=False)
        return qid

    def request(self, qid: str, nexthop: str, transport: str = "smtp", **fields) -> DeliveryRequest:
        parsed = parse(self.read(qid))
        rcpts = [Recipient(r.offset, r.address, r.orig or "", r.dsn_notify, r.dsn_orcpt or "")
                 for r in parsed.recipients]
        now = time.time()
        req = DeliveryRequest(queue_id=qid, transport=transport, nexthop=nexthop,
                              sender=parsed.sender or "", recipients=rcpts,
                              arrival_time=parsed.arrival, active_time=now, size=parsed.size,
                              request_time=now)
        for key, value in fields.items():
            setattr(req, key, value)
        return req

    def client(self, transport: str) -> ipc.AttrClient:
        if transport not in self.clients:
            path = ipc.endpoint(str(self.inst.queue), transport, ipc.PRIVATE)
            self.clients[transport] = ipc.AttrClient(path, PROTOCOL, timeout=120)
        return self.clients[transport]

    def send(self, req: DeliveryRequest) -> DeliveryResult:
        reply = self.client(req.transport).request(req.to_attrs())
        assert "error" not in reply, reply
        return DeliveryResult.from_attrs(reply)

    def deliver(self, qid: str, nexthop: str, transport: str = "smtp", **fields) -> DeliveryResult:
        return self.send(self.request(qid, nexthop, transport, **fields))

    def log_lines(self, qid: str) -> list[str]:
        return [line for line in self.inst.log_text().splitlines() if f" {qid}: " in line]

    def status_lines(self, qid: str, *, keep_conn_use: bool = True) -> list[str]:
        """``to=<...>, relay=..., [conn_use=N, ]dsn=..., status=... (text)``, no timings."""
        out = []
        for line in self.log_lines(qid):
            m = re.search(r": (to=<.*)$", line)
            if m:
                text = re.sub(r"delay=[^,]*, delays=[^,]*, ", "", m.group(1))
                if not keep_conn_use:
                    text = re.sub(r"conn_use=\d+, ", "", text)
                out.append(text)
        return out

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()
        self.inst.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
