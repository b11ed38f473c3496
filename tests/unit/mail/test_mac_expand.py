"""$name expansion of delivery attributes (fastpost.mail.mac_expand)."""

import pytest

from fastpost.mail.mac_expand import MacError, expand, names

ATTRS = {"user": "joe", "home": "/home/joe", "extension": "foo", "empty": "",
         "recipient": "joe+foo@x.y", "weird": "a;b c"}


def ex(pattern, filter=None):
    return expand(pattern, ATTRS.get, filter)


def test_plain_and_braced_forms():
    assert ex("$home/.forward").text == "/home/joe/.forward"
    assert ex("${home}/x$(user)").text == "/home/joe/xjoe"
    assert ex("cost $$5").text == "cost $5"
    assert ex("trailing $").text == "trailing $"


def test_undefined_and_used_names():
    e = ex("$home/.forward+${extension}$nothing")
    assert e.text == "/home/joe/.forward+foo" and e.undefined == {"nothing"}
    assert e.used == {"home", "extension"}


def test_conditionals():
    assert ex("${extension?+$extension}").text == "+foo"
    assert ex("${empty?yes}").text == "" and ex("${empty:no}").text == "no"
    assert ex("${nothing:{dflt}}").text == "dflt"
    assert ex("${extension?{has $extension}:{none}}").text == "has foo"
    assert ex("${empty?{has}:{none}}").text == "none"
    assert ex("${nothing?x}").undefined == set()  # a conditional does not count as use


def test_filter_applies_to_values_only():
    assert ex("/a b/$weird", filter="abcdefghijklmnopqrstuvwxyz/").text == "/a b/a_b_c"


@pytest.mark.parametrize("bad", ["${home", "${}", "${home!x}", "$(user"])
def test_syntax_errors(bad):
    with pytest.raises(MacError):
        ex(bad)


def test_names():
    assert names("x${recipient} $user ${extension?y}") == ["recipient", "user", "extension"]
