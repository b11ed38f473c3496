"""SMTP AUTH in the smtp client (smtp_sasl_*), compared live with C Postfix's smtp client.

The server is a private C Postfix smtpd that relays only for authenticated clients
(``smtpd_relay_restrictions = permit_sasl_authenticated, reject``, no mynetworks),
with SASL from a private Dovecot offering PLAIN, LOGIN and CRAM-MD5. Two clients get
the same smtp_sasl_* settings and the same password table (root-only, 0600): Debian's
Postfix (Cyrus SASL) relaying through ``relayhost = [127.0.0.1]:PORT``, and fastpost's
smtp agent given the same next hop. For each case both must end with the same status
(dsn, status and text, the server's queue ID aside), and the server must have logged
the same SASL mechanism and user for both.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from helpers.peers import Dovecot, PrivatePostfix
from smtpagent.agent import AgentSite
from smtpagent.test_vs_postfix import BODY, Postfix

USERS = {"alice": "secret"}

CASES = {
    # name: (password table lines, smtp_* settings)
    "cram-md5 preferred": ("{dest} alice:secret", {"smtp_sasl_security_options": "noanonymous"}),
    "plain over login": ("{dest} alice:secret", {
        "smtp_sasl_security_options": "noanonymous", "smtp_sasl_mechanism_filter": "login, plain"}),
    "cram-md5 by default": ("{dest} alice:secret", {}),
    "login by host name and filter": ("127.0.0.1 alice:secret", {
        "smtp_sasl_security_options": "noanonymous", "smtp_sasl_mechanism_filter": "login"}),
    "wrong password deferred": ("{dest} alice:wrong", {
        "smtp_sasl_security_options": "noanonymous"}),
    "wrong password bounced": ("{dest} alice:wrong", {
        "smtp_sasl_security_options": "noanonymous", "smtp_sasl_auth_soft_bounce": "no"}),
    "no mechanism available": ("{dest} alice:secret", {"smtp_sasl_mechanism_filter": "plain, login"}),
    "no password for this server": ("other.example alice:secret", {
        "smtp_sasl_security_options": "noanonymous"}),
}


@pytest.fixture(scope="module")
def peers():
    from conftest import need_program, need_root

    need_root()
    for program in ("postfix", "dovecot"):
        need_program(program)
    with Dovecot(USERS, mechanisms="plain login cram-md5") as dv:
        server = PrivatePostfix({
            "smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": dv.socket, "mynetworks": "",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "defer_transports": "smtp"})
        with server:  # started
            pf = Postfix(server.port)
            try:
                with AgentSite() as site:
                    site.start()
                    yield server, pf, site
            finally:
                pf.stop()


def _configure(server, pf, site, table: str, settings: dict, fastpost_bind: str) -> None:
    dest = f"[127.0.0.1]:{server.port}"
    text = table.format(dest=dest) + "\n"
    defaults = {"smtp_sasl_auth_enable": "yes", "smtp_sasl_security_options": "",
                "smtp_sasl_mechanism_filter": "", "smtp_sasl_auth_soft_bounce": "yes"}
    wanted = {**defaults, **settings}
    if "smtp_sasl_security_options" not in settings:
        wanted.pop("smtp_sasl_security_options")  # Postfix's default: noplaintext, noanonymous
    for etc, setter in ((pf.etc, None), (str(site.inst.etc), site)):
        path = os.path.join(etc, "sasl_passwd")
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
        values = {**wanted, "smtp_sasl_password_maps": f"texthash:{path}"}
        if setter is None:
            subprocess.run(["postconf", "-c", etc, "-X", "smtp_sasl_security_options"],
                           check=True, capture_output=True)
            subprocess.run(["postconf", "-c", etc, "-e", *(f"{k}={v}" for k, v in values.items())],
                           check=True, capture_output=True)
            subprocess.run(["postfix", "-c", etc, "reload"], check=True, capture_output=True)
        else:
            main = {**site.inst.main_settings, **values, "smtp_bind_address": fastpost_bind}
            if "smtp_sasl_security_options" not in settings:
                main.pop("smtp_sasl_security_options", None)
            site.inst.write_main_cf(main)
            for client in site.clients.values():
                client.close()
            site.clients.clear()
            site.inst.reload()


def _server_logins(server, address: str, expect: bool) -> list[str]:
    """The logins the server logged for sessions from ``address`` (its log is written by
    postlogd, a little after the reply: wait for the line when one is expected)."""
    pattern = rf"client=unknown\[{re.escape(address)}\], (sasl_method=\S+, sasl_username=\S+)"
    deadline = time.monotonic() + (10 if expect else 0.5)
    while True:
        found = re.findall(pattern, server.log_text())
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("case", list(CASES))
def test_same_outcome_as_postfix(peers, case):
    server, pf, site = peers
    table, settings = CASES[case]
    # Each client and case from its own address: Dovecot slows down repeated failures
    # from one remote address (its auth penalty), and that would change the replies.
    n = list(CASES).index(case)
    settings = {**settings, "smtp_bind_address": f"127.0.0.{10 + n}"}
    _configure(server, pf, site, table, settings, fastpost_bind=f"127.0.0.{40 + n}")
    time.sleep(0.5)  # Postfix's reload restarts its smtp processes lazily

    want, _pf_log = pf.send()
    qid = site.submit(["x@remote.example"], BODY, sender="a@example.org")
    site.deliver(qid, f"[127.0.0.1]:{server.port}", transport="relay")
    (line,) = site.status_lines(qid, keep_conn_use=False)
    got = line.split(", dsn=", 1)[1]

    normal = lambda s: re.sub(r"queued as \w+", "queued as ID", s)  # noqa: E731
    assert normal(got) == normal(want)
    sent = got.startswith("2.0.0, status=sent")
    pf_logins = _server_logins(server, f"127.0.0.{10 + n}", sent)
    fp_logins = _server_logins(server, f"127.0.0.{40 + n}", sent)
    # (Postfix's client may also have sent its own bounce back through the server.)
    assert fp_logins[:1] == pf_logins[:1]
    methods = {"cram-md5 preferred": "CRAM-MD5", "plain over login": "PLAIN",
               "cram-md5 by default": "CRAM-MD5", "login by host name and filter": "LOGIN"}
    if case in methods:
        assert sent
        method = methods[case]
        assert fp_logins == [f"sasl_method={method}, sasl_username=alice"]
    else:
        assert fp_logins == []
