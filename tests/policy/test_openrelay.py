"""Open-relay checks with nmap's smtp-open-relay script, probing from 127.0.0.2 with
``mynetworks = 127.0.0.1/32``: against fastpost's smtpd (restriction engine) and a
private C Postfix configured alike, the verdict and the list of relay tricks that got
through must be the same, and the default configuration must not relay. An open
configuration (mynetworks covering 127.0.0.2) is the check's own control: the script
must find it open.

Needs nmap and, for the Postfix side, root and Debian's postfix (tests/apt-packages.txt).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from policy import sessions

CONFIGS = {
    "default": [],
    "relay_domains": ["smtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, "
                      "reject"],
    "route_operators": ["allow_untrusted_routing = yes",
                        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination"],
    "open_control": ["mynetworks = 127.0.0.0/8"],
}
#: nmap's 16 tries are 16 refusals in one session: without these Postfix sleeps after
#: each error past the soft limit (18 s a run); both MTAs get them.
QUICK = ["smtpd_error_sleep_time = 0s", "smtpd_soft_error_limit = 100",
         "smtpd_hard_error_limit = 100"]
CONFIGS = {name: QUICK + lines for name, lines in CONFIGS.items()}
EXPECTED = {"default": "closed", "relay_domains": "closed", "route_operators": "closed",
            "open_control": "open"}


def _nmap(port: int) -> tuple[str, list[str], str]:
    exe = shutil.which("nmap")
    if exe is None:
        pytest.skip("nmap not installed (tests/apt-packages.txt)")
    if os.geteuid() != 0:
        pytest.skip("nmap -S 127.0.0.2 needs root")
    p = subprocess.run([exe, "-n", "-Pn", "-S", "127.0.0.2", "-e", "lo", "-p", str(port),
                        "--script", "+smtp-open-relay", "--script-args",
                        "smtp-open-relay.domain=relay.test,"
                        "smtp-open-relay.from=probe@relay.test,"
                        "smtp-open-relay.to=victim@elsewhere.example",
                        "127.0.0.1"], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    if "Server is an open relay" in out:
        verdict = "open"
    elif "doesn't seem to be an open relay" in out:
        verdict = "closed"
    else:
        verdict = "unknown"
    # The tricks that worked: "|  MAIL FROM:<...> -> RCPT TO:<...>" lines.
    tricks = sorted(re.findall(r"MAIL FROM:<[^>]*> -> RCPT TO:<[^>]*>", out))
    return verdict, tricks, out


@pytest.fixture(scope="module")
def postfix():
    if os.geteuid() != 0 or not shutil.which("postfix"):
        pytest.skip("needs root and Debian's postfix (tests/apt-packages.txt)")
    from policy.pfx import PolicyPostfix

    base = tempfile.mkdtemp(prefix="fp-openrelay-pfx-")
    os.chmod(base, 0o755)
    pfx = PolicyPostfix(base, sessions.BASE + sessions.POSTFIX_ONLY, CONFIGS)
    pfx.start()
    yield pfx
    pfx.stop()
    subprocess.run(["rm", "-rf", base])


@pytest.fixture(scope="module", autouse=True)
def tables():
    sessions.write_tables()


@pytest.mark.postfix
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_nmap_open_relay_verdict_is_postfix(name, tmp_path, postfix):
    from fastpost.daemons.smtpd.testing import SmtpdThread

    main_cf = sessions.BASE + "\n".join(CONFIGS[name]) + "\n"
    with SmtpdThread(tmp_path, main_cf) as srv:
        ours, our_tricks, our_out = _nmap(srv.port)
    theirs, their_tricks, their_out = _nmap(postfix.ports[name])
    assert theirs == EXPECTED[name], their_out
    assert ours == theirs, f"fastpost:\n{our_out}\nPostfix:\n{their_out}"
    assert our_tricks == their_tricks
