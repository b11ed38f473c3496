"""fastpost queue: list the queue, as postqueue(1) does; and the mailq command.

Postfix counterpart: src/postqueue/postqueue.c, showq_compat.c, showq_json.c; the
``mailq`` and ``sendmail -bp`` entry points of src/sendmail/sendmail.c.

    fastpost queue [-c config_dir] -p       mailq listing (fastpost.mail.queue.showq)
    fastpost queue [-c config_dir] -j       one JSON object per message
    fastpost queue [-c config_dir] -f       deliver all queued mail now (trigger qmgr AFDI)
    fastpost queue [-c config_dir] -i id    deliver that deferred message now
    fastpost queue [-c config_dir] -s site  deliver the deferred mail for a site now
    mailq [-c config_dir] [-v]              the same as -p

``-f`` asks qmgr to retry every deferred message ignoring retry times and
defer_transports, and to forget dead destinations (Postfix's postqueue -f). ``-i`` and
``-s`` move the deferred messages concerned (by queue ID; by a recipient domain, which
the queue index knows, so unlike Postfix no fast_flush_domains log is needed and any
site can be flushed) to the incoming queue and wake qmgr (``I``; ``FI`` for a site,
whose destination may have been declared dead). Those two change the queue index, so
they need write access to it (root or mail_owner); otherwise they exit 69.

The listing is read from the queue index directly, the way postqueue works as the
super-user while the mail system is down. Unprivileged users need the showq service,
which does not exist yet: without access to the queue directory the command says so
and exits 69 (EX_UNAVAILABLE).

Parameters: queue_directory, enable_long_queue_ids.
Diagnostics: ``postqueue: fatal: ...`` on standard error with exit 1 (bad option,
configuration error, unusable queue, mail system not running for -f/-i/-s) or 69 (no
access to the queue index); ``postqueue: warning: ID: no such deferred message``.
"""

from __future__ import annotations

import getopt
import os
import sys

from fastpost.cli.queuetool import Tool, ToolFatal

USAGE = "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site"
EX_UNAVAILABLE = 69


def _list(tool: Tool, config_dir: str | None, mode: str) -> int:
    from fastpost.mail.queue.showq import write_json, write_mailq

    cfg = tool.config(config_dir)
    qdir = cfg.get("queue_directory")
    index_dir = os.path.join(qdir, "index")
    if (os.path.exists(qdir) and not os.access(qdir, os.R_OK | os.X_OK)) or \
            (os.path.exists(index_dir) and not os.access(index_dir, os.R_OK | os.X_OK)):
        print(f"{tool.prog}: fatal: cannot read the queue in {qdir}: listing the queue as an unprivileged "
              "user needs the showq service, which fastpost does not have yet", file=sys.stderr)
        return EX_UNAVAILABLE
    store = tool.open_store(cfg)
    try:
        if mode == "j":
            write_json(store, sys.stdout)
        else:
            write_mailq(store, sys.stdout, cfg.get_bool("enable_long_queue_ids"))
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    finally:
        store.close()
    return 0


def _flush(tool: Tool, config_dir: str | None, mode: str, arg: str) -> int:
    from fastpost.mail import ipc
    from fastpost.mail.queue import index as ix

    cfg = tool.config(config_dir)
    qdir = cfg.get("queue_directory")
    qmgr = cfg.get("queue_service_name")
    if mode == "f":
        data = ipc.QMGR_FLUSH
    else:
        index_dir = os.path.join(qdir, "index")
        if not os.access(index_dir, os.W_OK | os.X_OK):
            print(f"{tool.prog}: fatal: cannot change the queue in {qdir}: delivering mail now "
                  "needs write access to the queue index (run as root)", file=sys.stderr)
            return EX_UNAVAILABLE
        store = tool.open_store(cfg)
        try:
            if mode == "i":
                ids = [arg]
            else:
                ids = list(store.by_domain(arg.lower().rstrip(".")))
            moved = 0
            for start in range(0, len(ids), 1000):
                with store.edit() as ed:
                    for qid in ids[start:start + 1000]:
                        info = ed.get(qid)
                        if info is not None and info.state == ix.DEFERRED:
                            moved += ed.set_state(qid, ix.INCOMING)
            if mode == "i" and not moved:
                tool.warn(f"{arg}: no such deferred message")
        finally:
            store.close()
        data = ipc.QMGR_SCAN_INCOMING if mode == "i" else ipc.QMGR_FLUSH_DEAD + ipc.QMGR_SCAN_INCOMING
    try:
        ipc.mail_trigger(qdir, qmgr, data, timeout=cfg.get_time("trigger_timeout"))
    except ipc.IPCError as exc:
        return tool.fatal(f"cannot flush the mail queue: the mail system is down ({exc})")
    return 0


def main(argv: list[str], prog: str = "postqueue") -> int:
    tool = Tool(prog)
    try:
        pairs, args = getopt.getopt(argv, "c:fi:jps:v")
    except getopt.GetoptError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return tool.fatal(USAGE)
    config_dir = None
    mode = None
    arg = ""
    for opt, val in pairs:
        if opt == "-c":
            config_dir = val
        elif opt in ("-f", "-j", "-p"):
            mode = opt[1]
        elif opt in ("-i", "-s"):
            mode = opt[1]
            arg = val
    if args or mode is None:
        return tool.fatal(USAGE)
    try:
        if mode in ("p", "j"):
            return _list(tool, config_dir, mode)
        return _flush(tool, config_dir, mode, arg)
    except ToolFatal as exc:
        return tool.fatal(str(exc))


def mailq(argv: list[str]) -> int:
    """The mailq command (sendmail -bp): the queue listing."""
    config_dir = None
    try:
        pairs, args = getopt.getopt(argv, "c:C:v")
    except getopt.GetoptError as exc:
        print(f"mailq: fatal: {exc}", file=sys.stderr)
        return 64
    for opt, val in pairs:
        if opt in ("-c", "-C"):
            config_dir = val
    tool = Tool("mailq")
    try:
        return _list(tool, config_dir, "p")
    except ToolFatal as exc:
        return tool.fatal(str(exc))
