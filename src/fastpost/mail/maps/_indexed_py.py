"""Indexed-table key folding and lookup: the pure-Python reference.

Specification and oracle of ext/fastpost/mail/maps/_indexed_c.pyx (same names,
arguments and results). The compiled kernel is what daemons run.

Postfix counterpart: the key handling of src/util/dict_lmdb.c and dict_db.c
(DICT_FLAG_FOLD_FIX, DICT_FLAG_TRY1NULL / TRY0NULL).

A key is folded with Unicode full case folding (ASCII: lower case), encoded as UTF-8
(undecodable input bytes pass through as surrogate escapes), and stored with a
terminating NUL byte (the Linux default of Postfix; ``postmap -n`` omits it). A reader
whose NUL convention is unknown tries "with NUL" first, then "without", and settles
on whichever answered first, as Postfix does.

The kernel does no I/O: the table's ``get(bytes) -> bytes | None`` is passed in (an
LMDB transaction's ``get`` in production, a dict's ``get`` in tests).
"""

#: nul modes of IndexedReader
NUL_AUTO = 0
NUL_WITH = 1
NUL_WITHOUT = 2


def encode_key(key, fold, nul):
    """Return the stored form of key: folded (if fold), UTF-8, NUL-terminated (if nul)."""
    if fold:
        key = key.casefold()
    data = key.encode("utf-8", "surrogateescape")
    return data + b"\0" if nul else data


def encode_value(value, nul):
    """Return the stored form of a value."""
    data = value.encode("utf-8", "surrogateescape")
    return data + b"\0" if nul else data


def decode_value(data):
    """Return the text of a stored value (a trailing NUL removed)."""
    if data[-1:] == b"\0":
        data = data[:-1]
    return data.decode("utf-8", "surrogateescape")


class IndexedReader:
    """Lookups in one indexed table: fold, encode, get, decode."""

    def __init__(self, get, fold, nul):
        self.get = get
        self.fold = bool(fold)
        self.nul = nul

    def set_get(self, get):
        """Point the reader at a new table (after a reopen)."""
        self.get = get

    def lookup(self, key):
        """Return the value of key as text, or None when the table has no such key."""
        if self.fold:
            key = key.casefold()
        data = key.encode("utf-8", "surrogateescape")
        if self.nul != NUL_WITHOUT:
            value = self.get(data + b"\0")
            if value is not None:
                self.nul = NUL_WITH
                return decode_value(value)
        if self.nul != NUL_WITH:
            value = self.get(data)
            if value is not None:
                self.nul = NUL_WITHOUT
                return decode_value(value)
        return None
