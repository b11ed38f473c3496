"""Per-thread file-system identity (fastpost.util.privs): one thread acts as a user,
the others stay root, and the switch is undone after the block."""

import os
import shutil
import tempfile
import threading

import pytest

from fastpost.util import privs


@pytest.fixture
def world_dir():
    d = tempfile.mkdtemp(dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def test_only_the_switching_thread_changes(world_dir):
    if not privs.privileged():
        pytest.skip("needs root")
    private = os.path.join(world_dir, "private")
    with open(private, "w") as fh:
        fh.write("secret")
    os.chmod(private, 0o600)
    inside = threading.Event()
    release = threading.Event()
    seen = {}

    def as_nobody():
        with privs.fs_identity(65534, 65534):
            seen["ids"] = privs.current_fs_ids()
            try:
                open(private).read()
                seen["read"] = True
            except PermissionError:
                seen["read"] = False
            inside.set()
            release.wait(10)
        seen["after"] = privs.current_fs_ids()

    t = threading.Thread(target=as_nobody)
    t.start()
    assert inside.wait(10)
    assert privs.current_fs_ids() == (0, 0)  # this thread still root while the other is not
    assert open(private).read() == "secret"
    release.set()
    t.join()
    assert seen == {"ids": (65534, 65534), "read": False, "after": (0, 0)}


def test_files_are_created_as_the_identity(world_dir):
    if not privs.privileged():
        pytest.skip("needs root")
    os.chmod(world_dir, 0o777)
    path = os.path.join(world_dir, "new")
    fd = privs.open_as(path, os.O_CREAT | os.O_WRONLY, 0o600, 65534, 65534)
    os.close(fd)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    with pytest.raises(PermissionError):
        privs.stat_as("/root/.", 65534, 65534)


def test_nested_blocks_restore_the_outer_identity():
    if not privs.privileged():
        pytest.skip("needs root")
    with privs.fs_identity(65534, 65534):
        with privs.fs_identity(1, 1):
            assert privs.current_fs_ids() == (1, 1)
        assert privs.current_fs_ids() == (65534, 65534)
    assert privs.current_fs_ids() == (0, 0)


# The unprivileged case (nothing to switch) runs for real in
# tests/local/test_unprivileged.py: a whole instance as a normal user.
