"""The table layer: open_map caching and reload, surrogates, MapList, table types."""

import ipaddress
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail import maps
from fastpost.mail.config import Config
from fastpost.mail.maps import MapError, MapList, MapRetry, create_map, open_map
from fastpost.mail.maps import _base, cidr, indexed
from fastpost.mail.maps.regexp import TranslateError, compile_posix, translate


@pytest.fixture(autouse=True)
def fresh_cache():
    maps.close_all()
    yield
    maps.close_all()


def build(path, text, flags=_base.DEFAULT_FLAGS):
    path.write_text(text)
    b = indexed.Builder(str(path), flags)
    from fastpost.mail.maps.source import records

    for _, k, v in records(text):
        b.add(k, v)
    b.commit()


def test_open_map_is_cached_and_reopened_after_rebuild(tmp_path, monkeypatch):
    t = tmp_path / "access"
    build(t, "Example.com REJECT\n")
    m = open_map(f"hash:{t}")
    assert m is open_map(f"hash:{t}")
    assert m.get("EXAMPLE.COM") == "REJECT"
    build(t, "example.com OK\n")
    # The cached object notices the replaced file on its next check...
    monkeypatch.setattr(_base, "CHANGE_CHECK_INTERVAL", 0.0)
    m._watch.next_check = 0
    assert m.get("example.com") == "OK"
    # ...and open_map hands out a fresh table for a changed file.
    build(t, "example.com DUNNO\n")
    assert open_map(f"hash:{t}").get("example.com") == "DUNNO"


def test_missing_table_is_a_surrogate_that_defers(tmp_path):
    m = open_map(f"hash:{tmp_path}/nothere")
    with pytest.raises(MapRetry) as info:
        m.get("x")
    assert "nothere.lmdb" in str(info.value)
    with pytest.raises(MapRetry):
        open_map("nosuchtype:x").get("x")
    with pytest.raises(MapRetry):
        open_map("inline:{broken").get("x")
    with pytest.raises(MapError):
        open_map("no-colon-here")


def test_proxy_is_served_in_process():
    assert open_map("proxy:inline:{a=b}").get("A") == "b"


def test_maplist_from_param_first_match_and_retry(tmp_path):
    cfg = Config(str(tmp_path), text="virtual_alias_maps = inline:{a=1}, { inline:{a=2, b=2} }\n"
                 "transport_maps = inline:{x=1}, fail:down, inline:{y=2}\n")
    ml = MapList.from_param(cfg, "virtual_alias_maps")
    assert [m.type for m in ml.maps] == ["inline", "inline"]
    assert (ml.get("a"), ml.get("b"), ml.get("c")) == ("1", "2", None)
    failing = MapList.from_param(cfg, "transport_maps")
    assert failing.get("x") == "1"
    with pytest.raises(MapRetry):
        failing.get("y")


def test_fold_flags_and_pattern_tables(tmp_path):
    t = tmp_path / "t"
    build(t, "Key Value\n", flags=_base.DEFAULT_FLAGS & ~_base.FOLD_FIX)
    assert create_map(f"lmdb:{t}", flags=_base.DEFAULT_FLAGS & ~_base.FOLD_FIX).get("Key") == "Value"
    assert create_map(f"lmdb:{t}").get("Key") is None   # folded query, unfolded table
    r = tmp_path / "r.regexp"
    r.write_text("/^Abc$/i EXACT\n")
    m = create_map(f"regexp:{r}")
    assert m.is_pattern and not m.is_fixed
    assert (m.get("Abc"), m.get("abc")) == ("EXACT", None)


def test_texthash_reload_and_unreadable(tmp_path, monkeypatch):
    t = tmp_path / "t"
    t.write_text("a 1\n")
    m = create_map(f"texthash:{t}", warn=lambda text: None)
    assert m.get("A") == "1"
    time.sleep(0.01)
    t.write_text("a 2\n")
    os.utime(t, (time.time() + 5, time.time() + 5))
    m._watch.next_check = 0
    assert m.get("a") == "2"
    os.unlink(t)
    m._watch.next_check = 0
    with pytest.raises(MapRetry):
        m.get("a")


def test_unionmap_pipemap_flags():
    u = create_map("unionmap:{inline:{a=1}, inline:{a=2}}")
    assert u.is_fixed and u.get("a") == "1,2" and u.get("b") is None
    p = create_map("pipemap:{inline:{a=b}, inline:{b=c}}")
    assert p.get("A") == "c"
    with pytest.raises(MapRetry):
        create_map("unionmap:{inline:{a=1}, fail:x}").get("a")
    with pytest.raises(MapError):
        create_map("pipemap:{inline:{a=b}}")


