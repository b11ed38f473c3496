"""Property test: $name expansion of generated main.cf files, fastpost against postconf.

Hypothesis writes main.cf files whose values combine every expansion form (plain and
braced names, ?/: conditionals with and without braces, comparisons, $$, literals
with spaces and punctuation) over a few user-defined names, some empty, some
undefined; each generated value refers only to names defined before it, so no
file has a loop. Both programs print the expanded values (-x) of the built-in
parameters that hold them; stdout and the exit status must be identical.

FASTPOST_FUZZ_EXAMPLES sets the number of files (default 30; the malformed variant
runs a sixth of that, as postconf pauses about a second before a fatal exit).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpost.cli import postconf as postconf_cli

pytestmark = pytest.mark.postfix

def postconf_path() -> str:
    path = shutil.which("postconf") or "/usr/sbin/postconf"
    if not os.path.exists(path):
        pytest.skip("postconf not installed (./dev test installs tests/apt-packages.txt as root)")
    return path


def run_fastpost(config_dir: str, args: list[str]):
    """fastpost conf's main() in this process (test_postconf_diff.py runs the process)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = postconf_cli.main(["-c", config_dir, *args])
    return rc, out.getvalue(), err.getvalue()


#: Built-in string parameters that nothing else refers to: safe to fill with anything.
TARGETS = ["alternate_config_directories", "always_bcc", "best_mx_transport",
           "content_filter", "fallback_transport", "relayhost", "home_mailbox"]
USER = ["u_a", "u_b", "u_c", "u_empty"]

words = st.sampled_from(["x", "yes", "no", "10", "9", "3.6", "a b", "-", "/p/q", "c,d",
                         "", "2bounce", "host.example"])


def expression(names: list[str], malformed: bool = False):
    name = st.sampled_from(names + ["u_undef", "mydomain", "compatibility_level"])
    leaf = st.one_of(
        words,
        name.map(lambda n: f"${n}"),
        name.map(lambda n: f"${{{n}}}"),
        name.map(lambda n: f"$({n})"),
        st.just("$$"),
    )
    if malformed:
        # both programs must fail the same way (exit status 1, nothing on stdout)
        leaf = st.one_of(leaf, st.sampled_from(["$%", "${u_a", "${}", "x$", "${u_a!b}",
                                                "${{a}}", "${u_a?{x}:{y}z}"]))

    space = st.sampled_from(["", " ", "  "])
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    levels = st.sampled_from(["0", "1", "2", "3.6", "3.10", "$compatibility_level"])
    level_ops = st.sampled_from(["==level", "!=level", "<level", "<=level", ">level", ">=level"])

    def extend(inner):
        return st.one_of(
            st.tuples(space, name, space, inner).map(lambda t: f"${{{t[0]}{t[1]}{t[2]}?{t[3]}}}"),
            st.tuples(name, inner).map(lambda t: f"${{{t[0]}:{t[1]}}}"),
            st.tuples(name, space, inner, space, inner).map(
                lambda t: f"${{{t[0]}?{t[1]}{{{t[2]}}}{t[3]}:{{{t[4]}}}}}"),
            st.tuples(name, inner, inner).map(lambda t: f"${{{t[0]}?{{{t[1]}}}:{t[2]}}}"),
            st.tuples(name, inner).map(lambda t: f"${{{t[0]}:{{{t[1]}}}}}"),
            st.tuples(inner, ops, inner, inner, inner).map(
                lambda t: f"${{{{{t[0]}}} {t[1]} {{{t[2]}}} ? {{{t[3]}}} : {{{t[4]}}}}}"),
            st.tuples(inner, ops, inner, inner).map(
                lambda t: f"${{{{{t[0]}}}{t[1]}{{{t[2]}}}?{{{t[3]}}}}}"),
            st.tuples(levels, level_ops, levels, inner, inner).map(
                lambda t: f"${{{{{t[0]}}} {t[1]} {{{t[2]}}} ? {{{t[3]}}} : {{{t[4]}}}}}"),
            st.lists(inner, min_size=2, max_size=3).map(" ".join),
        )

    return st.recursive(leaf, extend, max_leaves=6)


@st.composite
def main_cf(draw, malformed=False):
    lines = ["u_empty ="]
    defined: list[str] = ["u_empty"]
    for name in USER[:3]:
        lines.append(f"{name} = {draw(expression(defined, malformed))}")
        defined.append(name)
    for target in TARGETS:
        lines.append(f"{target} = {draw(expression(defined, malformed))}")
    # keep every user-defined name "used" so that both programs list the same names
    lines.append("myorigin = $mydomain" + "".join(f"${{{n}:}}" for n in defined))
    return "\n".join(lines) + "\n"


EXAMPLES = int(os.environ.get("FASTPOST_FUZZ_EXAMPLES", "30"))
_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=_CHECKS)
#: postconf sleeps about a second before it exits on a fatal error: fewer of these.
FUZZ_FATAL = settings(max_examples=max(3, EXAMPLES // 6), deadline=None,
                      suppress_health_check=_CHECKS)


@FUZZ
@given(text=main_cf())
def test_generated_main_cf_expands_like_postconf(tmp_path_factory, text):
    compare_expansion(tmp_path_factory, text)


@FUZZ_FATAL
@given(text=main_cf(malformed=True))
def test_generated_malformed_main_cf_fails_like_postconf(tmp_path_factory, text):
    compare_expansion(tmp_path_factory, text)


def compare_expansion(tmp_path_factory, text):
    case = tmp_path_factory.mktemp("fuzz")
    (case / "main.cf").write_text(text)
    (case / "master.cf").write_text("")
    past = time.time() - 60
    for f in case.iterdir():
        os.utime(f, (past, past))
    args = ["-x", *TARGETS, "myorigin"]
    theirs = subprocess.run([postconf_path(), "-c", str(case), *args],
                            capture_output=True, text=True, timeout=60)
    rc, out, err = run_fastpost(str(case), args)
    assert rc == theirs.returncode, (text, err, theirs.stderr)
    if rc == 0:
        assert out == theirs.stdout, text
    else:
        assert out == "" and "fatal: " in err, text
    shutil.rmtree(case, ignore_errors=True)

