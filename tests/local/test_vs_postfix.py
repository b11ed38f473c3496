"""fastpost's local against Debian's C Postfix local, live, on the same aliases and users.

One private C Postfix instance and one fastpost instance get the same aliases (each
built by its own postalias), the same .forward files, the same users and a spool
directory each. Every recipient below is sent to both: to Postfix over SMTP, to
fastpost as a delivery request. The status lines each local logs for the message
(``to=<...>, orig_to=<...>, relay=local, dsn=..., status=... (text)``, queue IDs in
"forwarded as ID" replaced) must be the same, in the same order, and so must the
envelope headers of what lands in the mailboxes.
"""

import importlib.util
import mailbox
import re
import smtplib
import subprocess
import time
from pathlib import Path

from helpers.mailsite import DOMAIN, Site

HERE = Path(__file__).resolve().parent

ALIASES = """\
postmaster: root
root: {a}
mailguys: {a}, {b}
clients: :include:{W}/clientlist.txt
cmd: "|/usr/bin/id > /dev/null"
ex75: "|exit 75"
ex67: "|exit 67"
exout: "|echo 5.7.1 custom failure text; exit 1"
loopa: loopb
loopb: loopa
remote: someone@elsewhere.test
lst: {a}, {b}
owner-lst: {b}
self: self, {a}
tilde: ~/x
nested: mailguys, {b}
"""

FORWARDS = {"a": {
    ".forward+fwd": "{b}\n",
    ".forward+selfish": "\\{a}, {b}\n",
    ".forward+empty": "",
    ".forward+comment": "# comment\n{b}\n",
    ".forward+remote": "x@elsewhere.test\n",
}}

RECIPIENTS = ["a", "mailguys", "clients", "cmd", "ex75", "ex67", "exout", "loopa", "remote",
              "lst", "self", "tilde", "nested", "postmaster", "nosuchuser", "a+fwd",
              "a+selfish", "a+empty", "a+comment", "a+remote", "a+nothing", "MailGuys"]


def _pfx_module():
    spec = importlib.util.spec_from_file_location(
        "postfix_instance", HERE.parent / "queue" / "postfix_instance.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def normalize(lines, names):
    out = []
    for line in lines:
        line = re.sub(r"forwarded as \w+", "forwarded as ID", line)
        for real, tag in names.items():
            line = line.replace(real, tag)
        out.append(line)
    return out


def pfx_send(port, rcpt: str, content: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("sender@example.org")
        code, _ = smtp.rcpt(rcpt)
        assert code == 250, (rcpt, code)
        code, reply = smtp.data(content)
        assert code == 250
        return re.search(rb"queued as (\w+)", reply).group(1).decode()


def pfx_status_lines(maillog: str, qid: str, expect: int, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while True:
        lines = [re.sub(r"delay=[^,]*, delays=[^,]*, ", "", line.split(f"{qid}: ", 1)[1])
                 for line in open(maillog).read().splitlines()
                 if f"/local[" in line and f" {qid}: to=<" in line]
        if len(lines) >= expect or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_same_status_lines_as_postfix_local():
    pfx_mod = _pfx_module()
    pfx_mod.need_postfix()
    with Site(users=("a", "b"), aliases=ALIASES, forward=FORWARDS) as site:
        (site.dir / "clientlist.txt").write_text(site.fill("{b}\n"))
        names = {site.user["a"].pw_name: "USER_A", site.user["b"].pw_name: "USER_B",
                 str(site.dir): "W"}
        pfx_root = site.dir / "pfx"
        pfx_root.mkdir()
        pfx_aliases = site.dir / "pfx-aliases"
        pfx_aliases.write_text(site.aliases.read_text())
        subprocess.run(["postalias", str(pfx_aliases)], check=True)
        pfx_spool = site.dir / "pfx-mail"
        pfx_spool.mkdir()
        import shutil
        shutil.chown(pfx_spool, "root", "mail")
        pfx_spool.chmod(0o2775)
        pfx = pfx_mod.PostfixInstance(
            pfx_root, mydestination=f"{DOMAIN}, localhost", myorigin=DOMAIN,
            alias_maps=f"hash:{pfx_aliases}", local_recipient_maps="",
            mail_spool_directory=str(pfx_spool), recipient_delimiter="+",
            forward_path=site.inst.main_settings["forward_path"],
            relayhost="[127.0.0.1]:9")  # forwarded remote mail just waits in the queue
        pfx.start()
        try:
            for rcpt in RECIPIENTS:
                content = b"Subject: cmp %s\n\nbody line\n" % rcpt.encode()
                addr = site.addr(rcpt)
                qid, res = site.send(rcpt, content)
                raw = site.status_lines(qid)
                ours = normalize(raw, names)
                for new in re.findall(r"forwarded as (\w+)", " ".join(raw)):
                    # Act as qmgr for the forwarded copy too (local recipients only), as
                    # Postfix's own qmgr does for its copy.
                    site.forwarded_id(type("R", (), {"text": f"forwarded as {new}"}))
                    local = [r.address for r in site.feed.recipients(new)
                             if r.address.endswith("@" + DOMAIN)]
                    if local:
                        site.deliver(new, only=local)
                pfx_qid = pfx_send(pfx.port, addr, content.replace(b"\n", b"\r\n"))
                theirs = normalize(pfx_status_lines(pfx.maillog, pfx_qid, len(ours)), names)
                assert ours == theirs, f"{rcpt}:\nfastpost {ours}\npostfix  {theirs}"
            for tag in ("a", "b"):
                ours = sorted(_envelope(m, names) for m in site.mbox(tag))
                path = pfx_spool / site.user[tag].pw_name
                deadline = time.monotonic() + 20
                while len(mailbox.mbox(path)) < len(ours) and time.monotonic() < deadline:
                    time.sleep(0.1)  # Postfix delivers its forwarded copies on its own time
                theirs = sorted(_envelope(m, names) for m in mailbox.mbox(path))
                assert ours == theirs
        finally:
            pfx.stop()


def _envelope(msg, names):
    fields = (msg["Subject"], msg["Return-Path"], msg["X-Original-To"],
              " | ".join(msg.get_all("Delivered-To") or ()))
    return tuple(normalize([str(f)], names)[0] for f in fields)
