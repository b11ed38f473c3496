"""Fixtures for smtpd session tests: a real smtpd on loopback (both event loops)."""

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread

LOOPS = ["uvloop", "asyncio"]


@pytest.fixture(params=LOOPS)
def loop_kind(request):
    """Each session test runs on uvloop and on stock asyncio (as uvloop's own suite does)."""
    return request.param


@pytest.fixture
def smtpd(tmp_path, loop_kind):
    """Start a default smtpd; yield a factory for custom ones (main.cf text, options)."""
    servers = []

    def start(main_cf: str = "", **kwargs) -> SmtpdThread:
        srv = SmtpdThread(tmp_path / f"srv{len(servers)}", main_cf, loop=loop_kind, **kwargs)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def certificate(tmp_path):
    """A fresh self-signed key and certificate (made by fastpost tls's code)."""
    from fastpost.cli.tls import new_server_files

    d = tmp_path / "tls"
    d.mkdir()
    return new_server_files(str(d), ["mx.fastpost.test"], algorithm="ecdsa")
