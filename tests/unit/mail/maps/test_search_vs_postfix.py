"""The access-map key order of fastpost.mail.maps.search, checked against C Postfix.

A private Postfix (own config, queue and log directories, smtpd on a free loopback port,
one connection per smtpd process so every session sees the table as it is now) rejects
MAIL FROM through ``check_sender_access lmdb:access`` and HELO through
``check_helo_access``, and rewrites recipients through ``virtual_alias_maps`` before
the discard transport logs them, and routes through ``transport_maps``. For an address, fastpost computes its key list; the table is then
built with the keys ``k[i:]`` (each with a unique REJECT text) for every i, and
Postfix's reply must name ``k[i]``: so Postfix tries exactly fastpost's keys, in
fastpost's order.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from fastpost.mail.maps import search

pytestmark = pytest.mark.postfix


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostfix:
    def __init__(self, extra_main: str, local: bool = False):
        """``local``: extra_main sets mydestination itself."""
        self.dir = tempfile.mkdtemp(prefix="fastpost-tables-pfx-")
        os.chmod(self.dir, 0o755)          # the postfix user walks into data/ and spool/
        self.etc = os.path.join(self.dir, "etc")
        self.table = os.path.join(self.dir, "access")
        for d in ("etc", "spool", "data"):
            os.mkdir(os.path.join(self.dir, d))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self.port = _free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as fh:
            fh.write(f"""compatibility_level = 3.7
