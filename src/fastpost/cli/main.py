"""The ``fastpost`` command: one entry point, Postfix's command names as verbs.

Postfix counterpart: the postfix(1) command and the separate tools it ships.

    fastpost start|start-fg|stop|abort|reload|status|check|flush|set-permissions
    fastpost conf   ... (postconf)     fastpost map   ... (postmap)
    fastpost alias  ... (postalias)    fastpost queue ... (postqueue)
    fastpost super  ... (postsuper)    fastpost cat   ... (postcat)
    fastpost log    ... (postlog)      fastpost sendmail|mailq|newaliases ...

Invoked under the name ``sendmail``, ``mailq`` or ``newaliases`` (a link into
/usr/sbin made by ``fastpost link-commands``), it behaves as that command.

Each verb lives in its own module and is imported only when used, so that a command
starts without loading the daemons.

Diagnostics: an unknown verb prints the list of verbs and exits 64 (EX_USAGE).
"""

from __future__ import annotations

import importlib
import os
import sys

#: verb -> "module:function"; the function takes argv (without the verb) and returns
#: an exit status.
COMMANDS: dict[str, str] = {
    "conf": "fastpost.cli.postconf:main",
    "log": "fastpost.cli.postlog:main",
    "embedded-config": "fastpost.cli.embedded:main",
    "control": "fastpost.cli.control:main",
    "cat": "fastpost.cli.postcat:main",
    "queue": "fastpost.cli.postqueue:main",
    "super": "fastpost.cli.postsuper:main",
    "mailq": "fastpost.cli.postqueue:mailq",
    "map": "fastpost.cli.postmap:main",
    "alias": "fastpost.cli.postalias:main",
    "newaliases": "fastpost.cli.postalias:newaliases",
    "tls": "fastpost.cli.tls:main",
    "sendmail": "fastpost.cli.sendmail:main",
    "link-commands": "fastpost.cli.linkcmds:main",
}

#: The postfix(1) verbs, all served by one module.
CONTROL_VERBS = (
    "start", "start-fg", "stop", "abort", "reload", "status", "check", "flush",
    "set-permissions", "upgrade-configuration",
)

#: Names under which fastpost may be invoked directly (argv[0] basename).
ALIASES = {
    "sendmail": "sendmail",
    "mailq": "mailq",
    "newaliases": "newaliases",
    "postconf": "conf",
    "postmap": "map",
    "postalias": "alias",
    "postqueue": "queue",
    "postsuper": "super",
    "postcat": "cat",
    "postlog": "log",
}


def usage() -> str:
    verbs = sorted(set(COMMANDS) | set(CONTROL_VERBS))
    return "usage: fastpost [-c config_dir] VERB [args...]\nverbs: " + " ".join(verbs)


def dispatch(verb: str, argv: list[str]) -> int:
    """Run one verb and return its exit status."""
    target = COMMANDS.get(verb)
    if target is None and verb in CONTROL_VERBS and "control" in COMMANDS:
        target = COMMANDS["control"]
        argv = [verb] + argv
    if target is None:
        print(f"fastpost: unknown command '{verb}'\n{usage()}", file=sys.stderr)
        return 64
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)(argv) or 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastpost`` console script."""
    argv = list(sys.argv if argv is None else argv)
    name = os.path.basename(argv[0]) if argv else "fastpost"
    if name in ALIASES:
        return dispatch(ALIASES[name], argv[1:])
    args = argv[1:]
    # "fastpost -c DIR verb ..." as "postfix -c DIR start": pass -c on to the verb.
    prefix: list[str] = []
    while args and args[0] in ("-c", "-v", "-D"):
        if args[0] == "-c" and len(args) > 1:
            prefix += args[:2]
            args = args[2:]
        else:
            prefix.append(args[0])
            args = args[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stderr if not args else sys.stdout)
        return 64 if not args else 0
    if args[0] == "--version":
        from fastpost import __version__

        print(f"fastpost {__version__}")
        return 0
    return dispatch(args[0], prefix + args[1:])


if __name__ == "__main__":
    sys.exit(main())
