"""The table kernels: compiled against pure-Python reference (hypothesis).

_indexed: key folding, NUL conventions and lookups, with a dict standing in for the
LMDB transaction's get. _pcre2: the Cython binding against the ctypes binding of the
same libpcre2-8.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail.maps import _indexed_c as IC
from fastpost.mail.maps import _indexed_py as IP
from fastpost.mail.maps import _pcre2_c as PC
from fastpost.mail.maps import _pcre2_py as PP
from fastpost.mail.maps.pcre_error import PcreError

IMPLS = [pytest.param(IC, id="c"), pytest.param(IP, id="py")]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | \
    st.text(alphabet="aAbBzZ09.@-_+ \t", max_size=20)


@given(key=text, fold=st.booleans(), nul=st.booleans())
def test_encode_key_agrees(key, fold, nul):
    assert IC.encode_key(key, fold, nul) == IP.encode_key(key, fold, nul)
    assert IC.encode_value(key, nul) == IP.encode_value(key, nul)


@given(data=st.binary(max_size=30))
def test_decode_value_agrees(data):
    assert IC.decode_value(data) == IP.decode_value(data)


@given(pairs=st.dictionaries(text, text, max_size=8), queries=st.lists(text, max_size=8),
       fold=st.booleans(), stored_nul=st.booleans(), mode=st.sampled_from([0, 1, 2]))
def test_lookup_agrees(pairs, queries, fold, stored_nul, mode):
    table = {IP.encode_key(k, fold, stored_nul): IP.encode_value(v, stored_nul)
             for k, v in pairs.items()}
    c = IC.IndexedReader(table.get, fold, mode)
    p = IP.IndexedReader(table.get, fold, mode)
    for q in list(pairs) + queries:
        assert c.lookup(q) == p.lookup(q)
        assert c.nul == p.nul


@pytest.mark.parametrize("impl", IMPLS)
def test_lookup_semantics(impl):
    table = {b"foo\0": b"bar\0", b"stra\xc3\x9fe\0": b"x\0"}
    r = impl.IndexedReader(table.get, True, impl.NUL_AUTO)
    assert r.lookup("FOO") == "bar"
    assert r.nul == impl.NUL_WITH            # settled on the NUL convention
    assert r.lookup("nothing") is None
    assert impl.encode_key("STRASSE", True, True) == b"strasse\0"
    assert impl.encode_key("Straße", True, False) == b"strasse"   # full case folding
    nonul = impl.IndexedReader({b"k": b"v"}.get, False, impl.NUL_AUTO)
    assert nonul.lookup("k") == "v" and nonul.nul == impl.NUL_WITHOUT
    assert nonul.lookup("K") is None
    surrogate = "bad\udcffkey"
    assert impl.encode_key(surrogate, True, False) == b"bad\xffkey"


patterns = st.sampled_from([
    b"^a(b)?c$", b"(\\d+)-(\\d+)", b"^(?=.*x)(\\w+)$", b"(a|ab)(c|bcd)(d*)", b"\\bfoo\\b",
    b"[[:alpha:]]+@([a-z.]+)", b"^$", b"(?i)MiXeD", b"(x)|(y)", b"a{2,3}",
])
subjects = st.binary(max_size=20) | st.text(alphabet="abcdxy0123-@.foo MiXeD", max_size=20
                                             ).map(str.encode)


@given(pattern=patterns, subject=subjects,
       options=st.sampled_from([0, PC.CASELESS, PC.MULTILINE | PC.DOTALL, PC.UNGREEDY,
                                PC.ANCHORED, PC.EXTENDED | PC.CASELESS]))
@settings(max_examples=300)
def test_pcre_bindings_agree(pattern, subject, options):
    c = PC.Pattern(pattern, options)
    p = PP.Pattern(pattern, options)
    assert c.groups == p.groups
    assert c.match(subject) == p.match(subject)


@pytest.mark.parametrize("impl", [pytest.param(PC, id="c"), pytest.param(PP, id="py")])
def test_pcre_errors_and_groups(impl):
    with pytest.raises(PcreError) as info:
        impl.Pattern(b"a(b", 0)
    assert info.value.offset == 3 and "parenthes" in info.value.message
    m = impl.Pattern(b"(x)|(y)", 0).match(b"y")
    assert m == (b"y", None, b"y")
    assert impl.Pattern(b"ABC", impl.CASELESS).match(b"xabcx") == (b"abc",)
    assert impl.Pattern(b"ABC", 0).match(b"abc") is None


# -- _source: build-time parsing of postmap sources -----------------------------------------

from fastpost.mail.maps import _source_c as SC  # noqa: E402
from fastpost.mail.maps import _source_py as SP  # noqa: E402
from fastpost.mail.maps.source import records as str_records  # noqa: E402

source_bytes = st.lists(st.sampled_from(
    [b" ", b"\t", b"\n", b"\r\n", b"#", b'"', b"\\", b":", b"a", b"B", b"key", b"Val",
     "é".encode(), "ẞ".encode(), b"\xff", b"\x0b", b"\n  cont", b"\n#c\n"]), max_size=40
).map(b"".join)


@given(data=source_bytes, fold=st.booleans(), nul=st.booleans())
@settings(max_examples=400)
def test_source_parsers_agree(data, fold, nul):
    """Whole input, and with trailing data: compiled == reference."""
    assert SC.parse_records(data, fold, nul) == SP.parse_records(data, fold, nul)
    tail = data + b"\ntrailing record\n"
    assert SC.parse_records(tail, fold, nul) == SP.parse_records(tail, fold, nul)


@given(data=source_bytes)
def test_source_kernel_agrees_with_text_parser(data):
    """The build kernel reads a file exactly as texthash (the str-level parser) does."""
    warnings = []
    text = data.decode("utf-8", "surrogateescape")
    expect = [(k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
              for _, k, v in str_records(text, lambda n, m: warnings.append((n, m)),
                                         ignore_note=False)]
    got, got_warnings = SC.parse_records(data, False, False)
    assert got == expect
    assert [n for n, _ in got_warnings] == [n for n, _ in warnings]


@given(pairs=st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c", b"aa"]),
                                st.binary(max_size=3)), max_size=20),
       keep_last=st.booleans())
def test_unique_sorted_agrees(pairs, keep_last):
    a, b = list(pairs), list(pairs)
    assert SC.unique_sorted(a, keep_last) == SP.unique_sorted(b, keep_last)
    out, dups = SC.unique_sorted(list(pairs), keep_last)
    assert [k for k, _ in out] == sorted({k for k, _ in pairs})
    assert len(out) + len(dups) == len(pairs)
    if pairs:
        first = {}
        for k, v in (reversed(pairs) if not keep_last else pairs):
            first[k] = v
        assert dict(out) == first


rule_patterns = st.lists(st.tuples(st.sampled_from([b"a", b"^b", b"(c)(d)?", b"x$", b"."]),
                                   st.booleans(), st.booleans()), max_size=12)


def _program(impl, spec):
    """Build a program from (pattern, negate, opens_block) steps; blocks run to the end
    or to the next opener (nested)."""
    program = []
    opens = []
    for pattern, negate, block in spec:
        program.append([impl.Pattern(pattern, 0), negate, -1 if not block else None])
        if block:
            opens.append(len(program) - 1)
    for depth, at in enumerate(reversed(opens)):
        program[at][2] = len(program) - depth if depth else len(program)
    return [tuple(p) for p in program]


@given(spec=rule_patterns, subjects=st.lists(st.sampled_from(
    [b"", b"a", b"bcd", b"xx", b"cx", b"b"]), max_size=6))
def test_pcre_rulesets_agree(spec, subjects):
    c = PC.RuleSet(_program(PC, spec))
    p = PP.RuleSet(_program(PP, spec))
    for s in subjects:
        assert c.first_match(s) == p.first_match(s)


from fastpost.mail.maps import _rules_c as RC  # noqa: E402
from fastpost.mail.maps import _rules_py as RP  # noqa: E402


@given(spec=rule_patterns, subjects=st.lists(st.sampled_from(
    [b"", b"a", b"bcd", b"xx", b"cx", b"b"]), max_size=6))
def test_rule_scans_agree(spec, subjects):
    import re

    def program():
        steps = _program(PP, spec)    # reuse the block layout, swap in re searches
        return [(re.compile(p[0]).search, neg, jump) for (_, neg, jump), p in zip(steps, spec)]

    c = RC.RuleScan(program())
    p = RP.RuleScan(program())
    for s in subjects:
        a, b = c.first_match(s), p.first_match(s)
        assert (a is None) == (b is None)
        if a is not None:
            assert a[0] == b[0]
            assert (a[1] and a[1].span()) == (b[1] and b[1].span())
