"""Address forms, splitting and host-name validity."""

import pytest

from fastpost.mail import address as A


@pytest.mark.parametrize(
    "internal,external",
    [
        ("user@example.com", "user@example.com"),
        ("a b@example.com", '"a b"@example.com'),
        ('we"ird@x', '"we\\"ird"@x'),
        ("first.last@x", "first.last@x"),
        (".lead@x", '".lead"@x'),
        ("", ""),
        ("postmaster", "postmaster"),
        ("jörg@bücher.example", "jörg@bücher.example"),
    ],
)
def test_external_internal_roundtrip(internal, external):
    assert A.external(internal) == external
    assert A.internal(external) == internal


def test_split_and_extensions():
    assert A.split_addr("a@b@c") == ("a@b", "c")
    assert A.split_addr("local") == ("local", "")
    assert A.split_extension("user+foo+bar", "+") == ("user", "foo+bar")
    assert A.split_extension("user-foo", "+-") == ("user", "foo")
    assert A.split_extension("+foo", "+") == ("+foo", "")
    assert A.split_extension("user", "") == ("user", "")
    assert A.strip_extension("user+x@d.example", "+") == "user@d.example"
    assert A.strip_extension("user@d.example", "+") == "user@d.example"


@pytest.mark.parametrize(
    "name,ok",
    [("mx.example.com", True), ("localhost", True), ("-bad.example", False),
     ("bad-.example", False), ("1.2.3.4", False), ("a" * 64 + ".com", False),
     ("under_score.example", False), ("", False), ("x..y", False)],
)
def test_valid_hostname(name, ok):
    assert A.valid_hostname(name) is ok


def test_literals_and_fqdn():
    assert A.valid_address_literal("[192.0.2.1]")
    assert A.valid_address_literal("[IPv6:2001:db8::1]")
    assert not A.valid_address_literal("[2001:db8::1]")
    assert not A.valid_address_literal("[321.1.2.3]")
    assert A.is_fqdn("example.com") and not A.is_fqdn("localhost")
