"""The queue directory tree and first-time set-up: users, groups, owners, modes.

Postfix counterpart: conf/postfix-files, src/postfix/post-install (create-missing,
set-permissions), postfix-script check-warn

Every directory the daemons need under $queue_directory, with its owner and mode,
is one row of QUEUE_TREE (other subsystems add theirs there):

    pid        root                      0755  the master's pid file and lock
    private    mail_owner                0700  sockets of internal services
    public     mail_owner:setgid_group   0710  sockets users may reach (pickup, showq, ...)
    maildrop   mail_owner:setgid_group   0730  local submissions (postdrop)
    segments   mail_owner                0700  queue store segment files
    index      mail_owner                0700  queue store index (LMDB)
    corrupt    mail_owner                0700  maildrop files pickup could not take
    flush      mail_owner                0700  fast-flush per-destination logs

$data_directory belongs to mail_owner (0700). The queue directory itself belongs to
root (0755), as Postfix's does, so that a compromised mail_owner cannot replace it.

As root, ``ensure_accounts`` creates the mail_owner user and the setgid_group group
when they are missing (system accounts, no login shell, no home) with useradd/groupadd;
``ensure_tree`` creates what is missing and ``set_permissions`` also repairs owners and
modes of what exists. As non-root (the development set-up) everything is created with
the caller's ids and modes are still applied.

Parameters: queue_directory, data_directory, mail_owner, setgid_group.
Diagnostics: SetupError naming the path or account and the system error; ``check``
returns (level, text) findings instead of raising.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass

from fastpost.mail.config import Config

ROOT = "root"  # owner spelled for root-owned rows
OWNER = "mail_owner"  # owner/group spelled for the mail_owner's ids
GROUP = "setgid_group"  # group spelled for the setgid group's id


@dataclass(frozen=True)
class TreeEntry:
    """One directory under $queue_directory."""

    name: str
    owner: str  # ROOT or OWNER
    group: str  # ROOT, OWNER or GROUP
    mode: int


QUEUE_TREE: tuple[TreeEntry, ...] = (
    TreeEntry("pid", ROOT, ROOT, 0o755),
    TreeEntry("private", OWNER, OWNER, 0o700),
    TreeEntry("public", OWNER, GROUP, 0o710),
    TreeEntry("maildrop", OWNER, GROUP, 0o730),
    # the queue store (docs/queue.md), opened by cleanup, qmgr and bounce as mail_owner
    TreeEntry("segments", OWNER, OWNER, 0o700),
    TreeEntry("index", OWNER, OWNER, 0o700),
    # maildrop files pickup could not read as submissions (docs/accept.md)
    TreeEntry("corrupt", OWNER, OWNER, 0o700),
    # fast-flush per-destination logs (fastpost.daemons.flush)
    TreeEntry("flush", OWNER, OWNER, 0o700),
)


class SetupError(Exception):
    """First-time set-up failed (the text names what and why)."""


@dataclass
class Ids:
    """Numeric ids the tree is built with."""

    owner_uid: int
    owner_gid: int
    group_gid: int
    root: bool  # whether ownership can be set at all

    def resolve(self, who: str, group: bool) -> int:
        if who == ROOT:
            return 0
        if who == OWNER:
            return self.owner_gid if group else self.owner_uid
        return self.group_gid


def lookup_ids(cfg: Config) -> Ids:
    """Return the ids of mail_owner and setgid_group (the caller's own when not root)."""
    if os.geteuid() != 0:
        return Ids(os.getuid(), os.getgid(), os.getgid(), False)
    owner = cfg.get("mail_owner")
    group = cfg.get("setgid_group")
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        raise SetupError(f"mail_owner {owner}: no such user") from None
    try:
        gr = grp.getgrnam(group)
    except KeyError:
        raise SetupError(f"setgid_group {group}: no such group") from None
    return Ids(pw.pw_uid, pw.pw_gid, gr.gr_gid, True)


def _run(argv: list[str]) -> None:
    tool = shutil.which(argv[0]) or f"/usr/sbin/{argv[0]}"
    try:
        proc = subprocess.run([tool] + argv[1:], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise SetupError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise SetupError(f"{' '.join(argv)}: {proc.stderr.strip() or 'exit status %d' % proc.returncode}")


def ensure_accounts(cfg: Config) -> list[str]:
    """As root, create mail_owner and setgid_group when missing; return what was done."""
    if os.geteuid() != 0:
        return []
    done = []
    owner = cfg.get("mail_owner")
    group = cfg.get("setgid_group")
    if owner == "root" or owner == "0":
        raise SetupError("mail_owner must not be root")
    try:
        grp.getgrnam(group)
    except KeyError:
        _run(["groupadd", "--system", group])
        done.append(f"created group {group}")
    try:
        pwd.getpwnam(owner)
    except KeyError:
        try:
            grp.getgrnam(owner)
            group_opt = ["--gid", owner]
        except KeyError:
            group_opt = ["--user-group"]
        _run(["useradd", "--system", *group_opt, "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", "--comment", "fastpost mail system", owner])
        done.append(f"created user {owner}")
    return done


def _fix(path: str, uid: int, gid: int, mode: int, ids: Ids, done: list | None) -> None:
    """Give path its owner (as root) and mode, noting what changed in done."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise SetupError(f"{path} is not a directory (a symbolic link?)")
    if ids.root and (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
        if done is not None:
            done.append(f"owner of {path} set to {uid}:{gid}")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        if done is not None:
            done.append(f"mode of {path} set to {mode:04o}")


def ensure_tree(cfg: Config, *, repair: bool = False) -> list[str]:
    """Create the queue tree (and data_directory) where missing; repair=True also fixes
    owners and modes of existing directories. Return what was done."""
    ids = lookup_ids(cfg)
    qdir = cfg.get("queue_directory")
    ddir = cfg.get("data_directory")
    done: list[str] = []
    # (path, uid, gid, mode, top): an empty top directory someone else made
    # (embedded-config, an installer) is as good as new and gets its owner and mode.
    rows = [(qdir, 0, 0, 0o755, True)]
    if ddir:
        rows.append((ddir, ids.owner_uid, ids.owner_gid, 0o700, True))
    for entry in QUEUE_TREE:
        rows.append((os.path.join(qdir, entry.name), ids.resolve(entry.owner, group=False),
                     ids.resolve(entry.group, group=True), entry.mode, False))
    try:
        for path, uid, gid, mode, top in rows:
            created = top and os.path.isdir(path) and not os.listdir(path)
            if not os.path.isdir(path):
                os.makedirs(path, mode=mode)
                done.append(f"created {path} (mode {mode:04o}, owner {uid}:{gid})"
                            if ids.root else f"created {path} (mode {mode:04o})")
                created = True
            if created or repair:
                _fix(path, uid, gid, mode, ids, None if created else done)
    except OSError as exc:
        raise SetupError(f"{exc.filename}: {exc.strerror}") from None
    return done


def check(cfg: Config) -> list[tuple[str, str]]:
    """Return findings about accounts and the tree: (level, text), level warning/fatal."""
    out: list[tuple[str, str]] = []
    owner = cfg.get("mail_owner")
    group = cfg.get("setgid_group")
    root = os.geteuid() == 0
    try:
        pw = pwd.getpwnam(owner)
        if pw.pw_uid == 0:
            out.append(("fatal", f"mail_owner: user {owner} has privileged user ID"))
    except KeyError:
        out.append(("fatal" if root else "warning", f"mail_owner: user {owner} does not exist"))
        pw = None
    try:
        gr = grp.getgrnam(group)
    except KeyError:
        out.append(("fatal" if root else "warning", f"setgid_group: group {group} does not exist"))
        gr = None
    qdir = cfg.get("queue_directory")
    if not os.path.isdir(qdir):
        out.append(("fatal", f"queue_directory {qdir} does not exist"))
        return out
    st = os.stat(qdir)
    if root and st.st_uid != 0:
        out.append(("warning", f"not owned by root: {qdir}"))
    if st.st_mode & 0o022:
        out.append(("warning", f"group or other writable: {qdir}"))
    for entry in QUEUE_TREE:
        path = os.path.join(qdir, entry.name)
        try:
            est = os.stat(path)
        except FileNotFoundError:
            out.append(("warning", f"missing directory: {path} (fastpost set-permissions creates it)"))
            continue
        if stat.S_IMODE(est.st_mode) != entry.mode:
            out.append(("warning", f"mode of {path} is {stat.S_IMODE(est.st_mode):04o}, "
                                   f"expected {entry.mode:04o}"))
        if not root or pw is None:
            continue
        want_uid = 0 if entry.owner == ROOT else pw.pw_uid
        if est.st_uid != want_uid:
            out.append(("warning", f"not owned by {'root' if entry.owner == ROOT else owner}: {path}"))
        if entry.group == GROUP and gr is not None and est.st_gid != gr.gr_gid:
            out.append(("warning", f"not owned by group {group}: {path}"))
    ddir = cfg.get("data_directory")
    if root and pw is not None and os.path.isdir(ddir) and os.stat(ddir).st_uid != pw.pw_uid:
        out.append(("warning", f"not owned by {owner}: {ddir}"))
    return out
