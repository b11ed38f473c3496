"""fastpost sendmail: the Sendmail-compatible submission command.

Postfix counterpart: src/sendmail/sendmail.c (sendmail(1)), with postdrop(1)'s part.

    fastpost [-c DIR] sendmail [options] [recipient ...]
    sendmail [options] [recipient ...]        (a link made by fastpost link-commands)

Reads a message on standard input and drops it into $queue_directory/maildrop
(fastpost.mail.maildrop), then wakes pickup, which hands it to cleanup. The file is on
disk (fsync) before the command exits 0; pickup logs who submitted it (the file's
owner). The maildrop directory belongs to mail_owner and setgid_group (mode 0730): the
command writes there directly when its user may (root, mail_owner, a member of
setgid_group, or the owner of a one-user instance such as `./dev run`); other users go
through the set-gid helper ``$command_directory/fastpost-postdrop`` (built by
``fastpost link-commands -g``: fastpost.cli.setgid, docs/submission.md), and without
it get EX_NOPERM with a message that says so.

Options, as Postfix's sendmail takes them:
    -t            recipients from To/Cc/Bcc (and Resent-*) too; Bcc: is removed
    -i, -oi       a line with only "." does not end the message
    -f, -r ADDR   envelope sender (default: the user's login name)
    -F NAME       the sender's full name (default: $NAME)
    -N LIST       DSN NOTIFY (never | success,delay,failure)
    -R full|hdrs  DSN RET;  -V ENVID  DSN envelope ID
    -C FILE|DIR   main.cf (its directory) to use;  -c DIR as for every fastpost verb
    -bm           read and queue a message (the default)
    -bp           list the queue (mailq);  -bi, -I: newaliases (-oA FILE: that file)
    -q            flush the queue;  -qR SITE, -qS SITE: that site;  -qI ID: one message
    -L LABEL      the name in log lines;  -v: more diagnostics
    ignored as in Postfix: -B type, -G, -h N, -m, -n, -o7 -o8 -om -od? -oe? and other
    -o letters, -U, -x, -c, -e ?, -p proto, -XV...
    -bs           SMTP on standard input and output (fastpost.cli.sendmail_bs)
    -bv           verify the recipients: a report is mailed to the sender, nothing is
                  delivered (pickup's verify.py); the message on stdin is optional;
                  prints "Mail Delivery Status Report will be mailed to <SENDER>."
    -bd, -bl      daemon mode, as Postfix's sendmail: ``fastpost start`` run in the
                  background (not waited for; its messages go to the mail log, and to
                  standard error only when that is a terminal) and exit 0; -bl is -bd (inet_interfaces decides which
                  connections are taken); with a recipient: ``fatal: daemon mode
                  requires no recipient``, exit 75
    -bh, -bH      ignored, as by Postfix (no host status database): exit 0
    any other -bX: ``fatal: unsupported: -bX``, exit 75, as Postfix's sendmail.

Input: line ends CR LF or LF (stored as LF); with -t, recipients from the headers are
added to those on the command line (as Postfix does).

Parameters: queue_directory, pickup_service_name, command_directory, setgid_group (in a
message), authorized_submit_users (-bm, -t, -bv, -bs: ``sendmail: fatal: User NAME(UID)
is not allowed to submit mail``, exit 75, as Postfix's; fastpost.cli.authorized).
A plain submission reads them with fastpost.mail.maincf.LiteConfig (no parameter
table unless a value holds a $name) and imports nothing else it does not need.
Exit codes (sysexits): 0 queued; 64 usage (no recipients, bad option); 65 bad input;
75 temporary failure (an unsupported -b mode, as Postfix's; cannot write the maildrop
file, e.g. a full disk: nothing is left behind; a main.cf error, named by file and
line, as Postfix 3.7's sendmail exits); 77 no permission to the maildrop; 78 no login
name for the uid.
"""

from __future__ import annotations

import errno
import os
import sys

# Kept lean: a plain submission imports only this module, fastpost.mail.maincf,
# fastpost.mail.maildrop and the record codec (docs/submission.md, "sendmail speed").

EX_OK, EX_USAGE, EX_DATAERR, EX_SOFTWARE = 0, 64, 65, 70
EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 75, 77, 78

#: cleanup_proto.FLAG_EXTRACT (sendmail -t), here to spare the import (a test checks it)
FLAG_EXTRACT = 0x40

#: Options that take an argument (the rest are flags); -q and -o are handled apart.
_WITH_ARG = set("BCFLNORVXbfhpr")


