"""Concurrent writers into one UNIX mailbox never interleave.

Many deliveries from fastpost's local (several requests at once, so several worker
threads of one process compete), together with other processes that honour the same
lock methods:

* Postfix's ``postlock`` (the lock implementation of Postfix's own local(8)), holding
  the mailbox across a write that is split in two with a pause in between: a writer
  that ignored the lock would land in the gap;
* Debian's C Postfix ``local`` itself, delivering to the same mailbox file through a
  private Postfix instance.

Afterwards Python's ``mailbox`` module must find every message exactly once, each
intact (its body lines all carry its own marker).

The postlock test is the strict one: with fastpost's locks disabled it fails (checked
by hand: fastpost's messages land in postlock's gaps). The test with Postfix's local
shows that both agents share one mailbox under the same locks; its writes are too
quick for a missing lock to be caught there reliably.
"""

import importlib.util
import mailbox
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers.mailsite import Site

HERE = Path(__file__).resolve().parent


def _postfix_instance_module():
    spec = importlib.util.spec_from_file_location(
        "postfix_instance", HERE.parent / "queue" / "postfix_instance.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def body(marker: str, lines: int = 40) -> bytes:
    return b"".join(b"%s line %03d From here on %s\n" % (marker.encode(), i, b"x" * 60)
                    for i in range(lines))


def fastpost_writers(site: Site, tag: str, count: int, threads: int, prefix: str,
                     pace: float = 0.0, lines: int = 40) -> list:
    """Deliver ``count`` messages to user ``tag``, ``threads`` requests at a time, each
    thread pausing ``pace`` seconds between its requests (to overlap other writers)."""
    qids = [site.submit([tag], b"Subject: %s-%d\n\n" % (prefix.encode(), i) +
                        body(f"{prefix}-{i}", lines)) for i in range(count)]
    requests = [site.feed.request("local", qid) for qid in qids]
    results, errors = [], []

    def worker(chunk):
        client = site.feed.connect("local")  # one connection per thread: requests in parallel
        try:
            for request in chunk:
                results.extend(site.feed.send("local", request, client=client).values())
                time.sleep(pace)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            client.close()

    pool = [threading.Thread(target=worker, args=(requests[i::threads],))
            for i in range(threads)]
    for t in pool:
        t.start()
    return pool, results, errors


def postlock_writer(config_dir: str, mbox_path: str, count: int, lock: str, errors: list):
    """Append ``count`` messages, each in two writes with a pause, under postlock."""
    for i in range(count):
        marker = f"postlock-{i}"
        first = f"From lock@example.org  Sat Nov 21 08:00:00 2026\nSubject: {marker}\n\n"
        rest = body(marker).decode() + "\n"
        script = ('printf "%s" "$1" >> "$3"; sleep 0.2; printf "%s" "$2" >> "$3"')
        proc = subprocess.run(["postlock", "-c", config_dir, "-l", lock, mbox_path,
                               "/bin/sh", "-c", script, "sh", first, rest, mbox_path],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            errors.append(f"postlock: {proc.returncode} {proc.stderr}")


def check_mailbox(path: Path, expected: set[str]) -> None:
    seen = []
    for msg in mailbox.mbox(path, create=False):
        subject = msg["Subject"]
        seen.append(subject)
        lines = msg.get_payload().rstrip("\n").split("\n")
        assert len(lines) == 40, f"{subject}: {len(lines)} body lines"
        for line in lines:
            assert re.fullmatch(rf"(>?){re.escape(subject)} line \d\d\d From here on x+", line), \
                f"{subject}: foreign line {line!r}"
    assert sorted(seen) == sorted(expected)


@pytest.mark.parametrize("lock", ["fcntl, dotlock", "flock", "fcntl", "dotlock"])
def test_many_writers_with_postlock(lock):
    postlock = shutil.which("postlock") or "/usr/sbin/postlock"
    if not os.path.exists(postlock):
        pytest.skip("postlock not installed (package postfix, tests/apt-packages.txt)")
    with Site(users=("a",), main_cf={"mailbox_delivery_lock": lock,
                                     "deliver_lock_delay": "1s"}) as site:
        mbox_path = site.spool_path("a")
        # postlock reads mailbox_delivery_lock etc. from a main.cf: give it one.
        pl_conf = site.dir / "postlock-etc"
        pl_conf.mkdir()
        (pl_conf / "main.cf").write_text(f"mailbox_delivery_lock = {lock}\n"
                                        "deliver_lock_delay = 1s\n")
        mbox_path.touch(mode=0o600)  # postlock waits seconds for a missing file
        os.chown(mbox_path, site.user["a"].pw_uid, site.user["a"].pw_gid)
        pl_errors: list = []
        pl = threading.Thread(target=postlock_writer,
                              args=(str(pl_conf), str(mbox_path), 8, lock, pl_errors))
        pl.start()  # 8 locked writes with a 0.2 s gap each, while fastpost delivers
        deadline = time.monotonic() + 30
        while mbox_path.stat().st_size == 0:  # postlock's first start can take a second
            assert time.monotonic() < deadline and pl.is_alive(), pl_errors
            time.sleep(0.005)
        pool, results, errors = fastpost_writers(site, "a", 30, 6, "fp", pace=0.1)
        for t in pool + [pl]:
            t.join(timeout=300)
        assert not errors and not pl_errors, (errors, pl_errors)
        assert [r.status for r in results] == ["sent"] * 30, [r.text for r in results]
        check_mailbox(mbox_path, {f"fp-{i}" for i in range(30)} |
                      {f"postlock-{i}" for i in range(8)})
        assert not Path(str(mbox_path) + ".lock").exists()


def test_shared_mailbox_with_postfix_local():
    pfx_mod = _postfix_instance_module()
    pfx_mod.need_postfix()
    with Site(users=("a",)) as site:
        user = site.user["a"].pw_name
        pfx_root = site.dir / "pfx"
        pfx_root.mkdir()
        pfx = pfx_mod.PostfixInstance(
            pfx_root, mydestination="pfx.example.test", mail_spool_directory=str(site.spool),
            alias_maps="", local_recipient_maps="", mailbox_size_limit="0",
            default_process_limit="10", local_destination_concurrency_limit="5")
        pfx.start()
        try:
            # Bodies of 17 kB: Postfix's local writes them in several 4 kB pieces.
            pool, results, errors = fastpost_writers(site, "a", 30, 5, "fp", pace=0.1, lines=200)
            sent_errors = []

            def smtp_sender():
                try:
                    for i in range(20):
                        pfx.send("c@example.org", [f"{user}@pfx.example.test"],
                                 b"Subject: pfx-%d\r\n\r\n" % i + body(f"pfx-{i}", 200).replace(
                                     b"\n", b"\r\n"))
                except Exception as exc:  # noqa: BLE001
                    sent_errors.append(exc)

            sender = threading.Thread(target=smtp_sender)
            sender.start()
            for t in pool + [sender]:
                t.join(timeout=300)
            assert not errors and not sent_errors, (errors, sent_errors)
            assert [r.status for r in results] == ["sent"] * 30
            deadline = time.monotonic() + 60
            while open(pfx.maillog).read().count("status=sent (delivered to mailbox)") < 20:
                assert time.monotonic() < deadline, open(pfx.maillog).read()[-3000:]
                time.sleep(0.1)
        finally:
            pfx.stop()
        expected = {f"fp-{i}" for i in range(30)} | {f"pfx-{i}" for i in range(20)}
        got = {m["Subject"] for m in mailbox.mbox(site.spool_path("a"), create=False)}
        assert got == expected
        # Postfix adds its own headers (Received:, Message-Id:): only the bodies are compared.
        for msg in mailbox.mbox(site.spool_path("a"), create=False):
            subject = msg["Subject"]
            for line in msg.get_payload().rstrip("\n").split("\n"):
                assert line.startswith(subject + " line ") or line.startswith(">" + subject), \
                    f"{subject}: foreign line {line!r}"
