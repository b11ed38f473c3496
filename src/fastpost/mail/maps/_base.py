"""The lookup-table object model: Map, its flags, and the three outcomes of a lookup.

Postfix counterpart: src/util/dict.h, dict.c, dict_surrogate.c.

A lookup has exactly three outcomes, always distinct:

    found          Map.get() returns the value (a str)
    not found      Map.get() returns None
    temporary      Map.get() raises MapRetry (server down, file unreadable, a table
    failure        file with a format error); callers turn it into 4xx or a deferral

A table that cannot be opened (missing file, unsupported type, bad configuration file)
does not make the caller crash: ``open_map`` returns a *surrogate* whose every lookup
raises MapRetry with the reason, and the reason is logged once, as Postfix's
dict_surrogate does.

Flags (``Map.flags``) follow Postfix's DICT_FLAG_* meanings; only the ones fastpost
honours are defined here.

Diagnostics: MapRetry (temporary), MapError (a caller's mistake: malformed
``type:name``, update of a read-only table).
"""

from __future__ import annotations

import os
import time

#: Fold fixed-string keys to lower case before lookup/update (postmap default; -f off).
FOLD_FIX = 0x0001
#: Fold keys of pattern tables too (Postfix DICT_FLAG_FOLD_MUL; not the default).
FOLD_MUL = 0x0002
#: On a duplicate key while building: warn and keep the first (postmap default).
DUP_WARN = 0x0004
#: On a duplicate key: ignore silently, keep the first (postmap -w).
DUP_IGNORE = 0x0008
#: On a duplicate key: replace silently, last wins (postmap -r).
DUP_REPLACE = 0x0010
#: Store keys and values with a terminating NUL (postmap -N; the Linux default).
TRY1NULL = 0x0020
#: Store keys and values without a NUL (postmap -n).
TRY0NULL = 0x0040
#: Table answers only whole keys (regexp, pcre, cidr): partial keys are not asked.
PATTERN = 0x0100
#: Table is a fixed-string table: partial keys (domain, parent, localpart) are asked.
FIXED = 0x0200
#: Table may be updated (postmap -i/-d).
WRITABLE = 0x0400
#: Lookups go over the network (aget() runs them off the event loop).
NETWORK = 0x0800
#: Values are UTF-8 (smtputf8); fastpost always decodes UTF-8 with surrogateescape.
UTF8 = 0x1000

#: The flags every daemon opens its tables with (Postfix: LOCK | FOLD_FIX | UTF8).
DEFAULT_FLAGS = FOLD_FIX | DUP_WARN | UTF8

#: How often (seconds) a file-backed table checks whether its file changed.
CHANGE_CHECK_INTERVAL = 1.0


def bad_utf8(m: "Map", key: str) -> bool:
    """Report and return True for a key that is not valid UTF-8 (surrogate escapes).

    Such a key is "not found" in every table, as in Postfix with smtputf8_enable.
    """
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        from fastpost.util import log

        shown = "".join("?" if "\udc80" <= c <= "\udcff" else c for c in key)
        log.warn('%s: non-UTF-8 key "%s": malformed UTF-8 or invalid codepoint',
                 m.spec, log.printable(shown))
        return True
    return False


class MapRetry(Exception):
    """A temporary lookup failure: the caller defers (4xx), never treats it as 'not found'."""


class MapError(Exception):
    """A usage error: malformed table spec, unsupported operation."""


class Map:
    """One opened lookup table ``type:name``.

    Subclasses implement ``_lookup(key)`` (key already folded when the table folds),
    and optionally ``items()`` (postmap -s), ``update``/``delete`` (writable tables)
    and ``aget`` (network tables: must not block the event loop).
    """

    type = "?"
    #: Default class flags (PATTERN or FIXED, NETWORK...).
    class_flags = FIXED

    def __init__(self, name: str, flags: int = DEFAULT_FLAGS):
        self.name = name
        self.flags = flags | self.class_flags

    # -- identity ------------------------------------------------------------------

    @property
    def spec(self) -> str:
        return f"{self.type}:{self.name}"

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self.spec}>"

    @property
    def is_pattern(self) -> bool:
        return bool(self.flags & PATTERN)

    @property
    def is_fixed(self) -> bool:
        return bool(self.flags & FIXED)

    def fold(self, key: str) -> str:
        """Return key as the table sees it (case-folded for fixed tables with FOLD_FIX)."""
        if self.flags & (FOLD_MUL if self.flags & PATTERN else FOLD_FIX):
            return key.casefold()
        return key

    # -- lookups -------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """Return the value for key, None when not found; raise MapRetry on failure."""
        if not key.isascii() and bad_utf8(self, key):
            return None
        return self._lookup(self.fold(key))

    async def aget(self, key: str) -> str | None:
        """Event-loop variant of get(); in-memory and file tables answer inline."""
        return self.get(key)

    @property
    def inline(self) -> bool:
        """True when aget() is get() (a table in memory or a local file): a caller on
        the event loop may call get() instead of awaiting aget(), same answer, no
        coroutine. Tables that wait (network, pipemap, sqlite, unionmap) override aget."""
        return type(self).aget is Map.aget

    def _lookup(self, key: str) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def items(self):
        """Yield (key, value) pairs in table order (postmap -s); MapError if impossible."""
        raise MapError(f"table {self.spec} does not support the sequence operation")

    # -- updates -------------------------------------------------------------------

    def update(self, key: str, value: str) -> None:
        raise MapError(f"table {self.spec} is read-only")

    def delete(self, key: str) -> bool:
        raise MapError(f"table {self.spec} is read-only")

    # -- life cycle ----------------------------------------------------------------

    def changed(self) -> bool:
        """Return True when the table's source changed since it was opened."""
        return False

    def revision(self) -> tuple[object, float] | None:
        """For memos of answers derived from this table: ``(token, until)``.

        The table first makes the change check a lookup would make now (so a file
        that changed is re-read, and a table that cannot be read raises MapRetry).
        ``token`` is the same object (``is``) for as long as the table answers as it
        did; ``until`` is the monotonic time before which its answers cannot change
        (its next change check). None: the table cannot promise that (network
        tables, tables whose answers vary by themselves) and must not be memoised.
        """
        return None

    def close(self) -> None:
        """Release files and connections."""


