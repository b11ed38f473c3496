"""The trivial-rewrite daemon under a real master, and its caching client."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time

import pytest

from fastpost.mail import ipc
from fastpost.mail.config import Config
from fastpost.mail.resolve import CLASS_DEFAULT, CLASS_LOCAL, CLASS_RELAY, FLAG_ERROR, FLAG_FAIL
from fastpost.mail.rewrite_clnt import RewriteClient, RewriteError

MASTER_CF = "rewrite unix - - n - - trivial-rewrite\n"


@pytest.fixture
def table_dir():
    # Readable by the unprivileged worker (pytest's tmp_path is not), for reloads.
    path = tempfile.mkdtemp(prefix="fastpost-rw-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(fastpost_instance, table_dir, **main_cf):
    transport = os.path.join(table_dir, "transport")
    if not os.path.exists(transport):
        with open(transport, "w") as fh:
            fh.write("special.example  relay:[special-relay]:2525\n")
        os.chmod(transport, 0o644)
    settings = {"relay_domains": "rel.example", "relayhost": "[smart.example]",
                "transport_maps": f"texthash:{transport}", "mydomain": "localdomain"}
    settings.update(main_cf)
    inst = fastpost_instance(master_cf=MASTER_CF, main_cf=settings)
    inst.start()
    return inst


def test_rewrite_resolve_verify(fastpost_instance, table_dir):
    inst = _start(fastpost_instance, table_dir)
    client = RewriteClient(Config(str(inst.etc)))
    try:
        assert client.rewrite_sync("local", "user") == "user@test.localdomain"
        assert client.rewrite_sync("remote", "user") == "user"
        assert client.rewrite_sync("local", "host!user") == "user@host"
        r = client.resolve_sync("", "user@test.localdomain")
        assert (r.transport, r.nexthop, r.address_class) == ("local", "test.localdomain", "local")
        assert r.flags == CLASS_LOCAL
        r = client.resolve_sync("", "u@elsewhere.example")
        assert (r.transport, r.nexthop, r.flags) == ("smtp", "[smart.example]", CLASS_DEFAULT)
        r = client.resolve_sync("", "u@rel.example")
        assert (r.transport, r.nexthop, r.flags) == ("relay", "[smart.example]", CLASS_RELAY)
        r = client.resolve_sync("", "u@special.example")
        assert (r.transport, r.nexthop) == ("relay", "[special-relay]:2525")
        r = client.resolve_sync("", "u@bad..example")
        assert r.error and r.flags & FLAG_ERROR
        assert client.verify_sync("", "u@rel.example").transport == "relay"
    finally:
        client.close()


def test_async_client_caches_and_coalesces(fastpost_instance, table_dir):
    inst = _start(fastpost_instance, table_dir)
    client = RewriteClient(Config(str(inst.etc)))

    async def run():
        results = await asyncio.gather(*[client.resolve("", "u@elsewhere.example") for _ in range(50)])
        assert {r.nexthop for r in results} == {"[smart.example]"}
        again = await client.resolve("s@x", "u@elsewhere.example")
        assert again.nexthop == "[smart.example]"
        assert await client.rewrite("local", "a%b") == "a@b"
        client.close()

    asyncio.run(run())
    # 50 concurrent asks and one later ask (the sender does not matter without
    # sender-dependent maps): one round trip, the rest from the cache or coalesced.
    assert client.requests == 2  # resolve + rewrite
    assert client.cache.hits == 1


def test_bad_requests_are_refused_but_connection_stays(fastpost_instance, table_dir):
    inst = _start(fastpost_instance, table_dir)
    with ipc.AttrClient(inst.endpoint("rewrite"), "trivial_rewrite_protocol") as c:
        assert c.request({"request": "rewrite", "rule": "sideways", "address": "a"})["status"] == -1
        assert c.request({"request": "frobnicate", "address": "a"})["status"] == -1
        assert c.request({"request": "resolve"})["status"] == -1
        assert c.request({"request": "rewrite", "rule": "local", "address": "a@b."}) == \
            {"status": 0, "address": "a@b"}
    client = RewriteClient(Config(str(inst.etc)))
    with pytest.raises(RewriteError):
        client.rewrite_sync("sideways", "a")
    client.close()
    inst.wait_log(r"trivial_rewrite_protocol: bad request: unknown rewrite rule")


def test_table_failure_is_flagged_and_not_cached(fastpost_instance, table_dir):
    inst = _start(fastpost_instance, table_dir, transport_maps="fail:broken")
    client = RewriteClient(Config(str(inst.etc)))
    try:
        for _ in range(2):
            r = client.resolve_sync("", "u@elsewhere.example")
            assert r.failed and r.flags & FLAG_FAIL
        assert client.cache.hits == 0 and client.requests == 2
        inst.wait_log(r"u@elsewhere\.example: resolve: table lookup failure")
    finally:
        client.close()


def test_table_change_seen_after_cache_time(fastpost_instance, table_dir):
    inst = _start(fastpost_instance, table_dir, fastpost_rewrite_cache_time="1s")
    client = RewriteClient(Config(str(inst.etc)))
    try:
        assert client.resolve_sync("", "u@special.example").nexthop == "[special-relay]:2525"
        path = os.path.join(table_dir, "transport")
        with open(path, "w") as fh:
            fh.write("special.example  relay:[moved-relay]\n")
        future = time.time() + 5
        os.utime(path, (future, future))  # a different mtime even within one second
        deadline = time.monotonic() + 20
        while client.resolve_sync("", "u@special.example").nexthop != "[moved-relay]":
            assert time.monotonic() < deadline, "the table change was never seen"
            time.sleep(0.2)
    finally:
        client.close()