def test_randmap_and_environ(monkeypatch):
    m = create_map("randmap:{a, b, {c d}}")
    assert {m.get("x") for _ in range(200)} == {"a", "b", "c d"}
    monkeypatch.setenv("FASTPOST_TEST_VAR", "Yes")
    assert create_map("environ:").get("FASTPOST_TEST_VAR") == "Yes"


# -- regexp dialect translation ---------------------------------------------------------

@pytest.mark.parametrize("posix,flags,subject,matches", [
    ("[[:digit:]]+", "", b"a12", True),
    ("^[\\]x]$", "", b"\\x]", True),       # backslash is literal inside brackets
    ("^[]a]$", "", b"]", True),
    ("a$", "", b"a\n", False),              # $ is the very end
    ("a.b", "", b"a\nb", True),             # . matches newline without m
    ("a.b", "m", b"a\nb", False),
    ("\\<foo\\>", "", b"x foo y", True),
    ("\\(ab\\)*c", "x", b"ababc", True),     # BRE groups
    ("a+", "x", b"a+", True),                # BRE: + is literal
    ("A", "", b"a", True),
    ("A", "i", b"a", False),
])
def test_posix_translation(posix, flags, subject, matches):
    assert bool(compile_posix(posix, flags).search(subject)) is matches


@pytest.mark.parametrize("bad", ["(?i)a", "*a", "a[b", "a\\", "[[:nope:]]"])
def test_posix_translation_refuses(bad):
    with pytest.raises((TranslateError, Exception)):
        compile_posix(bad, "")
    assert translate("a{2}") == "a{2}"


# -- cidr index against a plain first-match scan ----------------------------------------

nets = st.tuples(st.sampled_from([4, 6]), st.integers(0, 2**32 - 1), st.integers(0, 32),
                 st.booleans())


def _canonical(version, value, plen, negate):
    if version == 6:
        value = value << 96
        plen = plen * 4
        bits = 128
    else:
        bits = 32
    value &= ~((1 << (bits - plen)) - 1) if plen < bits else ~0
    addr = ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value)
    return ("!" if negate else "") + f"{addr}/{plen}"


@given(rules=st.lists(nets, max_size=25), probes=st.lists(st.integers(0, 2**32 - 1),
                                                          max_size=20))
@settings(max_examples=150, deadline=None)
def test_cidr_index_agrees_with_linear_scan(tmp_path_factory, rules, probes):
    lines = [_canonical(*r) for r in rules]
    path = tmp_path_factory.mktemp("cidr") / "t.cidr"
    path.write_text("".join(f"{x} r{i}\n" for i, x in enumerate(lines)))
    m = create_map(f"cidr:{path}", warn=lambda text: None)
    parsed = [(cidr.parse_net(x.lstrip("!")), x.startswith("!"), f"r{i}")
              for i, x in enumerate(lines)]
    for p in probes:
        for key in (str(ipaddress.IPv4Address(p)), str(ipaddress.IPv6Address(p << 96))):
            addr = cidr.parse_key(key)
            expect = next((res for net, neg, res in parsed
                           if net.version == addr[0] and net.contains(addr) != neg), None)
            assert m.get(key) == expect


def test_vanished_files_fail_until_they_are_back(tmp_path, monkeypatch):
    monkeypatch.setattr(_base, "CHANGE_CHECK_INTERVAL", 0.0)
    t = tmp_path / "t"
    build(t, "a 1\n")
    idx = create_map(f"lmdb:{t}")
    r = tmp_path / "r.regexp"
    r.write_text("/^a$/ 1\n")
    rx = create_map(f"regexp:{r}")
    assert idx.get("a") == rx.get("a") == "1"
    os.unlink(str(t) + ".lmdb")
    os.unlink(r)
    for m in (idx, rx):
        m._watch.next_check = 0
        for _ in range(2):          # not once: every lookup, until the file is back
            with pytest.raises(MapRetry):
                m.get("a")
    build(t, "a 2\n")
    r.write_text("/^a$/ 2\n")
    idx._watch.next_check = rx._watch.next_check = 0
    assert idx.get("a") == rx.get("a") == "2"


def test_berkeley_db_only_table_says_what_to_do(tmp_path):
    (tmp_path / "access").write_text("a b\n")
    (tmp_path / "access.db").write_bytes(b"not read by fastpost")
    with pytest.raises(MapRetry) as info:
        open_map(f"hash:{tmp_path}/access").get("a")
    assert "access.lmdb: No such file or directory" in str(info.value)
    assert f"run 'fastpost map hash:{tmp_path}/access'" in str(info.value)
