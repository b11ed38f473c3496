"""The pieces of a Postfix queue file that its builder and its reader share.

Postfix counterpart: src/global/rec_type.h and the record conventions of
src/cleanup/cleanup_envelope.c (writing) and src/qmgr/qmgr_message.c (reading).

CorruptQueueFile (the readers' error), Recipient (one recipient as its records say),
the C record's fixed layout (size_payload) and the small decoders of record payloads.
fastpost.mail.queue.message (reading) and fastpost.mail.queue._builder_py (writing,
compiled) both import them from here; message re-exports them.

Diagnostics: CorruptQueueFile from _parse_time and _int for payloads that do not
decode.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Fixed layout of the C record payload: six right-aligned %15ld fields.
SIZE_FORMAT = b"%15d %15d %15d %15d %15d %15d"
SIZE_PAYLOAD_LEN = 6 * 15 + 5
#: The whole C record (type, one length byte, payload).
SIZE_RECORD_LEN = 2 + SIZE_PAYLOAD_LEN
#: Largest record payload accepted when reading a queue file.
MAX_RECORD = 1 << 24

#: qmgr flags in the C record (Postfix's QMGR_READ_FLAG_*): only carried through.
QMGR_FLAG_NONE = 0


class CorruptQueueFile(ValueError):
    """A queue file that cannot be trusted; str() says where and why."""


@dataclass(slots=True)
class Recipient:
    """One recipient of a message, as its records say."""

    offset: int  # offset of its R (or D) record in the queue file: its identity
    address: str  # the R record payload (internal form)
    orig: str | None = None  # the O record before it (original recipient), if any
    dsn_orcpt: str | None = None  # the dsn_orig_rcpt attribute or o record, if any
    dsn_notify: int = 0  # the n record, if any
    done: bool = False  # a D record (already delivered) in an imported file
    extracted: bool = False  # from the extracted section (sendmail -t)

    @property
    def domain(self) -> str:
        """The domain part, lower-cased ("" for a local address)."""
        at = self.address.rfind("@")
        return self.address[at + 1 :].lower() if at >= 0 else ""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def size_payload(content_length: int, data_offset: int, rcpt_count: int,
                 qmgr_flags: int = 0, smtputf8: int = 0) -> bytes:
    """Return the C record payload (fixed width, so it can be patched in place)."""
    return SIZE_FORMAT % (content_length, data_offset, rcpt_count, qmgr_flags, content_length, smtputf8)


def _parse_time(data: bytes) -> float:
    parts = data.split()
    try:
        sec = int(parts[0])
        usec = int(parts[1]) if len(parts) > 1 else 0
    except (IndexError, ValueError):
        raise CorruptQueueFile(f"bad arrival time record {data[:40]!r}") from None
    return sec + usec / 1_000_000


def _int(data: bytes) -> int:
    try:
        return int(data)
    except ValueError:
        raise CorruptQueueFile(f"bad number {data[:40]!r}") from None
