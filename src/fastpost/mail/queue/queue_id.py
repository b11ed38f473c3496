"""Queue IDs in Postfix's short and long forms, unique without inode numbers.

Postfix counterpart: src/global/mail_queue.c (mail_queue_enter, mail_queue_id_ok),
src/global/safe_ultostr.c.

Postfix names a queue file after the time it was created and its inode number, which is
unique while the file exists. The fastpost queue has no file per message, so the inode's
place is taken by a number from a store-wide counter kept in the queue index: each
committer reserves a block of counter values in one durable index transaction and hands
them out in order, and the counter never goes back. Two messages therefore never get the
same number, whatever the clock does, and an ID is never reused (it only grows longer:
a short ID gains a hex digit every 16x more messages).

    short (enable_long_queue_ids = no)   %05X of the microseconds, then %X of the number
                                         e.g. 3F1A21C0A35
    long  (enable_long_queue_ids = yes)  seconds in base 52 (at least 6 digits), the
                                         microseconds in base 52 (exactly 4 digits), "z",
                                         the number in base 51, e.g. 4X3vqF3RdBz5Yqn

The base-52 alphabet is digits and consonants (no vowels, so no words); base 51 drops
"z", which makes "z" a separator. A short ID is always 5 hex digits of microseconds
followed by the number, so (microseconds, number) maps to exactly one ID, and no short
ID can equal a long one (long IDs contain a lower-case letter or "z").

Imported Postfix queue files keep their IDs; the importer raises the counter above
their inode numbers so that generated IDs cannot collide with them
(fastpost.mail.queue.importer).

Parameters: enable_long_queue_ids (chosen by the caller).
Diagnostics: ValueError from parse_* on a malformed ID; valid_queue_id() is a predicate.
"""

from __future__ import annotations

import re

#: Postfix's base-52 alphabet: digits and consonants.
ALPHABET52 = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
#: base 51 = the same without "z" (the separator in long IDs).
ALPHABET51 = ALPHABET52[:51]
_VALUE52 = {c: i for i, c in enumerate(ALPHABET52)}

_SHORT_RE = re.compile(r"[0-9A-F]{6,}\Z")
_LONG_RE = re.compile(r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+\Z")
#: What Postfix accepts as a queue file name: letters and digits, bounded length.
_ANY_RE = re.compile(r"[0-9A-Za-z]{1,64}\Z")


def _encode(value: int, alphabet: str, min_width: int) -> str:
    base = len(alphabet)
    digits = []
    while value:
        value, rem = divmod(value, base)
        digits.append(alphabet[rem])
    text = "".join(reversed(digits)) or alphabet[0]
    return text.rjust(min_width, alphabet[0])


def _decode(text: str, base: int) -> int:
    value = 0
    for ch in text:
        digit = _VALUE52.get(ch)
        if digit is None or digit >= base:
            raise ValueError(f"bad base-{base} digit {ch!r}")
        value = value * base + digit
    return value


def short_id(seconds: int, usec: int, number: int) -> str:
    """Return a short queue ID for a time and a unique number."""
    del seconds  # the short form carries only the microseconds, as Postfix's does
    if not 0 <= usec < 1_000_000 or number < 0:
        raise ValueError("usec must be in 0..999999 and number >= 0")
    return f"{usec:05X}{number:X}"


def long_id(seconds: int, usec: int, number: int) -> str:
    """Return a long queue ID for a time and a unique number."""
    if not 0 <= usec < 1_000_000 or number < 0 or seconds < 0:
        raise ValueError("seconds, usec and number must be >= 0, usec < 1000000")
    return _encode(seconds, ALPHABET52, 6) + _encode(usec, ALPHABET52, 4) + "z" + _encode(number, ALPHABET51, 1)


def make_id(long: bool, seconds: int, usec: int, number: int) -> str:
    """Return the short or long form, as enable_long_queue_ids says."""
    return long_id(seconds, usec, number) if long else short_id(seconds, usec, number)


def is_long(queue_id: str) -> bool:
    """True for an ID in the long form."""
    return bool(_LONG_RE.match(queue_id))


def parse_short(queue_id: str) -> tuple[int, int]:
    """Return (usec, number) of a short ID; ValueError if it is not one."""
    if not _SHORT_RE.match(queue_id):
        raise ValueError(f"not a short queue ID: {queue_id!r}")
    return int(queue_id[:5], 16), int(queue_id[5:], 16)


def parse_long(queue_id: str) -> tuple[int, int, int]:
    """Return (seconds, usec, number) of a long ID; ValueError if it is not one."""
    if not _LONG_RE.match(queue_id):
        raise ValueError(f"not a long queue ID: {queue_id!r}")
    head, _, tail = queue_id.rpartition("z")
    seconds = _decode(head[:-4], 52)
    usec = _decode(head[-4:], 52)
    if usec >= 1_000_000:
        raise ValueError(f"not a long queue ID: {queue_id!r} (microseconds out of range)")
    return seconds, usec, _decode(tail, 51)


def number_of(queue_id: str) -> int | None:
    """Return the unique number (Postfix: the inode) an ID carries, or None."""
    try:
        return parse_long(queue_id)[2] if is_long(queue_id) else parse_short(queue_id)[1]
    except ValueError:
        return None


def valid_queue_id(queue_id: str) -> bool:
    """True for a name Postfix would accept as a queue ID (letters and digits)."""
    return bool(_ANY_RE.match(queue_id))


def hash_dirs(queue_id: str, depth: int) -> list[str]:
    """Return the hashed subdirectory names Postfix uses for an ID (hash_queue_depth).

    Short IDs hash on their leading hex digits; long IDs on the hex digits of their
    decoded microseconds, as Postfix does.
    """
    if depth <= 0:
        return []
    if is_long(queue_id):
        try:
            usec = parse_long(queue_id)[1]
        except ValueError:
            return []
        key = f"{usec:05X}"
    else:
        key = queue_id
    return list(key[:depth])
