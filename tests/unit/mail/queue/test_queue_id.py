"""Queue IDs: Postfix's short and long forms, round trips, and validity."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fastpost.mail.queue import queue_id as Q


def test_short_form_is_usec_then_number():
    assert Q.short_id(1700000000, 0x3F1A2, 0x1C0A35) == "3F1A21C0A35"
    assert Q.short_id(0, 5, 0x100000) == "00005100000"
    assert Q.parse_short("3F1A21C0A35") == (0x3F1A2, 0x1C0A35)


def test_long_form_layout():
    qid = Q.long_id(1700000000, 123456, 1)
    head, _, tail = qid.rpartition("z")
    assert len(head) == 10 and tail == "1"
    assert Q.parse_long(qid) == (1700000000, 123456, 1)
    assert Q.is_long(qid) and not Q.is_long("3F1A21C0A35")


def test_postfix_long_example_decodes():
    # The example from Postfix's documentation of enable_long_queue_ids.
    seconds, usec, inode = Q.parse_long("4X3vqF3RdBz5Yqn")
    assert 0 <= usec < 1_000_000 and seconds > 0 and inode > 0


@given(st.integers(0, 2**40), st.integers(0, 999_999), st.integers(0, 2**48))
def test_round_trips(seconds, usec, number):
    assert Q.parse_long(Q.long_id(seconds, usec, number)) == (seconds, usec, number)
    assert Q.parse_short(Q.short_id(seconds, usec, number)) == (usec, number)
    assert Q.number_of(Q.long_id(seconds, usec, number)) == number
    assert Q.valid_queue_id(Q.long_id(seconds, usec, number))


@given(st.integers(0, 999_999), st.integers(0, 999_999), st.integers(0, 2**32), st.integers(0, 2**32))
def test_distinct_numbers_give_distinct_ids(u1, u2, n1, n2):
    if n1 != n2:
        assert Q.short_id(0, u1, n1) != Q.short_id(0, u2, n2) or (u1, n1) == (u2, n2)
        assert Q.long_id(5, u1, n1) != Q.long_id(5, u2, n2)


@pytest.mark.parametrize("bad", ["", "abc!", "x" * 65, "DEAD BEEF"])
def test_invalid_ids(bad):
    assert not Q.valid_queue_id(bad)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        Q.parse_short("xyz")
    with pytest.raises(ValueError):
        Q.parse_long("3F1A21C0A35")
    with pytest.raises(ValueError):
        Q.short_id(0, 1_000_000, 1)


def test_hash_dirs():
    assert Q.hash_dirs("5EE0C214203", 1) == ["5"]
    assert Q.hash_dirs("5EE0C214203", 2) == ["5", "E"]
    assert Q.hash_dirs("5EE0C214203", 0) == []
    assert Q.hash_dirs(Q.long_id(1700000000, 0xABCDE, 7), 1) == ["A"]


@given(st.one_of(st.floats(0, 2**40), st.floats(2**61, 2**64), st.just(0.999_999_9)),
       st.one_of(st.integers(0, 2**48), st.integers(2**62, 2**66)))
@example(0.0, 0)
@example(1.000_001, 15)
@example(5.5, 16)
@example(0.999_999_9, 2**63 - 1)
def test_short_id_at_kernel_is_short_id(now, number):
    """qframe.short_id_at (compiled: hex digits written in C; a number or time past 64 bits takes the
    reference's road) is queue_id.short_id of the time's seconds and microseconds."""
    from fastpost.mail.queue import _qframe_c, _qframe_py

    sec = int(now)
    want = Q.short_id(sec, int((now - sec) * 1_000_000), number)
    assert _qframe_c.short_id_at(now, number) == _qframe_py.short_id_at(now, number) == want
    assert Q.parse_short(want)[1] == number


def test_short_id_at_refuses_negative_values():
    from fastpost.mail.queue import _qframe_c, _qframe_py

    for impl in (_qframe_c, _qframe_py):
        with pytest.raises(ValueError):
            impl.short_id_at(-1.0, 5)
        with pytest.raises(ValueError):
            impl.short_id_at(5.0, -1)
