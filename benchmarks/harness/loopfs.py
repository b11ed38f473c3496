"""A fresh journalled ext4 on a loop device, for benchmarks that must not depend on the
host's own file system.

Postfix counterpart: none. Why: this machine's root file system (where /var/tmp lives)
is ext4 without a journal, mounted with ``discard``; C Postfix, which creates, syncs and
deletes one file per message, costs ~1 CPU ms/msg more there than on a journalled ext4
and slows down run by run, while fastpost costs the same on both (docs/accept.md,
"Session 7: the file system under the benchmark"). ``journalled_ext4()`` makes the
file system a default Debian installation would have (ext4, journal, no ``discard``;
its inode tables not zeroed in the background, as on a file system in use for a while)
in a sparse image under a directory of the host, mounts it and returns the mount
point; ``release()`` unmounts it and deletes the image (also at interpreter exit).
``describe(path)`` says what a path's file system is (type, mount options, whether an
ext4 has a journal), for the benchmarks' headers.

Needs root (losetup/mount). Fails with RuntimeError naming the command that failed
(mkfs.ext4 missing: ``apt-get install e2fsprogs``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile

_MOUNTED: list[tuple[str, str]] = []


def _run(*argv: str) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{argv[0]}: {exc}") from None
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {res.returncode}: {res.stderr.strip()}")
    return res.stdout


def journalled_ext4(directory: str = "/var/tmp", size_gib: int = 6) -> str:
    """Make, mount and return a fresh journalled ext4 (loop, nodiscard) under directory."""
    top = tempfile.mkdtemp(prefix="fp-jfs-", dir=directory)
    os.chmod(top, 0o755)  # mkdtemp's 0700 would keep the daemons' users out
    image = os.path.join(top, "fs.img")
    mnt = os.path.join(top, "mnt")
    os.mkdir(mnt)
    with open(image, "wb") as fh:
        fh.truncate(size_gib << 30)  # sparse: only what the runs write takes space
    _run("mkfs.ext4", "-q", "-F", "-E", "nodiscard", image)
    # noinit_itable: no ext4lazyinit thread zeroing the inode tables in the background
    # (~100 MB in the first seconds after mounting a 6 GiB file system, while the
    # benchmark runs: docs/accept.md, "Session 9: the kernel's I/O per message"). The
    # image is sparse, so the tables read as zeros anyway; an installed system's file
    # system finished that work long ago.
    _run("mount", "-o", "loop,nodiscard,noinit_itable", image, mnt)
    _MOUNTED.append((mnt, top))
    os.chmod(mnt, 0o755)  # the instances' unprivileged daemons must reach it
    return mnt


def release(mnt: str) -> None:
    """Unmount a file system made by journalled_ext4() and delete its image."""
    for i, (m, top) in enumerate(_MOUNTED):
        if m == mnt:
            del _MOUNTED[i]
            subprocess.run(["umount", m], capture_output=True)
            shutil.rmtree(top, ignore_errors=True)
            return


@atexit.register
def _release_all() -> None:
    for mnt, _top in list(_MOUNTED):
        release(mnt)


def describe(path: str) -> str:
    """"ext4 on /dev/vda (rw,relatime,discard), no journal" and the like; never raises."""
    try:
        out = subprocess.run(["findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "--target", path],
                             capture_output=True, text=True, timeout=10).stdout.split()
        source, fstype, options = out[0], out[1], out[2]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"
    text = f"{fstype} on {source} ({options})"
    if fstype in ("ext3", "ext4"):
        dev = os.path.basename(os.path.realpath(source))
        try:
            with open(f"/sys/fs/ext4/{dev}/journal_task") as fh:
                task = fh.read().strip()
            text += ", no journal" if task == "<none>" else ", journal"
        except OSError:
            pass
    return text
