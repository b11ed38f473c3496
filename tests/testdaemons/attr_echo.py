"""Test daemon: an attribute-protocol service (``echo_protocol``) on the multi skeleton.

Each request comes back with ``pid`` added; ``{"request": "sleep", "seconds": N}``
answers after N/1000 seconds (asynchronously, to show replies stay in order).
"""

import asyncio
import os

from fastpost.mail.ipc import attr_service
from fastpost.server import multi_server_main


async def _later(request, ms):
    await asyncio.sleep(ms / 1000)
    return dict(request, pid=os.getpid())


def handle(request, conn):
    if request.get("request") == "sleep":
        return _later(request, request.get("seconds", 0))
    return dict(request, pid=os.getpid())


def main(argv):
    multi_server_main(argv, attr_service("echo_protocol", handle,
                                         hello_extra=lambda conn: {"pid": os.getpid()}))
