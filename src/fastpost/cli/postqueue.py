"""fastpost queue: list the queue, as postqueue(1) does; and the mailq command.

Postfix counterpart: src/postqueue/postqueue.c, showq_compat.c, showq_json.c; the
``mailq`` and ``sendmail -bp`` entry points of src/sendmail/sendmail.c.

    fastpost queue [-c config_dir] -p     mailq listing (fastpost.mail.queue.showq)
    fastpost queue [-c config_dir] -j     one JSON object per message
    fastpost queue [-c config_dir] -f     flush (qmgr)            } need the daemons:
    fastpost queue [-c config_dir] -i id  deliver one (flush)     } not available yet,
    fastpost queue [-c config_dir] -s site  flush a site (flush)  } exit 69 with a note
    mailq [-c config_dir] [-v]            the same as -p

The listing is read from the queue index directly, the way postqueue works as the
super-user while the mail system is down. Unprivileged users need the showq service,
which comes with the daemons (not yet): without access to the queue directory the
command says so and exits 69 (EX_UNAVAILABLE).

Parameters: queue_directory, enable_long_queue_ids.
Diagnostics: ``postqueue: fatal: ...`` on standard error with exit 1 (bad option,
configuration error, unusable queue) or 69 (a service that is not available).
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


def main(argv: list[str], prog: str = "postqueue") -> int:
    tool = Tool(prog)
    try:
        pairs, args = getopt.getopt(argv, "c:fi:jps:v")
    except getopt.GetoptError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return tool.fatal(USAGE)
    config_dir = None
    mode = None
    for opt, val in pairs:
        if opt == "-c":
            config_dir = val
        elif opt in ("-f", "-j", "-p"):
            mode = opt[1]
        elif opt in ("-i", "-s"):
            mode = opt[1]
    if args or mode is None:
        return tool.fatal(USAGE)
    try:
        if mode in ("p", "j"):
            return _list(tool, config_dir, mode)
        what = {"f": "flushing the queue needs the qmgr service",
                "i": "delivering one message now needs the flush service",
                "s": "flushing a site needs the flush service"}[mode]
        print(f"{prog}: fatal: {what}, which fastpost does not have yet", file=sys.stderr)
        return EX_UNAVAILABLE
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
