"""The global parameters' values judged at submission, as Postfix 3.7's postdrop and
sendmail judge them (fastpost.mail.mainvalues and its C twin cli/csrc/mainvalues.h).

The expected lines below are what Debian's Postfix 3.7 ``postdrop -c DIR`` printed on
this machine (session 7) for a main.cf holding the case's lines and ``queue_directory
= /nonexistent-fp`` (Postfix then stops at its chdir, which these lines leave out);
``PATH`` stands for DIR/main.cf. fastpost prints the same, except that where Postfix
names no file fastpost names the file and line (``fatal: PATH, line N: bad ...``):
``expected()`` adds that. The C judge is compiled here with a small driver; the
compiled postdrop itself is run in test_postdrop_c.py, sendmail below.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpost.mail import mainvalues, params
from fastpost.mail.config import Config
from fastpost.mail.maincf import LiteConfig

CSRC = Path(mainvalues.__file__).resolve().parents[1] / "cli" / "csrc"
HEADER = CSRC / "mainvalues.h"

POSTFIX_GID = grp.getgrnam("postfix").gr_gid if "postfix" in {g.gr_name for g in grp.getgrall()} else None

# (main.cf lines, Postfix 3.7's stderr lines; "N" = the line of the value, when
#  fastpost adds "PATH, line N: " where Postfix names no file)
CASES = [
    ("myhostname = $nosuch", ["postdrop: fatal: N bad string length 0 < 1: myhostname = "]),
    ("mydomain = ", ["postdrop: fatal: N bad string length 0 < 1: mydomain = "]),
    ("myhostname = x.$nosuch", ["postdrop: fatal: bad string length 0 < 1: mydomain = "]),
    ("myhostname = a..b", ["postdrop: warning: valid_hostname: misplaced delimiter: a..b",
                           "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: a..b"]),
    ("myhostname = -a.b", ["postdrop: warning: valid_hostname: misplaced hyphen: -a.b",
                           "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: -a.b"]),
    ("myhostname = 1.2.3.4", ["postdrop: warning: valid_hostname: numeric hostname: 1.2.3.4",
                              "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: 1.2.3.4"]),
    ("myhostname = a.1", ["postdrop: warning: valid_hostname: numeric hostname: 1",
                          "postdrop: fatal: file PATH: parameter mydomain: bad parameter value: 1"]),
    ("myhostname = a\tb", ["postdrop: warning: valid_hostname: invalid character 9(decimal): a?b",
                           "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: a?b"]),
    ("myhostname = \u00ff.b", ["postdrop: warning: valid_hostname: invalid character 195(decimal): ??.b",
                               "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: ??.b"]),
    ("myhostname = " + "x" * 64 + ".b",
     ["postdrop: warning: valid_hostname: hostname label too long: " + "x" * 64 + ".b",
      "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: " + "x" * 64 + ".b"]),
    ("myhostname = " + ".".join(["a" * 60] * 5),
     ["postdrop: warning: valid_hostname: bad length 304 for " + ".".join(["a" * 60] * 5)[:100] + "...",
      "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: " + ".".join(["a" * 60] * 5)]),
    ("myhostname = a_b.c", []),
    ("myorigin = $nosuch", ["postdrop: fatal: N bad string length 0 < 1: myorigin = "]),
    ("myorigin = $mydomain", []),
    ("queue_service_name = ", ["postdrop: fatal: N bad string length 0 < 1: queue_service_name = "]),
    ("default_verp_delimiters = +==", ["postdrop: fatal: N bad string length 3 > 2: default_verp_delimiters = +=="]),
    ("max_use = 0x10", ["postdrop: fatal: N bad numerical configuration: max_use = 0x10"]),
    ("max_use = 2147483648", ["postdrop: fatal: N bad numerical configuration: max_use = 2147483648"]),
    ("max_use = 0", ["postdrop: fatal: N invalid max_use parameter value 0 < 1"]),
    ("line_length_limit = 100", ["postdrop: fatal: N invalid line_length_limit parameter value 100 < 512"]),
    ("delay_logging_resolution_limit = 7",
     ["postdrop: fatal: N invalid delay_logging_resolution_limit parameter value 7 > 6"]),
    ("message_size_limit = 9223372036854775807", []),
    ("soft_bounce = true", ["postdrop: fatal: N bad boolean configuration: soft_bounce = true"]),
    ("soft_bounce = YES", []),
    ("max_idle = 5x", ["postdrop: fatal: N parameter max_idle: bad time value or unit: 5x"]),
    ("max_idle = 5M", ["postdrop: fatal: N parameter max_idle: bad time value or unit: 5M"]),
    ("max_idle = 3550w", ["postdrop: fatal: N parameter max_idle: bad time value or unit: 3550w"]),
    ("max_idle = 3549w", []),
    ("max_idle = 0s", ["postdrop: fatal: N invalid max_idle: 0 (min 1)"]),
    ("in_flow_delay = 0", []),
    ("max_idle = 5mm", []),
    ("mail_owner = nosuch", ["postdrop: fatal: file PATH: parameter mail_owner: unknown user name value: nosuch"]),
    ("mail_owner = root", ["postdrop: fatal: file PATH: parameter mail_owner: user root has privileged user ID"]),
    ("mail_owner = nobody",
     ["postdrop: fatal: file PATH: parameters default_privs and mail_owner specify the same user nobody"]),
    ("setgid_group = root", ["postdrop: fatal: file PATH: parameter setgid_group: group root has privileged group ID"]),
    ("setgid_group = nosuchgrp", ["postdrop: fatal: file PATH: parameter setgid_group: unknown group name: nosuchgrp"]),
    ("setgid_group = nogroup",
     ["postdrop: fatal: file PATH: parameters default_privs and setgid_group: user nobody and group "
      "nogroup have the same group ID: 65534"]),
    ("setgid_group = postfix",
     [f"postdrop: fatal: file PATH: parameters mail_owner and setgid_group: user postfix and group "
      f"postfix have the same group ID: {POSTFIX_GID}"]),
    ("default_privs = root", ["postdrop: fatal: file PATH: parameter default_privs: user root has privileged user ID"]),
    ("compatibility_level = 3.6", []),
    ("compatibility_level = +3", []),
    ("compatibility_level = 3.", ['postdrop: fatal: N malformed compatibility level syntax: "3."']),
    ("compatibility_level = 3.6.1.2", ['postdrop: fatal: N malformed compatibility level syntax: "3.6.1.2"']),
    ("compatibility_level = 3.99999999999",
     ['postdrop: fatal: N malformed compatibility level syntax: "3.99999999999"']),
    ("syslog_facility = local7", []),
    ("syslog_facility = MAIL", ["postdrop: fatal: file PATH: parameter syslog_facility: unrecognized value: MAIL"]),
    ("syslog_facility = security",
     ["postdrop: fatal: file PATH: parameter syslog_facility: unrecognized value: security"]),
    ("inet_protocols = all ipv4", []),
    ("inet_protocols = ", []),
    ("inet_protocols = ipv4 IPX", ['postdrop: fatal: N unknown inet_protocols value "IPX" in "ipv4 IPX"']),
    ("mynetworks_style = class", []),
    ("mynetworks_style = HOST", ['postdrop: fatal: N unknown mynetworks mask style value "HOST" in "HOST"']),
    ("mynetworks_style = host subnet",
     ["postdrop: fatal: N bad mynetworks_style value: host subnet; specify exactly one value"]),
    # session 10: only where it makes mynetworks' default (checked with Postfix 3.7's
    # postdrop and postfix check: with mynetworks set they went on to the chdir)
    ("mynetworks_style = HOST\nmynetworks = 127.0.0.0/8", []),
    ("mynetworks = \nmynetworks_style = bogus", []),
    ("default_verp_delimiters = ab",
     ["postdrop: fatal: file PATH: parameters default_verp_delimiters and verp_delimiter_filter: "
      "bad first VERP delimiter character"]),
    ("default_verp_delimiters = +a",
     ["postdrop: fatal: file PATH: parameters default_verp_delimiters and verp_delimiter_filter: "
      "bad second VERP delimiter character"]),
    ("verp_delimiter_filter = =",
     ["postdrop: fatal: file PATH: parameters default_verp_delimiters and verp_delimiter_filter: "
      "bad first VERP delimiter character"]),
    # order: compatibility_level, syslog_facility, inet_protocols, the host names, then
    # strings, numbers, booleans, times, accounts, mynetworks_style, VERP delimiters
    ("compatibility_level = x\nsyslog_facility = x", ['postdrop: fatal: N malformed compatibility level syntax: "x"']),
    ("inet_protocols = x\nsyslog_facility = x",
     ["postdrop: fatal: file PATH: parameter syslog_facility: unrecognized value: x"]),
    ("inet_protocols = x\nmyhostname = a..b", ['postdrop: fatal: N unknown inet_protocols value "x" in "x"']),
    ("mynetworks_style = x\nmail_owner = nosuch",
     ["postdrop: fatal: file PATH: parameter mail_owner: unknown user name value: nosuch"]),
    ("mynetworks_style = x\nverp_delimiter_filter = =",
     ['postdrop: fatal: N unknown mynetworks mask style value "x" in "x"']),
    ("max_use = x\nmyhostname = a..b", ["postdrop: warning: valid_hostname: misplaced delimiter: a..b",
                                        "postdrop: fatal: file PATH: parameter myhostname: bad parameter value: a..b"]),
    ("max_use = x\nmail_name =", ["postdrop: fatal: N bad string length 0 < 1: mail_name = "]),
    ("mail_owner = nosuch\nmax_idle = x", ["postdrop: fatal: N parameter max_idle: bad time value or unit: x"]),
    ("max_use = x\nsoft_bounce = x", ["postdrop: fatal: N bad numerical configuration: max_use = x"]),
    # session 8: within a table, Postfix's order (not the alphabet's)
    ("bounce_service_name =\nmail_version =", ["postdrop: fatal: N bad string length 0 < 1: mail_version = "]),
    ("lmdb_map_size = x\nmax_use = x", ["postdrop: fatal: N bad numerical configuration: max_use = x"]),
    ("enable_long_queue_ids = x\nsoft_bounce = x",
     ["postdrop: fatal: N bad boolean configuration: soft_bounce = x"]),
    ("daemon_timeout = x\nmax_idle = x", ["postdrop: fatal: N parameter max_idle: bad time value or unit: x"]),
    # session 8: inet_interfaces (names resolved, then the interfaces' addresses: this
    # machine's 127.0.0.1 and ::1) and maillog_file against maillog_file_prefixes
    ("inet_interfaces = nosuch.invalid",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: nosuch.invalid"]),
    ("inet_interfaces = 10.1.1.1",
     ["postdrop: fatal: N parameter inet_interfaces: no local interface found for 10.1.1.1"]),
    ("inet_interfaces = 127.0.0.2",
     ["postdrop: fatal: N parameter inet_interfaces: no local interface found for 127.0.0.2"]),
    ("inet_interfaces = 0.0.0.0",
     ["postdrop: fatal: N parameter inet_interfaces: no local interface found for 0.0.0.0"]),
    ("inet_interfaces = localhost", []),
    ("inet_interfaces = 127.1", []),
    ("inet_interfaces = [::1], 127.0.0.1,127.0.0.1", []),
    ("inet_interfaces = loopback-only", []),
    ("inet_interfaces = all,", ["postdrop: fatal: N config variable inet_interfaces: host not found: all"]),
    ("inet_interfaces = 127.0.0.1 all",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: all"]),
    ("inet_interfaces = ALL", ["postdrop: fatal: N config variable inet_interfaces: host not found: ALL"]),
    ("inet_interfaces = [nosuch.invalid]",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: [nosuch.invalid]"]),
    ("inet_interfaces = 127.0.0.1/8",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: 127.0.0.1/8"]),
    ("inet_interfaces = ::1\ninet_protocols = ipv4",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: ::1"]),
    ("inet_interfaces = 127.0.0.1\ninet_protocols = ipv6",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: 127.0.0.1"]),
    ("inet_interfaces = nosuch.invalid\ninet_protocols =", []),
    ("inet_interfaces = localhost 10.1.1.1",
     ["postdrop: fatal: N parameter inet_interfaces: no local interface found for 10.1.1.1"]),
    ("inet_interfaces = 10.1.1.1, nosuch.invalid",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: nosuch.invalid"]),
    ("mynetworks_style = x\ninet_interfaces = nosuch.invalid",
     ['postdrop: fatal: N unknown mynetworks mask style value "x" in "x"']),
    ("default_verp_delimiters = ab\ninet_interfaces = nosuch.invalid",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: nosuch.invalid"]),
    ("maillog_file = /tmp/x.log", ["postdrop: fatal: N maillog_file value '/tmp/x.log' does not "
                                   "match any prefix in maillog_file_prefixes"]),
    ("maillog_file = relative/x", ["postdrop: fatal: N maillog_file value 'relative/x' does not "
                                   "match any prefix in maillog_file_prefixes"]),
    ("maillog_file = /varx/log", []),
    ("maillog_file = /dev/stdout", []),
    ("maillog_file = ", []),
    ("maillog_file_prefixes = /TMP\nmaillog_file = /tmp/x",
     ["postdrop: fatal: N maillog_file value '/tmp/x' does not match any prefix in "
      "maillog_file_prefixes"]),
    ("maillog_file_prefixes = /tmp/x/\nmaillog_file = /tmp/x",
     ["postdrop: fatal: N maillog_file value '/tmp/x' does not match any prefix in "
      "maillog_file_prefixes"]),
    ("maillog_file_prefixes = /var,/tmp/g\nmaillog_file = /tmp/g3", []),
    ("maillog_file = /tmp/x\ndefault_verp_delimiters = ab",
     ["postdrop: fatal: file PATH: parameters default_verp_delimiters and verp_delimiter_filter: "
      "bad first VERP delimiter character"]),
    ("maillog_file = /tmp/x\ninet_interfaces = nosuch.invalid",
     ["postdrop: fatal: N config variable inet_interfaces: host not found: nosuch.invalid"]),
]


def write_case(directory: Path, lines: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.cf").write_text(lines + "\nqueue_directory = /nonexistent-fp\n",
                                       errors="surrogateescape")
    return directory / "main.cf"


def expected(lines: list[str], path: Path, case: str) -> list[str]:
    """Postfix's lines with PATH filled in and, where Postfix names no file, fastpost's
    "PATH, line N: " (the line of the parameter named in the message)."""
    out = []
    for line in lines:
        line = line.replace("PATH", str(path))
        if "fatal: N " in line:
            probe = line.replace("mynetworks mask style", "mynetworks_style") \
                .replace("compatibility level", "compatibility_level")
            named = [i for i, text in enumerate(case.split("\n"), 1)
                     if text.split("=")[0].strip() in probe]
            assert named, (case, line)
            line = line.replace("fatal: N ", f"fatal: {path}, line {named[-1]}: ")
        out.append(line)
    return out


def python_lines(cfg) -> list[str]:
    warnings, fatal = mainvalues.judge(cfg)
    return [f"postdrop: warning: {w}" for w in warnings] + \
        ([f"postdrop: fatal: {fatal}"] if fatal else [])


DRIVER = r"""
#define _GNU_SOURCE
#define FP_PROG "postdrop"
#define FP_CONFIG_FATAL 1
#include <stdio.h>
#include <stdlib.h>
static void fallback(void)
{
    puts("RESULT -1");
    exit(0);
}
#include "maildrop_write.h"
#include "mainvalues.h"
int main(int argc, char **argv)
{
    struct wanted want[] = {{NULL, NULL, 0}};
    struct buf msg = {0};
    char path[4096];
    int r;

    (void) argc;
    (void) record;
    (void) drop;
    (void) wake_pickup;
    read_main_cf(argv[1], want, 0);
    snprintf(path, sizeof(path), "%s/main.cf", argv[1]);
    r = judge_globals(path, &msg);
    fwrite(msg.data ? msg.data : "", 1, msg.len, stdout);
    printf("RESULT %d\n", r);
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_judge(tmp_path_factory):
    """The C judge with a driver: DIR -> (stdout lines, result 0/1/-1)."""
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    work = tmp_path_factory.mktemp("cjudge")
    for header in CSRC.glob("*.h"):
        shutil.copy(header, work)
    (work / "driver.c").write_text(DRIVER)
    proc = subprocess.run(["cc", "-O1", "-Wall", "-Werror", "-o", str(work / "judge"),
                           str(work / "driver.c")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    def run(directory: Path):
        out = subprocess.run([str(work / "judge"), str(directory)], capture_output=True,
                             timeout=30).stdout.decode("utf-8", "surrogateescape").splitlines()
        return out[:-1], int(out[-1].split()[1])
    run.path = work / "judge"
    return run


def test_c_tables_are_the_python_tables():
    text = HEADER.read_text()
    body = text.split("/* BEGIN TABLE", 1)[1].split("/* END TABLE */", 1)[0]
    rows = re.findall(r'\{"(\w+)", (MV_\w+), (\w+), (\w+)\}', body)

    def num(x):
        return None if x == "MV_NONE" else int(x)
    want = [(n, "MV_STR", lo, hi) for n, (lo, hi) in mainvalues.STRING_LENGTHS.items()]
    want += [(n, "MV_INT" if bits == 32 else "MV_LONG", lo, hi)
             for n, (lo, hi, bits) in mainvalues.INTEGERS.items()]
    want += [(n, "MV_BOOL", 0, 0) for n in mainvalues.BOOLEANS]
    want += [(n, "MV_TIME", lo, None) for n, lo in mainvalues.TIMES.items()]
    assert [(n, k, num(lo), num(hi)) for n, k, lo, hi in rows] == want
    for name, value in mainvalues.ACCOUNT_DEFAULTS.items():
        assert params.get(name).default == value
        assert f'"{value}"' in text  # the C defaults


@pytest.mark.parametrize("case,postfix", CASES, ids=[c.split("\n")[0][:40] for c, _ in CASES])
def test_values_judged_as_postfix_judges_them(case, postfix, tmp_path, c_judge):
    if POSTFIX_GID is None and "postfix" in case:
        pytest.skip("no postfix group here")
    path = write_case(tmp_path, case)
    want = expected(postfix, path, case)
    assert python_lines(Config(str(tmp_path))) == want
    assert python_lines(LiteConfig(str(tmp_path))) == want
    lines, result = c_judge(tmp_path)
    if "$" in case and result == -1:
        return  # expansion: the Python helper's (checked above)
    assert (lines, result) == (want, 1 if want and "fatal" in want[-1] else 0)


NAMES = sorted(set(mainvalues.STRING_LENGTHS) | set(mainvalues.INTEGERS)
               | set(mainvalues.BOOLEANS) | set(mainvalues.TIMES)
               | {"mail_owner", "setgid_group", "default_privs", "compatibility_level",
                  "inet_protocols", "mynetworks_style", "maillog_file"})
value = st.one_of(
    st.sampled_from(["", "0", "1", "-5", "+7", "yes", "No", "5m", "3549w", "2147483648",
                     "a..b", "a.b", "x.y.z", "1.2", "nobody", "postfix", "postdrop", "nogroup",
                     "root", "$myhostname", "${mydomain}", "$(mail_name)x", "$nosuch",
                     "${mydomain?x}", "$$", "+-", "ab", "3.6", "3.", "+3", "mail", "local7",
                     "MAIL", "all", "ipv4 ipv6", "ipv4 IPX", "host", "class", "host subnet",
                     "=", "+=", "-=+", "+a", "/var/log/x", "/dev/stdout", "/tmp/x", "/"]),
    st.text(st.sampled_from("ab1.-_$ {}+w"), max_size=8),
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(NAMES), value), min_size=1, max_size=3))
def test_c_judge_is_the_python_judge(c_judge, tmp_path_factory, pairs):
    """Random values of the judged names: the C judge says what the Python judge says,
    or hands the case over (only when a value has a $)."""
    directory = tmp_path_factory.mktemp("cf")
    case = "\n".join(f"{n} = {v}" for n, v in pairs)
    write_case(directory, case)
    try:
        want = python_lines(Config(str(directory)))
    except Exception as exc:  # an expansion error (e.g. "${x"): Config's own message
        want = [f"error: {exc}"]
    lines, result = c_judge(directory)
    if result == -1:
        assert "$" in case
        return
    assert (lines, result) == (want, 1 if want else 0), case


def test_sendmail_refuses_as_postfix_sendmail(tmp_path):
    """The Python sendmail and the compiled front end (which hands the case to it): the
    same lines as Postfix's sendmail (the prefix ``sendmail:``), exit 75, nothing
    written. Postfix 3.7's `sendmail -C DIR -f a b` printed, on this machine:
        sendmail: fatal: bad numerical configuration: max_use = x
        sendmail: warning: valid_hostname: misplaced delimiter: a..b
        sendmail: fatal: file DIR/main.cf: parameter myhostname: bad parameter value: a..b
        sendmail: fatal: file DIR/main.cf: parameter mail_owner: unknown user name value: nosuch
    each with exit status 75."""
    queue = tmp_path / "q"
    (queue / "maildrop").mkdir(parents=True)
    cases = [
        ("max_use = x", ["sendmail: fatal: PATH, line 1: bad numerical configuration: max_use = x"]),
        ("myhostname = a..b", ["sendmail: warning: valid_hostname: misplaced delimiter: a..b",
                               "sendmail: fatal: file PATH: parameter myhostname: bad parameter value: a..b"]),
        ("mail_owner = nosuch", ["sendmail: fatal: file PATH: parameter mail_owner: unknown user name value: nosuch"]),
    ]
    front = Path(sys.executable).parent / "fastpost-sendmail"
    for i, (case, want) in enumerate(cases):
        etc = tmp_path / f"etc{i}"
        etc.mkdir()
        (etc / "main.cf").write_text(f"{case}\nqueue_directory = {queue}\n")
        want = [w.replace("PATH", str(etc / "main.cf")) for w in want]
        runs = [[sys.executable, "-m", "fastpost", "-c", str(etc), "sendmail", "-f", "a", "b"]]
        if front.exists():
            runs.append([str(front), "-c", str(etc), "-f", "a", "b"])
        for argv in runs:
            proc = subprocess.run(argv, input=b"Subject: x\n\nhi\n", capture_output=True,
                                  timeout=60, env={**os.environ, "MAIL_CONFIG": str(etc)})
            assert (proc.returncode, proc.stderr.decode().splitlines()) == (75, want), argv
            assert list((queue / "maildrop").iterdir()) == []


def test_queue_commands_refuse_as_postfix(tmp_path):
    """postqueue (fastpost queue), mailq, sendmail -bp/-q judge the values first, as
    Postfix's do. Postfix 3.7 on this machine (`postqueue -c DIR -p`, `mailq -C DIR`,
    `sendmail -C DIR -bp`, `sendmail -C DIR -q`) printed, with exit 69, 75, 75, 75:
        postqueue: fatal: bad numerical configuration: max_use = x
        mailq: fatal: bad numerical configuration: max_use = x
        sendmail: fatal: bad numerical configuration: max_use = x"""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text(f"max_use = x\nqueue_directory = {tmp_path / 'q'}\n")
    text = f"fatal: {etc / 'main.cf'}, line 1: bad numerical configuration: max_use = x"
    for argv, prog, status in ((["queue", "-p"], "postqueue", 69), (["mailq"], "mailq", 75),
                               (["sendmail", "-bp"], "sendmail", 75),
                               (["sendmail", "-q"], "sendmail", 75)):
        proc = subprocess.run([sys.executable, "-m", "fastpost", "-c", str(etc), *argv],
                              capture_output=True, timeout=60, text=True)
        assert (proc.returncode, proc.stderr.splitlines()) == (status, [f"{prog}: {text}"]), argv


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the judges as root and as nobody")
def test_single_user_instance_may_share_the_group(c_judge, monkeypatch):
    """mail_owner and setgid_group with one group ID: refused as Postfix refuses it
    (exit 1 there), except for mail_owner itself, as in a fastpost run without root
    (embedded-config: mail_owner = the user, setgid_group = that user's group), where
    there is no privilege boundary to protect. Both judges, as root and as nobody."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="fp-mv-"))
    try:
        base.chmod(0o755)
        (base / "main.cf").write_text("mail_owner = nobody\nsetgid_group = nogroup\n"
                                      "default_privs = daemon\n")
        (base / "main.cf").chmod(0o644)
        shutil.copy(c_judge.path, base / "judge")
        want = (f"fatal: file {base}/main.cf: parameters mail_owner and setgid_group: user "
                "nobody and group nogroup have the same group ID: 65534")
        from fastpost.mail.maincf import LiteConfig

        assert mainvalues.judge(LiteConfig(str(base)))[1] == want.removeprefix("fatal: ")
        # the Python judge as nobody (the venv's interpreter may be unreadable to nobody):
        monkeypatch.setattr(mainvalues.os, "getuid", lambda: 65534)
        assert mainvalues.judge(LiteConfig(str(base)))[1] is None
        monkeypatch.undo()
        lines, result = c_judge(base)
        assert result == 1 and any(want in x for x in lines), lines
        c_nobody = subprocess.run(["runuser", "-u", "nobody", "--", str(base / "judge"),
                                   str(base)], capture_output=True, text=True, timeout=60,
                                  cwd="/")
        assert c_nobody.stdout.splitlines()[-1] == "RESULT 0", c_nobody.stdout
    finally:
        shutil.rmtree(base)


def _strip_where(line: str, path: Path) -> str:
    """fastpost's line without the "PATH, line N: " it adds where Postfix names no file."""
    return re.sub(rf"fatal: {re.escape(str(path))}, line \d+: ", "fatal: ", line)


def test_other_commands_refuse_as_postfix(tmp_path):
    """postmap, postalias, postsuper, postcat and newaliases judge the global values
    (session 8) as Postfix 3.7's do. Postfix's answers, from its commands run as root on
    the same main.cf on this machine (each with a one-second sleep before the fatal
    exit, hence written in here rather than run each time):
        postmap -c DIR FILE      max_use = x                     1  bad numerical configuration: max_use = x
        postalias -c DIR FILE    inet_interfaces = nosuch.invalid  1  config variable inet_interfaces: host not found: nosuch.invalid
        postsuper -c DIR         maillog_file = TMP/maillog      1  maillog_file value 'TMP/maillog' does not match any prefix in maillog_file_prefixes
        postcat -c DIR /dev/null inet_interfaces = nosuch.invalid  1  (as postalias)
        postcat -c DIR /dev/null maillog_file = TMP/maillog      0  (nothing: postcat does not check the prefixes)
        newaliases -C DIR        maillog_file = TMP/maillog      75 (as postsuper)
    fastpost adds "PATH, line N: " where Postfix names no file."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (tmp_path / "q").mkdir()
    aliases = tmp_path / "aliases"
    aliases.write_text("root: nobody\n")
    main_cf = etc / "main.cf"
    bad_number, bad_host = "max_use = x", "inet_interfaces = nosuch.invalid"
    bad_log = f"maillog_file = {tmp_path}/maillog"
    host_text = "config variable inet_interfaces: host not found: nosuch.invalid"
    log_text = (f"maillog_file value '{tmp_path}/maillog' does not match any prefix in "
                "maillog_file_prefixes")
    runs = [  # (main.cf line, fastpost's verb and argv, Postfix's status and fatal text)
        (bad_number, ["map", "-c", str(etc), str(aliases)], 1,
         "bad numerical configuration: max_use = x"),
        (bad_host, ["alias", "-c", str(etc), str(aliases)], 1, host_text),
        (bad_log, ["super", "-c", str(etc)], 1, log_text),
        (bad_host, ["cat", "-c", str(etc), "/dev/null"], 1, host_text),
        (bad_log, ["cat", "-c", str(etc), "/dev/null"], None, None),
        (bad_log, ["newaliases", "-c", str(etc)], 75, log_text),
    ]
    for case, argv, status, text in runs:
        main_cf.write_text(f"{case}\nqueue_directory = {tmp_path / 'q'}\n"
                           f"alias_database = hash:{aliases}\ncompatibility_level = 3.6\n")
        ours = subprocess.run([sys.executable, "-m", "fastpost", *argv],
                              capture_output=True, text=True, timeout=60)
        got = [_strip_where(line, main_cf).split(": fatal: ", 1)[1]
               for line in ours.stderr.splitlines() if ": fatal: " in line]
        if text is None:  # postcat: whatever it says of /dev/null, not the prefixes
            assert not any("maillog" in g for g in got), ours.stderr
            continue
        assert (ours.returncode, got) == (status, [text]), (case, argv, ours.stderr)
    assert not list(tmp_path.glob("aliases.*"))  # refused before anything was built


def test_postlog_and_postfix_refuse_a_maillog_file_outside_the_prefixes(tmp_path):
    """Postfix 3.7's postlog and postfix(1) (any verb) stop with exit 1 when
    maillog_file matches no maillog_file_prefixes; on a terminal they printed
        postfix/postlog: fatal: maillog_file value 'V' does not match any prefix in maillog_file_prefixes
        postfix: fatal: maillog_file value 'V' does not match any prefix in maillog_file_prefixes
    (without a terminal only to syslog); fastpost prints the line either way."""
    etc = tmp_path / "etc"
    etc.mkdir()
    value = f"{tmp_path}/maillog"
    (etc / "main.cf").write_text(f"queue_directory = {tmp_path / 'q'}\nmaillog_file = {value}\n")
    text = (f"fatal: {etc / 'main.cf'}, line 2: maillog_file value '{value}' does not match "
            "any prefix in maillog_file_prefixes")
    for argv, prog in ((["log", "-c", str(etc), "hello"], "postfix/postlog"),
                       (["status", "-c", str(etc)], "postfix"),
                       (["start", "-c", str(etc)], "postfix")):
        proc = subprocess.run([sys.executable, "-m", "fastpost", *argv], capture_output=True,
                              text=True, timeout=60)
        assert (proc.returncode, proc.stderr.splitlines()) == (1, [f"{prog}: {text}"]), argv
    assert not (tmp_path / "maillog").exists()
    # allowed by the prefixes: postlog writes the line
    (etc / "main.cf").write_text(f"queue_directory = {tmp_path / 'q'}\nmaillog_file = {value}\n"
                                 f"maillog_file_prefixes = /var, {tmp_path}\n")
    proc = subprocess.run([sys.executable, "-m", "fastpost", "log", "-c", str(etc), "hello"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "postfix/postlog" in (tmp_path / "maillog").read_text()


#: (the machine's name, main.cf lines, Postfix 3.7's postdrop lines) -- run on this
#: machine with its postdrop in a UTS namespace of its own (`unshare --uts`, the name set
#: with sethostname), main.cf setting neither myhostname nor mydomain unless shown
MACHINE_NAME_CASES = [
    ("123", "", ["postdrop: warning: valid_hostname: numeric hostname: 123",
                 "postdrop: fatal: unable to use my own hostname"]),
    ("a..b", "", ["postdrop: warning: valid_hostname: misplaced delimiter: a..b",
                  "postdrop: fatal: unable to use my own hostname"]),
    ("a.b-", "", ["postdrop: warning: valid_hostname: misplaced hyphen: a.b-",
                  "postdrop: fatal: unable to use my own hostname"]),
    ("x" * 64, "", ["postdrop: warning: valid_hostname: hostname label too long: " + "x" * 64,
                    "postdrop: fatal: unable to use my own hostname"]),
    ("a.1", "", ["postdrop: warning: valid_hostname: numeric hostname: 1",
                 "postdrop: fatal: file PATH: parameter mydomain: bad parameter value: 1"]),
    ("a_b", "", []),
    ("vm", "", []),
    ("123", "mydomain = example.com", ["postdrop: warning: valid_hostname: numeric hostname: 123",
                                       "postdrop: fatal: unable to use my own hostname"]),
    ("123", "mydomain =", ["postdrop: warning: valid_hostname: numeric hostname: 123",
                           "postdrop: fatal: unable to use my own hostname"]),
    ("123", "mail_name =", ["postdrop: warning: valid_hostname: numeric hostname: 123",
                            "postdrop: fatal: unable to use my own hostname"]),
    ("123", "inet_protocols = x", ['postdrop: fatal: N unknown inet_protocols value "x" in "x"']),
    ("a..b", "myhostname = vm.example.com", []),
]

_IN_NAMESPACE = r"""
import json, socket, subprocess, sys
sys.path[:0] = json.loads(sys.argv[1])
from fastpost.mail import mainvalues
from fastpost.mail.maincf import LiteConfig
if len(sys.argv) > 4:  # a hosts file of the test's own, in this mount namespace only
    subprocess.run(["mount", "--bind", sys.argv[4], "/etc/hosts"], check=True)
out = []
for machine, directory in json.loads(sys.argv[2]):
    if machine:
        socket.sethostname(machine)
    warnings, fatal = mainvalues.judge(LiteConfig(directory))
    py = [f"postdrop: warning: {w}" for w in warnings] + ([f"postdrop: fatal: {fatal}"] if fatal else [])
    c = subprocess.run([sys.argv[3], directory], capture_output=True, text=True).stdout.splitlines()
    out.append([py, c[:-1], int(c[-1].split()[1])])
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="sets the machine's name in a UTS namespace of its own (root)")
def test_the_machines_own_name_as_postfix_judges_it(tmp_path, c_judge):
    """main.cf without myhostname: the machine's name is judged first (Postfix's lines
    above, recorded from its postdrop); both judges, in one namespace for all cases."""
    import json

    runs, wants = [], []
    for i, (machine, case, postfix) in enumerate(MACHINE_NAME_CASES):
        path = write_case(tmp_path / f"c{i}", case)
        runs.append([machine, str(path.parent)])
        wants.append(expected(postfix, path, case or "x = y"))
    src = str(Path(mainvalues.__file__).resolve().parents[2])
    proc = subprocess.run(["unshare", "--uts", sys.executable, "-c", _IN_NAMESPACE,
                           json.dumps([src]), json.dumps(runs), str(c_judge.path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for (machine, case, _), want, (py, c, result) in zip(MACHINE_NAME_CASES, wants,
                                                         json.loads(proc.stdout)):
        assert py == want, (machine, case)
        assert (c, result) == (want, 1 if want else 0), (machine, case)


#: a name in inet_interfaces that resolves to addresses that are not local: Postfix
#: 3.7's postdrop, with this hosts file bind-mounted over /etc/hosts in a mount
#: namespace of its own, named the (first) address that is not local
HOSTS = "127.0.0.1 localhost\n10.9.9.9 farhost\n127.0.0.1 nearhost\n10.9.9.8 mixhost\n127.0.0.1 mixhost\n"
HOSTS_CASES = [
    ("inet_interfaces = farhost",
     ["postdrop: fatal: N parameter inet_interfaces: no local interface found for 10.9.9.9"]),
    ("inet_interfaces = [farhost]",
     ["postdrop: fatal: N parameter inet_interfaces: no local interface found for 10.9.9.9"]),
    ("inet_interfaces = mixhost",
     ["postdrop: fatal: N parameter inet_interfaces: no local interface found for 10.9.9.8"]),
    ("inet_interfaces = nearhost", []),
]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="bind-mounts a hosts file in a mount namespace of its own (root)")
def test_inet_interfaces_names_as_postfix_judges_them(tmp_path, c_judge):
    import json

    (tmp_path / "hosts").write_text(HOSTS)
    runs, wants = [], []
    for i, (case, postfix) in enumerate(HOSTS_CASES):
        path = write_case(tmp_path / f"c{i}", case)
        runs.append([None, str(path.parent)])
        wants.append(expected(postfix, path, case))
    src = str(Path(mainvalues.__file__).resolve().parents[2])
    proc = subprocess.run(["unshare", "--mount", sys.executable, "-c", _IN_NAMESPACE,
                           json.dumps([src]), json.dumps(runs), str(c_judge.path),
                           str(tmp_path / "hosts")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for (case, _), want, (py, c, result) in zip(HOSTS_CASES, wants, json.loads(proc.stdout)):
        assert py == want, case
        assert (c, result) == (want, 1 if want else 0), case


#: main.cf lines for fastpost check/start/conf -m against postfix check and postconf -m
CONTROL_CASES = [
    "max_use = x",
    "soft_bounce = maybe",
    "myhostname = a..b",
    "default_privs = root",  # (not a missing mail_owner: fastpost's set-up creates it)
    "inet_interfaces = nosuch.invalid",
    "mynetworks_style = bogus\nmynetworks =",  # good: mynetworks is set
    "maillog_file = /elsewhere/maillog",  # postfix(1) only: not postconf
    "smtpd_recipient_limit = abc",  # not a global value: smtpd's (below)
]


def test_postfix_check_start_and_postconf_m_judge_as_postfix(tmp_path):
    """``fastpost check``, ``fastpost start`` and ``fastpost conf -m`` judge the global
    values as Postfix 3.7's ``postfix check`` (every postfix(1) verb) and ``postconf
    -m`` (postconf's only form that judges; without maillog_file) do: run side by side
    on the same main.cf (Postfix on a terminal, where it prints its fatal line), the
    same exit status and the same words (session 10)."""
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "queue"))
    from postfix_instance import PostfixInstance, postfix_tmpdir

    def postfix_run(case: str):
        with postfix_tmpdir() as root:
            pfx = PostfixInstance(root)
            with open(os.path.join(pfx.etc, "main.cf"), "a") as fh:
                fh.write(case.replace("/elsewhere", "/elsewhere-fp") + "\n")
            out = []
            for cmd in (f"postfix -c {pfx.etc} check", f"postconf -c {pfx.etc} -m"):
                proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                                      text=True, timeout=60)
                fatal = [line.split(": fatal: ", 1)[1].replace(root, "ROOT")
                         for line in proc.stdout.splitlines() if ": fatal: " in line]
                out.append((proc.returncode, fatal))
            return out

    with ThreadPoolExecutor(4) as pool:
        theirs = list(pool.map(postfix_run, CONTROL_CASES))
    for n, (case, (check, conf_m)) in enumerate(zip(CONTROL_CASES, theirs)):
        root = tmp_path / str(n)
        etc = root / "etc"
        etc.mkdir(parents=True)
        (root / "log").mkdir()
        (etc / "master.cf").write_text("")
        main_cf = etc / "main.cf"
        main_cf.write_text(
            f"queue_directory = {root / 'q'}\ndata_directory = {root / 'data'}\n"
            "compatibility_level = 3.7\nmyhostname = fp.example.test\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n"
            f"maillog_file = {root / 'log' / 'maillog'}\nmaillog_file_prefixes = {root}\n"
            + case.replace("/elsewhere", "/elsewhere-fp") + "\n")

        def ours(*argv):
            proc = subprocess.run([sys.executable, "-m", "fastpost", *argv, "-c", str(etc)],
                                  capture_output=True, text=True, timeout=60)
            fatal = [_strip_where(line, main_cf).split(": fatal: ", 1)[1].replace(
                str(root), "ROOT") for line in proc.stderr.splitlines() if ": fatal: " in line]
            return proc.returncode, fatal

        refused_by_postfix = check[0] != 0
        if case.startswith("smtpd_recipient_limit"):
            # Postfix's check lets it through (its smtpd dies at start); fastpost's
            # check types every value it knows, in the same words: deliberate
            assert check == (0, []), check
            check = (1, ["bad numerical configuration: smtpd_recipient_limit = abc"])
        assert ours("check") == check, case
        if refused_by_postfix:  # start too (every verb); a good one is not started here
            assert ours("start") == check, case
        assert ours("conf", "-m")[0] == conf_m[0], case
        assert ours("conf", "-m")[1] == [t.replace("postconf: ", "") for t in conf_m[1]], case