class SurrogateMap(Map):
    """Stands in for a table that could not be opened: every lookup is a MapRetry."""

    def __init__(self, type_: str, name: str, flags: int, reason: str):
        self.type = type_
        super().__init__(name, flags)
        self.reason = reason

    def get(self, key: str) -> str | None:
        raise MapRetry(f"{self.spec}: table lookup problem: {self.reason}")

    def items(self):
        raise MapRetry(f"{self.spec}: table lookup problem: {self.reason}")


#: Set by the server skeleton after a chroot or a privilege drop: a table file that
#: can no longer be looked at (ENOENT in the jail, EACCES as mail_owner) is taken as
#: unchanged, and the table keeps the contents it loaded before the jail.
KEEP_UNREACHABLE = False


class FileWatch:
    """Notices that a file was replaced or modified (checked at most once a second)."""

    __slots__ = ("path", "sig", "next_check")

    def __init__(self, path: str):
        self.path = path
        self.sig = self._signature()
        self.next_check = time.monotonic() + CHANGE_CHECK_INTERVAL

    def _signature(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)

    def changed(self, *, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now < self.next_check:
            return False
        self.next_check = now + CHANGE_CHECK_INTERVAL
        sig = self._signature()
        if sig is None and KEEP_UNREACHABLE and self.sig is not None:
            return False
        return sig != self.sig


class FileMap(Map):
    """A table read from one file at open; re-read in place when the file changes.

    Subclasses implement ``_load(text: str)`` which parses the whole file, returns
    nothing, and reports problems through ``self.warn(line, message)``.
    """

    def __init__(self, name: str, flags: int = DEFAULT_FLAGS, *, warn=None):
        super().__init__(name, flags)
        self._warn = warn
        self.warnings: list[str] = []
        self._failed: MapRetry | None = None
        self._watch = FileWatch(name)
        self._reload()

    def warn(self, lineno: int | None, message: str) -> None:
        where = f"{self.name}, line {lineno}: " if lineno else f"{self.spec}: "
        text = where + message
        self.warnings.append(text)
        if self._warn is not None:
            self._warn(text)
        else:
            from fastpost.util import log

            log.warn("%s", text)

    def _reload(self) -> None:
        try:
            with open(self.name, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise MapRetry(f"open {self.name}: {exc.strerror}") from exc
        self._load(data.decode("utf-8", "surrogateescape"))

    def _load(self, text: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_reload(self) -> None:
        """Re-read the file when it changed; while it cannot be read, lookups fail.

        A table whose file vanished or became unreadable does not go on answering from
        its old contents: every lookup is a MapRetry until the file is back.
        """
        if self._failed is not None or self._watch.changed():
            self._watch = FileWatch(self.name)
            self.warnings = []
            try:
                self._reload()
                self._failed = None
            except MapRetry as exc:
                self._failed = exc
        if self._failed is not None:
            raise self._failed

    def get(self, key: str) -> str | None:
        if self._watch.next_check <= time.monotonic():
            self.check_reload()
        elif self._failed is not None:
            raise self._failed
        if not key.isascii() and bad_utf8(self, key):
            return None
        return self._lookup(self.fold(key))

    def changed(self) -> bool:
        return self._watch.changed(force=True)

    def revision(self) -> tuple[object, float]:
        """The file's watch stands for its contents: a re-read replaces it."""
        if self._watch.next_check <= time.monotonic():
            self.check_reload()
        elif self._failed is not None:
            raise self._failed
        return self._watch, self._watch.next_check
