"""Postfix's own trivial-rewrite, asked over its socket: the oracle for resolve/rewrite tests.

Not a test module. ``PostfixRewrite(root)`` runs a private C Postfix whose master.cf has
only the ``rewrite`` service (and postlog), with its own main.cf, queue and log under
``root``; ``configure(settings)`` rewrites main.cf, reloads and waits until the new
settings answer, ``resolve(sender, addr)``
and ``rewrite(rule, addr)`` talk Postfix's attr0 protocol (``name NUL value NUL``, a list
ends with an empty name) to ``private/rewrite`` exactly as its resolve_clnt and
rewrite_clnt do. Needs root (postfix start does) and the postfix package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

BASE = {
    "compatibility_level": "3.7",
    "mail_owner": "postfix",
    "myhostname": "host.example.test",
    "mydomain": "example.test",
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "alias_maps": "",
    "alias_database": "",
}

MASTER_CF = """\
rewrite   unix  -       -       n       -       -       trivial-rewrite
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def need_postfix() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a private Postfix (CI runs as root)")
    if not (shutil.which("postfix") or os.path.exists("/usr/sbin/postfix")):
        pytest.skip("postfix not installed (./dev test installs tests/apt-packages.txt)")


class PostfixRewrite:
    """A private Postfix with only trivial-rewrite; see the module docstring."""

    def __init__(self, root: str):
        need_postfix()
        self.root = root
        self.etc = os.path.join(root, "etc")
        self.spool = os.path.join(root, "spool")
        self.data = os.path.join(root, "data")
        self.maillog = os.path.join(root, "maillog")
        for d in (self.etc, self.spool, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix")
        with open(self.maillog, "a"):
            pass
        os.chmod(self.maillog, 0o666)
        with open(os.path.join(self.etc, "master.cf"), "w") as fh:
            fh.write(MASTER_CF)
        self.sock: socket.socket | None = None
        self.buf = b""
        self.generation = 0
        self.running = False

    def settings(self, extra: dict) -> dict:
        s = dict(BASE)
        s.update({"queue_directory": self.spool, "data_directory": self.data,
                  "maillog_file": self.maillog, "maillog_file_prefixes": self.root,
                  "syslog_name": "pfxrewrite"})
        s.update(extra)
        return s

    def configure(self, extra: dict) -> dict:
        """Write main.cf (BASE + extra + a generation marker), (re)load; return the
        settings as written, for the fastpost side of the comparison."""
        self.generation += 1
        settings = self.settings(extra)
        # A marker table: the reload has taken effect when the marker resolves to this
        # generation (every trivial-rewrite process sees the same listening socket).
        # Its key is the whole address: a failing table later in the list is then never
        # asked (lookups go key by key, each key through every table).
        marker = f"inline:{{m@marker.invalid=smtp:[gen{self.generation}]}}"
        settings["transport_maps"] = ", ".join(
            x for x in (marker, settings.get("transport_maps", "")) if x)
        with open(os.path.join(self.etc, "main.cf"), "w") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.close()
        if not self.running:
            subprocess.run(["postfix", "-c", self.etc, "start"], check=True, capture_output=True)
            self.running = True
        else:
            subprocess.run(["postfix", "-c", self.etc, "reload"], check=True, capture_output=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.connect()
                if self.resolve("", "m@marker.invalid")["nexthop"] == f"[gen{self.generation}]":
                    return settings
            except (OSError, EOFError):
                pass
            self.close()
            if time.monotonic() > deadline:
                raise AssertionError("Postfix's trivial-rewrite did not come up")
            time.sleep(0.1)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(os.path.join(self.spool, "private", "rewrite"))
        self.buf = b""
        hello = dict(self._recv())
        assert hello.get("protocol") == "trivial_rewrite_protocol", hello

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def stop(self) -> None:
        self.close()
        if self.running:
            subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
            self.running = False

    def _field(self) -> bytes:
        while b"\0" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("trivial-rewrite closed the connection")
            self.buf += data
        field, _, self.buf = self.buf.partition(b"\0")
        return field

    def _recv(self) -> list[tuple[str, str]]:
        out = []
        while True:
            name = self._field()
            if not name:
                return out
            out.append((name.decode(), self._field().decode("utf-8", "surrogateescape")))

    def _request(self, **attrs) -> list[tuple[str, str]]:
        data = b"".join(k.encode() + b"\0" + v.encode("utf-8", "surrogateescape") + b"\0"
                        for k, v in attrs.items()) + b"\0"
        self.sock.sendall(data)
        return self._recv()

    def resolve(self, sender: str, address: str, request: str = "resolve") -> dict:
        """(transport, nexthop, recipient, flags) as Postfix answers (internal forms)."""
        reply = self._request(request=request, sender=sender, address=address)
        # flags (server), transport, nexthop, recipient, flags (resolve flags)
        out = dict(reply[1:])
        out["flags"] = int(out["flags"])
        return out

    def rewrite(self, rule: str, address: str) -> str:
        """The rewrite request; the address goes and comes in external (quoted) form."""
        reply = self._request(request="rewrite", rule=rule, address=address)
        return dict(reply)["address"]
