"""The compiled set-gid postdrop (src/fastpost/cli/csrc/postdrop.c), run as a real
unprivileged user (useradd, not in group postdrop), as installed by ``fastpost -c DIR
link-commands -g``.

For any maildrop stream it writes the file the Python helper writes
(maildrop.parse, no attribute but verify=1, its own arrival time, maildrop.encode),
owned by the user, mode 0644; a stream its strict reader does not take goes to the
Python helper with the same bytes (a memfd): malformed streams get the helper's own
message and exit 65 and leave nothing behind, and a stream parse() takes but the strict
reader declines is still written. The instance runs no pickup, so the files stay in
maildrop to be compared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.instance import Instance  # noqa: E402
from helpers.mailsite import make_user, need_root, remove_users  # noqa: E402

from fastpost.mail import maildrop  # noqa: E402
from fastpost.mail import rectype as R  # noqa: E402
from fastpost.mail.record import encode_records, split_records  # noqa: E402

LIMIT = 100_000  # message_size_limit: the stream may be 2 x this + 1 MiB


class Drop:
    def __init__(self, inst, pw, helper: Path):
        self.inst, self.pw, self.helper = inst, pw, helper
        self.maildrop = inst.queue / "maildrop"

    def run(self, data: bytes, *args: str):
        proc = subprocess.run(["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}",
                               "--init-groups", str(self.helper), *args],
                              input=data, capture_output=True, timeout=60, cwd="/",
                              env={"PATH": "/usr/bin:/bin"})
        files = sorted(p for p in self.maildrop.iterdir())
        got = []
        for p in files:
            st = p.stat()
            got.append((p.name, st.st_uid, st.st_mode & 0o7777, p.read_bytes()))
            p.unlink()
        return proc, got


@pytest.fixture(scope="module")
def drop():
    need_root()
    for tool in ("setpriv", "cc"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    pw = make_user("pdrop")
    base = Path(tempfile.mkdtemp(prefix="fastpost-postdrop-", dir="/tmp"))
    os.chmod(base, 0o755)
    bindir = base / "bin"
    bindir.mkdir(mode=0o755)
    inst = Instance(base, master_cf="postlog unix-dgram n - n - 1 postlogd\n",
                    main_cf={"command_directory": str(bindir),
                             "message_size_limit": str(LIMIT)})
    os.chmod(inst.dir, 0o755)
    os.chmod(inst.etc, 0o755)
    try:
        made = inst.command("link-commands", "-g", "-d", str(bindir))
        assert made.returncode == 0, made.stderr
        inst.start()  # the queue tree; no pickup: the files stay
        yield Drop(inst, pw, bindir / "fastpost-postdrop")
    finally:
        inst.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        remove_users()


def python_helper(data: bytes) -> bytes:
    """What the Python helper (fastpost.cli.setgid._postdrop) writes for data."""
    msg = maildrop.parse(data)
    msg.attrs = [(k, v) for k, v in msg.attrs if (k, v) == ("verify", "1")]
    msg.arrival = 0.0
    return maildrop.encode(msg)


def records_but_time(data: bytes) -> list:
    recs, used = split_records(data, 1 << 20)
    assert used == len(data)
    assert recs[0][0] == R.REC_TYPE_TIME
    return recs[1:]


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
address = st.one_of(st.just(""), st.from_regex(r"[a-z0-9.+-]{1,12}@[a-z]{1,8}\.example",
                                               fullmatch=True), text)
line = st.one_of(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
                 st.integers(2040, 4200).map(lambda n: b"x" * n))
messages = st.builds(
    maildrop.DropMessage,
    sender=address,
    recipients=st.lists(st.tuples(address, st.one_of(st.just(""), text),
                                  st.sampled_from([0, 1, 2, 6, 14])), max_size=4),
    content=st.lists(line, max_size=6).map(lambda ls: b"\n".join(ls))
    .flatmap(lambda c: st.sampled_from([c, c + b"\n"])),
    arrival=st.floats(1e9, 2e9),
    flags=st.sampled_from([0, 64]),
    fullname=st.one_of(st.none(), text),
    ret=st.one_of(st.none(), st.sampled_from(["", "FULL", "HDRS"])),
    envid=st.one_of(st.none(), text),
    attrs=st.lists(st.sampled_from([("verify", "1"), ("requeue", "ABC"), ("uid", "0"),
                                    ("verify", "2"), ("log_client_name", "x")]), max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages)
def test_it_writes_what_the_python_helper_writes(drop, msg):
    data = maildrop.encode(msg)
    proc, files = drop.run(data)
    assert (proc.returncode, proc.stderr) == (0, b"")
    ((name, uid, mode, written),) = files
    assert uid == drop.pw.pw_uid and mode == 0o644 and not name.startswith(".")
    assert records_but_time(written) == records_but_time(python_helper(data))


def _stream(recs) -> bytes:
    return encode_records([(ord(t) if isinstance(t, str) else t, p) for t, p in recs])


BASE = [("T", b"1700000000 5"), ("S", b"a@example.org"), ("R", b"b@example.net"), ("M", b""),
        ("N", b"Subject: x"), ("N", b""), ("N", b"body"), ("X", b""), ("E", b"")]


def test_what_the_strict_reader_declines_goes_to_the_python_helper(drop):
    # taken by maildrop.parse, declined by the C reader: still written, the same way
    odd = [[("T", b"1700000000 5 9")] + BASE[1:],                       # a third T field
           BASE[:1] + [("f", b"+64")] + BASE[1:],                       # a sign
           BASE[:2] + [("n", b" 2 ")] + BASE[2:],                       # spaces
           BASE[:1] + [("f", b"1_0")] + BASE[1:]]                       # Python's int()
    for recs in odd:
        data = _stream(recs)
        proc, files = drop.run(data)
        assert (proc.returncode, proc.stderr) == (0, b""), recs
        ((_, uid, _, written),) = files
        assert uid == drop.pw.pw_uid
        assert records_but_time(written) == records_but_time(python_helper(data))


def test_malformed_streams_get_the_python_helpers_answer(drop):
    uid = drop.pw.pw_uid
    bad = [b"", b"garbage", _stream(BASE)[:-1], _stream(BASE) + b"S\x00",
           _stream(BASE[:1] + BASE[2:]),                               # no sender
           _stream(BASE[:3] + [("Q", b"?")] + BASE[3:]),               # a foreign record
           _stream(BASE[:-1]),                                         # no end record
           _stream(BASE[:2] + [("A", b"no equals sign")] + BASE[2:]),
           _stream(BASE[:5] + [("S", b"late")] + BASE[5:])]            # in the content
    for data in bad:
        with pytest.raises(maildrop.MaildropError) as err:
            maildrop.parse(data)
        proc, files = drop.run(data)
        assert files == []
        assert proc.returncode == 65, (data, proc.stderr)
        assert proc.stderr.decode() == f"postdrop: fatal: uid={uid}: malformed input: {err.value}\n"


def test_limits_and_usage(drop):
    uid = drop.pw.pw_uid
    big = maildrop.encode(maildrop.DropMessage("a@b.example", [("c@d.example", "", 0)],
                                               b"y" * (2 * LIMIT + (1 << 20))))
    proc, files = drop.run(big)
    assert (proc.returncode, proc.stderr, files) == \
        (73, f"postdrop: fatal: uid={uid}: message too large\n".encode(), [])
    proc, files = drop.run(_stream(BASE), "-x")  # the Python helper's usage message
    assert (proc.returncode, files) == (64, [])
    assert proc.stderr == b"postdrop: fatal: usage: postdrop (a maildrop stream on standard input)\n"


def test_the_common_case_runs_no_interpreter(drop, tmp_path):
    """Which path ran, seen by strace (execve calls): one program for a well-formed
    stream, the Python helper started after it for one the strict reader declines.
    (As root: a traced program does not get its set-gid group.)"""
    if not shutil.which("strace"):
        pytest.skip("strace not installed")

    def execs(data: bytes) -> list[str]:
        trace = tmp_path / "trace"
        proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace),
                               str(drop.helper)], input=data, capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for p in drop.maildrop.iterdir():
            p.unlink()
        return [line for line in trace.read_text().splitlines() if "execve(" in line]

    assert len(execs(_stream(BASE))) == 1
    fell_back = execs(_stream([("T", b"1700000000 5 9")] + BASE[1:]))
    assert len(fell_back) == 2 and "python" in fell_back[1]


# -- main.cf errors: the same answer as Postfix 3.7's postdrop -------------------------

#: (case, text put before main.cf, text put after it, what fastpost's postdrop does
#: with a good stream: "fatal" refuses before reading it, "writes" goes on)
MAIN_CF_CASES = [
    ("no =", "", "foo bar\n", "fatal"),
    ("no name", "", "= value\n", "fatal"),
    ("space in the name", "", "x y = 1\n", "fatal"),
    ("continued, then no =", "", "a_param = 1\n  continued\nbare\n", "fatal"),
    ("redefined, then no =", "", "message_size_limit = 5000\nfoo\n", "fatal"),
    ("undefined $name", "", "message_size_limit = $no_such_param\n", "fatal"),
    ("not a number", "", "message_size_limit = 12x\n", "fatal"),
    ("continuation first", "   this_is_a_long_orphan_parameter = x\n  more\n", "", "writes"),
    ("redefined", "", "message_size_limit = 200000\nmessage_size_limit = 200000\n", "writes"),
]


def _first_read(lines: list[str]) -> list[str]:
    """Postfix's lines about main.cf from its first reading of the file (postdrop
    reads it more than once and repeats its warnings): repeats dropped, and the
    lines of a later reading, whose line numbers start over."""
    out, last = [], 0
    for text in dict.fromkeys(lines):
        found = re.search(r", line (\d+):", text)
        number = int(found.group(1)) if found else last
        if number >= last:
            out.append(text)
            last = number
    return out


def _about(stderr: bytes, main_cf: str) -> list[str]:
    return [line.replace(main_cf, "MAIN_CF") for line in stderr.decode().splitlines()
            if main_cf in line or "bad numerical configuration" in line]


def test_main_cf_errors_as_postfix_reports_them(drop, tmp_path):
    """A main.cf line that is not "name = value" stops the compiled postdrop with
    Postfix's message naming the file and line, exit 1, without the interpreter; a
    value error in a parameter it reads (an undefined $name, not a number) is the
    Python helper's, with the same exit status; Postfix's warnings (a continuation
    with nothing to continue, a parameter set again to another value) come first and
    once. Compared with Debian's Postfix 3.7 postdrop run as root on a copy of the
    same main.cf (only queue_directory differs: Postfix stops there)."""
    postdrop = shutil.which("postdrop") or "/usr/sbin/postdrop"
    if not os.path.exists(postdrop):
        pytest.skip("Debian's postfix not installed")
    main_cf = drop.inst.etc / "main.cf"
    saved = main_cf.read_text()
    pf_base = re.sub(r"(?m)^queue_directory = .*$", "queue_directory = /nonexistent-fp", saved)
    good = _stream(BASE)
    # Postfix's runs side by side: each sleeps a second or more before its fatal exit
    pf_runs = []
    for i, (case, before, after, outcome) in enumerate(MAIN_CF_CASES):
        pf_dir = tmp_path / f"pf{i}"
        pf_dir.mkdir()
        (pf_dir / "main.cf").write_text(before + pf_base + after)
        pf_runs.append((pf_dir / "main.cf", subprocess.Popen(
            [postdrop, "-c", str(pf_dir)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd="/")))
    try:
        for (case, before, after, outcome), (pf_cf, pf_proc) in zip(MAIN_CF_CASES, pf_runs):
            main_cf.write_text(before + saved + after)
            proc, files = drop.run(good)
            _, pf_err = pf_proc.communicate(timeout=60)
            ours = _about(proc.stderr, str(main_cf))
            expected = _first_read(_about(pf_err, str(pf_cf)))
            if case in ("undefined $name", "not a number"):
                # fastpost names the file and line of the value as well
                line_no = len(saved.splitlines()) + 1
                expected = [line.replace("fatal: bad", f"fatal: MAIN_CF, line {line_no}: bad")
                            for line in expected]
            assert ours == expected and ours, case
            if outcome == "fatal":
                assert (proc.returncode, pf_proc.returncode, files) == (1, 1, []), case
            else:
                assert proc.returncode == 0 and len(files) == 1, (case, proc.stderr)
        # the syntax errors are answered without starting the interpreter
        if shutil.which("strace"):
            main_cf.write_text(saved + "foo bar\n")
            trace = tmp_path / "trace"
            subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace),
                            str(drop.helper)], input=good, capture_output=True, timeout=60)
            assert len([x for x in trace.read_text().splitlines() if "execve(" in x]) == 1
    finally:
        main_cf.write_text(saved)
        for _, pf_proc in pf_runs:
            if pf_proc.poll() is None:
                pf_proc.kill()
                pf_proc.communicate()


#: (main.cf line appended, Postfix 3.7's postdrop lines on this machine with MAIN_CF
#: for the file; "LINE" where fastpost names the file and line and Postfix does not)
GLOBAL_VALUE_CASES = [
    ("myhostname = a..b", ["postdrop: warning: valid_hostname: misplaced delimiter: a..b",
                           "postdrop: fatal: file MAIN_CF: parameter myhostname: bad parameter value: a..b"]),
    ("mail_owner = nosuch", ["postdrop: fatal: file MAIN_CF: parameter mail_owner: unknown user name value: nosuch"]),
    ("max_idle = 5x", ["postdrop: fatal: LINE parameter max_idle: bad time value or unit: 5x"]),
    # a $name to expand: the Python helper's answer, the same words
    ("myorigin = $nosuch", ["postdrop: fatal: LINE bad string length 0 < 1: myorigin = "]),
    # session 8: inet_interfaces and maillog_file_prefixes (C; the last one with a $
    # through the Python helper)
    ("inet_interfaces = nosuch.invalid",
     ["postdrop: fatal: LINE config variable inet_interfaces: host not found: nosuch.invalid"]),
    ("maillog_file = /tmp/elsewhere.log", ["postdrop: fatal: LINE maillog_file value "
                                           "'/tmp/elsewhere.log' does not match any prefix in "
                                           "maillog_file_prefixes"]),
    ("maillog_file = /tmp/x$nosuch.log", ["postdrop: fatal: LINE maillog_file value "
                                          "'/tmp/x.log' does not match any prefix in "
                                          "maillog_file_prefixes"]),
]


def test_global_values_as_postfix_judges_them(drop, tmp_path):
    """The values of the global parameters (fastpost.mail.mainvalues): the compiled
    postdrop refuses what Postfix 3.7's postdrop refuses, with its lines, exit 1,
    nothing written, without the interpreter; a value to expand goes to the Python
    helper, which answers the same; `myorigin = $mydomain` stays in C and writes."""
    main_cf = drop.inst.etc / "main.cf"
    saved = main_cf.read_text()
    line_no = len(saved.splitlines()) + 1
    good = _stream(BASE)
    try:
        for case, postfix in GLOBAL_VALUE_CASES:
            main_cf.write_text(saved + case + "\n")
            proc, files = drop.run(good)
            want = [x.replace("MAIN_CF", str(main_cf))
                    .replace("fatal: LINE ", f"fatal: {main_cf}, line {line_no}: ") for x in postfix]
            # (the instance's main.cf sets myhostname and mail_owner: Postfix's warning)
            got = [x for x in proc.stderr.decode().splitlines() if "overriding earlier" not in x]
            assert (proc.returncode, got, files) == (1, want, []), case
        if shutil.which("strace"):
            trace = tmp_path / "trace"
            for case, files_wanted in (("mail_owner = nosuch", 0), ("myorigin = $mydomain", 1),
                                       ("inet_interfaces = nosuch.invalid", 0),
                                       ("maillog_file = /tmp/elsewhere.log", 0)):
                main_cf.write_text(saved + case + "\n")
                subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace),
                                str(drop.helper)], input=good, capture_output=True, timeout=60)
                assert len([x for x in trace.read_text().splitlines() if "execve(" in x]) == 1
                # the traced run's file (written as root) and the user's
                assert len(drop.run(good)[1]) == 2 * files_wanted
    finally:
        main_cf.write_text(saved)
