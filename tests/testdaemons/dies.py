"""Test daemon: fails at start-up, every time (the master must throttle it)."""

from fastpost.server import single_server_main


def pre_init(ctx):
    raise RuntimeError("this daemon cannot start")


def main(argv):
    single_server_main(argv, None, pre_init=pre_init)