class Usage(Exception):
    pass


def _say(prog: str, text: str) -> None:
    print(f"{prog}: {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> tuple[dict, list[str]]:
    """Sendmail's command line: (options, recipients). Raises Usage."""
    opts: dict = {"mode": "m", "extract": False, "dots": True, "sender": None,
                  "fullname": None, "notify": None, "ret": None, "envid": None,
                  "config": None, "queue": None, "alias_file": None, "label": None,
                  "verbose": 0}
    args = list(argv)
    rcpts: list[str] = []
    while args:
        arg = args.pop(0)
        if arg == "--":
            rcpts.extend(args)
            break
        if not arg.startswith("-") or arg == "-":
            rcpts.append(arg)
            continue
        letter, rest = arg[1], arg[2:]
        if letter == "q":
            opts["queue"] = rest  # "" flush all; R/S site; I id; a time is ignored
            opts["mode"] = "q"
            continue
        if letter == "o":
            if not rest:
                if not args:
                    raise Usage("option requires an argument -- 'o'")
                rest = args.pop(0)
            if rest == "i":
                opts["dots"] = False
            elif rest.startswith("A"):
                opts["alias_file"] = rest[1:] or (args.pop(0) if args else "")
            continue  # -o7 -o8 -om -odb -oe? ...: ignored, as in Postfix
        if letter in _WITH_ARG:
            if not rest:
                if not args:
                    raise Usage(f"option requires an argument -- '{letter}'")
                rest = args.pop(0)
            if letter == "b":
                opts["mode"] = rest[:1]
            elif letter in ("f", "r"):
                opts["sender"] = rest
            elif letter == "F":
                opts["fullname"] = rest
            elif letter == "N":
                opts["notify"] = rest
            elif letter == "R":
                opts["ret"] = rest
            elif letter == "V":
                opts["envid"] = rest
            elif letter == "C":
                opts["config"] = rest if os.path.isdir(rest) else os.path.dirname(rest) or "."
            elif letter == "L":
                opts["label"] = rest
            continue  # -B -O -X -h -p: ignored
        # flags, possibly grouped (-ti)
        for ch in arg[1:]:
            if ch == "t":
                opts["extract"] = True
            elif ch == "i":
                opts["dots"] = False
            elif ch == "I":
                opts["mode"] = "i"
            elif ch == "v":
                opts["verbose"] += 1
            elif ch == "c":
                pass  # fastpost's -c DIR is taken before the options (see main)
            elif ch in "GUmnxe":
                pass  # ignored, as in Postfix
            else:
                raise Usage(f"invalid option -- '{ch}'")
    return opts, rcpts


def _notify_bits(text: str | None) -> int:
    if not text:
        return 0
    from fastpost.mail import cleanup_proto as P

    words = [w.strip().upper() for w in text.split(",") if w.strip()]
    if not words or any(w not in P.NOTIFY_BITS for w in words) or \
            ("NEVER" in words and len(words) > 1):
        raise Usage(f"bad -N option value: {text}")
    return P.notify_bits(words)


def read_message(stream, dots: bool) -> bytes:
    """Standard input as LF-ended lines; without -i a lone "." line ends it."""
    out = []
    for line in stream:
        if line.endswith(b"\r\n"):
            line = line[:-2] + b"\n"
        elif not line.endswith(b"\n"):
            line += b"\n"
        if dots and line == b".\n":
            break
        out.append(line)
    return b"".join(out)


def _may_write(path: str) -> bool:
    return os.access(path, os.W_OK | os.X_OK)




def _warn_main_cf(prog: str, cfg) -> None:
    """Postfix's warnings about main.cf (maincf.warning_lines), as its sendmail prints
    them (the compiled front end prints the same ones when it does the work itself);
    ConfigError when a global parameter's value is one Postfix's sendmail refuses
    (fastpost.mail.mainvalues)."""
    from fastpost.mail.maincf import ConfigError, warning_lines
    from fastpost.mail.mainvalues import judge

    for text in warning_lines(cfg):
        _say(prog, f"warning: {text}")
    # then the global parameters' values, as Postfix's sendmail judges them at start
    warnings, fatal = judge(cfg)
    for text in warnings:
        _say(prog, f"warning: {text}")
    if fatal is not None:
        raise ConfigError(fatal)


def submit(cfg, prog: str, opts: dict, rcpts: list[str], content: bytes) -> int:
    """Write the maildrop file and wake pickup; return the exit status."""
    from fastpost.mail import maildrop

    try:
        notify = _notify_bits(opts["notify"])
    except Usage as exc:
        _say(prog, f"fatal: {exc}")
        return EX_USAGE
    ret = None
    if opts["ret"]:
        from fastpost.mail import cleanup_proto as P

        ret = P.RET.get(opts["ret"].upper())
        if ret is None:
            _say(prog, f"fatal: bad -R option value: {opts['ret']}")
            return EX_USAGE
    sender = opts["sender"]
    if sender is None:
        import pwd

        try:
            sender = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            _say(prog, f"fatal: no login name found for user ID {os.getuid()}")
            return EX_CONFIG
    sender = sender.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    fullname = opts["fullname"] if opts["fullname"] is not None else os.environ.get("NAME")
    msg = maildrop.DropMessage(
        sender=sender, recipients=[(r, "", notify) for r in rcpts], content=content,
        flags=FLAG_EXTRACT if opts["extract"] else 0, fullname=fullname, ret=ret,
        envid=opts["envid"], attrs=[("verify", "1")] if opts["mode"] == "v" else [])
    status = drop_stream(cfg, prog, maildrop.encode(msg), verbose=opts["verbose"])
    if status == EX_OK and opts["mode"] == "v":  # Postfix 3.7's sendmail says so too
        print(f"Mail Delivery Status Report will be mailed to <{sender}>.", flush=True)
    return status


def drop_stream(cfg, prog: str, data: bytes, *, verbose: int = 0, name: str | None = None) -> int:
    """Store a maildrop stream: directly when the user may write into maildrop, else
    through the set-gid helper; wake pickup. Return the exit status."""
    from fastpost.mail import maildrop

    queue = cfg.get("queue_directory")
    directory = os.path.join(queue, "maildrop")
    if not _may_write(directory):
        from fastpost.cli.setgid import helper_path

        helper = helper_path(cfg, "postdrop")
        if helper is None:
            _say(prog, f"fatal: {directory}: no permission to submit mail (no set-gid "
                       f"helper {cfg.get('command_directory')}/fastpost-postdrop: ask the "
                       f"administrator to run fastpost link-commands -g, or to add you "
                       f"to group {cfg.get('setgid_group')})")
            return EX_NOPERM
        import subprocess

        proc = subprocess.run([helper], input=data)
        if proc.returncode == 0 and verbose:
            _say(prog, f"queued through {helper}")
        return proc.returncode
    try:
        name = maildrop.drop(directory, data, name=name)
    except OSError as exc:
        _say(prog, f"fatal: {directory}: cannot write the message: {exc.strerror}")
        return EX_TEMPFAIL
    if verbose:
        _say(prog, f"queued as maildrop file {name}")
    wake_pickup(queue, cfg.get("pickup_service_name"))
    return EX_OK


def wake_pickup(queue: str, service: str = "pickup") -> None:
    """Tell pickup there is mail (if it is not running, its wake-up timer finds it).

    A UNIX stream socket (what fastpost's master makes) is written through _socket,
    the C module itself: ``socket`` and fastpost.mail.ipc would cost more to import than
    the rest of a submission. Anything else (a FIFO, a datagram socket) goes through
    ipc.trigger.
    """
    import _socket

    path = os.path.join(queue, "public", service)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(path)
        sock.sendall(b"W")
        return
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return  # not running: its timer will find the file
        if exc.errno not in (errno.EPROTOTYPE, errno.ECONNREFUSED):
            return
    finally:
        sock.close()
    from fastpost.mail import ipc

    try:
        ipc.trigger(path, b"W", timeout=5.0)
    except (ipc.IPCError, OSError):
        pass


def _refused(cfg, prog: str) -> int | None:
    """authorized_submit_users: None when the real user may submit, else the exit
    status after Postfix's message (``User NAME(UID) is not allowed to submit mail``,
    EX_TEMPFAIL as Postfix's sendmail)."""
    from fastpost.cli import authorized

    refusal = authorized.check(cfg, "submit")
    if refusal is None:
        return None
    _say(prog, f"fatal: {refusal[1]}")
    authorized.log_refusal(cfg, prog, refusal[1])
    return EX_TEMPFAIL


def _daemon_mode(prog: str, config_dir: str | None, rcpts: list[str], verbose: int) -> int:
    """-bd and -bl as Postfix's sendmail does them: ``fastpost start`` in the background,
    not waited for (whether it starts, or finds the mail system running, it says in the
    mail log); 0 once it runs, 1 when it cannot be run.

    Postfix's start script writes its messages through postlog, which copies them to
    standard error only when that is a terminal: behind a sendmail -bd whose output
    goes to a file or pipe, Postfix prints nothing. The background start gets the
    same: sendmail's standard error when it is a terminal, else nothing (it was seen
    only under load, when the start's first words came before sendmail's output was
    read)."""
    import subprocess

    if rcpts:
        _say(prog, "fatal: daemon mode requires no recipient")
        return EX_TEMPFAIL
    argv = [sys.executable, "-m", "fastpost", "start"] + ["-v"] * verbose
    if config_dir:
        argv += ["-c", config_dir]
    try:
        try:
            to_terminal = sys.stderr.isatty()
        except (AttributeError, ValueError):  # closed or replaced standard error
            to_terminal = False
        quiet = None if to_terminal else subprocess.DEVNULL
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=quiet, stderr=quiet,
                         start_new_session=True)
    except OSError as exc:
        _say(prog, f"fatal: cannot run fastpost start: {exc.strerror}")
        return 1
    return EX_OK


