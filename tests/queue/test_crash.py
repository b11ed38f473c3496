"""kill -9 at every step of a commit, of compaction and of recovery: nothing acknowledged
is lost, nothing is duplicated, nothing half-written survives.

Each case runs tests/queue/crash_child.py as a real process with FASTPOST_CRASH_AT set:
the process SIGKILLs itself at that exact step (fastpost.mail.queue.crashpoint), which
leaves the files as an external kill -9 would. Then this process opens the store
(recovery) and checks it.
"""

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from fastpost.mail.queue import index as ix
from fastpost.mail.queue.message import content_text, parse
from fastpost.mail.queue.store import QueueStore

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import crash_child  # noqa: E402


def run_child(qdir, *args, crash: str | None = None, expect_kill: bool = True):
    env = dict(os.environ)
    env.pop("FASTPOST_CRASH_AT", None)
    if crash:
        env["FASTPOST_CRASH_AT"] = crash
    proc = subprocess.run([sys.executable, str(HERE / "crash_child.py"), str(qdir), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    if expect_kill:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
        assert "DONE" not in proc.stdout
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
    acked = {}
    for line in proc.stdout.splitlines():
        if line.startswith("ACK "):
            _, qid, tag = line.split()
            acked[qid] = tag
    return acked


def open_store(qdir) -> QueueStore:
    return QueueStore.open(settings=crash_child.settings(str(qdir)))


def check_queue(qdir, acked: dict) -> dict:
    """Recover, then check the invariants; return {tag: queue id} of what is queued."""
    st = open_store(qdir)
    try:
        msgs = list(st.messages())
        ids = [m.queue_id for m in msgs]
        assert len(ids) == len(set(ids))
        by_tag = {}
        for m in msgs:
            assert m.state == ix.INCOMING, f"{m.queue_id} is {m.state_name}"
            data = st.read(m.queue_id)
            p = parse(data)
            text = content_text(data, p)
            head, _, body = text.partition(b"\n\n")
            tag = head.split(b"Subject: ")[1].decode()
            i = int(tag[1:6])
            expect = b"big line\n" * 8000 if i % 17 == 5 else b"line of text\n" * (1 + i % 50)
            assert body == expect, f"{m.queue_id}: body damaged"
            assert p.sender == f"s{i}@example.org" and m.sender == p.sender
            assert tag not in by_tag, f"message {tag} is queued twice"
            by_tag[tag] = m.queue_id
        for qid, tag in acked.items():
            assert by_tag.get(tag) == qid, f"acknowledged {qid} ({tag}) is missing"
        leftovers = [n for n in os.listdir(st.segment_dir) if not n.endswith(".seg")]
        assert not leftovers
        with st.index.read() as txn:
            segs = list(st.index.segments(txn))
        assert all(s.sealed for s in segs)
        assert sum(s.live for s in segs) == len(ids)
        counts = st.counts()
        assert counts["incoming"] == len(ids)
    finally:
        st.close()
    # a second recovery finds nothing more to do
    st = open_store(qdir)
    try:
        rep = st.recovery
        assert (rep.messages_indexed, rep.torn_bytes, rep.temp_removed) == (0, 0, 0)
        assert {m.queue_id for m in st.messages()} == set(by_tag.values())
    finally:
        st.close()
    return by_tag


@pytest.mark.parametrize("point", [
    "commit.before_write:3",
    "commit.mid_write:3",
    "commit.before_sync:3",
    "commit.before_index:3",
    "commit.mid_write:1",
    "commit.before_index:1",
])
def test_kill_during_commit(tmp_path, point):
    waves = ["waves"] if point.startswith("commit.before_index") else []  # crash_child.py
    acked = run_child(tmp_path, "commit", "150", "20", *waves, crash=point)
    assert acked or point.endswith(":1")
    queued = check_queue(tmp_path, acked)
    st = open_store(tmp_path)
    if "mid_write" in point:
        pass  # the torn tail was reported by the first recovery (checked below)
    st.close()
    # the queue works after the crash: commit more, nothing collides
    more = run_child(tmp_path, "commit", "30", "10", expect_kill=False)
    assert not set(more) & set(queued.values())
    check_queue(tmp_path, {**acked, **more})


def test_torn_tail_is_cut_off(tmp_path):
    run_child(tmp_path, "commit", "100", "20", crash="commit.mid_write:2")
    st = open_store(tmp_path)
    try:
        assert st.recovery.torn_bytes > 0
    finally:
        st.close()


def sparse_queue(qdir) -> dict:
    """A queue whose first segments hold only a few live messages."""
    acked = run_child(qdir, "commit", "120", "30", expect_kill=False)
    st = open_store(qdir)
    keep = {}
    with st.edit() as ed:
        for n, (qid, tag) in enumerate(sorted(acked.items())):
            if n % 10 == 0:
                keep[qid] = tag
            else:
                ed.delete(qid)
    st.close()
    return keep


@pytest.mark.parametrize("point", [
    "compact.mid_write:1",
    "compact.before_sync:1",
    "compact.before_repoint:1",
    "compact.before_reclaim:1",
    "reclaim.after_rename:1",
])
def test_kill_during_compaction(tmp_path, point):
    keep = sparse_queue(tmp_path)
    run_child(tmp_path, "compact", crash=point)
    check_queue(tmp_path, keep)
    # compaction completes afterwards and still loses nothing
    run_child(tmp_path, "compact", expect_kill=False)
    queued = check_queue(tmp_path, keep)
    assert set(queued.values()) == set(keep)


def test_kill_during_recovery(tmp_path):
    acked = run_child(tmp_path, "commit", "100", "20", "waves", crash="commit.before_index:2")
    run_child(tmp_path, "recover", crash="recover.before_index:1")
    check_queue(tmp_path, acked)


def test_live_committer_is_not_recovered_by_others(tmp_path):
    """Opening the store while a committer works must not touch its segment."""
    import asyncio

    from fastpost.mail.queue.store import QueueSettings

    async def run():
        st = QueueStore.open(settings=QueueSettings(str(tmp_path)))
        c = st.committer("a")
        b = c.builder()
        b.time(1.0)
        b.set_sender("")
        b.add_recipient("r@x")
        await b.write(b"x\n")
        qid = await c.commit(b)
        # another process opens the store now: the live segment is locked, skipped
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "crash_child.py"), str(tmp_path), "recover",
            stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert b"REPORT skipped_locked=1 indexed=0 torn=0" in out
        await c.close()
        st.close()
        return qid

    qid = asyncio.run(run())
    with QueueStore.open(settings=QueueSettings(str(tmp_path))) as st:
        assert st.get(qid) is not None


def test_several_committer_processes_at_once(tmp_path):
    """Three cleanup-like processes commit into one store at the same time."""
    env = dict(os.environ)
    env.pop("FASTPOST_CRASH_AT", None)
    procs = [subprocess.Popen([sys.executable, str(HERE / "crash_child.py"), str(tmp_path), "commit", "120", "15"],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    acked = {}
    tags = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        for line in out.splitlines():
            if line.startswith("ACK "):
                _, qid, tag = line.split()
                assert qid not in acked, "two processes handed out the same queue ID"
                acked[qid] = tag
                tags.append(tag)
    assert len(acked) == 360
    st = open_store(tmp_path)
    try:
        assert {m.queue_id for m in st.messages()} == set(acked)
        for qid in list(acked)[::37]:
            assert acked[qid].encode() in st.read(qid)
    finally:
        st.close()


def test_damaged_frame_beyond_the_watermark_goes_to_corrupt(tmp_path, capfd):
    """Written but not indexed, then damaged on disk: recovery keeps the rest and moves
    that one message to the corrupt queue with a warning."""
    from fastpost.mail.queue.segment import parse_segment_name, scan
    from fastpost.util import log

    acked = run_child(tmp_path, "commit", "60", "10", "waves", crash="commit.before_index:2")
    index = ix.Index(str(tmp_path / "index"))
    with index.read() as txn:
        marks = {s.segid: s.watermark for s in index.segments(txn)}
    index.close()
    victim = None
    for path in sorted((tmp_path / "segments").iterdir()):
        segid = parse_segment_name(path.name)[0]
        for batch in scan(str(path), max(32, marks.get(segid, 0))).batches:
            for frame in batch:
                if victim is None:
                    victim = (path, frame)
    assert victim, "no frame beyond a watermark"
    path, frame = victim
    with open(path, "r+b") as fh:
        fh.seek(frame.offset + frame.length - 4)
        fh.write(b"!")
    log.init("test", stream=sys.stderr, use_syslog=False)
    st = open_store(tmp_path)
    try:
        assert st.recovery.corrupt == [frame.queue_id]
        assert st.get(frame.queue_id).state == ix.CORRUPT
        others = {q for q in acked if q != frame.queue_id}
        assert others <= {m.queue_id for m in st.messages()}
    finally:
        st.close()
        log.init("test", stream=None, use_syslog=False)
    err = capfd.readouterr().err
    assert f"{frame.queue_id}: corrupt queue file (checksum mismatch): moved to the corrupt queue" in err


def segment_files(qdir) -> dict:
    from fastpost.mail.queue.segment import parse_segment_name

    return {parse_segment_name(p.name)[0]: p for p in (qdir / "segments").iterdir() if p.name.endswith(".seg")}


def test_prezeroed_ends_through_crash_rotation_and_reclaiming(tmp_path):
    """The committer writes zeros ahead (tmp_path is ext4 here): a kill -9 leaves a zero
    tail that recovery cuts without calling it torn; segments rolled or closed end at
    their watermark; emptied ones are reclaimed."""
    from fastpost.mail.queue.segment import SEG_HEADER_LEN, prezero_helps, scan

    if not prezero_helps(str(tmp_path)):
        pytest.skip("the test directory's file system is not one where pre-zeroing is used")
    acked = run_child(tmp_path, "commit", "150", "20", "waves", crash="commit.before_index:4")
    tails = [scan(str(p), SEG_HEADER_LEN).zero_tail for p in segment_files(tmp_path).values()]
    assert max(tails) > 0, "no zeros ahead of the live segment"
    queued = check_queue(tmp_path, acked)  # recovery: no torn bytes on the second open
    more = run_child(tmp_path, "commit", "150", "20", expect_kill=False)  # rolls at 256 KiB
    st = open_store(tmp_path)
    try:
        with st.index.read() as txn:
            marks = {s.segid: s.watermark for s in st.index.segments(txn)}
        files = segment_files(tmp_path)
        assert len(files) > 2 and set(files) == set(marks)
        assert all(p.stat().st_size == marks[segid] for segid, p in files.items())
        with st.edit() as ed:
            for qid in [*queued.values(), *more]:
                ed.delete(qid)
        assert segment_files(tmp_path) == {}
    finally:
        st.close()


def test_a_batch_past_a_sealed_watermark_is_never_found(tmp_path):
    """A failed batch that could be neither truncated nor zeroed lies past the logical
    end its segment was sealed at: recovery cuts it without reading it."""
    from fastpost.mail.queue.segment import KIND_MESSAGE, batch_frame, frame_bytes

    acked = run_child(tmp_path, "commit", "20", "5", expect_kill=False)
    segid, path = max(segment_files(tmp_path).items())
    size = path.stat().st_size
    frame = frame_bytes(KIND_MESSAGE, ix.INCOMING, b"4XYZ0000001", [b"never acknowledged"])
    with open(path, "ab") as fh:
        fh.write(b"".join(frame) + batch_frame(size, 1, [frame[0]]))
    st = open_store(tmp_path)
    try:
        assert st.get("4XYZ0000001") is None and st.recovery.messages_indexed == 0
        assert path.stat().st_size == size
        assert {m.queue_id for m in st.messages()} == set(acked)
    finally:
        st.close()