queue_directory = {self.dir}/spool
data_directory = {self.dir}/data
mail_owner = postfix
myhostname = pfx.example.test
{"" if local else "mydestination ="}
inet_interfaces = 127.0.0.1
inet_protocols = all
maillog_file = {self.dir}/maillog
maillog_file_prefixes = {self.dir}
syslog_name = fastpost-tables-pfx
smtpd_delay_reject = no
{extra_main}
""")
        with open("/etc/postfix/master.cf") as fh:
            master = fh.read()
        master = master.replace(
            "smtp      inet  n       -       y       -       -       smtpd",
            f"127.0.0.1:{self.port} inet n - n - - smtpd -o max_use=1")
        with open(os.path.join(self.etc, "master.cf"), "w") as fh:
            fh.write(master)
        subprocess.run(["postconf", "-c", self.etc, "-F", "*/*/chroot=n"], check=True,
                       capture_output=True)
        self.build([("placeholder.invalid", "OK")])
        self.build([("placeholder.invalid", "nobody@nowhere.invalid")], "virtual")
        self.build([("placeholder.invalid", "discard:never")], "transport")
        self.build([("placeholder.invalid", "OK")], "client")
        self.build_aliases([("placeholder", "nobody@nowhere.invalid")])
        started = subprocess.run(["postfix", "-c", self.etc, "start"], capture_output=True,
                                 text=True)
        if started.returncode != 0:
            self.stop()
            raise RuntimeError(f"private postfix did not start: {started.stderr[-1000:]}")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)

    def build(self, pairs, name: str = "access") -> None:
        table = os.path.join(self.dir, name)
        with open(table, "w") as fh:
            fh.writelines(f"{k} {v}\n" for k, v in pairs)
        subprocess.run(["postmap", f"lmdb:{table}"], check=True, capture_output=True)
        # mtime granularity: make sure a changed table looks changed to the daemons
        os.utime(table + ".lmdb", (time.time() + 1, time.time() + 1))

    def build_aliases(self, pairs) -> None:
        table = os.path.join(self.dir, "aliases")
        with open(table, "w") as fh:
            fh.writelines(f"{k}: {v}\n" for k, v in pairs)
        subprocess.run(["postalias", f"lmdb:{table}"], check=True, capture_output=True)
        os.utime(table + ".lmdb", (time.time() + 1, time.time() + 1))

    def reload(self) -> None:
        """Restart the long-running daemons (trivial-rewrite, qmgr cache routes)."""
        subprocess.run(["postfix", "-c", self.etc, "reload"], check=True, capture_output=True)
        time.sleep(0.3)

    def deliver(self, rcpt: str) -> str:
        """Send one message to rcpt; return the address the discard transport got."""
        return self.deliver_line(rcpt).split("to=<", 1)[1].split(">", 1)[0]

    def deliver_line(self, rcpt: str) -> str:
        """Send one message to rcpt; return the discard transport's log line."""
        marker = f"to=<{rcpt}>"        # to=<...> when unchanged, orig_to=<...> when rewritten
        def delivered() -> list[str]:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as fh:
                return [x for x in fh if marker in x and "/discard[" in x]

        seen = len(delivered())
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            f = s.makefile("rwb")
            for line in (None, "HELO client.example", "MAIL FROM:<sender@client.example>",
                         f"RCPT TO:<{rcpt}>", "DATA", "Subject: t\r\n\r\nbody\r\n.", "QUIT"):
                if line is not None:
                    f.write(line.encode() + b"\r\n")
                    f.flush()
                while True:
                    got = f.readline().decode()
                    if len(got) < 4 or got[3] != "-":
                        break
                assert got[:1] in "23", (line, got)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = delivered()
            if len(lines) > seen:
                return lines[-1]
            time.sleep(0.05)
        with open(os.path.join(self.dir, "maillog"), errors="replace") as fh:
            tail = fh.readlines()[-8:]
        raise AssertionError(f"no delivery of {rcpt} logged; log ends:\n" + "".join(tail))

    def dialog(self, helo: str, sender: str | None, xclient: str | None = None) -> str:
        """Return the reply to HELO (or to MAIL FROM when sender is given)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            f = s.makefile("rwb")

            def reply() -> str:
                lines = []
                while True:
                    line = f.readline().decode()
                    lines.append(line.strip())
                    if len(line) < 4 or line[3] != "-":
                        return lines[-1]

            reply()
            if xclient is not None:     # pretend to be another client (XCLIENT)
                f.write(b"EHLO tester.example\r\n")
                f.flush()
                reply()
                f.write(f"XCLIENT {xclient}\r\n".encode())
                f.flush()
                assert reply().startswith("220")
            f.write(f"HELO {helo}\r\n".encode())
            f.flush()
            answer = reply()
            if sender is not None and answer.startswith("250"):
                f.write(f"MAIL FROM:<{sender}>\r\n".encode())
                f.flush()
                answer = reply()
            f.write(b"QUIT\r\n")
            f.flush()
            return answer

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postfix():
    for prog in ("postfix", "postmap", "postconf"):
        if not shutil.which(prog) and not os.path.exists(f"/usr/sbin/{prog}"):
            pytest.skip(f"{prog} not installed")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root (CI runs as root)")
    pfx = PrivatePostfix(
        "recipient_delimiter = +\n"
        "smtpd_helo_restrictions = check_helo_access lmdb:$queue_directory/../access\n"
        "smtpd_authorized_xclient_hosts = 127.0.0.1\n"
        "smtpd_sender_restrictions = check_client_access lmdb:$queue_directory/../client,"
        " check_sender_access lmdb:$queue_directory/../access\n"
        "mydestination = local.example\nlocal_recipient_maps =\n"
        "virtual_alias_maps = lmdb:$queue_directory/../virtual\n"
        "transport_maps = lmdb:$queue_directory/../transport\n"
        "default_transport = discard\nlocal_transport = discard\n", local=True)
    yield pfx
    pfx.stop()


def _walk(postfix, keys, ask, table: str = "access") -> None:
    """For every suffix of keys, Postfix must find its first key."""
    for i in range(len(keys)):
        pairs = [(k, f"REJECT key{j}") for j, k in enumerate(keys) if j >= i]
        postfix.build(pairs, table)
        answer = ask()
        assert f"key{i}" in answer.split(), (keys, i, keys[i], answer)
    postfix.build([("placeholder.invalid", "OK")], table)
    assert ask().startswith("250"), "with no key listed, Postfix must accept"


@pytest.mark.parametrize("address", [
    "user+ext@sub.example.com", "user@a.b.example.org", "plain@example.net",
])
def test_sender_access_order_matches_postfix(postfix, address):
    keys = [k.key for k in search.access_address_keys(address, delimiters="+",
                                                         parent_style=True)]
    _walk(postfix, keys, lambda: postfix.dialog("client.example", address))


def test_null_sender_key_matches_postfix(postfix):
    postfix.build([("<>", "REJECT nullkey")])
    assert "nullkey" in postfix.dialog("client.example", "")
    assert [k.key for k in search.access_address_keys("")] == ["<>"]


@pytest.mark.parametrize("addr,xclient_addr", [
    ("192.0.2.17", "192.0.2.17"), ("2001:db8:0:1::5", "IPV6:2001:db8:0:1::5"),
])
def test_client_address_order_matches_postfix(postfix, addr, xclient_addr):
    """check_client_access with an unknown client name: the address and its shortened
    forms (octets for IPv4, colon-separated groups for IPv6)."""
    keys = [k.key for k in search.access_hostaddr_keys(addr)]
    _walk(postfix, keys, lambda: postfix.dialog(
        "client.example", "s@client.example", f"ADDR={xclient_addr} NAME=[UNAVAILABLE]"),
        table="client")


def test_helo_hostname_order_matches_postfix(postfix):
    keys = [k.key for k in search.access_domain_keys("mail.dept.example.com",
                                                     parent_style=True)]
    _walk(postfix, keys, lambda: postfix.dialog("mail.dept.example.com", None))


@pytest.mark.parametrize("address,wire", [
    ("user+ext@local.example", "user+ext@local.example"),
    ("who+ext@remote.example", "who+ext@remote.example"),
    ("a b+ext@local.example", '"a b+ext"@local.example'),
])
def test_virtual_alias_order_and_extension_propagation_match_postfix(postfix, address, wire):
    """cleanup's virtual alias lookup: key order, external (quoted) form, @domain, and
    the unmatched extension carried into the result (propagate_unmatched_extensions).

    Keys with a blank (the internal form of a quoted local part) cannot be written in a
    postmap source, so the walk covers the others, the quoted forms included."""
    is_local = lambda domain: domain == "local.example"  # noqa: E731
    aks = [ak for ak in search.address_keys(address, delimiters="+", is_local=is_local)
           if " " not in ak.key.key.replace('"a b', "")]
    assert len(aks) >= 3
    for i in range(len(aks)):
        postfix.build([(ak.key.key, f"k{j}@result.example") for j, ak in enumerate(aks)
                       if j >= i], "virtual")
        expect = search.propagate_extension(f"k{i}@result.example", aks[i].unmatched_ext,
                                            aks[i].delimiter)
        assert postfix.deliver(wire) == expect, (i, aks[i])
    postfix.build([("placeholder.invalid", "nobody@nowhere.invalid")], "virtual")


@pytest.mark.parametrize("address", ["u+e@a.b.example", "plain@local.example"])
def test_transport_order_matches_postfix(postfix, address):
    """trivial-rewrite's transport_maps search: the discard transport logs the next-hop
    text of the entry that matched (status=sent (kN)). trivial-rewrite keeps serving a
    changed table until it restarts, hence a reload per step."""
    keys = [k.key for k in search.transport_keys(address, delimiters="+")]
    for i in range(len(keys)):
        postfix.build([(k, f"discard:k{j}") for j, k in enumerate(keys) if j >= i],
                      "transport")
        postfix.reload()
        line = postfix.deliver_line(address)
        assert f"status=sent (k{i})" in line, (keys, i, line)
    postfix.build([("placeholder.invalid", "discard:never")], "transport")


@pytest.fixture(scope="module")
def postfix_local():
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root (CI runs as root)")
    pfx = PrivatePostfix(
        "recipient_delimiter = +\nmydestination = local.example\nlocal_recipient_maps =\n"
        "alias_maps = lmdb:$queue_directory/../aliases\n"
        "alias_database = lmdb:$queue_directory/../aliases\n"
        "default_transport = discard\n", local=True)
    yield pfx
    pfx.stop()


@pytest.mark.parametrize("local", ["user+ext", "plain"])
def test_alias_order_matches_postfix_local(postfix_local, local):
    """local(8): the alias lookup of ``user+ext`` then ``user``; the forwarded copy
    reaches the discard transport, which logs the alias target."""
    keys = [k.key for k in search.alias_keys(local, delimiters="+")]
    for i in range(len(keys)):
        postfix_local.build_aliases([(k, f"k{j}@result.example") for j, k in enumerate(keys)
                                     if j >= i])
        postfix_local.reload()       # local(8) keeps a changed table until it restarts
        line = postfix_local.deliver_line(f"{local}@local.example")
        assert "to=<k%d@result.example>" % i in line, (keys, i, line)
