"""fastpost's queue against Debian's C Postfix, on the same messages.

A private Postfix instance receives mail by SMTP and sendmail, fails to deliver it (the
relay host is a closed port), so every message is deferred with a real reason; some are
put on hold or force-expired with Postfix's postsuper. Then:

  * ``fastpost super --import`` takes its queue directory, and ``fastpost queue -p/-j``
    must print what ``postqueue -p/-j`` prints for it (same IDs, sizes, times, reasons);
  * ``fastpost cat -q ID`` must print what ``postcat -q ID`` prints, flag by flag;
  * a message exported from fastpost must be the Postfix file byte for byte;
  * messages committed by fastpost, exported, are read by real postcat and listed by
    real postqueue exactly as fastpost's tools show them;
  * ``fastpost super`` reports what ``postsuper`` reports for the same operations.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
from postfix_instance import PostfixInstance, postfix_tmpdir  # noqa: E402

pytestmark = pytest.mark.postfix

CAT_FLAGS = ["", "-e", "-h", "-b", "-bh", "-eh", "-o", "-eo", "-bo", "-d", "-od", "-v", "-bv", "-r",
             "-s DATA", "-o -s DATA"]  # DATA: the message's content offset (from its C record)


def cat_args(flags: str, path) -> list[str]:
    """The arguments for one CAT_FLAGS entry; DATA becomes the file's content offset."""
    args = flags.split()
    if "DATA" in args:
        with open(path, "rb") as fh:
            data_offset = fh.read(97)[2:].split()[1].decode()
        args = [data_offset if a == "DATA" else a for a in args]
    return args


def fastpost(cfg_dir, *args, input=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastpost", "-c", str(cfg_dir), *args],
                          capture_output=True, input=input, timeout=120)


