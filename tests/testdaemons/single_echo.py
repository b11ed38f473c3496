"""Test daemon: the line protocol on the single skeleton (one client per process)."""

from fastpost.server import single_server_main
from testdaemons.lines import stream_session


def main(argv):
    single_server_main(argv, stream_session)
