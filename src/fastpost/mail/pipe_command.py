"""Deliver a message to an external command: privileges, environment, time limit, verdict.

Postfix counterpart: src/global/pipe_command.c, sys_exits.c, src/util/exec_command.c,
clean_env.c

run() starts the command with the message on its standard input and returns its
verdict as a delivery status:

* **privileges**: as root the child runs with uid:gid and no supplementary groups (it
  never runs as root: callers pass default_privs instead); otherwise as the caller;
* **no shell unless needed**: a command string made only of letters, digits, blanks and
  ``!@%-_=+:,./`` is split on blanks and executed directly; anything else, or a first
  word that is no program in ``/usr/bin:/bin`` (a shell built-in such as ``exit 67``),
  goes to ``/bin/sh -c``. ``shell`` (local_command_shell) forces that shell. An argv
  list (pipe(8)) is executed as given;
* **environment**: only ``PATH=/usr/bin:/bin``, the variables named in ``export``
  (export_environment) taken from this process's environment, and ``env``;
* **working directory**: ``cwd``, or this process's (the queue directory); the caller
  checks that the user may enter it;
* the child is the leader of a new session; after ``time_limit`` seconds it and its
  whole process group are killed (SIGKILL);
* up to OUTPUT_LIMIT bytes of standard output and standard error are kept (tabs and
  newlines become blanks, other unprintable bytes ``_``); more output is read and
  discarded so the command never blocks on a full pipe. A command that stops reading
  its input early is not an error.

Verdict (Postfix 3.7's texts, checked against it): exit 0 is success; a <sysexits.h>
code maps through fastpost.mail.sys_exits (75 and 71 defer, the rest bounce) with
``. Command output: ...`` appended; other codes bounce (5.3.0) with ``Command died
with status N: "command"``; a signal defers (4.3.0, ``Command died with signal N``);
the time limit bounces (5.3.0, ``Command time limit exceeded: "command"``). When a
failing command's output begins with an RFC 3463 code (``5.7.1 text``), that code
and the rest of the output are the verdict. A program that cannot be executed defers
(4.3.0, ``temporary failure. Command output: <tag>: fatal: execvp <program>: ...``).

Blocking: call it from a worker thread, never from an event loop.

Diagnostics: none raised; every failure is a CommandResult. ``warnings`` lists what
the caller should log (the time limit).
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from fastpost.mail import sys_exits

OK = "ok"
DEFER = "defer"
BOUNCE = "bounce"

#: Bytes of command output kept for the status text (Postfix's VSTREAM_BUFSIZE).
OUTPUT_LIMIT = 4096
#: The command search path every command gets (_PATH_DEFPATH).
DEFAULT_PATH = "/usr/bin:/bin"
SHELL = "/bin/sh"

_SIMPLE = frozenset("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ \t")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)\s*")


@dataclass
class CommandResult:
    status: str  # OK, DEFER or BOUNCE
    dsn: str  # enhanced status code
    text: str  # the reason (or "" on success)
    output: str = ""  # sanitized command output
    warnings: list = field(default_factory=list)


def sanitize_output(data: bytes) -> str:
    """Tabs and newlines to blanks, other unprintable bytes to ``_`` (Postfix's printable)."""
    out = bytearray(data)
    for i, c in enumerate(out):
        if c in (9, 10):
            out[i] = 32
        elif c < 32 or c > 126:
            out[i] = 95
    return out.decode("ascii")


def command_argv(command: str, shell: str = "") -> list[str]:
    """Return the argv that runs a command string (see the module docstring)."""
    if shell:
        return shell.split() + [command]
    if command.strip() and all(c in _SIMPLE for c in command):
        words = command.split()
        if "/" in words[0] or shutil.which(words[0], path=DEFAULT_PATH):
            return words
    return [SHELL, "-c", command]


def build_env(env: dict[str, str], export: list[str]) -> dict[str, str]:
    """PATH, the exported variables of this process, then the caller's variables."""
    out = {"PATH": DEFAULT_PATH}
    for name in export:
        if name in os.environ:
            out[name] = os.environ[name]
    out.update(env)
    return out


def _with_output(text: str, output: str) -> str:
    return f"{text}. Command output: {output}" if output else text


def _verdict(returncode: int, shown: str, output: str) -> CommandResult:
    """Turn a Popen return code into a CommandResult (the command exited or was killed)."""
    if returncode < 0:
        return CommandResult(DEFER, "4.3.0", _with_output(
            f'Command died with signal {-returncode}: "{shown}"', output), output)
    code = returncode
    if code == 0:
        return CommandResult(OK, "2.0.0", "", output)
    m = _ENHANCED.match(output)
    if m and m.group(1) in "45":
        dsn = f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        return CommandResult(DEFER if dsn[0] == "4" else BOUNCE, dsn, output[m.end():], output)
    meaning = sys_exits.lookup(code)
    if meaning is not None:
        return CommandResult(DEFER if meaning.soft else BOUNCE, meaning.dsn,
                             _with_output(meaning.text, output), output)
    return CommandResult(BOUNCE, "5.3.0", _with_output(
        f'Command died with status {code}: "{shown}"', output), output)


def run(*, data: bytes, command: str | None = None, argv: list[str] | None = None,
        uid: int | None = None, gid: int | None = None, env: dict[str, str] | None = None,
        export: list[str] = (), shell: str = "", cwd: str | None = None,
        time_limit: float = 1000, tag: str = "local") -> CommandResult:
    """Run a command with ``data`` on its standard input; see the module docstring."""
    if argv is None:
        if command is None:
            raise ValueError("run: need command or argv")
        argv = command_argv(command, shell)
        shown = command
    else:
        shown = argv[0]
    kwargs = {}
    if os.geteuid() == 0 and uid is not None:
        kwargs = {"user": uid, "group": gid, "extra_groups": []}
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=build_env(env or {}, list(export)), cwd=cwd, close_fds=True,
            start_new_session=True, **kwargs)
    except OSError as exc:
        why = f"{tag}: fatal: execvp {argv[0]}: {exc.strerror}"
        output = sanitize_output(why.encode("utf-8", "replace") + b"\n")
        return CommandResult(DEFER, "4.3.0", _with_output("temporary failure", output), output)
    deadline = time.monotonic() + time_limit
    output, timed_out = _exchange(proc, data, deadline)
    status = _wait(proc, deadline if not timed_out else time.monotonic())
    if status is None:
        timed_out = True
    shown_output = sanitize_output(output)
    if timed_out:
        return CommandResult(BOUNCE, "5.3.0", _with_output(
            f'Command time limit exceeded: "{shown}"', shown_output), shown_output,
            warnings=["pipe_command_read: read time limit exceeded"])
    return _verdict(status, shown, shown_output)


