"""The policy delegation client against real postgrey and a tiny in-test policy server.

postgrey (Debian's) is started on a loopback port with its own database directory:
the first request for a triplet is greylisted, the same request after the delay
passes. The in-test server (asyncio, real sockets) answers well, badly, slowly or
not at all, and counts connections and requests, for reuse, limits and retries.
"""

import asyncio
import time

import pytest

from fastpost.daemons.smtpd.policy_client import (PolicySpecError, PolicyUnavailable,
                                                  close_all, parse_spec, query)
from fastpost.mail.config import Config
from helpers.peers import Postgrey

#: smtpd's parameters as the skeleton's ctx.p holds them (typed; times in seconds).
PARAMS = {
    "queue_directory": "/nonexistent",
    "smtpd_policy_service_timeout": 100,
    "smtpd_policy_service_max_idle": 300,
    "smtpd_policy_service_max_ttl": 1000,
    "smtpd_policy_service_request_limit": 0,
    "smtpd_policy_service_try_limit": 2,
    "smtpd_policy_service_retry_delay": 0,
    "smtpd_policy_service_default_action": "451 4.3.5 Server configuration problem",
    "smtpd_policy_service_policy_context": "",
}


def request(sender="a@example.org", recipient="b@example.net", addr="192.0.2.10"):
    """A request with the attributes Postfix 3.7 sends, in its order."""
    return {"request": "smtpd_access_policy", "protocol_state": "RCPT",
            "protocol_name": "ESMTP", "client_address": addr, "client_name": "unknown",
            "client_port": "40000", "reverse_client_name": "unknown",
            "server_address": "127.0.0.1", "server_port": "25", "helo_name": "client.example",
            "sender": sender, "recipient": recipient, "recipient_count": "0",
            "queue_id": "", "instance": "1.2.3", "size": "0", "etrn_domain": "",
            "stress": "", "sasl_method": "", "sasl_username": "", "sasl_sender": "",
            "ccert_subject": "", "ccert_issuer": "", "ccert_fingerprint": "",
            "ccert_pubkey_fingerprint": "", "encryption_protocol": "",
            "encryption_cipher": "", "encryption_keysize": "0"}


