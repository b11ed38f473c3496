"""The strace durability checker, on real traces of a small program that is right or wrong.

tests/battery/durable_writer.py stores messages and acknowledges them over a real TCP
connection in one of several ways; each run is traced by the real strace with the
command line the harness uses, and the checker must accept exactly the right ways.
"""

import os
import subprocess
import sys

import pytest

from harness import durability, tools

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durable_writer.py")

CASES = {
    "file": "ok",
    "segment": "ok",
    "dsync": "ok",
    "rename": "ok",
    "reply-first": "unsynced",
    "no-sync": "unsynced",
    "other-file": "unsynced",
    "early-sync": "unsynced",
}


def need_program(name: str) -> str:
    path = tools.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (./dev test installs tests/apt-packages.txt as root)")
    return path


def trace(tmp_path, mode: str, count: int = 6):
    strace = need_program("strace")
    qdir = tmp_path / "queue"
    qdir.mkdir()
    log = str(tmp_path / "strace.log")
    cmd = durability.strace_command(log, argv=[sys.executable, WRITER, mode, str(qdir), str(count)],
                                    strace=strace)
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    return durability.check_file(log, queue_dir=str(qdir))


@pytest.mark.parametrize("mode", sorted(CASES))
def test_checker_on_real_trace(tmp_path, mode):
    report = trace(tmp_path, mode)
    assert report.replies == 6, report.summary()
    statuses = {v.status for v in report.verdicts}
    if CASES[mode] == "ok":
        assert report.ok, report.summary()
        assert statuses == {"ok"}
    else:
        assert not report.ok
        assert statuses == {CASES[mode]}, report.summary()


def test_messages_outside_queue_dir_are_not_evidence(tmp_path):
    # the same right trace, but checked against another queue directory: nothing proven
    report = trace(tmp_path, "file")
    strace_log = tmp_path / "strace.log"
    other = durability.check_file(str(strace_log), queue_dir=str(tmp_path / "elsewhere"))
    assert other.replies == 6
    assert {v.status for v in other.verdicts} == {"no-data"}
    assert report.ok


def test_sync_in_flight_does_not_cover():
    # a reply written while the fsync has not returned (another thread) is not durable
    lines = [
        '101 write(5</q/seg>, "Received: ... id ABC123\\n", 25) = 25\n',
        '101 fdatasync(5</q/seg> <unfinished ...>\n',
        '102 write(7<TCP:[127.0.0.1:25->127.0.0.1:4000]>, "250 2.0.0 Ok: queued as ABC123\\r\\n", 33) = 33\n',
        '101 <... fdatasync resumed>)            = 0\n',
        '102 write(7<TCP:[127.0.0.1:25->127.0.0.1:4000]>, "250 2.0.0 Ok: queued as ABC124\\r\\n", 33) = 33\n',
    ]
    report = durability.check(lines, queue_dir="/q")
    assert [v.status for v in report.verdicts] == ["unsynced", "no-data"]
    # the same with the reply after the return is fine
    fixed = lines[:2] + [lines[3], lines[2]]
    assert durability.check(fixed, queue_dir="/q").ok


def test_not_an_strace_log():
    with pytest.raises(durability.StraceFormatError):
        durability.check(["hello world\n", "\n"])
