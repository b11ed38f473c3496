"""Set-gid helpers: how users outside setgid_group submit mail and query the queue.

Postfix counterpart: the set-gid postdrop(1) and postqueue(1) programs.

Two parts (design and security argument: docs/submission.md):

``build_helpers(cfg)`` (run as root by ``fastpost -c DIR link-commands -g``) compiles
``csrc/postdrop.c`` as ``$command_directory/fastpost-postdrop`` and ``csrc/launcher.c``
as ``$command_directory/fastpost-postqueue``, mode 2755, owner root, group
setgid_group. postdrop.c takes a well-formed maildrop stream itself (in C: no
interpreter start) and runs the Python helper below for everything else, with the
same input; launcher.c always runs it.
Each binary has fixed at build time: the Python interpreter, the directories fastpost
is imported from, its mode, and the configuration directory DIR. The interpreter is
this Python, or /usr/bin/pythonX.Y when other users cannot execute this one. Every one of those
paths (and each directory above it) must belong to root and not be writable by others
(a sticky directory such as /tmp is accepted), or nothing is installed.

``launched(argv)`` is what those binaries run, as ``python -I -S -B -c BOOT MODE CONFIG --
ARGS`` with the caller's real uid and the effective group setgid_group:

    postdrop    reads a maildrop stream (fastpost.mail.maildrop) on standard input,
                checks it is complete and well formed, rewrites it without any named
                attribute but ``verify=1`` (so nothing the caller adds can claim to
                be a requeue or another user), stores it in $queue_directory/maildrop (the file belongs
                to the caller's uid: that is the uid pickup logs) and wakes pickup
    postqueue   fastpost queue -p|-j|-f|-s SITE|-i ID against CONFIG (a -c of the
                caller's is refused): showq and flush are reached in public/

Parameters: command_directory, setgid_group, queue_directory, message_size_limit,
pickup_service_name, authorized_submit_users (postdrop: ``postdrop: fatal: User
NAME(UID) is not allowed to submit mail``, exit 1, as Postfix's), authorized_mailq_users
and authorized_flush_users (postqueue, fastpost.cli.postqueue). Exit codes (sysexits):
64 usage, 65 a malformed stream, 73 stream
too large, 75 cannot write the file (nothing is left behind). A main.cf error is
Postfix's: ``postdrop: fatal: PATH, line N: missing '=' after attribute name: "TEXT"``
(or the value error of a parameter postdrop reads), exit 1 for postdrop and 69 for
postqueue, as Postfix 3.7's; its warnings (a continuation line with nothing to
continue, a parameter set again to another value) go to standard error first.
``build_helpers`` raises HelperError naming the path and the reason.
"""

from __future__ import annotations

import getopt
import grp
import os
import shutil
import site
import stat
import subprocess
import sys
import tempfile

NAMES = {"postdrop": "fastpost-postdrop", "postqueue": "fastpost-postqueue"}
#: The C source of each helper (csrc/): postdrop.c takes a well-formed stream itself and
#: starts the Python helper for everything else; launcher.c always starts it.
SOURCES = {"postdrop": "postdrop.c", "postqueue": "launcher.c"}
EX_USAGE, EX_DATAERR, EX_CANTCREAT, EX_TEMPFAIL = 64, 65, 73, 75
#: the exit status of a main.cf error, as Postfix 3.7's postdrop and postqueue have it
CONFIG_FATAL = {"postdrop": 1, "postqueue": 69}

#: Set by launched(): the process runs as a set-gid helper (do not look for one again).
IN_HELPER = False


class HelperError(Exception):
    """The helpers cannot be built or installed (the text names the path and why)."""


def helper_path(cfg, mode: str) -> str | None:
    """The installed set-gid helper for ``mode`` of the instance ``cfg``, or None."""
    path = os.path.join(cfg.get("command_directory"), NAMES[mode])
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISGID and st.st_uid == 0:
        return path
    return None


# -- building ------------------------------------------------------------------------


def _c_string(text: str) -> str:
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        if 32 <= byte < 127 and ch not in '"\\?':
            out.append(ch)
        else:
            out.append("\\%03o" % byte)
    return '"' + "".join(out) + '"'


