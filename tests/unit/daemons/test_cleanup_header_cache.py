"""cleanup's cache of rewritten address headers: when it may be used, and its lifetime."""

import pytest

from fastpost.daemons.cleanup import addrmap
from fastpost.daemons.cleanup.settings import CleanupSettings
from fastpost.mail.config import Config
from fastpost.mail.rewrite_clnt import RewriteClient

BASE = ("compatibility_level = 3.7\nmyhostname = host.example.test\nmydomain = example.test\n"
        "inet_interfaces = 127.0.0.1\n")


def mapper(tmp_path, text: str = ""):
    cfg = Config(str(tmp_path), text=BASE + text)
    return addrmap.AddressMapper(CleanupSettings.from_config(cfg), RewriteClient(cfg, queue_directory=str(tmp_path)))


S, R = addrmap.SENDER_HEADER, addrmap.RECIPIENT_HEADER


@pytest.mark.parametrize("text, sender, recipient", [
    ("", True, True),
    ("canonical_maps = static:x@example.test\n", False, False),
    ("canonical_maps = static:x@example.test\ncanonical_classes = envelope_sender\n", True, True),
    ("sender_canonical_maps = static:x@example.test\n", False, True),
    ("recipient_canonical_maps = static:x@example.test\n", True, False),
    ("masquerade_domains = example.test\nmasquerade_classes = header_sender\n", True, True),
    ("masquerade_domains = example.test\nmasquerade_classes = header_sender\n"
     "masquerade_exceptions = root, static:x\n", False, True),
    ("fastpost_rewrite_cache_time = 0\n", False, False),
])
def test_cached_only_when_trivial_rewrite_alone_answers(tmp_path, text, sender, recipient):
    m = mapper(tmp_path, text)
    assert m.header_cacheable(S, True) is sender
    assert m.header_cacheable(R, True) is recipient
    # without FLAG_MAP_OK no table is consulted: cacheable whenever answers are cached
    assert m.header_cacheable(S, False) is ("cache_time = 0" not in text)


def test_entries_expire_with_the_rewrite_cache(tmp_path, monkeypatch):
    m = mapper(tmp_path, "fastpost_rewrite_cache_time = 10s\n")
    key = ("local", S, True, b"From: a@b")
    m.header_remember(key, b"From: a@b.example")
    assert m.header_cached(key) == b"From: a@b.example"
    now = addrmap.time.monotonic()
    monkeypatch.setattr(addrmap.time, "monotonic", lambda: now + 11)
    assert m.header_cached(key) is None
    assert key not in m._hdr_cache
