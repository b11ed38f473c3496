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