def main(argv: list[str], prog: str = "sendmail") -> int:
    config_dir = None
    if len(argv) >= 2 and argv[0] == "-c":  # fastpost -c DIR sendmail ...
        config_dir, argv = argv[1], argv[2:]
    try:
        opts, rcpts = parse_args(argv)
    except Usage as exc:
        _say(prog, f"fatal: usage: {exc}")
        return EX_USAGE
    prog = opts["label"] or prog
    config_dir = opts["config"] or config_dir
    mode = opts["mode"]
    if mode in ("p", "q", "i", "d", "l"):  # Postfix's sendmail judges the values before
        # running postqueue, postalias or postfix start
        from fastpost.mail.mainvalues import refused as bad_values

        if bad_values(config_dir, prog):
            return EX_TEMPFAIL
    if mode == "p":
        from fastpost.cli.postqueue import mailq

        return mailq(["-c", config_dir] if config_dir else [])
    if mode == "i":
        from fastpost.cli.postalias import main as postalias
        from fastpost.cli.postalias import newaliases

        extra = ["-c", config_dir] if config_dir else []
        if opts["alias_file"]:
            return postalias(extra + [opts["alias_file"]])
        return newaliases(extra)
    if mode == "q":
        from fastpost.cli.postqueue import main as postqueue

        q = opts["queue"] or ""
        extra = ["-c", config_dir] if config_dir else []
        if q[:1] in ("R", "S") and q[1:]:
            return postqueue(extra + ["-s", q[1:]])
        if q[:1] == "I" and q[1:]:
            return postqueue(extra + ["-i", q[1:]])
        return postqueue(extra + ["-f"])
    if mode in ("d", "l"):
        return _daemon_mode(prog, config_dir, rcpts, opts["verbose"])
    if mode == "s":
        from fastpost.cli import sendmail_bs
        from fastpost.mail.config import Config, ConfigError, config_directory

        try:
            cfg = Config(config_directory(config_dir))
            _warn_main_cf(prog, cfg)
        except ConfigError as exc:  # Postfix's sendmail exits 75 on a main.cf error
            _say(prog, f"fatal: {exc}")
            return EX_TEMPFAIL
        refused = _refused(cfg, prog)
        if refused is not None:
            return refused
        return sendmail_bs.run(cfg)
    if mode in ("h", "H"):  # Postfix: ignored (it has no persistent host status)
        return EX_OK
    if mode not in ("m", "v"):
        _say(prog, f"fatal: unsupported: -b{mode}")
        return EX_TEMPFAIL
    if not rcpts and not opts["extract"]:
        _say(prog, "fatal: Recipient addresses must be specified on the command line "
                   "or via the -t option")
        return EX_USAGE
    from fastpost.mail.maincf import ConfigError, LiteConfig

    try:
        # main.cf without the parameter table: a full Config only if a value needs it
        cfg = LiteConfig(config_dir)
        _warn_main_cf(prog, cfg)
        refused = _refused(cfg, prog)
    except ConfigError as exc:  # as Postfix 3.7's sendmail: 75, the file and line named
        _say(prog, f"fatal: {exc}")
        return EX_TEMPFAIL
    if refused is not None:
        return refused
    if mode == "v" and sys.stdin.isatty():
        content = b""
    else:
        content = read_message(sys.stdin.buffer, opts["dots"])
    if mode == "v":
        content = content or b"Subject: address verification\n\n"
    return submit(cfg, prog, opts, rcpts, content)


__all__ = ["main", "parse_args", "read_message", "submit", "wake_pickup"]
