"""Destinations in alias values and .forward lines (fastpost.daemons.local.tokens)."""

import pytest

from fastpost.daemons.local.tokens import destinations


@pytest.mark.parametrize("text, expected", [
    ("root", ["root"]),
    ("alice, bob", ["alice", "bob"]),
    ("alice,bob ,  carol", ["alice", "bob", "carol"]),
    (":include:/etc/fastpost/clientlist.txt", [":include:/etc/fastpost/clientlist.txt"]),
    (":INCLUDE:/x/y.txt", [":INCLUDE:/x/y.txt"]),
    ("/home/alice/spambucket.txt", ["/home/alice/spambucket.txt"]),
    ('"|/usr/bin/procmail -a $EXTENSION"', ["|/usr/bin/procmail -a $EXTENSION"]),
    ("|exit 67", ["|exit 67"]),
    ("\\alice, bob", ["alice", "bob"]),
    ("Joe Q <joe@example.com> (comment), \"a b\"@example.com", ["joe@example.com", "a b@example.com"]),
    ("x@[192.0.2.1]", ["x@[192.0.2.1]"]),
    ("owner-list@x.y; z", ["owner-list@x.y", "z"]),
    ("~/Mail/inbox", ["~/Mail/inbox"]),
    ("", []),
    (" , ,", []),
    ('"a,b"@example.com, c', ["a,b@example.com", "c"]),
])
def test_destinations(text, expected):
    assert destinations(text) == expected


@pytest.mark.parametrize("local, delims, special, expected", [
    ("user+ext", "+", True, ("user", "ext")),
    ("user+a+b", "+", True, ("user", "a+b")),
    ("+user", "+", True, ("+user", None)),
    ("user", "+", True, ("user", None)),
    ("user-ext", "+-", True, ("user", "ext")),
    ("owner-list", "-", True, ("owner-list", None)),
    ("list-request", "-", True, ("list-request", None)),
    ("owner-list", "-", False, ("owner", "list")),
    ("list-request", "-", False, ("list", "request")),
    ("owner-list", "+", True, ("owner-list", None)),
    ("x", "", True, ("x", None)),
])
def test_split_local(local, delims, special, expected):
    from fastpost.daemons.local.engine import split_local

    assert split_local(local, delims, special) == expected
