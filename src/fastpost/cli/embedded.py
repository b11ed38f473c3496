"""fastpost embedded-config [--smtp HOST:PORT] DIR: write the no-root development configuration.

Creates DIR/etc/main.cf and DIR/etc/master.cf from the templates in
fastpost/embedded/ (queue under DIR/spool, mail under DIR/mail, SMTP on
127.0.0.1:2525, logs on stdout), unless they already exist, and prints the
configuration directory. ``./dev run`` uses it before ``fastpost start-fg``
(``FASTPOST_SMTP=127.0.0.1:2526 ./dev run`` passes ``--smtp``, for a machine where 2525
is taken). ``--smtp`` only applies when master.cf is written, not to an existing one.

Diagnostics: an unwritable DIR is reported with the path and exit status 73; a bad
--smtp value with exit status 64.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from importlib import resources


def main(argv: list[str]) -> int:
    smtp = "127.0.0.1:2525"
    if len(argv) == 3 and argv[0] == "--smtp":
        smtp, argv = argv[1], argv[2:]
        host, _, port = smtp.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            print(f"fastpost embedded-config: --smtp {smtp}: expected HOST:PORT", file=sys.stderr)
            return 64
    if len(argv) != 1:
        print("usage: fastpost embedded-config [--smtp HOST:PORT] DIR", file=sys.stderr)
        return 64
    root = os.path.abspath(argv[0])
    etc = os.path.join(root, "etc")
    if os.geteuid() == 0:
        # Run as root, the master drops privileges for its workers: they need an
        # account of their own (created at the first start if missing), never root.
        user, group = "postfix", "postdrop"
    else:
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
    try:
        for sub in ("etc", "spool", "data", "mail"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        if os.geteuid() == 0:
            # local writes each user's Maildir as that user: they need to create it.
            os.chmod(os.path.join(root, "mail"), 0o1777)
        for name in ("main.cf", "master.cf"):
            target = os.path.join(etc, name)
            if os.path.exists(target):
                continue
            text = resources.files("fastpost.embedded").joinpath(name).read_text()
            text = text.replace("@ROOT@", root).replace("@USER@", user).replace("@GROUP@", group)
            text = text.replace("127.0.0.1:2525", smtp)
            with open(target + ".tmp", "w") as fh:
                fh.write(text)
            os.replace(target + ".tmp", target)
    except OSError as exc:
        print(f"fastpost embedded-config: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 73
    print(etc)
    return 0
