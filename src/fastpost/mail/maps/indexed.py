"""Indexed tables ``hash:``, ``btree:`` and ``lmdb:``: LMDB files built by ``fastpost map``.

Postfix counterpart: src/util/dict_lmdb.c, dict_db.c (hash, btree), slmdb.c.

All three types are one LMDB file ``NAME.lmdb`` (no sub-directory, no lock file), in
the layout Debian's ``postmap lmdb:NAME`` writes: one unnamed database, keys and values
UTF-8 with a terminating NUL (``-n`` builds omit it; readers try both). So

  * fastpost reads ``.lmdb`` files built by C Postfix's ``postmap lmdb:`` directly, and
    C Postfix reads the ones fastpost builds (checked by the differential tests);
  * ``hash:/etc/postfix/access`` in main.cf keeps working: fastpost reads
    ``access.lmdb`` and never touches Postfix's Berkeley DB ``access.db``.

Builds are atomic: the table is written to ``NAME.lmdb.<pid>.tmp`` beside the target,
synced, and renamed over it; updates (``-i``, ``-d``) copy, modify and rename, so a
reader never sees a half-written file and the files are never changed in place.
Readers keep one read transaction open and notice a replaced file (checked at most once
a second), then reopen.

Builds size the map from the data (three times the pairs' bytes), so
``lmdb_map_size`` is not needed. Source parsing for builds is the Cython kernel
ext/fastpost/mail/maps/_source_c.pyx; key folding and lookups are _indexed_c.pyx.

Diagnostics: a missing or unreadable file is a MapRetry naming the file (Postfix:
"open database NAME.lmdb: No such file or directory").
"""

from __future__ import annotations

import os
import sys
import time

import lmdb

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import FileWatch, Map, MapError, MapRetry, bad_utf8
from fastpost.mail.maps._indexed import (
    NUL_AUTO, NUL_WITH, NUL_WITHOUT, IndexedReader, decode_value, encode_key, encode_value,
)
from fastpost.mail.maps._source import parse_records, unique_sorted

SUFFIX = ".lmdb"


def file_of(name: str) -> str:
    """Return the LMDB file of an indexed table name."""
    return name + SUFFIX


def _nul_mode(flags: int) -> int:
    if flags & _base.TRY1NULL and not flags & _base.TRY0NULL:
        return NUL_WITH
    if flags & _base.TRY0NULL and not flags & _base.TRY1NULL:
        return NUL_WITHOUT
    return NUL_AUTO


class IndexedMap(Map):
    """A read-only view of an indexed table, reopened when its file is replaced."""

    type = "hash"
    class_flags = _base.FIXED

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS, type_: str = "hash"):
        self.type = type_
        super().__init__(name, flags)
        self.path = file_of(name)
        self._env = None
        self._txn = None
        self._failed: MapRetry | None = None
        self._reader = IndexedReader(None, bool(self.flags & _base.FOLD_FIX), _nul_mode(self.flags))
        self._open()

    def _open(self) -> None:
        self._watch = FileWatch(self.path)
        self._warn_if_stale()
        try:
            env = lmdb.open(self.path, subdir=False, readonly=True, lock=False,
                            max_dbs=0, readahead=False)
            txn = env.begin(buffers=False)
        except lmdb.Error as exc:
            reason = f"open database {self.path}: {_lmdb_reason(exc)}"
            if os.path.exists(self.name + ".db") and not os.path.exists(self.path):
                reason += (f" (there is a Berkeley DB file {self.name}.db, which fastpost "
                           f"does not read: run 'fastpost map {self.type}:{self.name}')")
            raise MapRetry(reason) from exc
        self.close()
        self._env, self._txn = env, txn
        self._reader.set_get(txn.get)

    def _warn_if_stale(self) -> None:
        """Postfix's "database X is older than source file Y" warning."""
        try:
            src, db = os.stat(self.name), os.stat(self.path)
        except OSError:
            return
        if src.st_mtime > db.st_mtime:
            from fastpost.util import log

            log.warn("database %s is older than source file %s", self.path, self.name)

    def _check(self) -> None:
        """Reopen the file when it was replaced (checked at most once a second)."""
        if self._watch.next_check <= time.monotonic() and (
                self._failed is not None or self._watch.changed()):
            try:
                self._open()
                self._failed = None
            except MapRetry as exc:     # replaced by nothing: fail until it is back
                self._failed = exc
                self.close()
        if self._failed is not None:
            raise self._failed

    def revision(self) -> tuple[object, float]:
        """The file's watch stands for its contents: a reopen replaces it."""
        self._check()
        return self._watch, self._watch.next_check

    def get(self, key: str) -> str | None:
        if self._failed is not None or self._watch.next_check <= time.monotonic():
            self._check()
        if not key.isascii() and bad_utf8(self, key):
            return None
        try:
            return self._reader.lookup(key)
        except lmdb.Error as exc:
            raise MapRetry(f"{self.spec}: read error: {exc}") from exc

    def _lookup(self, key: str) -> str | None:
        return self._reader.lookup(key)

    def items(self):
        try:
            for k, v in self._txn.cursor():
                yield decode_value(k), decode_value(v)
        except lmdb.Error as exc:
            raise MapRetry(f"{self.spec}: read error: {exc}") from exc

    def changed(self) -> bool:
        return self._watch.changed(force=True)

    def close(self) -> None:
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        if self._env is not None:
            self._env.close()
            self._env = None