def populate(pfx: PostfixInstance) -> None:
    pfx.send("alice@example.org", ["bob@example.net", "carol@example.com"],
             "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: two recipients\r\n\r\nhello\r\n")
    pfx.send("", ["dave@example.net"], "Subject: null sender and a long line\r\n\r\n" + "x" * 5000 + "\r\n")
    pfx.send("erin@example.org", ["frank@example.net"], "Subject: dsn\r\n\r\nbody\r\n",
             mail_options=["RET=HDRS", "ENVID=env-123"],
             rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig-frank@example.net"])
    pfx.send("gina@example.org", [f"r{i}@d{i % 3}.example" for i in range(6)],
             "Subject: six\r\n\r\n" + "".join(f"line {i}\r\n" for i in range(300)))
    pfx.send("hal@example.org", ["ivy@example.net"], "Subject: to hold\r\n\r\nheld\r\n")
    pfx.send("jo@example.org", ["kim@example.net"], "Subject: to expire\r\n\r\nexpire me\r\n")
    # local submission with recipients taken from the headers (extracted section)
    proc = subprocess.run(["sendmail", "-C", pfx.etc, "-t", "-f", "lee@example.org"],
                          input=b"To: mo@example.net\nCc: ned@example.com\nSubject: sendmail -t\n\nbody\n",
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    pfx.wait_deferred(7)


def find_id(pfx: PostfixInstance, subject: str) -> str:
    for path in pfx.queue_files("deferred") + pfx.queue_files("hold"):
        with open(path, "rb") as fh:
            if f"Subject: {subject}".encode() in fh.read():
                return os.path.basename(path)
    raise AssertionError(subject)


def make_fastpost_config(path, **extra) -> pathlib.Path:
    cfg = pathlib.Path(path)
    cfg.mkdir(parents=True, exist_ok=True)
    settings = {"queue_directory": str(cfg / "queue"), "maillog_file": str(cfg / "maillog"),
                "maillog_file_prefixes": str(cfg),
                "fastpost_queue_large_message_size": "65536", **extra}
    (cfg / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    return cfg


@pytest.fixture
def pfx_tmp():
    """A scratch directory under /tmp that Postfix's own processes can read."""
    with postfix_tmpdir() as path:
        yield pathlib.Path(path)


@pytest.fixture(scope="module")
def world():
    """A deferred/held/expired Postfix queue, and a fastpost queue imported from it."""
    with postfix_tmpdir() as path:
        yield from _world(pathlib.Path(path))


def _world(root):
    pfx = PostfixInstance(root / "postfix")
    pfx.start()
    try:
        populate(pfx)
        held = find_id(pfx, "to hold")
        expired = find_id(pfx, "to expire")
        assert pfx.postsuper("-h", held).returncode == 0
        assert pfx.postsuper("-e", expired).returncode == 0
    finally:
        pfx.stop()
    cfg = make_fastpost_config(root / "fastpost")
    proc = fastpost(cfg, "super", "--import", pfx.spool)
    assert proc.returncode == 0, proc.stderr
    assert b"postsuper: Imported: 7 messages" in proc.stderr
    yield pfx, cfg, held, expired


def blocks(listing: str) -> tuple[str, list[str], str]:
    """Split a mailq listing into header, per-message blocks (sorted), trailer."""
    lines = listing.split("\n")
    header, trailer = lines[0], lines[-2]
    body = "\n".join(lines[1:-2])
    return header, sorted(b.strip("\n") for b in body.split("\n\n") if b.strip()), trailer


def same_listing(ours: str, theirs: str) -> None:
    """Assert two mailq listings hold the same messages (Postfix lists in directory order)."""
    import difflib

    a, b = blocks(ours), blocks(theirs)
    if a != b:
        diff = difflib.unified_diff("\n\n".join(b[1]).splitlines(), "\n\n".join(a[1]).splitlines(),
                                    "postqueue", "fastpost", lineterm="")
        raise AssertionError("listings differ:\n" + "\n".join(diff) + f"\n{a[0]!r} {a[2]!r}\n{b[0]!r} {b[2]!r}")


def test_mailq_matches_postqueue(world):
    pfx, cfg, held, expired = world
    theirs = pfx.postqueue("-p")
    proc = fastpost(cfg, "queue", "-p")
    assert proc.returncode == 0, proc.stderr
    ours = proc.stdout.decode()
    same_listing(ours, theirs)
    assert f"{held}!" in ours and f"{expired}#" in ours
    # the mailq name gives the same listing
    assert fastpost(cfg, "mailq").stdout.decode() == ours


def test_json_matches_postqueue(world):
    pfx, cfg, _, _ = world
    theirs = pfx.postqueue("-j").splitlines()
    proc = fastpost(cfg, "queue", "-j")
    assert proc.returncode == 0, proc.stderr
    ours = proc.stdout.decode().splitlines()
    assert sorted(ours) == sorted(theirs)  # same text, line by line
    assert all(json.loads(line)["queue_id"] for line in ours)


@pytest.mark.parametrize("flags", CAT_FLAGS)
def test_cat_matches_postcat(world, flags):
    pfx, cfg, _, _ = world
    ids = [os.path.basename(p) for p in pfx.queue_files("deferred") + pfx.queue_files("hold")]
    assert len(ids) == 7
    for qid in ids:
        path = [p for p in pfx.queue_files("deferred") + pfx.queue_files("hold") if p.endswith(qid)][0]
        args = cat_args(flags, path)
        theirs = pfx.postcat(*args, "-q", qid)
        ours = fastpost(cfg, "cat", *args, "-q", qid)
        assert ours.returncode == theirs.returncode == 0, ours.stderr
        assert ours.stdout.decode("latin-1") == theirs.stdout, f"postcat {flags} -q {qid}"


def test_export_is_the_postfix_file(world, tmp_path):
    pfx, cfg, _, _ = world
    from fastpost.mail.config import Config
    from fastpost.mail.queue import QueueStore

    store = QueueStore.open(cfg=Config(str(cfg)))
    try:
        for path in pfx.queue_files("deferred") + pfx.queue_files("hold"):
            qid = os.path.basename(path)
            with open(path, "rb") as fh:
                assert store.export(qid) == fh.read()
            info = store.get(qid)
            assert info.state_name == path.split(os.sep)[-2 if "hold" in path else -3]
            # defer logs came along, and the deferred recipients are marked
            if info.state_name == "deferred":
                assert store.logs(qid)
                assert all(r.status == 2 for r in info.recipients)
    finally:
        store.close()


def test_super_matches_postsuper(world, pfx_tmp):
    """The same operations on a copy of the Postfix queue and on the fastpost queue."""
    pfx, cfg, held, expired = world
    # a copy of the Postfix queue with its own main.cf, for postsuper to change
    copy = pfx_tmp / "spool"
    subprocess.run(["cp", "-a", pfx.spool, str(copy)], check=True)  # keeps owners: showq reads as postfix
    etc = pfx_tmp / "etc"
    etc.mkdir()
    main_cf = pathlib.Path(pfx.etc, "main.cf").read_text().replace(pfx.spool, str(copy))
    (etc / "main.cf").write_text(main_cf)
    shutil.copy(os.path.join(pfx.etc, "master.cf"), etc / "master.cf")
    ours_cfg = make_fastpost_config(pfx_tmp / "fp")
    assert fastpost(ours_cfg, "super", "--import", str(copy)).returncode == 0

    two = find_id(pfx, "two recipients")
    six = find_id(pfx, "six")
    steps = [
        ["-h", two], ["-h", two], ["-H", two], ["-e", six], ["-f", held], ["-d", expired],
        ["-d", "NOSUCH1234"], ["-h", "bad!id"], ["-h", "ALL", "deferred"], ["-H", "ALL"],
        ["-d", "-"],
    ]
    for step in steps:
        stdin = f"{two}\n{six}\n" if step == ["-d", "-"] else None
        theirs = subprocess.run(["postsuper", "-c", str(etc), *step], capture_output=True, text=True,
                                input=stdin, timeout=60)
        ours = fastpost(ours_cfg, "super", *step, input=stdin.encode() if stdin else None)
        # per-message lines come in directory order in Postfix: compare them as sets
        assert sorted(ours.stderr.decode().splitlines()) == sorted(theirs.stderr.splitlines()), step
        assert ours.returncode == theirs.returncode, step
        listing = subprocess.run(["postqueue", "-c", str(etc), "-p"], capture_output=True, text=True).stdout
        same_listing(fastpost(ours_cfg, "queue", "-p").stdout.decode(), listing)


def test_fastpost_messages_are_postfix_queue_files(world, pfx_tmp):
    """Messages committed by fastpost, exported, are real Postfix queue files."""
    import asyncio

    from fastpost.mail import rectype as R
    from fastpost.mail.config import Config
    from fastpost.mail.queue import HOLD, QueueStore

    pfx, _, _, _ = world
    cfg = make_fastpost_config(pfx_tmp / "fp")
    store = QueueStore.open(cfg=Config(str(cfg)))
    bodies = [
        b"Subject: plain\r\n\r\nbody\r\n",
        b"Subject: long\r\nX-Folded: a\r\n\tb\r\n\r\n" + b"y" * 7000 + b"\r\nend\r\n",
        b"Subject: no final newline\r\n\r\nlast line",
        b"Subject: 8bit \xc3\xa9\r\n\r\n\xff\xfe binary-ish \x01\r\n",
        b"\r\n\r\nno headers at all\r\n",
    ]

    async def commit_all():
        c = store.committer("compat")
        ids = []
        for n, body in enumerate(bodies):
            b = c.builder()
            b.time(time.time())
            b.attr("rewrite_context", "local")
            b.set_sender("" if n == 2 else f"sender{n}@example.org")
            b.add_recipient(f"rcpt{n}@example.net", f"rcpt{n}@example.net", dsn_orcpt=f"rfc822;rcpt{n}@example.net")
            await b.write(body)
            if n == 3:
                b.extracted(R.REC_TYPE_RCPT, "extra@example.com")
            ids.append(await c.commit(b, HOLD))
        await c.close()
        return ids

    ids = asyncio.run(commit_all())
    # export into a copy of the (stopped) Postfix queue's hold directory
    spool = pfx_tmp / "spool"
    subprocess.run(["cp", "-a", pfx.spool, str(spool)], check=True)
    for name in ("deferred", "defer", "hold", "incoming", "active"):
        shutil.rmtree(spool / name, ignore_errors=True)
        (spool / name).mkdir()
        shutil.chown(spool / name, "postfix")
    etc = pfx_tmp / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text(pathlib.Path(pfx.etc, "main.cf").read_text().replace(pfx.spool, str(spool)))
    shutil.copy(os.path.join(pfx.etc, "master.cf"), etc / "master.cf")
    for qid in ids:
        path = spool / "hold" / qid
        path.write_bytes(store.export(qid))
        os.chmod(path, 0o700)
        shutil.chown(path, "postfix", "postfix")
        for flags in CAT_FLAGS:
            args = cat_args(flags, path)
            theirs = subprocess.run(["postcat", *args, str(path)], capture_output=True, timeout=30)
            ours = fastpost(cfg, "cat", *args, str(path))
            assert theirs.returncode == ours.returncode == 0, theirs.stderr
            assert ours.stdout == theirs.stdout, f"postcat {flags} {qid}"
            if flags == "":
                # and -q on fastpost's queue shows the same, under Postfix's file name
                q = fastpost(cfg, "cat", "-q", qid)
                assert q.stdout == theirs.stdout.replace(str(path).encode(), f"hold/{qid}".encode())
    store.close()
    listing = subprocess.run(["postqueue", "-c", str(etc), "-p"], capture_output=True, text=True).stdout
    same_listing(fastpost(cfg, "queue", "-p").stdout.decode(), listing)
    json_theirs = subprocess.run(["postqueue", "-c", str(etc), "-j"], capture_output=True, text=True).stdout
    assert sorted(fastpost(cfg, "queue", "-j").stdout.decode().splitlines()) == sorted(json_theirs.splitlines())


def test_long_queue_ids(pfx_tmp):
    tmp_path = pfx_tmp
    pfx = PostfixInstance(tmp_path / "postfix", enable_long_queue_ids="yes")
    pfx.start()
    try:
        pfx.send("a@example.org", ["b@example.net"], "Subject: long ids\r\n\r\nx\r\n")
        pfx.send("c@example.org", ["d@example.net", "e@example.net"], "Subject: long ids 2\r\n\r\ny\r\n")
        pfx.wait_deferred(2)
    finally:
        pfx.stop()
    cfg = make_fastpost_config(tmp_path / "fp", enable_long_queue_ids="yes")
    assert fastpost(cfg, "super", "--import", pfx.spool).returncode == 0
    same_listing(fastpost(cfg, "queue", "-p").stdout.decode(), pfx.postqueue("-p"))
    from fastpost.mail.queue.queue_id import parse_long

    # Postfix's long IDs decode to the arrival time, as ours do
    for line in fastpost(cfg, "queue", "-j").stdout.decode().splitlines():
        obj = json.loads(line)
        seconds, _usec, _inode = parse_long(obj["queue_id"])
        assert abs(seconds - obj["arrival_time"]) <= 1
        # and cat -q names the file as Postfix hashes long IDs
        theirs = pfx.postcat("-q", obj["queue_id"])
        assert fastpost(cfg, "cat", "-q", obj["queue_id"]).stdout.decode() == theirs.stdout


def test_empty_queue(tmp_path):
    cfg = make_fastpost_config(tmp_path / "fp")
    proc = fastpost(cfg, "queue", "-p")
    assert proc.stdout == b"Mail queue is empty\n"
    assert fastpost(cfg, "queue", "-j").stdout == b""
