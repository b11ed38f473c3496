"""The shortcuts smtpd takes for speed answer exactly what the long way answers.

- RestrictionPolicy.idle_stages: at every stage it lists, check() answers None for
  any request, under several restriction configurations (the session then skips
  the call).
- HostList's memo (lists without tables): the memoised answer is the computed one
  for random clients, asked repeatedly; a list with a table is never memoised.
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
