"""`fastpost conf -b / -t` against Debian's real `postconf -b / -t` (bounce(5) templates).

The template files here give all four templates with every header, so no built-in text
is involved (fastpost's built-in wording is its own, not Postfix's): the output must be
byte-identical. For broken files, the exit status and the substance of the diagnostic
must agree (fastpost names the line where the template starts; Postfix the line it read
last).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.postfix

MAIN_CF = "myhostname = mx.example.net\nmydomain = example.net\nmaximal_queue_lifetime = 4d\n" \
          "delay_warning_time = 90m\nbounce_queue_lifetime = 2d\n"


def postconf_path() -> str:
    path = shutil.which("postconf") or "/usr/sbin/postconf"
    if not os.path.exists(path):
        pytest.skip("postconf not installed (./dev test installs tests/apt-packages.txt as root)")
    return path


def _template(name: str, text: str, *, headers: bool = True, pm: bool = True, word="EOF") -> str:
    head = ""
    if headers:
        head = ("Charset: us-ascii\nFrom: Mailer <MAILER-DAEMON>\n"
                f"Subject: about {name}\n")
        if pm:
            head += f"Postmaster-Subject: postmaster {name}\n"
        head += "\n"
    return f"{name}_template = <<{word}\n{head}{text}\n{word}\n"


FULL = (
    "# comments and empty lines outside templates are ignored\n\n"
    + _template("failure", "host $myhostname, lifetime $maximal_queue_lifetime_days days,\n"
                "  ${mydomain} and $(myhostname), 100 $$ \\ literal")
    + "\n" + _template("delay", "warned after $delay_warning_time_minutes minutes "
                       "($delay_warning_time_hours h, $delay_warning_time_seconds s),\n"
                       "kept $maximal_queue_lifetime_weeks weeks / $maximal_queue_lifetime_hours h",
                       word="STOP")
    + _template("success", "delivered, $myhostname\n\n\nwith empty lines", pm=False)
    + _template("verify", "verified at $mydomain", pm=False)
)


@pytest.fixture(scope="module")
def confdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bt")
    (d / "main.cf").write_text(MAIN_CF)
    return d


def _both(confdir, args: list[str]):
    real = subprocess.run([postconf_path(), "-c", str(confdir), *args],
                          capture_output=True, text=True)
    ours = subprocess.run([sys.executable, "-m", "fastpost", "conf", "-c", str(confdir), *args],
                          capture_output=True, text=True)
    return real, ours


@pytest.mark.parametrize("flag", ["-b", "-t"])
def test_full_template_file_is_identical(confdir, flag):
    path = confdir / "full.cf"
    path.write_text(FULL)
    real, ours = _both(confdir, [flag, str(path)])
    assert real.returncode == 0, real.stderr
    assert (ours.returncode, ours.stdout) == (real.returncode, real.stdout), ours.stderr


def test_header_labels_in_any_case_and_text_without_headers(confdir):
    path = confdir / "case.cf"
    path.write_text(FULL.replace("Subject: about failure", "SUBJECT: about failure")
                    .replace("From: Mailer <MAILER-DAEMON>\nSubject: about verify\n", "from: Mailer <MAILER-DAEMON>\nsubject: about verify\n"))
    real, ours = _both(confdir, ["-t", str(path)])
    assert (ours.returncode, ours.stdout) == (real.returncode, real.stdout), ours.stderr


BROKEN = {
    # file text -> (exit status, what both diagnostics say)
    "garbage line\n": (1, "missing '=' after attribute name"),
    _template("failure", "hi $no_such_parameter_here"): (1, "undefined $name in failure template"),
    _template("bogus", "hi"): (0, "unknown template name: bogus_template"),
    "failure_template = <<EOF\nhi\n": (0, 'missing "EOF" end marker'),
    "failure_template = <<EOF\nX-Foo: bar\n\nhi\nEOF\n": (0, 'unknown "X-Foo" header label in failure template'),
    "failure_template = <<EOF\n\nh\u00e9\nEOF\n": (0, "8-bit message text in failure template"),
}


@pytest.mark.parametrize("text", list(BROKEN), ids=range(len(BROKEN)))
def test_broken_template_files(confdir, text):
    path = confdir / "broken.cf"
    path.write_text(text, encoding="utf-8")
    status, words = BROKEN[text]
    real, ours = _both(confdir, ["-b", str(path)])
    assert real.returncode == status and words in real.stderr, real.stderr
    assert ours.returncode == status and words in ours.stderr, ours.stderr


def test_builtin_templates_are_complete_and_expand(confdir):
    ours = subprocess.run([sys.executable, "-m", "fastpost", "conf", "-c", str(confdir), "-b"],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    for kind in ("failure", "delay", "success", "verify"):
        assert f"expanded_{kind}_text = <<EOF\n" in ours.stdout
    assert "mx.example.net" in ours.stdout and "$" not in ours.stdout
    assert "1 hour(s)" in ours.stdout and "4 day(s)" in ours.stdout
    shown = subprocess.run([sys.executable, "-m", "fastpost", "conf", "-c", str(confdir), "-t"],
                           capture_output=True, text=True)
    assert shown.stdout.count(" = <<EOF\n") == 4 and "$myhostname" in shown.stdout
    # -t's output is itself a valid template file that -b reads back
    (confdir / "roundtrip.cf").write_text(shown.stdout)
    again = subprocess.run([sys.executable, "-m", "fastpost", "conf", "-c", str(confdir), "-b",
                            str(confdir / "roundtrip.cf")], capture_output=True, text=True)
    assert (again.returncode, again.stdout, again.stderr) == (0, ours.stdout, "")


@pytest.mark.parametrize("args,words", [
    (["-a", "-b"], "specify one of -a -b"), (["-b", "-t"], "specify one of -b and -t"),
    (["-b", "-n"], "with option -b, do not specify -n"), (["-t", "-M"], "specify one of -M -t"),
    (["-t", "x", "y"], "options -b and -t require at most one template file"),
])
def test_option_conflicts(confdir, args, words):
    real, ours = _both(confdir, args)
    assert real.returncode == ours.returncode == 1
    assert words in real.stderr and words in ours.stderr


def test_sasl_and_tls_modes(confdir):
    real, ours = _both(confdir, ["-a"])
    assert "dovecot" in real.stdout.split() and ours.stdout == "dovecot\n"
    real, ours = _both(confdir, ["-T", "run-version"])
    assert ours.returncode == 0 and ours.stdout.startswith("OpenSSL ")
    real, ours = _both(confdir, ["-T", "public-key-algorithms"])
    assert set(ours.stdout.split()) <= set(real.stdout.split())
    real, ours = _both(confdir, ["-T", "nonsense"])
    assert real.returncode == ours.returncode == 1
