"""Key search strategies: orders of keys and first-match semantics over real tables."""

import pytest

from fastpost.mail.maps import MapList, MapRetry, create_map
from fastpost.mail.maps import search as s


def keys(ks):
    return [(k.key, k.partial) for k in ks]


def maplist(*specs):
    return MapList("test", [create_map(spec) for spec in specs])


def test_access_address_order_parent_style():
    got = keys(s.access_address_keys("user+ext@sub.example.com", delimiters="+"))
    assert got == [
        ("user+ext@sub.example.com", False), ("user@sub.example.com", True),
        ("sub.example.com", True), ("example.com", True), ("com", True),
        ("user+ext@", True), ("user@", True),
    ]


def test_access_address_dot_parents_and_null_sender():
    got = keys(s.access_address_keys("a@b.c.d", parent_style=False))
    assert got == [("a@b.c.d", False), ("b.c.d", True), (".c.d", True), (".d", True),
                   ("a@", True)]
    assert keys(s.access_address_keys("", null_key="<>")) == [("<>", False)]
    assert keys(s.access_address_keys("", null_key="nullkey")) == [("nullkey", False)]


def test_hostname_and_ip_keys():
    assert keys(s.access_domain_keys("mail.example.com.")) == [
        ("mail.example.com", False), ("example.com", True), ("com", True)]
    assert keys(s.access_hostaddr_keys("192.0.2.17")) == [
        ("192.0.2.17", False), ("192.0.2", True), ("192.0", True), ("192", True)]
    assert keys(s.access_hostaddr_keys("2001:db8::1")) == [
        ("2001:db8::1", False), ("2001:db8:", True), ("2001:db8", True), ("2001", True)]


def test_pattern_tables_see_only_whole_keys():
    # The regexp would match the bare domain, but it is only ever shown the address.
    maps = MapList("t", [create_map("inline:{example.com=DOMAIN}")])
    found = s.find_access_address(maps, "joe@example.com")
    assert found.value == "DOMAIN" and found.key.key == "example.com"


def test_pattern_table_not_asked_partial_keys(tmp_path):
    rx = tmp_path / "t.regexp"
    rx.write_text("/^example\\.com$/ PATTERN-DOMAIN\n/^joe@/ PATTERN-ADDRESS\n")
    maps = MapList("t", [create_map(f"regexp:{rx}")])
    assert s.find_access_address(maps, "ann@example.com") is None
    assert s.find_access_address(maps, "joe@example.com").value == "PATTERN-ADDRESS"
    # Host names: the whole name goes to pattern tables, parents do not.
    assert s.find_access_domain(maps, "example.com").value == "PATTERN-DOMAIN"
    assert s.find_access_domain(maps, "www.example.com") is None


def test_first_table_with_the_key_wins_and_retry_propagates():
    maps = maplist("inline:{a@b.example=FIRST}", "inline:{a@b.example=SECOND, b.example=D}")
    assert s.find_access_address(maps, "a@b.example").value == "FIRST"
    failing = maplist("fail:down", "inline:{a@b.example=NEVER}")
    with pytest.raises(MapRetry):
        s.find_access_address(failing, "a@b.example")
    # A miss in an earlier table, then a failure: still a failure, never "not found".
    failing = maplist("inline:{x=y}", "fail:down")
    with pytest.raises(MapRetry):
        s.find_access_address(failing, "a@b.example")


def test_address_keys_default_strategy_local_and_remote():
    local = lambda d: d == "local.example"  # noqa: E731
    got = [(a.key.key, a.key.partial, a.unmatched_ext) for a in
           s.address_keys("user+ext@local.example", delimiters="+", is_local=local)]
    assert got == [
        ("user+ext@local.example", False, ""), ("user@local.example", True, "ext"),
        ("user+ext", True, ""), ("user", True, "ext"), ("@local.example", True, ""),
    ]
    got = [a.key.key for a in s.address_keys("user@remote.example", is_local=local)]
    assert got == ["user@remote.example", "@remote.example"]


def test_address_keys_external_form_first():
    got = [a.key.key for a in s.address_keys("a b@example.com")]
    assert got == ['"a b"@example.com', "a b@example.com", "@example.com"]


def test_find_address_propagates_unmatched_extension():
    maps = maplist("inline:{user@example.com=other@example.net, @catch.example=all@x}")
    assert s.find_address(maps, "user+foo@example.com", delimiters="+",
                          propagate=True) == "other+foo@example.net"
    assert s.find_address(maps, "user+foo@example.com", delimiters="+",
                          propagate=False) == "other@example.net"
    assert s.find_address(maps, "who-x@catch.example", delimiters="-",
                          propagate=True) == "all@x"        # @domain: no propagation
    assert s.find_address(maps, "nobody@else.example", delimiters="+") is None
    quoted = maplist('inline:{{"a b"@example.com = q@x}}')
    assert s.find_address(quoted, "a b@example.com") == "q@x"


def test_transport_keys():
    assert keys(s.transport_keys("u+e@a.b.example", delimiters="+")) == [
        ("u+e@a.b.example", False), ("u@a.b.example", True), ("a.b.example", True),
        (".b.example", True), (".example", True), ("*", True)]
    maps = maplist("inline:{.example=smtp:[relay], *=error:nope}")
    assert s.find_transport(maps, "x@deep.example").value == "smtp:[relay]"
    assert s.find_transport(maps, "x@other.test").value == "error:nope"


def test_alias_keys():
    assert keys(s.alias_keys("joe+list", delimiters="+")) == [("joe+list", False),
                                                              ("joe", False)]
    maps = maplist("inline:{joe=joe@example.net}")
    assert s.find_alias(maps, "joe+list", delimiters="+").value == "joe@example.net"


def test_async_finders_agree():
    import asyncio

    maps = maplist("inline:{example.com=OK, joe=j@x, *=smtp:}")

    async def run():
        return (await s.afind_access_address(maps, "a@example.com"),
                await s.afind_alias(maps, "joe"),
                await s.afind_transport(maps, "a@nowhere.test"),
                await s.afind_address(maps, "joe@local", is_local=lambda d: True))

    a, b, c, d = asyncio.run(run())
    assert (a.value, b.value, c.value, d) == ("OK", "j@x", "smtp:", "j@x")


def test_local_domain_predicate():
    from fastpost.mail.config import Config

    cfg = Config("/nonexistent", text="mydestination = local.example, inline:{t.example=x}\n"
                 "inet_interfaces = 192.0.2.1\nproxy_interfaces = 198.51.100.1\n")
    is_local = s.local_domain_predicate(cfg)
    assert is_local("LOCAL.example.") and is_local("t.example")
    assert is_local("[192.0.2.1]") and is_local("[198.51.100.1]")
    assert not is_local("remote.example") and not is_local("[203.0.113.1]")
    assert s.parent_matches_subdomains(cfg, "smtpd_access_maps")
    assert not s.parent_matches_subdomains(cfg, "transport_maps")
    assert s.propagates(cfg, "canonical") and not s.propagates(cfg, "alias")
