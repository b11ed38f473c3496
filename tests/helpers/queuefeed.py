"""Acting as qmgr in tests: put messages in the queue, send delivery requests to agents.

    from helpers.queuefeed import QueueFeed

    feed = QueueFeed(inst.queue)                     # opens the instance's queue store
    qid = feed.submit("a@example.org", ["bob@example.com"], b"Subject: x\\n\\nhi\\n")
    results = feed.deliver("local", qid)             # one request over private/local
    feed.close()

submit() commits a message with the queue store's Committer, exactly as the cleanup
daemon will: envelope records, recipients (with their original addresses), content.
deliver() builds a DeliveryRequest for the message's recipients (all, or those given)
and sends it over the real delivery protocol (fastpost.mail.deliver) to the agent's
endpoint, as qmgr does; it returns {address: RecipientResult}.
"""

from __future__ import annotations

import asyncio
import time

from fastpost.mail import ipc
from fastpost.mail.deliver import PROTOCOL, DeliveryRequest, DeliveryResult, Recipient
from fastpost.mail.queue.message import parse
from fastpost.mail.queue.store import QueueStore


class QueueFeed:
    def __init__(self, queue_directory, *, name: str = "testfeed"):
        self.queue_directory = str(queue_directory)
        self.loop = asyncio.new_event_loop()
        self.store = QueueStore.open(self.queue_directory)
        self.committer = self.store.committer(name)
        self.clients: dict[str, ipc.AttrClient] = {}

    def submit(self, sender: str, recipients, content: bytes, *, orig: dict | None = None,
               attrs: dict | None = None, arrival: float | None = None,
               dsn_notify: dict | None = None) -> str:
        """Commit a message; ``recipients`` are addresses; return its queue ID."""
        async def go():
            b = self.committer.builder()
            b.time(arrival or time.time())
            for name, value in (attrs or {"rewrite_context": "local"}).items():
                b.attr(name, value)
            b.set_sender(sender)
            for rcpt in recipients:
                b.add_recipient(rcpt, (orig or {}).get(rcpt, rcpt),
                                dsn_notify=(dsn_notify or {}).get(rcpt, 0))
            await b.write(content)
            qid = await self.committer.commit(b)
            await self.committer.drain()  # indexed: visible to the agents (qmgr sends only then)
            return qid
        return self.loop.run_until_complete(go())

    def recipients(self, queue_id: str) -> list[Recipient]:
        parsed = parse(self.store.read(queue_id))
        return [Recipient(r.offset, r.address, r.orig or "", r.dsn_notify, r.dsn_orcpt or "")
                for r in parsed.recipients]

    def request(self, transport: str, queue_id: str, *, only=None, nexthop: str = "",
                client: dict | None = None) -> DeliveryRequest:
        parsed = parse(self.store.read(queue_id))
        rcpts = [r for r in self.recipients(queue_id) if only is None or r.address in only]
        now = time.time()
        return DeliveryRequest(
            queue_id=queue_id, transport=transport, nexthop=nexthop or "localhost",
            sender=parsed.sender or "", recipients=rcpts, arrival_time=parsed.arrival,
            active_time=now, size=parsed.size, client=client or {}, request_time=now)

    def connect(self, transport: str, timeout: float = 120) -> ipc.AttrClient:
        """A new connection to an agent (one per thread when several send at once)."""
        path = ipc.endpoint(self.queue_directory, transport, ipc.PRIVATE)
        return ipc.AttrClient(path, PROTOCOL, timeout=timeout)

    def send(self, transport: str, request: DeliveryRequest, timeout: float = 120,
             client: ipc.AttrClient | None = None) -> dict:
        """Send one request (on ``client``, or this feed's connection to the agent)."""
        if client is None:
            client = self.clients.get(transport)
            if client is None:
                client = self.clients[transport] = self.connect(transport, timeout)
        reply = client.request(request.to_attrs())
        if "error" in reply:
            raise AssertionError(f"agent refused the request: {reply['error']}")
        by_offset = {r.offset: r.address for r in request.recipients}
        return {by_offset[res.offset]: res for res in DeliveryResult.from_attrs(reply).results}

    def deliver(self, transport: str, queue_id: str, **kwargs) -> dict:
        """Send one delivery request for the message; return {address: RecipientResult}."""
        timeout = kwargs.pop("timeout", 120)
        return self.send(transport, self.request(transport, queue_id, **kwargs), timeout)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.loop.run_until_complete(self.committer.close())
        self.store.close()
        self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