def _lmdb_reason(exc: Exception) -> str:
    text = str(exc)
    if "No such file" in text:
        return "No such file or directory"
    return text.split(": ", 1)[-1] if ": " in text else text


# -- building and updating ------------------------------------------------------------

def _map_size(nbytes: int) -> int:
    size = max(1 << 20, nbytes * 3)
    return (size + 4095) // 4096 * 4096


class Builder:
    """Collects (key, value) pairs and writes a new table file atomically.

    Duplicate keys follow ``flags``: DUP_WARN keeps the first and reports, DUP_IGNORE
    keeps the first silently, DUP_REPLACE keeps the last.
    """

    def __init__(self, name: str, flags: int, *, warn=None, spec: str | None = None):
        self.name = name
        self.path = file_of(name)
        self.flags = flags
        self.fold = bool(flags & _base.FOLD_FIX)
        self.nul = not (flags & _base.TRY0NULL and not flags & _base.TRY1NULL)
        self.pairs: dict[bytes, bytes] = {}
        self.warn = warn
        self.spec = spec or f"lmdb:{name}"
        self.nbytes = 0

    def add(self, key: str, value: str, where: str | None = None) -> None:
        k = encode_key(key, self.fold, self.nul)
        v = encode_value(value, self.nul)
        if k in self.pairs:
            if self.flags & _base.DUP_REPLACE:
                self.pairs[k] = v
            elif not self.flags & _base.DUP_IGNORE and self.warn is not None:
                shown = key.casefold() if self.fold else key
                self.warn(f'{where or self.spec}: duplicate entry: "{shown}"')
            return
        self.pairs[k] = v
        self.nbytes += len(k) + len(v) + 16

    def commit(self, *, mode: int | None = None, owner=None) -> None:
        """Write the table beside the target, sync it and rename it into place."""
        write_table(self.path, sorted(self.pairs.items()), self.nbytes, mode=mode, owner=owner)


def build_from_source(name: str, data: bytes, flags: int, *, warn=None,
                      spec: str | None = None, mode: int | None = None, owner=None,
                      show_progress: bool = False) -> int:
    """Build NAME.lmdb from postmap source bytes with the parsing kernel; return count.

    Warnings (bad lines, duplicates) go to ``warn(text)`` in Postfix's wording.
    """
    import gc

    spec = spec or f"lmdb:{name}"
    fold = bool(flags & _base.FOLD_FIX)
    nul = not (flags & _base.TRY0NULL and not flags & _base.TRY1NULL)
    gc_was = gc.isenabled()
    gc.disable()     # a million small tuples: generational GC would dominate the build
    try:
        records, warnings = parse_records(data, fold, nul)
        if warn is not None:
            for lineno, message in warnings:
                warn(f"{name}, line {lineno}: {message}")
        if show_progress:
            progress_text(f"{len(records):,} records read")
        nbytes = len(data) + 24 * len(records)
        items, dups = unique_sorted(records, bool(flags & _base.DUP_REPLACE))
        del records
        if dups and warn is not None and not flags & (_base.DUP_IGNORE | _base.DUP_REPLACE):
            for k in dups:
                warn(f'{spec}: duplicate entry: "{decode_value(k)}"')
        write_table(file_of(name), items, nbytes, mode=mode, owner=owner,
                    progress=progress_text if show_progress else None)
        if show_progress:
            sys.stderr.write("\n")
        return len(items)
    finally:
        if gc_was:
            gc.enable()


