"""smtpd's memo of address classes by domain (AddressClassifier, checks/relay.py).

Each check here fails when the memo answers what a fresh resolution would not: an
address whose class depends on more than its domain, a table that changed or became
unreadable, a list that cannot promise its answers, a memo that grows without bound.
The oracle is the resolver itself (fastpost.mail.resolve, checked against Postfix's
trivial-rewrite in tests/delivery/test_resolve_vs_postfix.py) through a classifier
that keeps no memo.
"""

from __future__ import annotations

import os
import time

import pytest

from fastpost.daemons.smtpd.checks.relay import AddressClassifier
from fastpost.mail import maps
from fastpost.mail.config import Config
from fastpost.mail.maps import MapRetry, _base, indexed

BASE = ("compatibility_level = 3.7\nmyhostname = host.example.test\nmydomain = example.test\n"
        "myorigin = $mydomain\ninet_interfaces = 127.0.0.1\n")

#: Addresses in an order that makes the memo answer for the same domain with other
#: local parts, before and after addresses whose class is not the domain's.
ADDRESSES = [
    "u@example.test", "v@example.test", "a%b.example@example.test", "w@example.test",
    "b.example!c@example.test", "x@example.test", "c@b.example@example.test",
    "u@host.example.test", "u@localhost", "a%relay.example@localhost", "v@localhost",
    "u@relay.example", "v@relay.example", "U@RELAY.EXAMPLE", "u@sub.relay.example",
    "u@virt.example", "v@virt.example", "u@alias.example", "v@alias.example",
    "u@elsewhere.example", "v@elsewhere.example", "v@elsewhere.example.",
    "u@[127.0.0.1]", "v@[127.0.0.1]", "u@[192.0.2.1]", "u@1.2.3.4", "v@1.2.3.4",
    "u@bad..example", "v@bad..example", "-u@elsewhere.example", "user", "other",
    "@route.example:u@elsewhere.example", "u@", "@elsewhere.example", "a!b@localhost",
    "u@moved.example", "gone@moved.example",
]

CONFIGS = {
    "names": "mydestination = $myhostname, localhost, $mydomain\n"
             "relay_domains = relay.example\nvirtual_mailbox_domains = virt.example\n"
             "virtual_alias_domains = alias.example\n",
    "tables": "mydestination = $myhostname, localhost, texthash:{d}/local\n"
              "relay_domains = texthash:{d}/relay\nvirtual_mailbox_domains = virt.example\n"
              "virtual_alias_domains = inline:{{alias.example=x}}\n"
              "transport_maps = texthash:{d}/transport\nrelocated_maps = texthash:{d}/relocated\n"
              "sender_dependent_default_transport_maps = static:smtp\n"
              "allow_percent_hack = yes\nswap_bangpath = yes\n",
    "no percent hack": "mydestination = $myhostname, localhost, $mydomain\n"
                       "allow_percent_hack = no\nswap_bangpath = no\n"
                       "resolve_numeric_domain = yes\n",
}

TABLES = {
    "local": "example.test OK\n",
    "relay": "relay.example OK\n",
    "transport": "u@elsewhere.example error:5.1.1 nope\n",
    "relocated": "gone@moved.example new@where.example\n",
}


def make(tmp_path, text: str) -> Config:
    for name, body in TABLES.items():
        (tmp_path / name).write_text(body)
    return Config(str(tmp_path), text=BASE + text.format(d=tmp_path))


def answer(classifier, address: str):
    try:
        return classifier.classify(address, "127.0.0.1")
    except MapRetry:
        return "MapRetry"


def fresh(cfg, address: str):
    """The oracle: a classifier with no memo (and no last answer) for each address."""
    c = AddressClassifier(cfg)
    c._by_domain = None
    return answer(c, address)


