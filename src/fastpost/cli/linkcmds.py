"""fastpost link-commands: the sendmail, mailq and newaliases names, linked to fastpost.

Postfix counterpart: the sendmail_path, mailq_path and newaliases_path steps of
postfix-install.

    fastpost [-c CONFIG] link-commands [-f] [-g] [-d DIR]

Makes DIR/sendmail, DIR/mailq and DIR/newaliases (default DIR: /usr/sbin) symbolic
links to the ``fastpost`` command; invoked under those names, fastpost acts as them
(cli/main.py ALIASES). sendmail links to ``fastpost-sendmail`` instead when that
compiled front end sits next to ``fastpost`` (``./dev build`` puts it there): it writes
plain submissions itself and runs the Python sendmail for everything else. An existing file that is not already such a link is left alone
and reported, unless -f replaces it (the old one is kept as NAME.pre-fastpost).

-g also compiles and installs the set-gid helpers of the instance CONFIG,
$command_directory/fastpost-postdrop and fastpost-postqueue (fastpost.cli.setgid,
docs/submission.md), through which users outside setgid_group submit mail and use
mailq and the queue's -f/-s/-i. Needs root and a C compiler.

Diagnostics: each name's outcome on standard error; exit 0 when every link is in
place, 1 otherwise, 64 for a usage error.
"""

from __future__ import annotations

import getopt
import os
import shutil
import sys

NAMES = ("sendmail", "mailq", "newaliases")


def _fastpost_path() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "fastpost")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("fastpost")


def main(argv: list[str]) -> int:
    try:
        pairs, args = getopt.getopt(argv, "c:d:fg")
    except getopt.GetoptError as exc:
        print(f"link-commands: fatal: {exc}; usage: fastpost link-commands [-f] [-g] [-d DIR]",
              file=sys.stderr)
        return 64
    opts = dict(pairs)
    directory = opts.get("-d", "/usr/sbin")
    force = "-f" in opts
    if args:
        print("link-commands: fatal: usage: fastpost link-commands [-f] [-g] [-d DIR]", file=sys.stderr)
        return 64
    if "-g" in opts:
        from fastpost.cli.setgid import HelperError, build_helpers
        from fastpost.mail.config import Config, ConfigError, config_directory

        try:
            for path in build_helpers(Config(config_directory(opts.get("-c")))):
                print(f"link-commands: {path}: set-gid helper installed", file=sys.stderr)
        except (HelperError, ConfigError, OSError) as exc:
            print(f"link-commands: fatal: {exc}", file=sys.stderr)
            return 1
    target = _fastpost_path()
    if target is None:
        print("link-commands: fatal: the fastpost command is not installed", file=sys.stderr)
        return 1
    status = 0
    # sendmail: the compiled front end next to the fastpost script when it was built
    # (./dev build; docs/submission.md "sendmail speed"); it runs Python for the rest
    front = os.path.join(os.path.dirname(target), "fastpost-sendmail")
    targets = {name: target for name in NAMES}
    if os.access(front, os.X_OK):
        targets["sendmail"] = front
    for name in NAMES:
        target = targets[name]
        path = os.path.join(directory, name)
        if os.path.islink(path) and os.readlink(path) == target:
            print(f"link-commands: {path}: already linked", file=sys.stderr)
            continue
        if os.path.lexists(path):
            if not force:
                print(f"link-commands: {path}: exists (another mail system's?); "
                      "left alone (-f replaces it)", file=sys.stderr)
                status = 1
                continue
            os.replace(path, path + ".pre-fastpost")
        try:
            tmp = path + ".fastpost-new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            print(f"link-commands: {path}: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        print(f"link-commands: {path} -> {target}", file=sys.stderr)
    return status
