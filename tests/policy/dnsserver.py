"""A real DNS server for the policy tests: Debian's nsd serving test zones on loopback.

Not a test module. ``NsdServer(directory, zones)`` writes nsd.conf and one zone file
per zone, picks an unused loopback address 127.53.X.Y (port 53: the glibc resolver
Postfix uses cannot be told another port) and runs ``nsd -d`` until ``stop()``.
Names outside the zones get REFUSED, which every resolver treats as a temporary
failure: the tests use that to check that a DNS failure defers.

    with NsdServer(tmp, {"test": ZONE}) as dns:
        dns.address          # "127.53.17.4"
        dns.resolv_conf      # a resolv.conf naming it (for Postfix's namespace)

Needs root (port 53) and nsd (tests/apt-packages.txt).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time

import pytest


def need_nsd() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root (a DNS server on port 53)")
    path = shutil.which("nsd") or ("/usr/sbin/nsd" if os.path.exists("/usr/sbin/nsd") else None)
    if path is None:
        pytest.skip("nsd not installed (./dev test installs tests/apt-packages.txt as root)")
    return path


def _free_address() -> str:
    for _ in range(200):
        addr = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind((addr, 53))
            except OSError:
                break
            finally:
                s.close()
        else:
            return addr
    raise RuntimeError("no free loopback address for the DNS server")


class NsdServer:
    def __init__(self, directory: str, zones: dict[str, str]):
        self.nsd = need_nsd()
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.zones = zones
        self.address = ""
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        self.address = _free_address()
        conf = [
            "server:",
            f"  ip-address: {self.address}@53",
            "  port: 53",
            '  username: ""',
            '  chroot: ""',
            f"  zonesdir: {self.dir}",
            f"  pidfile: {self.dir}/nsd.pid",
            f"  xfrdfile: {self.dir}/xfrd.state",
            f"  zonelistfile: {self.dir}/zone.list",
            f"  logfile: {self.dir}/nsd.log",
            "  server-count: 1",
            "  do-ip6: no",
            "  verbosity: 1",
            "  hide-version: yes",
            "remote-control:",
            "  control-enable: no",
        ]
        for name, text in self.zones.items():
            fname = f"{name}.zone"
            with open(os.path.join(self.dir, fname), "w", encoding="ascii") as fh:
                fh.write(text)
            conf += ["zone:", f"  name: {name}", f"  zonefile: {fname}"]
        path = os.path.join(self.dir, "nsd.conf")
        with open(path, "w", encoding="ascii") as fh:
            fh.write("\n".join(conf) + "\n")
        with open(os.path.join(self.dir, "resolv.conf"), "w", encoding="ascii") as fh:
            fh.write(f"nameserver {self.address}\noptions timeout:2 attempts:1\n")
        self.proc = subprocess.Popen([self.nsd, "-d", "-c", path], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.proc.poll() is not None:
                log = open(os.path.join(self.dir, "nsd.log"), encoding="utf-8",
                           errors="replace").read()[-2000:]
                raise RuntimeError(f"nsd exited: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError("nsd did not answer")
            time.sleep(0.05)

    @property
    def resolv_conf(self) -> str:
        return os.path.join(self.dir, "resolv.conf")

    def _answers(self) -> bool:
        import dns.message
        import dns.query

        first = next(iter(self.zones))
        try:
            q = dns.message.make_query(f"{first}.", "SOA")
            dns.query.udp(q, self.address, timeout=0.5)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