@pytest.fixture(autouse=True)
def fresh_tables():
    maps.close_all()
    yield
    maps.close_all()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_memo_answers_as_a_fresh_resolution(tmp_path, name):
    cfg = make(tmp_path, CONFIGS[name])
    memo = AddressClassifier(cfg)
    assert memo._by_domain is not None
    for round_ in range(2):  # the second round answers from the memo where it may
        order = ADDRESSES if round_ == 0 else list(reversed(ADDRESSES))
        for address in order:
            assert answer(memo, address) == fresh(cfg, address), (name, address)
    assert memo._by_domain  # the memo was used
    assert "127.0.0.1" not in "".join(memo._by_domain)  # no address literal in it


def wait_for_check():
    time.sleep(0.12)  # past the (shortened) change-check interval of every table


@pytest.fixture
def quick_checks(monkeypatch):
    monkeypatch.setattr(_base, "CHANGE_CHECK_INTERVAL", 0.05)


def test_changed_table_is_seen(tmp_path, quick_checks):
    cfg = make(tmp_path, CONFIGS["tables"])
    memo = AddressClassifier(cfg)
    assert memo.classify("u@new.example").klass == "default"
    assert memo.classify("u@example.test").klass == "local"
    (tmp_path / "relay").write_text("relay.example OK\nnew.example OK\n")
    (tmp_path / "local").write_text("other.example OK\n")
    wait_for_check()
    # other local parts: the memo would answer for these domains if it kept them
    assert memo.classify("v@new.example").klass == "relay"
    assert memo.classify("v@example.test").klass == "default"


def test_unreadable_table_fails_not_remembered(tmp_path, quick_checks):
    cfg = make(tmp_path, CONFIGS["tables"])
    memo = AddressClassifier(cfg)
    assert memo.classify("u@relay.example").klass == "relay"
    os.unlink(tmp_path / "relay")
    wait_for_check()
    with pytest.raises(MapRetry):
        memo.classify("v@relay.example")
    (tmp_path / "relay").write_text("relay.example OK\n")
    wait_for_check()
    assert memo.classify("w@relay.example").klass == "relay"


def test_indexed_table_replaced_is_seen(tmp_path, quick_checks):
    src = tmp_path / "relay_db"

    def build(text):
        src.write_text(text)
        b = indexed.Builder(str(src), _base.DEFAULT_FLAGS)
        from fastpost.mail.maps.source import records

        for _, k, v in records(text):
            b.add(k, v)
        b.commit()

    build("relay.example OK\n")
    cfg = make(tmp_path, f"mydestination =\nrelay_domains = hash:{src}\n")
    memo = AddressClassifier(cfg)
    assert memo._by_domain is not None
    assert memo.classify("u@relay.example").klass == "relay"
    assert memo.classify("u@new.example").klass == "default"
    time.sleep(0.01)
    build("new.example OK\n")
    wait_for_check()
    assert memo.classify("v@relay.example").klass == "default"
    assert memo.classify("v@new.example").klass == "relay"


@pytest.mark.parametrize("relay", [
    "randmap:{{relay.example, other.example}}",   # answers vary by themselves
    "pipemap:{{inline:{{relay.example=a}}, inline:{{a=OK}}}}",
    "{d}/relay_list",                             # a /file list, re-read at each match
])
def test_no_memo_when_tables_cannot_promise(tmp_path, relay):
    (tmp_path / "relay_list").write_text("relay.example\n")
    cfg = make(tmp_path, f"mydestination =\nrelay_domains = {relay}\n")
    memo = AddressClassifier(cfg)
    assert memo._by_domain is None
    if relay.startswith("{d}"):
        assert memo.classify("u@relay.example").klass == "relay"
        (tmp_path / "relay_list").write_text("other.example\n")
        assert memo.classify("v@relay.example").klass == "default"


def test_memo_is_bounded(tmp_path):
    cfg = make(tmp_path, CONFIGS["names"])
    memo = AddressClassifier(cfg)
    memo.DOMAIN_MEMO_LIMIT = 3
    domains = [f"d{i}.example" for i in range(10)] + ["relay.example", "example.test"]
    for i, d in enumerate(domains * 2):
        got = memo.classify(f"u{i}@{d}")
        assert got == fresh(cfg, f"u{i}@{d}")
        assert len(memo._by_domain) <= 3
