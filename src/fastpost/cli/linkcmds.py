"""fastpost link-commands: the sendmail, mailq and newaliases names, linked to fastpost.

Postfix counterpart: the sendmail_path, mailq_path and newaliases_path steps of
postfix-install.

    fastpost link-commands [-f] [-d DIR]

Makes DIR/sendmail, DIR/mailq and DIR/newaliases (default DIR: /usr/sbin) symbolic
links to the ``fastpost`` command; invoked under those names, fastpost acts as them
(cli/main.py ALIASES). An existing file that is not already such a link is left alone
and reported, unless -f replaces it (the old one is kept as NAME.pre-fastpost).

Not done yet: the setgid helper through which users outside setgid_group submit
(docs/accept.md); until then they need to be in setgid_group.

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
        pairs, args = getopt.getopt(argv, "c:d:f")
    except getopt.GetoptError as exc:
        print(f"link-commands: fatal: {exc}; usage: fastpost link-commands [-f] [-d DIR]",
              file=sys.stderr)
        return 64
    opts = dict(pairs)
    directory = opts.get("-d", "/usr/sbin")
    force = "-f" in opts
    if args:
        print("link-commands: fatal: usage: fastpost link-commands [-f] [-d DIR]", file=sys.stderr)
        return 64
    target = _fastpost_path()
    if target is None:
        print("link-commands: fatal: the fastpost command is not installed", file=sys.stderr)
        return 1
    status = 0
    for name in NAMES:
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
