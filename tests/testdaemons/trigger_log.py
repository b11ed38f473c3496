"""Test daemon: a trigger server that appends every trigger it gets to a file.

master.cf: ``... testdaemons.trigger_log /path/to/file``. The file is opened in
pre_init (as root, before any chroot), so the worker can write it afterwards.
"""

import os

from fastpost.server import trigger_server_main


def pre_init(ctx):
    path = ctx.argv[0]
    ctx.state_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)


def service(data, ctx):
    os.write(ctx.state_fd, b"%d %s\n" % (os.getpid(), data))


def main(argv):
    trigger_server_main(argv, service, pre_init=pre_init)
