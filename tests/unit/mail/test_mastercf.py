"""master.cf parsing."""

import pytest

from fastpost.mail.config import ConfigError
from fastpost.mail.mastercf import parse_master_cf

SAMPLE = """\
# comment
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }
127.0.0.1:2525 inet n - n - 4 smtpd -o smtpd_banner=hi
[::1]:2526 inet n - n - - smtpd
pickup    unix  n       -       y       60      1       pickup
qmgr      unix  n       -       n       300?    1       qmgr
cleanup   unix  n       -       y       -       0       cleanup
"""


def test_parse_sample():
    entries = parse_master_cf("master.cf", SAMPLE)
    keys = [e.key for e in entries]
    assert keys == ["smtp/inet", "submission/inet", "127.0.0.1:2525/inet", "[::1]:2526/inet",
                    "pickup/unix", "qmgr/unix", "cleanup/unix"]
    sub = entries[1]
    assert sub.overrides() == {
        "syslog_name": "postfix/submission",
        "smtpd_client_restrictions": "permit_sasl_authenticated, reject",
    }
    assert sub.line == 3 and sub.chroot and sub.unpriv and not sub.private
    assert entries[2].inet_address() == ("127.0.0.1", "2525")
    assert entries[2].maxproc == 4 and entries[0].maxproc is None
    assert entries[3].inet_address() == ("::1", "2526")
    assert entries[0].inet_address() == ("", "smtp")
    assert entries[5].wakeup == 300 and entries[5].wakeup_conditional
    assert entries[6].maxproc == 0 and not entries[6].private


@pytest.mark.parametrize(
    "text,message",
    [
        ("smtp inet n - n - -\n", "line 1: missing command name field"),
        ("smtp tcp n - n - - smtpd\n", "line 1: bad transport type: tcp"),
        ("x unix n - n soon - x\n", "line 1: bad wakeup time: soon"),
        ("x unix n - n - many x\n", "line 1: bad process limit: many"),
        ("x unix maybe - n - - x\n", "line 1: bad private field: maybe"),
        ("a unix n - n - - a\n\na unix n - n - - b\n", "line 3: duplicate service name/type"),
        ("x unix n - n - - x -o nonsense\n", 'missing "=" in "-o nonsense"'),
    ],
)
def test_errors_name_the_line(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_master_cf("master.cf", text)
