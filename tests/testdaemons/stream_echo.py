"""Test daemon: the line protocol on the multi skeleton, as async streams."""

from fastpost.server import multi_server_main
from testdaemons.lines import stream_session


def main(argv):
    multi_server_main(argv, stream_session)