class PolicyServer:
    """A policy server in the test's loop: ``answer(attrs) -> bytes | None``."""

    def __init__(self, answer, close_after_reply=False):
        self.answer = answer
        self.close_after_reply = close_after_reply
        self.connections = 0
        self.requests: list[dict] = []
        self.server = None

    async def _client(self, reader, writer):
        self.connections += 1
        try:
            while True:
                attrs = {}
                while True:
                    line = await reader.readline()
                    if not line:
                        return
                    if line == b"\n":
                        break
                    name, _, value = line.decode().rstrip("\n").partition("=")
                    attrs[name] = value
                self.requests.append(attrs)
                reply = self.answer(attrs)
                if reply is None:
                    await reader.read()  # never answers; waits for the client to go
                    return
                writer.write(reply)
                await writer.drain()
                if self.close_after_reply:
                    return
        finally:
            writer.close()

    async def start_inet(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"inet:127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start_unix(self, path):
        self.server = await asyncio.start_unix_server(self._client, path)

    async def stop(self):
        self.server.close()


def run(coro):
    """Run a test coroutine on a fresh loop and close the client's pools after it."""
    async def wrapper():
        try:
            return await coro
        finally:
            close_all()
    return asyncio.run(wrapper())


def ok(attrs):
    return f"action=DUNNO {attrs.get('recipient', '')}\n\n".encode()


def test_postgrey_greylists_then_passes():
    with Postgrey(delay=1) as pg:
        spec = f"inet:127.0.0.1:{pg.port}"

        async def main():
            first = await query(spec, request(), PARAMS)
            assert first.startswith("DEFER_IF_PERMIT"), first
            # Another triplet is greylisted on its own.
            other = await query(spec, request(sender="c@example.org"), PARAMS)
            assert other.startswith("DEFER_IF_PERMIT"), other
            deadline = time.monotonic() + 30
            while True:
                await asyncio.sleep(0.5)
                again = await query(spec, request(), PARAMS)
                if not again.startswith("DEFER_IF_PERMIT") or time.monotonic() > deadline:
                    break
            assert again.startswith("PREPEND X-Greylist: delayed"), again

        run(main())


def test_connection_reuse_and_policy_context():
    async def main():
        srv = PolicyServer(ok)
        spec = await srv.start_inet()
        results = [await query(spec, request(recipient=f"r{i}@example.net"), PARAMS)
                   for i in range(5)]
        assert results == [f"DUNNO r{i}@example.net" for i in range(5)]
        assert srv.connections == 1
        assert list(srv.requests[0])[:3] == ["request", "protocol_state", "protocol_name"]
        assert srv.requests[0]["policy_context"] == ""
        # The per-spec form: its own options and pool.
        braced = f"{{ {spec}, policy_context=submission, request_limit=2 }}"
        for _ in range(4):
            assert await query(braced, request(), PARAMS) == "DUNNO b@example.net"
        assert srv.connections == 3  # two more: request_limit=2
        assert srv.requests[-1]["policy_context"] == "submission"
        await srv.stop()

    run(main())


def test_concurrent_queries_share_the_pool():
    async def main():
        srv = PolicyServer(ok)
        spec = await srv.start_inet()
        got = await asyncio.gather(*(query(spec, request(recipient=f"r{i}@x.example"), PARAMS)
                                     for i in range(20)))
        assert got == [f"DUNNO r{i}@x.example" for i in range(20)]
        opened = srv.connections
        assert 1 <= opened <= 20
        await asyncio.gather(*(query(spec, request(), PARAMS) for i in range(opened)))
        assert srv.connections == opened  # the idle ones were reused
        await srv.stop()

    run(main())


def test_server_closing_a_reused_connection_costs_no_try():
    async def main():
        srv = PolicyServer(ok, close_after_reply=True)
        spec = "{ %s, try_limit=1 }" % await srv.start_inet()
        for _ in range(3):
            assert await query(spec, request(), PARAMS) == "DUNNO b@example.net"
        assert srv.connections == 3
        await srv.stop()

    run(main())


@pytest.mark.parametrize("reply,warning", [
    (b"this is not name=value\n\n".replace(b"=", b" "), "malformed attribute in input from"),
    (b"foo=bar\n\n", "missing attribute action in input from"),
])
def test_malformed_reply_is_unavailable_after_the_tries(reply, warning):
    from fastpost.daemons.smtpd.testing import CapturedLog
    from fastpost.util import log

    captured = CapturedLog()
    log.init("smtpd", syslog_name="fastpost", use_syslog=False, stream=captured)

    async def main():
        srv = PolicyServer(lambda attrs: reply)
        spec = await srv.start_inet()
        with pytest.raises(PolicyUnavailable) as exc:
            await query("{ %s, default_action=DUNNO }" % spec, request(), PARAMS)
        assert exc.value.default_action == "DUNNO"
        assert len(srv.requests) == 2  # smtpd_policy_service_try_limit
        await srv.stop()

    run(main())
    err = "\n".join(captured.take())
    assert warning in err
    assert "problem talking to server 127.0.0.1:" in err


def test_slow_server_times_out():
    async def main():
        srv = PolicyServer(lambda attrs: None)
        spec = await srv.start_inet()
        with pytest.raises(PolicyUnavailable) as exc:
            await query("{ %s, timeout=1s, try_limit=1 }" % spec, request(), PARAMS)
        assert exc.value.default_action == "451 4.3.5 Server configuration problem"
        await srv.stop()

    run(main())


def test_dead_server():
    async def main():
        srv = PolicyServer(ok)
        spec = await srv.start_inet()
        await srv.stop()
        await srv.server.wait_closed()
        with pytest.raises(PolicyUnavailable, match="problem talking to server"):
            await query(spec, request(), PARAMS)

    run(main())


def test_unix_socket_relative_to_queue_directory(tmp_path):
    (tmp_path / "private").mkdir()
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}\n"
                                      "smtpd_policy_service_timeout = 10s\n")
    cfg = Config(str(tmp_path))

    async def main():
        srv = PolicyServer(ok)
        await srv.start_unix(str(tmp_path / "private" / "policy"))
        assert await query("unix:private/policy", request(), cfg) == "DUNNO b@example.net"
        assert parse_spec("unix:private/policy", cfg).timeout == 10
        await srv.stop()

    run(main())


@pytest.mark.parametrize("spec", ["tcp:1.2.3.4:5", "inet:nohost", "{ inet:h:1, bogus=1 }",
                                  "{ inet:h:1, timeout=soon }", "{ inet:h:1"])
def test_bad_specs(spec):
    with pytest.raises(PolicySpecError):
        parse_spec(spec, PARAMS)


def test_declared_parameters():
    from fastpost.daemons.smtpd.policy_client import POLICY_PARAMS

    # smtpd declares these so that the skeleton's ctx.p (PARAMS' shape) holds them.
    assert set(POLICY_PARAMS) == set(PARAMS)
    incomplete = dict(PARAMS)
    del incomplete["smtpd_policy_service_try_limit"]
    with pytest.raises(PolicySpecError, match="smtpd_policy_service_try_limit"):
        parse_spec("inet:127.0.0.1:1", incomplete)
