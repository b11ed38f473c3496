"""sendmail's lean start (docs/submission.md, "sendmail speed").

A plain submission must not load the parameter table, the IPC layer, asyncio and the
rest; LiteConfig must answer exactly what Config answers; the constants copied to
spare imports must equal their sources. No timing here: the numbers are in
docs/submission.md and come from the benchmark.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.cli import sendmail
from fastpost.mail import cleanup_proto, maildrop, params
from fastpost.mail.config import Config
from fastpost.mail.maincf import DEFAULT_CONFIG_DIRECTORY, LITE_DEFAULTS, LiteConfig

REPO = Path(__file__).resolve().parents[2]


def test_copied_constants_equal_their_sources():
    for name, default in LITE_DEFAULTS.items():
        assert params.lookup(name).default == default, name
        assert Config(text="").get(name) == default
    assert DEFAULT_CONFIG_DIRECTORY == params.DEFAULT_CONFIG_DIRECTORY
    assert sendmail.FLAG_EXTRACT == cleanup_proto.FLAG_EXTRACT


NAMES = sorted(LITE_DEFAULTS) + ["myhostname", "message_size_limit", "undefined_x"]
VALUES = st.sampled_from(["/var/q", "$queue_directory/x", "${command_directory}", "pickup2",
                          "static:anyone", "!root, static:anyone", "", "a b", "$undefined_x",
                          "${myhostname?yes}", "$$literal", "root,\n  nobody"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=6))
def test_lite_config_answers_what_config_answers(tmp_path_factory, assignments):
    etc = tmp_path_factory.mktemp("etc")
    text = "".join(f"{name} = {value}\n" for name, value in assignments)
    (etc / "main.cf").write_text(text)
    lite, full = LiteConfig(str(etc)), Config(str(etc))
    for name in NAMES:
        assert _outcome(lite, name) == _outcome(full, name), (name, text)


def _outcome(cfg, name: str):
    try:
        return cfg.get(name)
    except Exception as exc:  # an expansion loop: the same error from both
        return type(exc), str(exc)


def test_lite_config_without_main_cf_and_its_errors(tmp_path):
    assert LiteConfig(str(tmp_path)).get("queue_directory") == "/var/spool/fastpost"
    (tmp_path / "main.cf").write_text("queue_directory /x\n")
    try:
        LiteConfig(str(tmp_path))
    except Exception as exc:  # the same class and text as Config's
        from fastpost.mail.config import ConfigError

        assert isinstance(exc, ConfigError)
        assert "main.cf, line 1: missing '=' after attribute name" in str(exc)
    else:
        raise AssertionError("no error for a line without '='")


def test_drop_message_equality_and_repr():
    a = maildrop.DropMessage("s", [("r", "", 0)], b"x\n", flags=64)
    assert a == maildrop.DropMessage("s", [("r", "", 0)], b"x\n", flags=64)
    assert a != maildrop.DropMessage("s", [("r", "", 0)], b"y\n", flags=64)
    assert "sender='s'" in repr(a)


#: modules a plain submission must not import (each cost milliseconds before)
HEAVY = ("fastpost.mail.params", "fastpost.mail.param_table", "fastpost.mail.config",
         "fastpost.mail.ipc", "asyncio", "secrets", "dataclasses", "ipaddress", "socket",
         "fastpost.mail.maps", "fastpost.mail.cleanup_proto")

PROBE = """
import sys
from fastpost.cli.main import main
rc = main(["fastpost", "-c", sys.argv[1], "sendmail", "-f", "a@example.org", "b@example.net"])
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(rc, " ".join(heavy) or "-")
"""


def _probe(etc: Path, main_cf: str) -> tuple[str, list[str]]:
    (etc / "main.cf").write_text(main_cf)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), str(etc)],
                          input=b"Subject: lean\n\nbody\n", capture_output=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    rc, _, heavy = proc.stdout.decode().strip().partition(" ")
    return rc, [] if heavy == "-" else heavy.split()


def test_a_plain_submission_imports_nothing_heavy(tmp_path):
    queue = tmp_path / "queue"
    (queue / "maildrop").mkdir(parents=True)
    (queue / "public").mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    rc, heavy = _probe(etc, f"queue_directory = {queue}\n")
    assert (rc, heavy) == ("0", [])
    (name,) = os.listdir(queue / "maildrop")
    msg = maildrop.parse((queue / "maildrop" / name).read_bytes())
    assert (msg.sender, msg.recipients) == ("a@example.org", [("b@example.net", "", 0)])
    assert msg.content == b"Subject: lean\n\nbody\n"
    # a value with $name, or a list other than static:anyone: the full machinery, same file
    rc, heavy = _probe(etc, f"base = {queue}\nqueue_directory = $base\n"
                            "authorized_submit_users = !nobody, static:anyone\n")
    assert rc == "0" and "fastpost.mail.config" in heavy and "fastpost.mail.maps" in heavy
    assert len(os.listdir(queue / "maildrop")) == 2


# -- the compiled front end (csrc/sendmail.c) against the Python writer ---------------

import shutil  # noqa: E402

import pytest  # noqa: E402

from fastpost.mail.record import split_records  # noqa: E402


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    from fastpost.cli.frontend import build_frontend

    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    base = tmp_path_factory.mktemp("frontend")
    binary = build_frontend(str(base / "fastpost-sendmail"))
    sites = {}
    for who in ("c", "py"):
        queue = base / who / "queue"
        (queue / "maildrop").mkdir(parents=True)
        (queue / "public").mkdir()
        etc = base / who / "etc"
        etc.mkdir()
        (etc / "main.cf").write_text(f"# {who}\nqueue_directory = {queue}\n"
                                     "pickup_service_name =\n   pickup\n")
        sites[who] = (etc, queue / "maildrop")
    return binary, sites


def _take(maildir: Path) -> bytes:
    (name,) = os.listdir(maildir)
    data = (maildir / name).read_bytes()
    os.unlink(maildir / name)
    return data


def _records(data: bytes) -> list:
    recs, used = split_records(data, 1 << 20)
    assert used == len(data)
    assert recs[0][0] == ord("T") and recs[0][1].split()[0].isdigit()
    return [(t, b"" if t == ord("T") else p) for t, p in recs]


def _python_drop(etc: Path, args: list[str], data: bytes, name: str | None) -> None:
    """What ``fastpost sendmail ARGS`` does, in this process (the same functions)."""
    import io

    opts, rcpts = sendmail.parse_args(args)
    content = sendmail.read_message(io.BytesIO(data), opts["dots"])
    saved = os.environ.get("NAME")
    try:
        if name is None:
            os.environ.pop("NAME", None)
        else:
            os.environ["NAME"] = name
        assert sendmail.submit(LiteConfig(str(etc)), "sendmail", opts, rcpts, content) == 0
    finally:
        if saved is None:
            os.environ.pop("NAME", None)
        else:
            os.environ["NAME"] = saved


LINE = st.one_of(
    st.sampled_from([b"", b".", b"..", b". ", b"\r", b"x\r", b"Subject: t", b"\x00nul"]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.integers(2040, 6200).map(lambda n: b"y" * n))
ADDR = st.sampled_from(["a@example.org", "<b@example.org>", "<>", "c", "\u00e9@example.org",
                        "d@[192.0.2.1]"])


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.tuples(LINE, st.sampled_from([b"\n", b"\r\n"])), max_size=12),
       last=LINE, dots=st.sampled_from([[], ["-i"], ["-oi"]]), extract=st.booleans(),
       sender=st.one_of(st.none(), ADDR), fullname=st.one_of(st.none(), st.text(
           # what a command line can carry: no NUL, no lone surrogates
           st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
           max_size=8)),
       env_name=st.one_of(st.none(), st.sampled_from(["", "Jo Doe", "\u00c5sa"])),
       rcpts=st.lists(ADDR, min_size=1, max_size=3))
def test_frontend_writes_the_python_writers_records(frontend, lines, last, dots, extract,
                                                    sender, fullname, env_name, rcpts):
    binary, sites = frontend
    data = b"".join(a + b for a, b in lines) + last
    args = list(dots) + (["-t"] if extract else [])
    if sender is not None:
        args += ["-f", sender]
    if fullname is not None:
        args += ["-F" + fullname] if fullname else ["-F", fullname]
    args += ["--", *rcpts] if rcpts[0].startswith("-") else rcpts
    env = {k: v for k, v in os.environ.items() if k != "NAME"}
    if env_name is not None:
        env["NAME"] = env_name
    proc = subprocess.run([binary, "-c", str(sites["c"][0]), *args], input=data, env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    _python_drop(sites["py"][0], args, data, env_name)
    c_data, py_data = _take(sites["c"][1]), _take(sites["py"][1])
    assert _records(c_data) == _records(py_data)
    maildrop.parse(c_data)


def test_frontend_hands_every_other_case_to_python(frontend, tmp_path):
    binary, sites = frontend
    etc, maildir = sites["c"]

    def run(*args, data=b"Subject: f\n\n", cfg=str(etc)):
        return subprocess.run([binary, "-c", cfg, *args], input=data, capture_output=True,
                              timeout=60)

    proc = run("-N", "success,delay", "x@example.net")  # an option it does not take
    assert proc.returncode == 0, proc.stderr
    assert maildrop.parse(_take(maildir)).recipients == [
        ("x@example.net", "", cleanup_proto.notify_bits(["SUCCESS", "DELAY"]))]
    proc = run("-bd", "x@example.net")
    assert (proc.returncode, proc.stderr) == (
        75, b"sendmail: fatal: daemon mode requires no recipient\n")
    proc = run("-bx")
    assert (proc.returncode, proc.stderr) == (75, b"sendmail: fatal: unsupported: -bx\n")
    proc = run("-i")
    assert proc.returncode == 64 and b"Recipient addresses must be specified" in proc.stderr
    # main.cf that needs expanding, or a submit list: Python decides (root is refused)
    other = tmp_path / "etc"
    other.mkdir()
    (other / "main.cf").write_text(f"base = {maildir.parent}\nqueue_directory = $base\n")
    proc = run("x@example.net", cfg=str(other))
    assert proc.returncode == 0, proc.stderr
    assert maildrop.parse(_take(maildir)).recipients == [("x@example.net", "", 0)]
    (other / "main.cf").write_text(f"queue_directory = {maildir.parent}\n"
                                   "authorized_submit_users = !root, static:anyone\n")
    proc = run("x@example.net", cfg=str(other))
    assert (proc.returncode, proc.stderr) == (
        75, b"sendmail: fatal: User root(0) is not allowed to submit mail\n")
    (other / "main.cf").write_text("queue_directory /nowhere\n")
    proc = run("x@example.net", cfg=str(other))
    # Postfix 3.7's sendmail: "sendmail: fatal: PATH, line 1: missing '=' ...", exit 75
    assert (proc.returncode, proc.stderr) == (75, (
        f"sendmail: fatal: {other}/main.cf, line 1: missing '=' after attribute name: "
        '"queue_directory /nowhere"\n').encode())
    assert os.listdir(maildir) == []


def test_frontend_leaves_a_maildrop_it_cannot_write_to_python(frontend, tmp_path):
    """No write access to maildrop (here: not even a directory): the Python command
    decides (the set-gid helper's case) and reports it (no helper: EX_NOPERM)."""
    binary, _ = frontend
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "maildrop").write_text("not a directory\n")
    (tmp_path / "main.cf").write_text(f"queue_directory = {queue}\ncommand_directory = {tmp_path}\n")
    proc = subprocess.run([binary, "-c", str(tmp_path), "x@example.net"], input=b"x\n",
                          capture_output=True, timeout=60)
    assert proc.returncode == 77, proc.stderr
    assert b"no permission to submit mail" in proc.stderr