def _check_trusted(path: str) -> None:
    """path and every directory above it: root's, not writable by group or others
    (a sticky directory is accepted: nobody can replace another user's entry in it)."""
    path = os.path.abspath(path)
    while True:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise HelperError(f"{path}: {exc.strerror}") from None
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if st.st_uid != 0:
            raise HelperError(f"{path}: not owned by root; a set-gid helper cannot trust it")
        if writable and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
            raise HelperError(f"{path}: writable by group or others; a set-gid helper "
                              f"cannot trust it")
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _everyone_may_run(path: str) -> bool:
    """Whether every user can reach and execute path (o+x on it and each directory)."""
    path = os.path.abspath(path)
    while True:
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _interpreter() -> str:
    """This Python, or the system's of the same version when users cannot run this one
    (a virtualenv's interpreter under /root, for example)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        if _everyone_may_run(candidate):
            return candidate
    raise HelperError(f"{os.path.realpath(sys.executable)}: users cannot execute it, and "
                      f"there is no /usr/bin/python{version}")


def _import_roots() -> list[str]:
    import fastpost

    roots = [os.path.dirname(os.path.dirname(os.path.abspath(fastpost.__file__)))]
    for d in site.getsitepackages():
        if os.path.isdir(d) and d not in roots:
            roots.append(d)
    return roots


def copy_sources(source: str, work: str) -> None:
    """Copy a csrc/ program and the headers it shares (csrc/*.h) into ``work``."""
    shutil.copy(source, os.path.join(work, os.path.basename(source)))
    csrc = os.path.dirname(source)
    for name in sorted(os.listdir(csrc)):
        if name.endswith(".h"):
            shutil.copy(os.path.join(csrc, name), os.path.join(work, name))


def build_helpers(cfg, *, cc: str = "cc", csrc: str | None = None) -> list[str]:
    """Compile and install both helpers for the instance ``cfg``; return their paths.
    ``csrc``: another copy of the C sources (benchmarks compare builds)."""
    if os.geteuid() != 0:
        raise HelperError("only the super-user can install set-gid helpers")
    group = cfg.get("setgid_group")
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise HelperError(f"setgid_group {group}: no such group") from None
    directory = cfg.get("command_directory")
    python = _interpreter()
    roots = _import_roots()
    config_dir = os.path.realpath(cfg.config_dir)
    for path in [python, directory, config_dir, os.path.join(config_dir, "main.cf"), *roots]:
        _check_trusted(path)
    compiler = shutil.which(cc)
    if compiler is None:
        raise HelperError(f"{cc}: no C compiler found (install gcc)")
    boot = (f"import sys; sys.path[:0] = {roots!r}; "
            "from fastpost.cli.setgid import launched; sys.exit(launched(sys.argv[1:]))")
    csrc = csrc or os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
    installed = []
    with tempfile.TemporaryDirectory(prefix="fastpost-launcher-") as work:
        for mode, name in NAMES.items():
            source = os.path.join(csrc, SOURCES[mode])
            copy_sources(source, work)
            with open(os.path.join(work, "launcher_conf.h"), "w") as fh:
                for key, value in (("FP_PYTHON", python), ("FP_BOOT", boot), ("FP_MODE", mode),
                                   ("FP_CONFIG", config_dir), ("FP_NAME", name)):
                    fh.write(f"#define {key} {_c_string(value)}\n")
            binary = os.path.join(work, name)
            proc = subprocess.run([compiler, "-O2", "-Wall", "-o", binary,
                                   os.path.join(work, SOURCES[mode])],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise HelperError(f"{source}: the compiler failed: {proc.stderr.strip()}")
            target = os.path.join(directory, name)
            tmp = os.path.join(directory, f".{name}.new")
            shutil.copyfile(binary, tmp)
            os.chown(tmp, 0, gid)  # before the mode: chown clears the set-gid bit
            os.chmod(tmp, 0o2755)
            os.rename(tmp, target)
            installed.append(target)
    return installed


# -- running as the helper ----------------------------------------------------------


def _say(prog: str, text: str) -> None:
    print(f"{prog}: {text}", file=sys.stderr, flush=True)


def _postdrop(cfg, args: list[str]) -> int:
    from fastpost.cli.sendmail import wake_pickup
    from fastpost.mail import maildrop

    prog = "postdrop"
    if args:
        _say(prog, "fatal: usage: postdrop (a maildrop stream on standard input)")
        return EX_USAGE
    from fastpost.cli import authorized

    refusal = authorized.check(cfg, "submit")
    if refusal is not None:  # Postfix's postdrop exits 1
        _say(prog, f"fatal: {refusal[1]}")
        authorized.log_refusal(cfg, prog, refusal[1])
        return refusal[0] or 1
    from fastpost.mail.maincf import ConfigError

    try:
        limit = cfg.get_int("message_size_limit")
        queue = cfg.get("queue_directory")
        service = cfg.get("pickup_service_name")
    except ConfigError as exc:  # a value (e.g. a $name that is not defined)
        _say(prog, f"fatal: {exc}")
        return CONFIG_FATAL[prog]
    # the stream's records add a few bytes per line to the content: allow for them
    cap = limit * 2 + (1 << 20) if limit > 0 else None
    chunks, size = [], 0
    while True:
        data = sys.stdin.buffer.read1(1 << 16)
        if not data:
            break
        size += len(data)
        if cap is not None and size > cap:
            _say(prog, f"fatal: uid={os.getuid()}: message too large")
            return EX_CANTCREAT
        chunks.append(data)
    try:
        msg = maildrop.parse(b"".join(chunks))
    except maildrop.MaildropError as exc:
        _say(prog, f"fatal: uid={os.getuid()}: malformed input: {exc}")
        return EX_DATAERR
    # nothing named but sendmail -bv's verify=1 (a report to the caller's own sender):
    # no requeue, no uid or client of the caller's choosing
    msg.attrs = [(k, v) for k, v in msg.attrs if (k, v) == ("verify", "1")]
    msg.arrival = 0.0  # postdrop's own time
    directory = os.path.join(queue, "maildrop")
    try:
        maildrop.drop(directory, maildrop.encode(msg))
    except OSError as exc:
        _say(prog, f"fatal: {directory}: cannot write the message: {exc.strerror}")
        return EX_TEMPFAIL
    wake_pickup(queue, service)
    return 0


def _postqueue(config_dir: str, args: list[str]) -> int:
    from fastpost.cli import postqueue

    try:
        pairs, rest = getopt.getopt(args, "fi:jps:v")
    except getopt.GetoptError as exc:
        _say("postqueue", f"fatal: {exc} (the configuration is fixed for this command)")
        return EX_USAGE
    if rest:
        _say("postqueue", "fatal: usage: postqueue -f | -i queue_id | -j | -p | -s site")
        return EX_USAGE
    return postqueue.main(["-c", config_dir, *args])


def launched(argv: list[str]) -> int:
    """Entry point of the set-gid binaries: MODE CONFIG -- ARGS..."""
    global IN_HELPER
    IN_HELPER = True
    if len(argv) < 3 or argv[0] not in NAMES or argv[2] != "--":
        _say("fastpost-launcher", "fatal: bad invocation")
        return EX_USAGE
    mode, config_dir, args = argv[0], argv[1], argv[3:]
    from fastpost.mail.config import Config, ConfigError

    try:
        cfg = Config(config_dir)
    except ConfigError as exc:
        _say(mode, f"fatal: {exc}")
        return CONFIG_FATAL[mode]
    # Postfix's warnings about main.cf, before anything else (the compiled postdrop,
    # which hands a request here only before printing its own, words them the same)
    from fastpost.mail.maincf import warning_lines

    for text in warning_lines(cfg):
        _say(mode, f"warning: {text}")
    if mode == "postdrop":
        # the global parameters' values, judged as Postfix's postdrop judges them
        from fastpost.mail.mainvalues import judge

        try:
            warnings, fatal = judge(cfg)
        except ConfigError as exc:
            warnings, fatal = [], str(exc)
        for text in warnings:
            _say(mode, f"warning: {text}")
        if fatal is not None:
            _say(mode, f"fatal: {fatal}")
            return CONFIG_FATAL[mode]
        return _postdrop(cfg, args)
    return _postqueue(config_dir, args)


__all__ = ["HelperError", "NAMES", "build_helpers", "helper_path", "launched"]
