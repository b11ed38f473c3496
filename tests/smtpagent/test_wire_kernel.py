"""The wire kernel (dot-stuffing and folding in one pass): compiled against reference,
and the reference against the SMTP core's own stuffing and Postfix's folding rule."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.daemons.smtp import _wire_c as C
from fastpost.daemons.smtp import _wire_py as P
from fastpost.smtp.client import ClientConnection

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]

pieces = st.sampled_from([b"a", b"xyz", b".", b"..", b"\r", b"\r\n", b"\r\n.", b" ", b"\xff",
                          b"y" * 9])
text_st = st.binary(max_size=300) | st.lists(pieces, max_size=120).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(text_st, st.sampled_from([0, 2, 3, 5, 8, 998]), st.booleans())
def test_compiled_equals_reference(text, limit, stuff):
    assert C.wire_text(text, limit, stuff) == P.wire_text(text, limit, stuff)


@pytest.mark.parametrize("impl", IMPLS)
def test_known_outputs(impl):
    assert impl.wire_text(b"") == (b"", False)
    assert impl.wire_text(b".\r\n..x\r\ny.\r\n.") == (b"..\r\n...x\r\ny.\r\n..", False)
    # The doubled dot does not count toward the limit of 3.
    assert impl.wire_text(b".abcdef\r\n", 3) == (b"..ab\r\n cd\r\n ef\r\n", True)
    assert impl.wire_text(b"x" * 2500 + b"\r\n")[0].split(b"\r\n")[:3] == \
        [b"x" * 998, b" " + b"x" * 997, b" " + b"x" * 505]
    assert impl.wire_text(b"a\rb\r\n", 0, False) == (b"a\rb\r\n", False)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_fold_limit(impl):
    for bad in (-1, 1):
        with pytest.raises(ValueError):
            impl.wire_text(b"x", bad)


def _core_stuffed(text: bytes) -> bytes:
    """What the SMTP core's send_content() would send for ``text`` (no folding)."""
    c = ClientConnection()

    class _Txn:
        use_bdat = False
    c._txn = _Txn()
    return c._stuff(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b".", b"..x", b" ", b"\r\n", b"\r\n.", b"b\r"]),
                max_size=60).map(b"".join))
def test_reference_stuffs_as_the_smtp_core(text):
    # Lines separated by CR LF only (as the content kernel makes them), no folding:
    # the kernel's output must be what send_content() would have sent.
    text = text.replace(b"\r\r", b"\r")
    if b"\n" in text.replace(b"\r\n", b""):
        return
    assert P.wire_text(text, 0, True)[0] == _core_stuffed(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=30).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=10), st.integers(2, 12))
def test_folding_keeps_every_byte_and_the_limit(lines, limit):
    text = b"\r\n".join(lines)
    out, folded = P.wire_text(text, limit, False)
    parts = out.split(b"\r\n")
    assert all(len(p) <= limit for p in parts)
    assert folded == any(len(line) > limit for line in lines)
    # Undo: a continuation is a part that starts with the inserted SPACE after a full part.
    rebuilt, prev_full = [], False
    for p in parts:
        if prev_full and p.startswith(b" ") and rebuilt:
            rebuilt[-1] += p[1:]
            prev_full = len(p) == limit
        else:
            rebuilt.append(p)
            prev_full = len(p) == limit
    # (ambiguous, so not checked: a line of exactly the limit, or a line that starts
    # with a space after a folded one -- it reads as one more continuation)
    assert b"\r\n".join(rebuilt) == text or any(len(line) == limit for line in lines) or \
        any(line.startswith(b" ") for line in lines[1:])
