"""The verify service's cache rules (fastpost.daemons.verify.cache) on a clock the test
turns: expiry, refresh, in-progress probes, negative caching, cleanup; and that the
cache file is an indexed table fastpost's map reader (fastpost map -q/-s) reads."""

import pytest

from fastpost.daemons.verify.cache import (
    CLEANUP_KEY, IN_PROGRESS, PROBE_TTL, STAT_BOUNCE, STAT_DEFER, STAT_OK, STAT_TODO,
    LmdbTable, MemoryTable, Policy, VerifyCache, open_table, parse_entry,
)


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


def make(table=None, **policy):
    clock = Clock()
    p = Policy(positive_expire=100, positive_refresh=10, negative_expire=50,
               negative_refresh=5, **policy)
    return VerifyCache(table if table is not None else MemoryTable(), p, clock), clock


def test_unknown_address_is_probed_once_then_answered():
    cache, clock = make()
    assert cache.query("A@Example.COM") == (STAT_TODO, IN_PROGRESS, True)
    # a second query while the probe is out: in progress, no second probe
    assert cache.query("a@example.com") == (STAT_TODO, IN_PROGRESS, False)
    assert cache.update("a@example.com", STAT_OK, "250 2.1.5 Ok")
    assert cache.query("a@example.com") == (STAT_OK, "250 2.1.5 Ok", False)
    status, probed, updated, text = parse_entry(cache.table.get("a@example.com"))
    assert (status, probed, updated, text) == (STAT_OK, 0, int(clock.now), "250 2.1.5 Ok")


def test_lost_probe_is_sent_again_after_the_probe_ttl():
    cache, clock = make()
    cache.query("a@x")
    clock.now += PROBE_TTL - 1
    assert cache.query("a@x")[2] is False
    clock.now += 2
    assert cache.query("a@x") == (STAT_TODO, IN_PROGRESS, True)


def test_positive_refresh_answers_old_result_and_probes_in_background():
    cache, clock = make()
    cache.query("a@x")
    cache.update("a@x", STAT_OK, "250 ok")
    clock.now += 11  # past positive_refresh (10), before positive_expire (100)
    assert cache.query("a@x") == (STAT_OK, "250 ok", True)
    assert cache.query("a@x") == (STAT_OK, "250 ok", False)  # that probe is out
    cache.update("a@x", STAT_OK, "250 again")
    assert cache.query("a@x") == (STAT_OK, "250 again", False)


def test_positive_expiry_starts_over():
    cache, clock = make()
    cache.query("a@x")
    cache.update("a@x", STAT_OK, "250 ok")
    clock.now += 101
    assert cache.query("a@x") == (STAT_TODO, IN_PROGRESS, True)


def test_negative_refresh_and_expiry():
    cache, clock = make()
    cache.query("b@x")
    cache.update("b@x", STAT_BOUNCE, "550 no")
    clock.now += 4
    assert cache.query("b@x") == (STAT_BOUNCE, "550 no", False)
    clock.now += 2  # past negative_refresh (5)
    assert cache.query("b@x") == (STAT_BOUNCE, "550 no", True)
    cache.update("b@x", STAT_DEFER, "connect refused")
    assert cache.query("b@x") == (STAT_DEFER, "connect refused", False)
    clock.now += 51  # past negative_expire (50)
    assert cache.query("b@x") == (STAT_TODO, IN_PROGRESS, True)


def test_a_failure_never_replaces_a_deliverable_entry():
    cache, clock = make()
    cache.query("a@x")
    cache.update("a@x", STAT_OK, "250 ok")
    clock.now += 11
    assert cache.query("a@x")[2] is True
    assert cache.update("a@x", STAT_BOUNCE, "550 gone") is False
    assert cache.query("a@x") == (STAT_OK, "250 ok", True)  # asked again next time


def test_without_negative_caching_failures_are_not_kept():
    cache, clock = make(negative_cache=False)
    cache.query("b@x")
    assert cache.update("b@x", STAT_BOUNCE, "550 no") is False
    assert cache.table.get("b@x") is None
    assert cache.query("b@x") == (STAT_TODO, IN_PROGRESS, True)


def test_cleanup_drops_expired_entries_and_records_its_time():
    cache, clock = make()
    for a in ("a@x", "b@x", "c@x"):
        cache.query(a)
    cache.update("a@x", STAT_OK, "ok")
    cache.update("b@x", STAT_BOUNCE, "no")
    clock.now += 60  # b (negative, 50) expired; a (100) kept; c in progress (1000) kept
    assert cache.cleanup() == (2, 1)
    assert cache.table.get("b@x") is None
    assert cache.table.get(CLEANUP_KEY) == str(int(clock.now))


def test_cache_file_is_read_by_fastpost_map(tmp_path):
    from fastpost.mail.maps import open_map

    spec = f"btree:{tmp_path}/verify_cache"
    table = open_table(spec)
    assert isinstance(table, LmdbTable)
    cache, clock = make(table)
    cache.query("Known@Remote.Test")
    cache.update("known@remote.test", STAT_OK, "250 2.1.5 Ok")
    table.close()  # py-lmdb opens a file once per process (the e2e test reads it live)
    m = open_map(spec)
    assert m.get("known@remote.test") == f"0:0:{int(clock.now)}:250 2.1.5 Ok"
    assert dict(m.items())["known@remote.test"].startswith("0:0:")


@pytest.mark.parametrize("spec", ["texthash:/x", "btree:", "pgsql:/etc/x.cf", "nonsense"])
def test_unsupported_cache_tables_are_named(spec):
    with pytest.raises(ValueError, match="address_verify_map"):
        open_table(spec)


def test_empty_map_is_in_memory():
    assert isinstance(open_table(""), MemoryTable)


def test_service_requests():
    """The verify protocol handler: update then query; malformed requests fail."""
    import fastpost.daemons.verify as service

    cache, clock = make()
    service._st.cache = cache
    try:
        assert service.handle({"request": "update", "address": "a@x", "recipient_status": 2,
                               "reason": "550 no"}) == {"status": 0}
        assert service.handle({"request": "query", "address": "A@X"}) == {
            "status": 0, "recipient_status": STAT_BOUNCE, "reason": "550 no"}
        assert service.handle({"request": "update", "address": "a@x",
                               "recipient_status": 3}) == {"status": 1}
        assert service.handle({"request": "update", "address": "a@x",
                               "recipient_status": "x"}) == {"status": 1}
        assert service.handle({"request": "query"}) == {"status": 1}
        assert service.handle({"request": "delete", "address": "a@x"}) == {"status": 1}
    finally:
        service._st.cache = None


@pytest.mark.parametrize("ttl,now,expected", [
    # recorded from Postfix 3.7's probes (MAIL FROM at the remote) at these times
    (3600, 1795266005, "double-bounceJQXM@mx.fastpost.test"),
    (7 * 86400, 1795266012, "double-bounce32R@mx.fastpost.test"),
    (1, 1795266019, "double-bounce20PY0T2@mx.fastpost.test"),
])
def test_time_dependent_probe_sender(ttl, now, expected):
    from fastpost.daemons.verify.probe import ttl_sender

    assert ttl_sender("double-bounce@mx.fastpost.test", ttl, now) == expected
    assert ttl_sender("double-bounce", ttl, now) == expected.partition("@")[0]
