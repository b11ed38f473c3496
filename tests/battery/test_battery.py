"""The short reliability battery: every check against C Postfix and against fastpost.

Against C Postfix (a soak test: FASTPOST_SOAK=1) each check validates the battery itself (Postfix must pass, or fail in
the documented way: smuggling with Postfix 3.7's default smtpd_forbid_bare_newline = no).
Against fastpost each check runs once the pieces it needs exist, and is skipped with
the list of missing pieces until then. The long version is ``./dev torture``.
"""

import os

import pytest

from harness import battery, mta, tools

CAPS = mta.fastpost_capabilities()


def need_postfix():
    if os.geteuid() != 0:
        pytest.skip("C Postfix private instances need root (CI runs as root)")
    if tools.which("postfix") is None or tools.which("smtp-source") is None:
        pytest.skip("postfix not installed (./dev test installs tests/apt-packages.txt as root)")


@pytest.mark.postfix
@pytest.mark.soak
@pytest.mark.parametrize("name", [c.name for c in battery.ALL])
def test_battery_against_postfix(name):
    """Validates the battery itself against C Postfix (about 4 minutes: a soak test;
    ``./dev torture`` runs every check against both MTAs)."""
    need_postfix()
    check = battery.BY_NAME[name]
    res = battery.run_check(check, "postfix", short=True)
    if res.status == "skip":
        pytest.skip(res.summary)
    expected = "known-fail" if check.postfix_expect == "fail" else "pass"
    assert res.status == expected, f"{res.summary}\n{res.details}"


@pytest.mark.parametrize("name", [c.name for c in battery.ALL])
def test_battery_against_fastpost(name):
    check = battery.BY_NAME[name]
    lack = mta.missing(CAPS, check.needs)
    if lack:
        pytest.skip(f"fastpost does not have {', '.join(lack)} yet")
    need_postfix()   # the instances use Postfix's users and tools around them
    res = battery.run_check(check, "fastpost", short=True, caps=CAPS)
    if res.status == "skip":
        pytest.skip(res.summary)
    assert res.status == "pass", f"{res.summary}\n{res.details}"
