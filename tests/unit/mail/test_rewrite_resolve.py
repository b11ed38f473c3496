"""rewrite, resolve and domain lists without Postfix: vectors found by asking Postfix 3.7
(tests/delivery/test_resolve_vs_postfix.py compares the two live)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail.config import Config
from fastpost.mail.domain_list import DomainList, literal_address
from fastpost.mail.resolve import (
    CLASS_ALIAS, CLASS_DEFAULT, CLASS_LOCAL, CLASS_RELAY, CLASS_VIRTUAL, FLAG_ERROR, FLAG_FAIL,
    FLAG_ROUTED, Resolver, split_nexthop, valid_domain,
)
from fastpost.mail.rewrite import Rewriter

BASE = ("compatibility_level = 3.7\nmyhostname = host.example.test\nmydomain = example.test\n"
        "inet_interfaces = 127.0.0.1\n")


def cfg(tmp_path, text: str = "") -> Config:
    return Config(str(tmp_path), text=BASE + text)


@pytest.mark.parametrize("context, address, want", [
    ("local", "", ""), ("local", "@", ""), ("local", "user", "user@host.example.test"),
    ("remote", "user", "user"), ("local", "a!b!c", "b!c@a"), ("local", "a%b%c", "a%b@c"),
    ("local", "user@host.", "user@host"), ("local", "u@x..", "u@x.."), ("local", "@a:u", "u@host.example.test"),
    ("local", "@a,@b:u@c", "@a,@b:u@c"), ("local", "a b!c", "a b!c@host.example.test"),
])
def test_rewrite_vectors(tmp_path, context, address, want):
    assert Rewriter(cfg(tmp_path)).rewrite(context, address) == want


def test_rewrite_remote_domain_and_dot_mydomain(tmp_path):
    rw = Rewriter(cfg(tmp_path, "remote_header_rewrite_domain = rem.example\nappend_dot_mydomain = yes\n"))
    assert rw.rewrite("remote", "user") == "user@rem.example"
    assert rw.rewrite("remote", "user@host") == "user@host.rem.example"
    assert rw.rewrite("local", "a!b") == "b@a.example.test"
    assert rw.rewrite("local", "u@[1.2.3.4]") == "u@[1.2.3.4]"
    with pytest.raises(ValueError):
        rw.rewrite("sideways", "x")


@pytest.mark.parametrize("address, flags, transport, nexthop, recipient", [
    ("user", CLASS_LOCAL, "local", "host.example.test", "user@host.example.test"),
    ("", CLASS_LOCAL, "local", "host.example.test", "MAILER-DAEMON@host.example.test"),
    ("u@[127.0.0.1]", CLASS_LOCAL, "local", "host.example.test", "u@[127.0.0.1]"),
    ("a%b@host.example.test", CLASS_DEFAULT, "smtp", "b", "a@b"),
    ("a!b%c@host.example.test", CLASS_DEFAULT | FLAG_ROUTED, "smtp", "a", "b%c@a"),
    ("u@x@remote", CLASS_DEFAULT | FLAG_ROUTED, "smtp", "remote", "u@x@remote"),
    ("@a,@b:u@c", CLASS_DEFAULT | FLAG_ROUTED, "smtp", "c", "@a, @b:u@c"),
    ("-dash@remote", CLASS_DEFAULT | FLAG_ERROR, "smtp", "remote", "-dash@remote"),
    ("u@x_y.com", CLASS_DEFAULT, "smtp", "x_y.com", "u@x_y.com"),
])
def test_resolve_vectors(tmp_path, address, flags, transport, nexthop, recipient):
    r = Resolver(cfg(tmp_path)).resolve("", address)
    assert (r.flags, r.transport, r.nexthop, r.recipient) == (flags, transport, nexthop, recipient)


@pytest.mark.parametrize("address", ["u@x..", "u@", "u@123", "u@[321.1.2.3]", "@", "u@-x.com", "@a:u"])
def test_resolve_malformed(tmp_path, address):
    assert Resolver(cfg(tmp_path)).resolve("", address).flags & FLAG_ERROR


def th(r):
    return r.transport, r.nexthop


def test_resolve_classes_relayhost_and_transport_maps(tmp_path):
    (tmp_path / "transport").write_text("t.example  :[t-nh]\nn.example smtp:\ne.example error:gone\n")
    (tmp_path / "sdr").write_text("@b.example  [b-relay]\n")
    res = Resolver(cfg(tmp_path, (
        "relay_domains = rel.example\nrelayhost = [rh]\nvirtual_alias_domains = va.example\n"
        "virtual_mailbox_domains = vm.example\nvirtual_transport = lmtp:unix:private/dovecot\n"
        f"transport_maps = texthash:{tmp_path}/transport\n"
        f"sender_dependent_relayhost_maps = texthash:{tmp_path}/sdr\n")))
    assert th(res.resolve("", "u@sub.rel.example")) == ("relay", "[rh]")
    assert res.resolve("", "u@rel.example").flags == CLASS_RELAY
    assert th(res.resolve("", "u@va.example")) == ("error", "5.1.1 User unknown in virtual alias table")
    assert res.resolve("", "u@va.example").flags == CLASS_ALIAS
    assert th(res.resolve("", "u@vm.example")) == ("lmtp", "unix:private/dovecot")
    assert res.resolve("", "u@sub.vm.example").flags == CLASS_DEFAULT  # a string list: exact only
    assert th(res.resolve("x@b.example", "u@remote")) == ("smtp", "[b-relay]")
    assert th(res.resolve("", "u@t.example")) == ("smtp", "[t-nh]")
    assert th(res.resolve("", "u@n.example")) == ("smtp", "n.example")
    assert th(res.resolve("", "u@e.example")) == ("error", "gone")
    assert th(res.resolve("", "u@sub.t.example")) == ("smtp", "[rh]")  # transport: .parent form only
    fail = Resolver(cfg(tmp_path, "transport_maps = fail:x\n")).resolve("", "u@remote")
    assert fail.flags & FLAG_FAIL and fail.failed


def test_domain_lists(tmp_path):
    (tmp_path / "doms").write_text("# comment\nfiled.example, b.example\n")
    c = cfg(tmp_path, f"relay_domains = !no.example, example.org, {tmp_path}/doms, inline:{{t.example=x}}\n")
    dl = DomainList.from_param(c, "relay_domains")
    assert dl.match("example.org") and dl.match("a.b.Example.ORG.") and dl.match("x.t.example")
    assert dl.match("filed.example") and dl.match("sub.filed.example")
    assert not dl.match("no.example") and not dl.match("other.example") and not dl.match("")
    dotted = DomainList("x", [".example.org"], c, parent_style=True)
    assert not dotted.match("a.example.org")  # parent style compares bare parents only
    dotted = DomainList("x", [".example.org"], c, parent_style=False)
    assert dotted.match("a.example.org") and not dotted.match("example.org")
    exact = DomainList.string_list(c, "relay_domains")
    assert exact.match("example.org") and not exact.match("a.example.org")


def test_helpers():
    assert split_nexthop("smtp:[h]:25") == ("smtp", "[h]:25")
    assert split_nexthop(":") == ("", "") and split_nexthop("relay") == ("relay", "")
    assert valid_domain("x.123") and not valid_domain("123") and not valid_domain("a..b")
    assert valid_domain("[IPv6:::1]") and not valid_domain("[1.2.3]")
    assert literal_address("[IPv6:0::1]") == "::1" and literal_address("1.2.3.4") is None


# -- addresses a client may answer itself (rewrite_clnt.RewriteClient) -----------------

_REWRITE_CONFIGS = [
    "",
    "append_dot_mydomain = yes\nremote_header_rewrite_domain = rem.example\n",
    "swap_bangpath = no\nallow_percent_hack = no\nappend_at_myorigin = no\n",
    "mydomain = x\nmyorigin = o.example\nappend_dot_mydomain = yes\n",
]


@pytest.mark.parametrize("address, itself", [
    ("user@example.com", True), ("a.b+c@sub.example.com", True), ("u@[1.2.3.4]", True),
    ("a%b@example.com", True), ("a!b@example.com", True), ("a@b@example.com", True),
    ("@a,@b:u@c.example", False), ("@a:u@c.example", False), ("user", False),
    ("user@host", False), ("user@example.com.", False), ("u@x..", False), ("u@", False),
    ("", False), ("@", False), ("@example.com", False), ("a!b", False), ("a%b.example", False),
])
def test_rewrites_to_itself_vectors(tmp_path, address, itself):
    from fastpost.mail.rewrite import rewrites_to_itself

    assert rewrites_to_itself(address) is itself
    if itself:
        for text in _REWRITE_CONFIGS:
            rw = Rewriter(cfg(tmp_path, text))
            for context in ("local", "remote"):
                assert rw.rewrite(context, address) == address


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab.@!%:, \"[]1-", max_size=14))
def test_rewrites_to_itself_never_claims_a_change(tmp_path_factory, address):
    """Every address it calls unchanged is unchanged by the rewrite, in every context
    and configuration tried: a client answering these itself answers right."""
    from fastpost.mail.rewrite import rewrites_to_itself

    if not rewrites_to_itself(address):
        return
    d = tmp_path_factory.getbasetemp()
    for text in _REWRITE_CONFIGS:
        rw = Rewriter(cfg(d, text))
        for context in ("local", "remote"):
            assert rw.rewrite(context, address) == address


def test_client_answers_unchanged_addresses_itself(tmp_path):
    """No trivial-rewrite runs here: the client answers the addresses it may answer
    itself, and still asks (and fails to reach) for every other one."""
    import asyncio

    from fastpost.mail import ipc
    from fastpost.mail.rewrite_clnt import RewriteClient

    client = RewriteClient(cfg(tmp_path), queue_directory=str(tmp_path))
    try:
        for context in ("local", "remote"):
            assert client.rewrite_sync(context, "u@example.com") == "u@example.com"
            assert client.rewrite_cached(context, "a%b@example.com") == "a%b@example.com"
            assert asyncio.run(client.rewrite(context, "u@[1.2.3.4]")) == "u@[1.2.3.4]"
            assert client.rewrite_cached(context, "user@host") is None
        assert client.requests == 0
        for address in ("user", "user@host", "user@example.com.", "@a:u@b.example"):
            with pytest.raises(ipc.IPCError):
                client.rewrite_sync("local", address)
        with pytest.raises(ipc.IPCError):
            client.rewrite_sync("sideways", "u@example.com")  # the server judges contexts
    finally:
        client.close()
