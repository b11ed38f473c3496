"""Built-in, per-service and user-defined parameters, and postconf's warnings."""

from fastpost.mail import mastercf
from fastpost.mail.conf_scope import Scope, references
from fastpost.mail.config import Config


def test_references_in_every_form():
    text = "$a ${b} $(c) ${d?x $e} ${f:{$g}} ${{$h} == {i} ? {$j} : {k}} $$l x$"
    assert references(text) == ["a", "b", "c", "d", "e", "f", "g", "h", "j"]


MASTER = """\
smtp inet n - y - - smtpd
sub inet n - y - - smtpd -o smtpd_client_restrictions=$sub_client -o lone=1
slow unix - - y - - smtp
fax unix - n n - - pipe user=fax argv=/bin/fax
"""


def scope(main):
    cfg = Config("/d", text=main)
    return Scope(cfg, mastercf.parse_master_cf("/d/master.cf", MASTER))


def test_known_used_and_unused():
    s = scope("used = 1\nx = $used $nothere\nunused = 2\nsmtpd_restriction_classes = cls\n"
              "cls = permit\nsub_client = permit\nslow_destination_concurrency_limit = 2\n"
              "ghost_destination_concurrency_limit = 3\n")
    assert s.known("used") and s.known("cls") and s.known("sub_client")
    assert s.known("slow_destination_concurrency_limit") and s.known("fax_time_limit")
    assert not s.known("x") and not s.known("unused")
    assert not s.known("ghost_destination_concurrency_limit")
    assert "fax_time_limit" in s.default_names() and "used" not in s.default_names()
    assert s.set_names() == ["cls", "slow_destination_concurrency_limit",
                             "smtpd_restriction_classes", "sub_client", "used"]
    assert s.warnings() == [
        "/d/main.cf: undefined parameter: nothere",
        "/d/main.cf: unused parameter: x=$used $nothere",
        "/d/main.cf: unused parameter: unused=2",
        "/d/main.cf: unused parameter: ghost_destination_concurrency_limit=3",
        "/d/master.cf: unused parameter: lone=1",
    ]


def test_duplicates_and_read_only_names():
    s = scope("a_b = 1\nprocess_name = me\nrecipient_delimiter = -\nrecipient_delimiter = +\n")
    assert s.file_warnings() == [
        "/d/main.cf, line 4: overriding earlier entry: recipient_delimiter=-",
        "/d/main.cf: read-only parameter assignment: process_name=me",
    ]
    assert "process_name" not in s.set_names()
