"""The shortcuts smtpd takes for speed answer exactly what the long way answers.

- RestrictionPolicy.idle_stages: at every stage it lists, check() answers None for
  any request, under several restriction configurations (the session then skips
  the call).
- HostList's memo (lists without tables): the memoised answer is the computed one
  for random clients, asked repeatedly; a list with a table is never memoised.
- SmtpdService.local_address: one listener bound to one address gives every
  session its local address without asking the connection; otherwise each asks.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.daemons.smtpd.checks.engine import RestrictionPolicy
from fastpost.daemons.smtpd.info import ClientInfo, Envelope, PolicyRequest, Recipient
from fastpost.daemons.smtpd.netmatch import HostList
from fastpost.mail.config import Config

BASE = """\
compatibility_level = 3.6
myhostname = mx.example.com
mydestination = $myhostname, localhost
mynetworks = 127.0.0.0/8
alias_maps =
local_recipient_maps =
"""

CONFIGS = {
    "default": "",
    "no delay": "smtpd_delay_reject = no\n",
    "client list": "smtpd_client_restrictions = reject_unknown_client_hostname\n",
    "data lists": ("smtpd_data_restrictions = reject_unauth_pipelining\n"
                   "smtpd_end_of_data_restrictions = permit_mynetworks, reject\n"),
    "no delay, lists": ("smtpd_delay_reject = no\n"
                        "smtpd_helo_restrictions = reject_invalid_helo_hostname\n"
                        "smtpd_sender_restrictions = reject_non_fqdn_sender\n"),
}

STAGES = ("CONNECT", "XCLIENT", "HELO", "EHLO", "MAIL", "RCPT", "VRFY", "DATA", "BDAT",
          "END-OF-MESSAGE", "ETRN")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_idle_stages_answer_none(tmp_path, name):
    policy = RestrictionPolicy(Config(str(tmp_path), text=BASE + CONFIGS[name]))
    assert "RCPT" not in policy.idle_stages and "VRFY" not in policy.idle_stages
    if name == "default":
        # What the accept benchmark runs: only RCPT is evaluated.
        assert policy.idle_stages >= {"CONNECT", "EHLO", "MAIL", "DATA", "END-OF-MESSAGE"}
    for client in (ClientInfo(name="unknown", addr="192.0.2.7", helo="bad helo!"),
                   ClientInfo(name="localhost", addr="127.0.0.1", helo="localhost")):
        env = Envelope("someone@nowhere")
        env.recipients.append(Recipient("rcpt@elsewhere.example"))
        for stage in policy.idle_stages:
            req = PolicyRequest(stage, client, env, None, None, 100, client.helo)
            assert policy.check(req) is None, (name, stage)
    if name == "no delay, lists":
        assert not {"HELO", "EHLO", "MAIL", "CONNECT"} & policy.idle_stages
    if name == "data lists":
        assert not {"DATA", "BDAT", "END-OF-MESSAGE"} & policy.idle_stages


PATTERNS = ["127.0.0.0/8", "10.1.0.0/16", "[::1]/128", "[2001:db8::]/32", "192.0.2.7",
            "example.com", ".example.org", "!10.1.2.0/24"]

addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["127.0.0.1", "10.1.2.3", "10.1.9.9", "192.0.2.7", "::1",
                     "2001:db8::5", "::ffff:10.1.3.4", "not-an-address", ""]),
)
names = st.sampled_from(["unknown", "", "mail.example.com", "example.com", "a.example.org",
                         "example.org", "other.net"])


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(st.sampled_from(PATTERNS), max_size=5),
       asks=st.lists(st.tuples(names, addresses), min_size=1, max_size=12))
def test_hostlist_memo_agrees(patterns, asks):
    memoised = HostList(patterns, parent=True)
    plain = HostList(patterns, parent=True)
    for name, addr in asks + asks:  # every client asked twice: the second from the memo
        assert memoised.match(name, addr) == plain._match(name, addr), (patterns, name, addr)


def test_hostlist_with_a_table_is_not_memoised(tmp_path):
    cfg = Config(str(tmp_path), text=BASE)
    hosts = HostList(["inline:{192.0.2.1=OK}", "127.0.0.0/8"], cfg=cfg)
    assert hosts._memo is None
    assert hosts.match("unknown", "192.0.2.1") and hosts.match("unknown", "127.0.0.2")
    assert not hosts.match("unknown", "192.0.2.2")


# -- the local address known from the listening socket (no getsockname per connection)

def test_fixed_local_address_of_listeners():
    import socket

    from fastpost.daemons.smtpd.service import fixed_local_address

    def listening(family, host):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((host, 0))
        s.listen(1)
        return s

    one = listening(socket.AF_INET, "127.0.0.1")
    wild = listening(socket.AF_INET, "0.0.0.0")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert fixed_local_address([one]) == ("127.0.0.1", str(one.getsockname()[1]))
        assert fixed_local_address([wild]) is None  # the address depends on the route
        assert fixed_local_address([one, one]) is None  # several listeners
        assert fixed_local_address([unix]) is None
        assert fixed_local_address([7]) is None  # a FIFO's descriptor
        assert fixed_local_address([]) is None
        if socket.has_ipv6:
            try:
                six = listening(socket.AF_INET6, "::")
            except OSError:
                pass
            else:
                assert fixed_local_address([six]) is None
                six.close()
    finally:
        for s in (one, wild, unix):
            s.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_sessions_see_their_local_address(tmp_path, host):
    """Bound to one address the sessions take it from the listener; on a wildcard
    they ask the connection: the policy sees 127.0.0.1 and the real port either way."""
    import asyncio
    import socket

    from fastpost.daemons.smtpd.policy import Policy
    from fastpost.daemons.smtpd.service import fixed_local_address
    from fastpost.daemons.smtpd.testing import SmtpdThread

    seen = []

    class Recording(Policy):
        def check(self, request):
            seen.append((request.stage, request.client.server_addr, request.client.server_port))
            return None

    srv = SmtpdThread(tmp_path, policy=Recording())
    with srv:
        async def second():
            return await srv.service.listen(host, 0)

        # SmtpdThread's own listener, then a second one: with two, every connection asks.
        assert srv.service.local_address == ("127.0.0.1", str(srv.port))
        extra = asyncio.run_coroutine_threadsafe(second(), srv.loop).result(30)
        assert srv.service.local_address is None
        port2 = extra.sockets[0].getsockname()[1]
        for port in (srv.port, port2):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
                c.recv(512)
                c.sendall(b"QUIT\r\n")
                c.recv(512)
        srv.wait_sessions(0)
        # Only the second listener now: fixed when it is bound to 127.0.0.1.
        srv.call(lambda: srv.service._listening.pop(0))
        srv.service.local_address = fixed_local_address(srv.service._listening)
        assert (srv.service.local_address is None) == (host == "0.0.0.0")
        with socket.create_connection(("127.0.0.1", port2), timeout=30) as c:
            c.recv(512)
            c.sendall(b"QUIT\r\n")
            c.recv(512)
        srv.wait_sessions(0)
        srv.call(extra.close)
    assert [s for s in seen if s[0] == "CONNECT"] == [
        ("CONNECT", "127.0.0.1", str(srv.port)), ("CONNECT", "127.0.0.1", str(port2)),
        ("CONNECT", "127.0.0.1", str(port2))]
