"""Differential tests: `fastpost conf` against Debian's real `postconf` (Postfix 3.7).

Each configuration in corpus/ (plus Debian's own main.cf and master.cf, read from the
installed postfix package) is copied to a temporary directory and run through both
programs with the same arguments; stdout and the exit status must be identical, and
stderr must hold the same warnings (as a set: Postfix 3.7 prints its "unused
parameter" warnings in hash-table order). Editing requests (-e, -X, -#, -M..., -F,
-P, -PX) run on two copies, and the resulting main.cf and master.cf must be
byte-identical.

Deliberate differences are listed once, in DELIBERATE below (and in
docs/configuration.md): lines for those parameters, and for parameters whose
default value refers to them, are left out of the full listings (postconf, -d, -x).
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

from fastpost.cli import postconf as postconf_cli
from fastpost.mail import params
from fastpost.mail.conf_scope import references

pytestmark = pytest.mark.postfix

CORPUS = pathlib.Path(__file__).with_name("corpus")
DEBIAN_MAIN = "/usr/share/postfix/main.cf.debian"
DEBIAN_MASTER = "/usr/share/postfix/master.cf.dist"

#: Parameters whose fastpost value deliberately differs from Postfix 3.7's: the
#: installation (paths, version, process), fastpost's own defaults and parameters.
DELIBERATE = (
    set(params.INSTALLATION_PARAMETERS)
    | set(params.FASTPOST_DEFAULTS)
    | {p.name for p in params.FASTPOST_PARAMS}
)


def _dependents(names: set[str]) -> set[str]:
    """Names whose default refers (transitively) to one of names."""
    table = params.table()
    out = set(names)
    changed = True
    while changed:
        changed = False
        for name, decl in table.items():
            if name not in out and any(r in out for r in references(decl.default)):
                out.add(name)
                changed = True
    return out


#: What full listings leave out: DELIBERATE and everything derived from it.
EXCLUDED = _dependents(DELIBERATE)
# milter_macro_v is "$mail_name $mail_version"; smtpd_banner and friends use $mail_name.

#: conf/ (the files a system install ships) is a case too.
SHIPPED = pathlib.Path(__file__).resolve().parents[2] / "conf"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) + ["debian", "shipped"]


def postconf_path() -> str:
    path = shutil.which("postconf") or "/usr/sbin/postconf"
    if not os.path.exists(path):
        pytest.skip("postconf not installed (./dev test installs tests/apt-packages.txt as root)")
    return path


def make_case(case: str, where: pathlib.Path) -> pathlib.Path:
    """Copy a corpus case to where/case (Debian's master.cf when it has none)."""
    target = where / case
    target.mkdir(parents=True)
    if case == "debian":
        if not os.path.exists(DEBIAN_MAIN):
            pytest.skip("Debian's postfix package is not installed")
        shutil.copy(DEBIAN_MAIN, target / "main.cf")
    else:
        for f in (SHIPPED if case == "shipped" else CORPUS / case).iterdir():
            shutil.copy(f, target / f.name)
    if not (target / "master.cf").exists():
        if not os.path.exists(DEBIAN_MASTER):
            pytest.skip("Debian's postfix package is not installed")
        shutil.copy(DEBIAN_MASTER, target / "master.cf")
    # Postfix waits until a configuration file is older than about two seconds
    # before it reads it: date the copies back so that postconf does not stall.
    past = time.time() - 60
    for f in target.iterdir():
        os.utime(f, (past, past))
    return target


def run_postconf(config_dir: str, args: list[str], cwd: pathlib.Path):
    proc = subprocess.run([postconf_path(), "-c", config_dir, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LC_ALL": "C"})
    return proc.returncode, proc.stdout, proc.stderr


def run_fastpost_process(config_dir: str, args: list[str], cwd: pathlib.Path):
    """Run the installed entry point as a process (what scripts do)."""
    proc = subprocess.run([sys.executable, "-m", "fastpost", "conf", "-c", config_dir, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def run_fastpost(config_dir: str, args: list[str], cwd: pathlib.Path):
    """Run fastpost conf's main() in this process (the same code, without the
    interpreter start-up, so that the corpus runs in seconds)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = postconf_cli.main(["-c", config_dir, *args])
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


_PREFIX = re.compile(r"^(\S*postconf|fastpost conf): ")


def warnings_of(stderr: str) -> set[str]:
    """The warning lines of stderr, program name removed (fatal texts differ)."""
    out = set()
    for line in stderr.splitlines():
        line = _PREFIX.sub("", line)
        if line.startswith("warning: "):
            out.add(line)
    return out


def same_warnings(fastpost_err: str, postconf_err: str) -> None:
    """Compare warnings; see DELIBERATE_WARNINGS for the one allowed difference."""
    mine, theirs = warnings_of(fastpost_err), warnings_of(postconf_err)
    over_mine = {w for w in mine if "overriding earlier entry" in w}
    over_theirs = {w for w in theirs if "overriding earlier entry" in w}
    assert over_mine <= over_theirs
    assert mine - over_mine == theirs - over_theirs


#: postconf reads main.cf several times and, from the second pass on, also reports
#: the first definition of a duplicated name as "overriding" the last one; fastpost
#: reports each overriding definition once, with the value it replaces.
DELIBERATE_WARNINGS = ("overriding earlier entry",)

#: After a fatal error fastpost prints nothing on stdout; postconf has printed the
#: 4 KiB stdio blocks it filled before the error, cut mid-line.
DELIBERATE_FATAL_OUTPUT = True

#: In expanded comparisons (-x) both programs get -o mail_name=Postfix, because
#: mail_name is a deliberate difference that $mail_name carries into other values.
PIN = ["-o", "mail_name=Postfix"]


def entries(stdout: str) -> list[str]:
    """Split a listing into entries (a line plus its folded continuation lines)."""
    out: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("    ") and out:
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


def without_deliberate(stdout: str) -> list[str]:
    return [e for e in entries(stdout) if e.split(" ", 1)[0] not in EXCLUDED]


def compare(case_dir: pathlib.Path, args: list[str], *, full_listing: bool = False):
    cwd = case_dir.parent
    rel = str(case_dir)
    if any("x" in a for a in args if a.startswith("-") and not a.startswith("-o")) \
            and not any("d" in a for a in args if a.startswith("-") and not a.startswith("-o")):
        args = PIN + args
    rc_p, out_p, err_p = run_postconf(rel, args, cwd)
    rc_f, out_f, err_f = run_fastpost(rel, args, cwd)
    assert rc_f == rc_p, f"exit status {rc_f} != postconf's {rc_p}\n{err_f}"
    if rc_p != 0:
        # A fatal error: fastpost prints nothing; postconf prints the stdio blocks it
        # had filled (DELIBERATE_FATAL_OUTPUT).
        assert out_f == ""
        assert out_p.startswith(out_f)
    elif full_listing:
        assert without_deliberate(out_f) == without_deliberate(out_p)
    else:
        assert out_f == out_p
    same_warnings(err_f, err_p)
    return out_p


# -- read-only modes --------------------------------------------------------------------

SHOW = [
    ["-n"], ["-nx"], ["-nf"], ["-nh"], ["-nH"], ["-M"], ["-Mf"], ["-F"], ["-Ff"], ["-P"],
    ["-Px"], ["-Ph"], ["-Mx"], ["-Mfx"], ["-Fx"],
    ["-C", "user"], ["-C", "service"], ["-C", "user,service", "-n"], ["-C", "service", "-d"],
    ["-C", "user", "mydomain"], ["-M", "smtp/inet", "pickup", "nosuch"], ["-F", "smtp/unix/command"],
    ["-h", "myhostname", "mydomain", "mydestination", "relayhost", "mynetworks"],
    ["-x", "myorigin", "mydestination", "smtpd_banner", "relay_domains", "alias_maps"],
    ["-d", "mynetworks", "mynetworks_style", "relay_domains", "smtpd_relay_restrictions"],
    ["-dh", "append_dot_mydomain", "smtputf8_enable", "myhostname", "mydomain"],
    ["-x", "mynetworks", "smtputf8_enable", "append_dot_mydomain", "chroot_no_such"],
    ["unknown_parameter_xyz", "alias_maps"],
    ["mydomain", "-h", "relayhost"],  # options end at the first name, as in postconf
    ["-n", "relayhost", "not_set_here", "local_destination_concurrency_limit"],
]
FULL = [[], ["-x"], ["-d"], ["-df"], ["-f"], ["-C", "builtin"]]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("args", SHOW, ids=lambda a: " ".join(a) or "(none)")
def test_show(tmp_path, case, args):
    compare(make_case(case, tmp_path), args)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("args", FULL, ids=lambda a: " ".join(a) or "(none)")
def test_full_listing(tmp_path, case, args):
    compare(make_case(case, tmp_path), args, full_listing=True)


@pytest.mark.parametrize("level", ["0", "1", "2", "3.6", "3.7", "3.10"])
def test_compatibility_levels(tmp_path, level):
    case_dir = make_case("compat", tmp_path)
    compare(case_dir, ["-o", f"compatibility_level={level}", "-x"], full_listing=True)
    compare(case_dir, ["-o", f"compatibility_level={level}", "-x", "relay_domains",
                       "mynetworks", "mynetworks_style", "smtpd_relay_restrictions",
                       "append_dot_mydomain", "smtputf8_enable", "respectful_logging"])


@pytest.mark.parametrize("style", ["host", "subnet", "class"])
def test_mynetworks_styles(tmp_path, style):
    case_dir = make_case("compat", tmp_path)
    for protocols in ("all", "ipv4", "ipv6"):
        compare(case_dir, ["-o", f"mynetworks_style={style}", "-o",
                           f"inet_protocols={protocols}", "-h", "mynetworks"])


@pytest.mark.parametrize("args", [
    ["-d", "-n"], ["-d", "-o", "a=b"], ["-M", "-F"], ["-F", "-P"], ["-e", "-X", "a"],
    ["-M", "-d"], ["-h", "-M"], ["-m", "-n"], ["-Z"], ["-o", "novalue"],
    ["-M", "a/b/c"], ["-F", "a/b/c/d"], ["-MX", "pickup"], ["-e", "bad name=1"],
    ["-e", "=1"], ["-X"], ["-e"], ["-C", "bogus", "-n"],
])
def test_usage_errors(tmp_path, args):
    case_dir = make_case("user-params", tmp_path)
    rc_p, _out, _err = run_postconf(str(case_dir), args, tmp_path)
    rc_f, out_f, err_f = run_fastpost(str(case_dir), args, tmp_path)
    assert rc_f == rc_p == 1
    assert out_f == ""
    assert "fatal: " in err_f


def test_missing_main_cf(tmp_path):
    (tmp_path / "empty").mkdir()
    assert run_fastpost("empty", ["-n"], tmp_path)[0] == run_postconf("empty", ["-n"], tmp_path)[0] == 1


# -- editing ----------------------------------------------------------------------------

EDITS = {
    "continuation": [
        ["-e", "mydestination = $myhostname, localhost", "mynetworks=127.0.0.0/8",
         "brand_new = added  value "],
        ["relay_domains=$mydomain"],
        ["-X", "mynetworks", "recipient_delimiter", "not_there"],
        ["-#", "mydestination", "smtpd_client_restrictions"],
    ],
    "isp-gateway": [
        ["-e", "smtpd_recipient_limit=100", "message_size_limit = 1024"],
        ["-M", "submission/inet=submission inet n - n - - smtpd -o syslog_name=sub"],
        ["-Me", "new/unix=new unix - n n - - pipe flags=R user=nobody argv=/bin/cat -v ${recipient}"],
        ["-MX", "scan/unix"],
        ["-M#", "127.0.0.1:10025/inet", "smtps/inet"],
        ["-F", "pickup/unix/wakeup=30", "smtp/inet/chroot=n", "relay/unix/process_limit=20"],
        ["-F", "scan/unix/command=smtp -o smtp_data_done_timeout=1200s"],
        ["-P", "submission/inet/smtpd_tls_security_level=may", "smtp/inet/new_param=1",
         "pickup/unix/syslog_name=pick"],
        ["-PX", "submission/inet/milter_macro_daemon_name", "smtp/inet/content_filter",
         "smtp/inet/not_there"],
        ["-P", "smtp/inet/x=has space"],
        ["-F", "pickup/unix/bogus=1"],
    ],
    "transports": [
        ["-P", "maildrop/unix/a=1", "archive/unix/b=2"],
        ["-Pe", "relay/unix/smtp_fallback_relay=[backup]:25"],
        ["-F", "[::1]:2526/inet/process_limit=5"],
        ["-M", "dovecot/unix=dovecot unix - n n - - pipe flags=DRhu user=vmail argv=/bin/true"],
    ],
    "master-oddities": [
        ["-M", "smtp/inet=smtp inet n - n - - smtpd -o x=1"],
        ["-MX", "smtp/inet"],
        ["-P", "opts/unix/ok=2", "opts/unix/new=3"],
        ["-PX", "opts/unix/ok"],
        ["-F", "wake/unix/wakeup=20?", "private/inet/private=n"],
    ],
    "master-options": [
        ["-P", "smtp/inet/new=1", "smtp/inet/g=2"],
        ["-PX", "smtp/inet/late", "smtp/inet/smtpd_banner"],
        ["-F", "x/unix/command=b -v -o y=1 arg"],
    ],
    "user-params": [
        ["-e", "plain_unused=43", "class_a=permit_mynetworks"],
        ["-X", "unused_holder", "deep_one"],
        ["-PX", "submission/inet/master_only_param"],
    ],
}


def _edit_cases():
    for case, requests in EDITS.items():
        for args in requests:
            yield pytest.param(case, args, id=f"{case}: {' '.join(args)}")


def edit_both(tmp_path, case: str, args: list[str], fastpost_runner):
    """Run an edit with postconf, then with fastpost on a fresh copy at the same path;
    return ((rc, out, err, files) of postconf, (...) of fastpost)."""
    results = []
    for runner in (run_postconf, fastpost_runner):
        target = tmp_path / case
        if target.exists():
            shutil.rmtree(target)
        make_case(case, tmp_path)
        rc, out, err = runner(str(target), args, tmp_path)
        files = {n: (target / n).read_text() for n in ("main.cf", "master.cf")}
        results.append((rc, out, err, files))
    return results


@pytest.mark.parametrize("case,args", list(_edit_cases()))
def test_edit(tmp_path, case, args):
    (rc_p, out_p, err_p, files_p), (rc_f, out_f, err_f, files_f) = edit_both(
        tmp_path, case, args, run_fastpost)
    assert rc_f == rc_p, err_f
    assert out_f == out_p
    assert files_f == files_p
    same_warnings(err_f, err_p)


@pytest.mark.parametrize("args", [["-n"], ["-Mf"], ["-x", "relayhost"], ["-e", "relayhost=[x]:25"]])
def test_entry_point_process(tmp_path, args):
    """The real command, as a process: the same output and status as postconf."""
    (rc_p, out_p, err_p, files_p), (rc_f, out_f, err_f, files_f) = edit_both(
        tmp_path, "isp-gateway", PIN + args if "-x" in args else args, run_fastpost_process)
    assert (rc_f, out_f) == (rc_p, out_p)
    assert files_f == files_p
    same_warnings(err_f, err_p)


def test_shipped_configuration_is_clean(tmp_path):
    """conf/main.cf and conf/master.cf: no warning at all, and no unsupported setting."""
    case_dir = make_case("shipped", tmp_path)
    for args in (["-n"], ["-M"], ["-P"]):
        rc, _out, err = run_fastpost(str(case_dir), args, tmp_path)
        assert (rc, err) == (0, "")
    from fastpost.mail.config import Config

    assert params.unsupported_settings(Config(str(case_dir))) == []


@pytest.mark.parametrize("line", ["myorigin = $loop_a", "smtpd_banner = ${{$loop_b} == {x} ? {a} : {b}}"])
def test_expansion_loop_is_fatal_when_a_builtin_reaches_it(tmp_path, line):
    case_dir = make_case("oddities", tmp_path)
    (case_dir / "main.cf").write_text((case_dir / "main.cf").read_text() + line + "\n")
    past = time.time() - 60
    os.utime(case_dir / "main.cf", (past, past))
    for args in (["-n"], ["-M"], ["mydomain"]):
        rc_p, out_p, _ = run_postconf(str(case_dir), args, tmp_path)
        rc_f, out_f, err_f = run_fastpost(str(case_dir), args, tmp_path)
        assert (rc_f, out_f) == (rc_p, out_p) == (1, "")
        assert "unreasonable macro call nesting" in err_f


def test_mynetworks_in_a_namespace_with_many_interfaces(tmp_path):
    """Several interfaces and addresses (two in one subnet, IPv4 classes B and A, an
    IPv6 ULA) in a private network namespace: every style as postconf computes it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace (CI runs as root)")
    ip = shutil.which("ip") or "/usr/sbin/ip"
    if not os.path.exists(ip):
        pytest.skip("iproute2 not installed")
    case_dir = make_case("compat", tmp_path)
    ns = f"fastpost-conf-{os.getpid()}"
    if subprocess.run([ip, "netns", "add", ns], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        setup = [
            "link set lo up", "link add v0 type veth peer name v1",
            "addr add 10.1.0.1/16 dev v0", "addr add 10.1.0.3/16 dev v0",
            "addr add 10.1.0.2/16 dev v1", "addr add 172.20.1.1/24 dev v1",
            "-6 addr add fd10::1/64 dev v0", "link set v0 up", "link set v1 up",
        ]
        for command in setup:
            proc = subprocess.run([ip, "netns", "exec", ns, ip, *command.split()],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"ip {command}: {proc.stderr.strip()}")
        for style in ("host", "subnet", "class"):
            args = ["-c", str(case_dir), "-o", f"mynetworks_style={style}", "-h", "mynetworks"]
            theirs = subprocess.run([ip, "netns", "exec", ns, postconf_path(), *args],
                                    capture_output=True, text=True, check=True).stdout
            mine = subprocess.run([ip, "netns", "exec", ns, sys.executable, "-m", "fastpost",
                                   "conf", *args], capture_output=True, text=True,
                                  check=True).stdout
            assert mine == theirs
            assert "10." in mine and "172.20." in mine and "fd10::" in mine
    finally:
        subprocess.run([ip, "netns", "del", ns], capture_output=True)


RAW_BYTES = (b"# CRLF line ends, a form feed and a byte that is not UTF-8\r\n"
             b"relayhost = [x.example]:25\r\n"
             b"myorigin = a\x0cb\n"
             b"always_bcc = c\x85d\r\n  continued\r\n"
             b"smtpd_banner = $myhostname\rESMTP\n")


@pytest.mark.parametrize("args", [["-n"], ["-nx"], ["-e", "relayhost=y"],
                                  ["-X", "always_bcc"], ["-#", "myorigin"]])
def test_unusual_bytes(tmp_path, args):
    """Bytes in, bytes out: CRLF, a form feed, a stray CR and invalid UTF-8 survive
    display and editing exactly as with postconf."""
    results = []
    for runner in (run_postconf_bytes, run_fastpost_bytes):
        case = tmp_path / "bytes"
        if case.exists():
            shutil.rmtree(case)
        case.mkdir()
        (case / "main.cf").write_bytes(RAW_BYTES)
        (case / "master.cf").write_bytes(b"")
        past = time.time() - 60
        for f in case.iterdir():
            os.utime(f, (past, past))
        rc, out = runner(str(case), args)
        results.append((rc, out, (case / "main.cf").read_bytes()))
    assert results[1] == results[0]


def run_postconf_bytes(config_dir, args):
    proc = subprocess.run([postconf_path(), "-c", config_dir, *args], capture_output=True)
    return proc.returncode, proc.stdout


def run_fastpost_bytes(config_dir, args):
    proc = subprocess.run([sys.executable, "-m", "fastpost", "conf", "-c", config_dir, *args],
                          capture_output=True)
    return proc.returncode, proc.stdout