def progress_text(text: str) -> None:
    """Show a build's progress on a terminal (stderr), overwriting the line."""
    sys.stderr.write(f"\rfastpost map: {text}\x1b[K")
    sys.stderr.flush()


def write_table(path: str, items, nbytes: int, *, mode: int | None = None,
                owner: tuple[int, int] | None = None, progress=None) -> None:
    """Write sorted (key, value) byte pairs as a fresh LMDB file at path, atomically.

    ``mode`` and ``owner`` (uid, gid) are given to the new file before it is renamed
    into place.
    """
    tmp = f"{path}.{os.getpid()}.tmp"
    _unlink(tmp)
    _unlink(tmp + "-lock")
    try:
        env = lmdb.open(tmp, subdir=False, map_size=_map_size(nbytes), lock=False,
                        sync=False, metasync=False, readahead=False, max_dbs=0)
        try:
            with env.begin(write=True) as txn:
                cursor = txn.cursor()
                if progress is None or len(items) < 200_000:
                    cursor.putmulti(items, append=True)
                else:
                    step = 100_000
                    for i in range(0, len(items), step):
                        cursor.putmulti(items[i : i + step], append=True)
                        progress(f"{min(i + step, len(items)):,} of {len(items):,} written")
            env.sync(True)
        finally:
            env.close()
        if mode is not None:
            os.chmod(tmp, mode)
        if owner is not None:
            os.chown(tmp, *owner)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path) or ".")
    except BaseException:
        _unlink(tmp)
        raise


def read_all(path: str) -> dict[bytes, bytes]:
    """Return every stored pair of an existing table file."""
    env = lmdb.open(path, subdir=False, readonly=True, lock=False, max_dbs=0)
    try:
        with env.begin() as txn:
            return dict(txn.cursor())
    finally:
        env.close()


def update_table(name: str, flags: int, adds=(), deletes=(), *, warn=None) -> tuple[int, int]:
    """Copy-modify-rename: apply additions and deletions to an existing table.

    Returns (number added, number deleted). A missing table is created for additions.
    Keys are stored in the table's own NUL convention when it has entries. Updaters of
    tables in one directory take turns (an exclusive flock on the directory), so two
    concurrent ``-i`` runs cannot lose each other's additions.
    """
    import fcntl

    dirfd = os.open(os.path.dirname(os.path.abspath(file_of(name))), os.O_RDONLY)
    try:
        fcntl.flock(dirfd, fcntl.LOCK_EX)
        return _update_locked(name, flags, adds, deletes, warn)
    finally:
        os.close(dirfd)


def _update_locked(name: str, flags: int, adds, deletes, warn) -> tuple[int, int]:
    path = file_of(name)
    try:
        pairs = read_all(path)
        st = os.stat(path)
        mode = st.st_mode & 0o7777
        owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
    except lmdb.Error:
        if deletes and not adds:
            raise MapRetry(f"open database {path}: No such file or directory")
        pairs, mode, owner = {}, None, None
    if pairs:
        # the table's own convention (postalias's NIS YP_* entries have no NUL: skip them)
        with_nul = any(k.endswith(b"\0") for k in pairs if not k.startswith(b"YP_"))
        flags &= ~(_base.TRY0NULL | _base.TRY1NULL)
        flags |= _base.TRY1NULL if with_nul else _base.TRY0NULL
    fold = bool(flags & _base.FOLD_FIX)
    nul = not (flags & _base.TRY0NULL and not flags & _base.TRY1NULL)
    added = deleted = 0
    for key in deletes:
        k = encode_key(key, fold, nul)
        alt = k[:-1] if nul else k + b"\0"
        if pairs.pop(k, None) is not None or pairs.pop(alt, None) is not None:
            deleted += 1
    for key, value, where in adds:
        k = encode_key(key, fold, nul)
        if k in pairs:
            if flags & _base.DUP_REPLACE:
                pairs[k] = encode_value(value, nul)
            elif not flags & _base.DUP_IGNORE and warn is not None:
                shown = key.casefold() if fold else key
                warn(f'{where or "lmdb:" + name}: duplicate entry: "{shown}"')
            continue
        pairs[k] = encode_value(value, nul)
        added += 1
    if added or deleted or adds:
        nbytes = sum(len(k) + len(v) + 16 for k, v in pairs.items())
        write_table(path, sorted(pairs.items()), nbytes, mode=mode, owner=owner)
    return added, deleted


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["IndexedMap", "Builder", "update_table", "file_of", "MapError"]
