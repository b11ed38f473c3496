"""Daemon skeletons: what every fastpost daemon's main() hands itself to.

Postfix counterpart: src/master/{single,multi,trigger}_server.c, mail_server.h

    from fastpost.server import multi_server_main
    def main(argv):
        multi_server_main(argv, MyProtocol, params=("smtpd_banner",), pre_init=open_maps)

See fastpost.server.lifecycle for the start-up order, privileges and retirement, and
docs/master.md for how the master runs daemons.
"""

from fastpost.server.lifecycle import ServerContext
from fastpost.server.multi import multi_server_main
from fastpost.server.single import single_server_main
from fastpost.server.trigger import trigger_server_main

__all__ = ["ServerContext", "multi_server_main", "single_server_main", "trigger_server_main"]
