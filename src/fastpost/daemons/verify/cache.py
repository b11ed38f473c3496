"""The address verification cache: what is known about each address, and when to ask again.

Postfix counterpart: the cache policy of src/verify/verify.c (its dict_cache use).

    table = open_table(cfg.get("address_verify_map"))     # LmdbTable, or MemoryTable for ""
    cache = VerifyCache(table, Policy.from_config(cfg))
    status, text, probe = cache.query("user@example.com")  # probe: send one now
    cache.update("user@example.com", STAT_OK, "250 2.1.5 Ok")
    retained, dropped = cache.cleanup()

Entries are Postfix's text form, ``STATUS:PROBED:UPDATED:TEXT`` (STATUS 0 deliverable,
1 temporary failure, 2 undeliverable, 3 in progress; PROBED the time the last probe
went out, 0 when none is outstanding; UPDATED the time of the last result), so that
``fastpost map -q ADDR lmdb:$data_directory/verify_cache`` shows what ``postmap -q``
shows for Postfix's cache. Keys are addresses folded to lower case.

The rules (address_verify_* parameters):

* no entry, or an expired one (a deliverable result older than
  positive_expire_time, an undeliverable or deferred one older than
  negative_expire_time, an in-progress one whose probe went out more than
  ``PROBE_TTL`` ago): the answer is "in progress" (3, "Address verification in
  progress") and a probe is sent; the entry becomes ``3:NOW:0:...``;
* an entry older than its refresh time (positive_refresh_time /
  negative_refresh_time): its result is the answer, and a probe is sent in the
  background unless one went out less than ``PROBE_TTL`` ago;
* a result never replaces a deliverable entry with a failure: a failed probe for
  an address cached as deliverable is dropped (the address is asked again at the
  next query, so a single failure cannot turn good mail away);
* with address_verify_negative_cache = no a failure is not kept (and any in-progress
  entry goes), so the next query probes again;
* cleanup (every address_verify_cache_cleanup_interval) removes expired entries
  and records ``_LAST_CACHE_CLEANUP_COMPLETED_`` as Postfix's cache does.

Failures: a table that cannot be read or written raises OSError/lmdb.Error; the
daemon answers "temporary failure" (1, "address verification cache problem").
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["STAT_OK", "STAT_DEFER", "STAT_BOUNCE", "STAT_TODO", "IN_PROGRESS", "PROBE_TTL",
           "CLEANUP_KEY", "Policy", "VerifyCache", "MemoryTable", "LmdbTable", "open_table",
           "parse_entry", "format_entry"]

STAT_OK, STAT_DEFER, STAT_BOUNCE, STAT_TODO = 0, 1, 2, 3
IN_PROGRESS = "Address verification in progress"
#: a probe that has not answered after this long is taken as lost (seconds)
PROBE_TTL = 1000
CLEANUP_KEY = "_LAST_CACHE_CLEANUP_COMPLETED_"


@dataclass
class Policy:
    positive_expire: float = 31 * 86400
    positive_refresh: float = 7 * 86400
    negative_expire: float = 3 * 86400
    negative_refresh: float = 3 * 3600
    negative_cache: bool = True

    @classmethod
    def from_config(cls, cfg) -> "Policy":
        return cls(positive_expire=cfg.typed("address_verify_positive_expire_time"),
                   positive_refresh=cfg.typed("address_verify_positive_refresh_time"),
                   negative_expire=cfg.typed("address_verify_negative_expire_time"),
                   negative_refresh=cfg.typed("address_verify_negative_refresh_time"),
                   negative_cache=cfg.get_bool("address_verify_negative_cache"))


def parse_entry(value: str) -> tuple[int, int, int, str] | None:
    """(status, probed, updated, text) of a cache value; None if malformed."""
    parts = value.split(":", 3)
    if len(parts) != 4:
        return None
    try:
        status, probed, updated = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if status not in (STAT_OK, STAT_DEFER, STAT_BOUNCE, STAT_TODO):
        return None
    return status, probed, updated, parts[3]


def format_entry(status: int, probed: float, updated: float, text: str) -> str:
    return f"{status}:{int(probed)}:{int(updated)}:{text}"


class MemoryTable:
    """address_verify_map = (empty): the cache lives in the daemon only."""

    spec = "(memory)"

    def __init__(self):
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def items(self):
        return list(self.data.items())

    def close(self) -> None:
        pass


class LmdbTable:
    """An indexed table file (``NAME.lmdb``, the layout fastpost.mail.maps.indexed reads),
    updated in place by its one writer, the verify daemon. Keys and values carry the
    terminating NUL that ``postmap`` builds use. Commits are not synced: this is a
    cache, and a crash at worst forgets recent results."""

    def __init__(self, spec: str, name: str):
        import lmdb

        self.spec = spec
        self.path = name + ".lmdb"
        self.env = lmdb.open(self.path, subdir=False, map_size=1 << 30, lock=False,
                             sync=False, metasync=False, max_dbs=0)

    @staticmethod
    def _k(key: str) -> bytes:
        return key.encode("utf-8", "surrogateescape") + b"\0"

    def get(self, key: str) -> str | None:
        with self.env.begin() as txn:
            raw = txn.get(self._k(key))
        if raw is None:
            return None
        return raw.rstrip(b"\0").decode("utf-8", "surrogateescape")

    def put(self, key: str, value: str) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(self._k(key), value.encode("utf-8", "surrogateescape") + b"\0")

    def delete(self, key: str) -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(self._k(key))

    def items(self):
        with self.env.begin() as txn:
            return [(k.rstrip(b"\0").decode("utf-8", "surrogateescape"),
                     v.rstrip(b"\0").decode("utf-8", "surrogateescape"))
                    for k, v in txn.cursor()]

    def close(self) -> None:
        self.env.close()


def open_table(spec: str):
    """The cache table for an address_verify_map value.

    ``btree:``, ``hash:`` and ``lmdb:`` name one LMDB file (fastpost's indexed types);
    an empty value keeps the cache in memory. Anything else is a ValueError naming it
    (a shared or network cache is not supported)."""
    spec = spec.strip()
    if not spec:
        return MemoryTable()
    kind, sep, name = spec.partition(":")
    if not sep or kind not in ("btree", "hash", "lmdb") or not name:
        raise ValueError(f"address_verify_map = {spec}: unsupported table type "
                         "(use btree:, hash: or lmdb: with a file name, or empty)")
    os.makedirs(os.path.dirname(os.path.abspath(name)) or ".", exist_ok=True)
    return LmdbTable(spec, name)


class VerifyCache:
    """The cache rules (module docstring); ``clock`` is for the tests."""

    def __init__(self, table, policy: Policy, clock=time.time):
        self.table = table
        self.policy = policy
        self.clock = clock

    @staticmethod
    def key(address: str) -> str:
        return address.lower()

    def _expired(self, status: int, probed: int, updated: int, now: float) -> bool:
        p = self.policy
        if status == STAT_TODO:
            return probed + PROBE_TTL < now
        if status == STAT_OK:
            return updated + p.positive_expire < now
        return updated + p.negative_expire < now

    def _stale(self, status: int, updated: int, now: float) -> bool:
        p = self.policy
        refresh = p.positive_refresh if status == STAT_OK else p.negative_refresh
        return updated + refresh < now

    def lookup(self, address: str) -> tuple[int, int, int, str] | None:
        value = self.table.get(self.key(address))
        return None if value is None else parse_entry(value)

    def query(self, address: str) -> tuple[int, str, bool]:
        """(status, text, probe) for ``address``; records a probe it asks for."""
        key = self.key(address)
        now = self.clock()
        entry = self.lookup(address)
        if entry is None or self._expired(*entry[:3], now):
            self.table.put(key, format_entry(STAT_TODO, now, 0, IN_PROGRESS))
            return STAT_TODO, IN_PROGRESS, True
        status, probed, updated, text = entry
        if status == STAT_TODO:
            return status, text, False
        if self._stale(status, updated, now) and probed + PROBE_TTL < now:
            self.table.put(key, format_entry(status, now, updated, text))
            return status, text, True
        return status, text, False

    def update(self, address: str, status: int, text: str) -> bool:
        """Record a probe's result; False when it was dropped (module docstring)."""
        key = self.key(address)
        now = self.clock()
        old = self.lookup(address)
        if status != STAT_OK:
            if old is not None and old[0] == STAT_OK and not self._expired(*old[:3], now):
                self.table.put(key, format_entry(STAT_OK, 0, old[2], old[3]))
                return False
            if not self.policy.negative_cache:
                self.table.delete(key)
                return False
        self.table.put(key, format_entry(status, 0, now, text))
        return True

    def cleanup(self) -> tuple[int, int]:
        """Remove expired entries; (retained, dropped)."""
        now = self.clock()
        retained = dropped = 0
        for key, value in self.table.items():
            if key == CLEANUP_KEY:
                continue
            entry = parse_entry(value)
            if entry is None or self._expired(*entry[:3], now):
                self.table.delete(key)
                dropped += 1
            else:
                retained += 1
        self.table.put(CLEANUP_KEY, str(int(now)))
        return retained, dropped
