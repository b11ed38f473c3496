"""Debian's unbound as the test's DNS server: a static zone on a loopback port.

    with Unbound(records=['mx.test. MX 10 a.mx.test.', 'a.mx.test. A 127.0.0.2']) as dns:
        dns.server      # "127.0.0.1:PORT" for fastpost_dns_servers

The zone ``test.`` is static: names without records answer NXDOMAIN, names with
records of other types NODATA, as an authoritative server does.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query

from helpers.instance import free_port


class Unbound:
    def __init__(self, records, zone: str = "test."):
        path = shutil.which("unbound") or "/usr/sbin/unbound"
        self.dir = Path(tempfile.mkdtemp(prefix="unbound-"))
        self.port = free_port()
        lines = [
            "server:",
            "  interface: 127.0.0.1",
            f"  port: {self.port}",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{self.dir}"',
            '  pidfile: ""',
            "  use-syslog: no",
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            "  num-threads: 1",
            f'  local-zone: "{zone}" static',
        ]
        lines += [f'  local-data: "{r}"' for r in records]
        lines += ["remote-control:", "  control-enable: no", ""]
        conf = self.dir / "unbound.conf"
        conf.write_text("\n".join(lines))
        self.proc = subprocess.Popen([path, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while True:
            try:
                q = dns.message.make_query("probe." + zone, "A")
                dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.5)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"unbound did not start: {self.proc.stderr.read()!r}")
                time.sleep(0.1)

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
