#!/usr/bin/env python3
"""Local submission by a user outside setgid_group: CPU and time per message.

    sudo .venv/bin/python benchmarks/submission_setgid.py [--messages 200] [--runs 3]

As root: a real user is made (useradd, removed at the end), a fastpost instance (no
daemons but postlogd: nothing consumes maildrop, the files are removed between runs)
with two command directories built by `link-commands -g`-like builds:

  now      fastpost-sendmail (C front end) -> fastpost-postdrop (csrc/postdrop.c)
  before   the Python sendmail (`python -I -S -B`, what the front end falls back to
           for such a user until now) -> the Python postdrop helper (csrc/launcher.c)
  Postfix  Debian's Postfix 3.7 sendmail -> postdrop, on a private instance whose
           main.cf is bind-mounted over /etc/postfix/main.cf in a mount namespace of
           the benchmark's own (set-gid postdrop only honours the default config)

and the two helpers alone (a ready maildrop stream on standard input). Every variant is
the same shell loop run as the user inside `unshare -m`; CPU is the loop's children's
(user + system, from the kernel's accounting), minus an empty loop's (setpriv +
/bin/true). Runs are interleaved; the median and range of --runs are printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "queue"), str(REPO / "src")]

from helpers.instance import Instance  # noqa: E402
from helpers.mailsite import make_user, remove_users  # noqa: E402
from postfix_instance import PostfixInstance  # noqa: E402

from fastpost.mail import maildrop  # noqa: E402

MESSAGE = b"Subject: a local submission\n\n" + b"a line of a short message body\n" * 30


def loop(script_head: str, cmd: str, n: int, infile: str) -> tuple[float, float]:
    """Run cmd n times (stdin from infile) in `unshare -m sh`; (seconds, CPU seconds)."""
    script = (f"{script_head}\ni=0\nwhile [ $i -lt {n} ]; do\n  {cmd} < {infile} > /dev/null "
              f"|| exit 1\n  i=$((i+1))\ndone\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd}: failed: {proc.stderr[-1000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-csrc", metavar="DIR",
                    help="also time the C postdrop built from this copy of "
                         "src/fastpost/cli/csrc (e.g. `git archive` of an older commit)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it makes a user and a mount namespace)")
    pw = make_user("bench")
    base = Path(tempfile.mkdtemp(prefix="fastpost-subm-", dir="/tmp"))
    os.chmod(base, 0o755)
    pfx_root = Path(tempfile.mkdtemp(prefix="fastpost-subm-pfx-", dir="/tmp"))
    os.chmod(pfx_root, 0o755)
    inst = pfx = None
    try:
        now_bin, old_bin = base / "bin", base / "bin-before"
        for d in (now_bin, old_bin):
            d.mkdir(mode=0o755)
        inst = Instance(base, master_cf="postlog unix-dgram n - n - 1 postlogd\n",
                        main_cf={"command_directory": str(now_bin)})
        os.chmod(inst.dir, 0o755)
        os.chmod(inst.etc, 0o755)
        made = inst.command("link-commands", "-g", "-d", str(now_bin))
        assert made.returncode == 0, made.stderr
        # "before": the same instance seen through a second configuration directory
        # whose command_directory holds helpers built from launcher.c only
        etc_old = base / "etc-before"
        etc_old.mkdir(mode=0o755)
        (etc_old / "master.cf").write_text((inst.etc / "master.cf").read_text())
        (etc_old / "main.cf").write_text((inst.etc / "main.cf").read_text().replace(
            f"command_directory = {now_bin}", f"command_directory = {old_bin}"))
        from fastpost.cli import setgid
        from fastpost.mail.config import Config

        saved = dict(setgid.SOURCES)
        setgid.SOURCES["postdrop"] = "launcher.c"
        try:
            setgid.build_helpers(Config(str(etc_old)))
        finally:
            setgid.SOURCES.update(saved)
        base_bin = base / "bin-baseline"
        if args.baseline_csrc:
            base_bin.mkdir(mode=0o755)
            etc_base = base / "etc-baseline"
            etc_base.mkdir(mode=0o755)
            (etc_base / "master.cf").write_text((inst.etc / "master.cf").read_text())
            (etc_base / "main.cf").write_text((inst.etc / "main.cf").read_text().replace(
                f"command_directory = {now_bin}", f"command_directory = {base_bin}"))
            setgid.build_helpers(Config(str(etc_base)), csrc=os.path.abspath(args.baseline_csrc))
        front = REPO / ".venv" / "bin" / "fastpost-sendmail"
        shutil.copy(front, now_bin / "fp-sendmail-c")
        os.chmod(now_bin / "fp-sendmail-c", 0o755)
        inst.start()
        pfx = PostfixInstance(pfx_root)
        pfx.start()

        msg_file = base / "message"
        msg_file.write_bytes(MESSAGE)
        stream_file = base / "stream"
        stream_file.write_bytes(maildrop.encode(maildrop.DropMessage(
            pw.pw_name, [("rcpt@example.net", "", 0)], MESSAGE)))
        for f in (msg_file, stream_file):
            os.chmod(f, 0o644)
        user = f"setpriv --reuid={pw.pw_uid} --regid={pw.pw_gid} --init-groups"
        env = "env -i PATH=/usr/bin:/bin"
        boot = (f"import sys; sys.path[:0] = {[str(REPO / 'src')] + setgid._import_roots()[1:]!r}; "
                "from fastpost.cli.sendmail import main; sys.exit(main(sys.argv[1:]))")
        python = setgid._interpreter()
        variants = {
            "empty loop (setpriv + true)": ("", f"{user} /bin/true"),
            "fastpost now: C sendmail -> C postdrop":
                ("", f"{env} {user} {now_bin}/fp-sendmail-c -c {inst.etc} rcpt@example.net"),
            "fastpost before: Python sendmail -> Python postdrop":
                ("", f"{env} {user} {python} -I -S -B -c \"{boot}\" -c {etc_old} rcpt@example.net"),
            "Postfix 3.7: sendmail -> postdrop":
                (f"mount --bind {pfx.etc}/main.cf /etc/postfix/main.cf || exit 99",
                 f"{env} {user} /usr/sbin/sendmail rcpt@example.net"),
            "helper alone: C postdrop": ("", f"{env} {user} {now_bin}/fastpost-postdrop"),
            "helper alone: Python postdrop": ("", f"{env} {user} {old_bin}/fastpost-postdrop"),
        }
        if args.baseline_csrc:
            variants["helper alone: C postdrop, --baseline-csrc"] = (
                "", f"{env} {user} {base_bin}/fastpost-postdrop")
        inputs = {name: (stream_file if name.startswith("helper") else msg_file) for name in variants}
        results: dict = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, (head, cmd) in variants.items():
                took, cpu = loop(head, cmd, args.messages, str(inputs[name]))
                results[name].append((took, cpu))
                for p in (inst.queue / "maildrop").iterdir():
                    p.unlink()
        empty_cpu = statistics.median(c for _, c in results["empty loop (setpriv + true)"])
        empty_t = statistics.median(t for t, _ in results["empty loop (setpriv + true)"])
        n = args.messages
        print(f"{n} submissions per run, {args.runs} interleaved runs, as {pw.pw_name} "
              f"(not in group postdrop); the empty loop's cost subtracted")
        print(f"{'variant':<52} {'CPU ms/msg':>18} {'ms/msg (wall)':>18}")
        for name, vals in results.items():
            if name.startswith("empty"):
                print(f"{name:<52} {1000 * empty_cpu / n:>8.2f} (not subtr.) "
                      f"{1000 * empty_t / n:>8.2f}")
                continue
            cpus = [1000 * (c - empty_cpu) / n for _, c in vals]
            walls = [1000 * (t - empty_t) / n for t, _ in vals]
            print(f"{name:<52} {statistics.median(cpus):>6.2f} [{min(cpus):.2f}-{max(cpus):.2f}]"
                  f" {statistics.median(walls):>6.2f} [{min(walls):.2f}-{max(walls):.2f}]")
    finally:
        if pfx is not None:
            pfx.stop()
        if inst is not None:
            inst.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(pfx_root, ignore_errors=True)
        remove_users()
    return 0


if __name__ == "__main__":
    sys.exit(main())