def test_frontend_warns_about_main_cf_as_postfix(frontend, tmp_path):
    """Postfix 3.7's sendmail warns about a continuation line with nothing to continue
    and a parameter set again to another value, once per reading of main.cf; the
    compiled front end and the Python sendmail print the same lines once, and submit."""
    binary, sites = frontend
    _, maildir = sites["c"]
    etc = tmp_path / "etc"
    etc.mkdir()
    text = ("  orphan_parameter_with_a_long_name = 1\n  more\n"
            "message_size_limit = 200000\nqueue_directory = {queue}\n"
            "message_size_limit = 300000\nmessage_size_limit = 300000\n")
    (etc / "main.cf").write_text(text.format(queue=maildir.parent))
    expected = [
        f'sendmail: warning: {etc}/main.cf: logical line must not start with whitespace: '
        f'"  orphan_parameter_with_a_long..."',
        f"sendmail: warning: {etc}/main.cf, line 5: overriding earlier entry: "
        "message_size_limit=200000"]
    for cmd in ([binary, "-c", str(etc)], [sys.executable, "-m", "fastpost", "-c", str(etc),
                                          "sendmail"]):
        proc = subprocess.run(cmd + ["x@example.net"], input=b"hi\n", capture_output=True,
                              timeout=60)
        assert (proc.returncode, proc.stderr.decode().splitlines()) == (0, expected), cmd
        maildrop.parse(_take(maildir))
    postfix = shutil.which("sendmail", path="/usr/sbin")
    if postfix is None or not os.path.exists("/usr/sbin/postdrop"):
        return
    pf = tmp_path / "pf"
    pf.mkdir()
    (pf / "main.cf").write_text(text.format(queue="/nonexistent-fp"))
    theirs = subprocess.run([postfix, "-C", str(pf), "x@example.net"], input=b"hi\n",
                            capture_output=True, timeout=60)
    lines = [x.replace(str(pf), str(etc)) for x in theirs.stderr.decode().splitlines()
             if x.startswith("sendmail: warning: ")]
    first, last = [], 0  # the first reading's (Postfix reads main.cf more than once)
    for x in dict.fromkeys(lines):
        found = re.search(r", line (\d+):", x)
        number = int(found.group(1)) if found else last
        if number >= last:
            first.append(x)
            last = number
    assert first == expected
