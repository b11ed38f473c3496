"""fastpost map / alias behaviour beyond postmap's stdout: atomic builds, progress on a
terminal, file modes and owners, the newaliases entry points."""

import os
import pty
import subprocess
import sys

import lmdb

from fastpost.mail.maps import create_map


def run(*args, cwd=None, stdin=None):
    return subprocess.run([sys.executable, "-m", "fastpost", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True)


def test_build_is_atomic_and_readers_keep_their_snapshot(tmp_path):
    (tmp_path / "t").write_text("key old\n")
    assert run("map", "lmdb:t", cwd=tmp_path).returncode == 0
    reader = create_map(f"lmdb:{tmp_path}/t")
    assert reader.get("key") == "old"
    inode = os.stat(tmp_path / "t.lmdb").st_ino
    (tmp_path / "t").write_text("key new\nother x\n")
    assert run("map", "lmdb:t", cwd=tmp_path).returncode == 0
    # a new file was renamed into place; the open reader still sees a whole old table
    assert os.stat(tmp_path / "t.lmdb").st_ino != inode
    assert reader.get("key") == "old" and reader.get("other") is None
    assert reader.changed()
    assert create_map(f"lmdb:{tmp_path}/t").get("key") == "new"
    assert sorted(os.listdir(tmp_path)) == ["t", "t.lmdb"]      # no temporary left behind
    # the file is a plain LMDB file without a lock file, as postmap lmdb: writes it
    env = lmdb.open(str(tmp_path / "t.lmdb"), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"key\0") == b"new\0"
    env.close()


def test_progress_only_on_a_terminal(tmp_path):
    src = tmp_path / "big"
    with open(src, "w") as fh:
        for i in range(120_000):
            fh.write(f"user{i}@example.com OK-{i:08d}\n")
    assert os.path.getsize(src) > 4_000_000
    quiet = run("map", f"lmdb:{src}")
    assert quiet.returncode == 0 and quiet.stderr == ""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - child
        os.execv(sys.executable, [sys.executable, "-m", "fastpost", "map", f"lmdb:{src}"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"120,000 records read" in out


def test_modes_follow_the_source_unless_p(tmp_path):
    (tmp_path / "t").write_text("a b\n")
    os.chmod(tmp_path / "t", 0o640)
    assert run("map", "lmdb:t", cwd=tmp_path).returncode == 0
    assert os.stat(tmp_path / "t.lmdb").st_mode & 0o777 == 0o640
    assert run("map", "-p", "lmdb:t", cwd=tmp_path).returncode == 0
    assert os.stat(tmp_path / "t.lmdb").st_mode & 0o777 == 0o644


def test_owner_follows_the_source_when_root(tmp_path):
    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root (CI runs as root)")
    (tmp_path / "t").write_text("a b\n")
    os.chown(tmp_path / "t", 65534, 65534)
    assert run("map", "lmdb:t", cwd=tmp_path).returncode == 0
    assert os.stat(tmp_path / "t.lmdb").st_uid == 65534
    assert run("map", "-o", "lmdb:t", cwd=tmp_path).returncode == 0
    assert os.stat(tmp_path / "t.lmdb").st_uid == 0


def test_newaliases_verb_and_argv0(tmp_path):
    (tmp_path / "aliases").write_text("postmaster: root\n")
    (tmp_path / "main.cf").write_text(f"alias_database = hash:{tmp_path}/aliases\n")
    out = run("-c", str(tmp_path), "newaliases")
    assert out.returncode == 0, out.stderr
    assert create_map(f"hash:{tmp_path}/aliases").get("POSTMASTER") == "root"
    (tmp_path / "aliases").write_text("postmaster: admin\n")
    # invoked under the name "newaliases" (a link in /usr/sbin)
    code = ("import sys; from fastpost.cli.main import main; "
            f"sys.exit(main(['/usr/sbin/newaliases', '-c', '{tmp_path}']))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert create_map(f"hash:{tmp_path}/aliases").get("postmaster") == "admin"


def test_bad_source_names_file_and_line(tmp_path):
    (tmp_path / "t.regexp").write_text("/ok/ fine\n/bad(/ broken\n")
    out = run("map", "-q", "ok", "regexp:t.regexp", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout == "fine\n"
    assert "t.regexp, line 2:" in out.stderr


def test_concurrent_incremental_updates_lose_nothing(tmp_path):
    (tmp_path / "t").write_text("seed x\n")
    assert run("map", "lmdb:t", cwd=tmp_path).returncode == 0
    procs = [subprocess.Popen([sys.executable, "-m", "fastpost", "map", "-i", "lmdb:t"],
                              cwd=tmp_path, stdin=subprocess.PIPE, text=True)
             for _ in range(4)]
    for n, p in enumerate(procs):       # all four read, then update, at the same time
        p.stdin.write("".join(f"k{n}-{i} v\n" for i in range(50)))
        p.stdin.close()
    for p in procs:
        assert p.wait(60) == 0
    m = create_map(f"lmdb:{tmp_path}/t")
    assert all(m.get(f"k{n}-{i}") == "v" for n in range(4) for i in range(50))
