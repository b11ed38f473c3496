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

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.accept import MASTER, Accept  # noqa: E402,F401
from helpers.instance import free_port  # noqa: E402


@pytest.fixture
def accept(fastpost_instance):
    """Factory: accept(main_cf=None, tables=None, master_extra="") -> started Accept."""

    def make(main_cf: dict | None = None, tables: dict | None = None, master_extra: str = "",
             master: str | None = None) -> Accept:
        port = free_port()
        settings = {"mynetworks": "127.0.0.0/8", "smtpd_peername_lookup": "no",
                    "myhostname": "mx.example.com", "mydomain": "example.com",
                    "myorigin": "$myhostname", "mydestination": "$myhostname, localhost",
                    # No recipient validation here (the restriction engine's implicit
                    # reject_unlisted_recipient): the default local_recipient_maps
                    # includes hash:/etc/aliases, a Berkeley DB file fastpost does not
                    # read, which is a temporary lookup failure (451 4.3.0), as Postfix
                    # answers for a table it cannot read.
                    "local_recipient_maps": ""}
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