def _exchange(proc: subprocess.Popen, data: bytes, deadline: float) -> tuple[bytes, bool]:
    """Feed stdin and collect output until EOF, the child's exit, or the deadline."""
    stdin, stdout = proc.stdin, proc.stdout
    os.set_blocking(stdin.fileno(), False)
    os.set_blocking(stdout.fileno(), False)
    kept = bytearray()
    view = memoryview(data)
    sel = selectors.DefaultSelector()
    try:
        if view:
            sel.register(stdin, selectors.EVENT_WRITE)
        else:
            stdin.close()
        sel.register(stdout, selectors.EVENT_READ)
        exited_at = None
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                return bytes(kept), True
            if exited_at is not None and now - exited_at > 0.05:
                break  # the command is gone; a background child may hold the pipe open
            wait = min(deadline - now, 0.05 if exited_at is not None else 0.5)
            for key, _ in sel.select(wait):
                if key.fileobj is stdin:
                    try:
                        n = os.write(stdin.fileno(), view[:65536])
                        view = view[n:]
                    except BlockingIOError:
                        continue
                    except OSError:
                        # EPIPE: the command stopped reading; its exit status decides.
                        view = view[len(view):]
                    if not view:
                        sel.unregister(stdin)
                        stdin.close()
                else:
                    try:
                        chunk = os.read(stdout.fileno(), 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(stdout)
                        continue
                    room = OUTPUT_LIMIT - len(kept)
                    if room > 0:
                        kept += chunk[:room]
            if exited_at is None and proc.poll() is not None:  # reaps; wait() returns it
                exited_at = time.monotonic()
        return bytes(kept), False
    finally:
        sel.close()
        for f in (stdin, stdout):
            try:
                f.close()
            except OSError:
                pass


def _wait(proc: subprocess.Popen, deadline: float) -> int | None:
    """Wait for the child until the deadline, else kill its process group.

    Return its Popen return code (negative: killed by that signal), None after a kill.
    """
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return None
