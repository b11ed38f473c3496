"""A message as a Postfix queue file: building one, and reading one back.

Postfix counterpart: src/cleanup/cleanup_envelope.c, cleanup_message.c,
cleanup_extracted.c, cleanup_final.c (writing); src/qmgr/qmgr_message.c and
src/postcat/postcat.c (reading); src/global/rec_type.h (record types).

Every message in the fastpost queue is stored as the exact bytes of a Postfix queue
file, so that exporting one is a copy and importing one is a parse:

    C  sizes: "%15ld %15ld %15ld %15ld %15ld %15ld" = content length, offset of the
       first content record, recipient count, qmgr flags, content length, smtputf8
    T  arrival time "sec usec";  A create_time=sec
    ...envelope records in the order the producer gives them: A attributes, F, S, and
       per recipient its DSN records (A dsn_orig_rcpt=..., n, o), O, then R
    M  (empty) start of content, then N/L content records
    X  (empty) start of the extracted section, then its records
    E  (empty) end

"content length" is the byte span of the content records (from the first one to the
X record), which is what Postfix writes and what mailq shows as the size. Recipients
are identified by the offset of their R record, as in Postfix's defer logs
(``offset=626``). A delivered recipient's R becomes D only when the message is exported;
inside fastpost the index holds per-recipient status.

QueueFileBuilder builds one message in memory, in chunks that can be written out as
they are produced (the committer spills large messages to their own file); it is
compiled with MessageBuilder (fastpost.mail.queue._builder_py, through the selector
fastpost.mail.queue.builder) and re-exported here. parse()
reads a queue file (ours, or one written by Postfix, following pointer records) into a
ParsedMessage.

Parameters: line_length_limit (content line pieces), queue_file_attribute_count_limit
(checked by parse when asked), both passed in by the caller.
Diagnostics: CorruptQueueFile (a ValueError) naming the offset and what is wrong;
ValueError for a builder used out of order (an internal bug of the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastpost._accel import select
from fastpost.mail import rectype as R
from fastpost.mail.content import decode_text
from fastpost.mail.queue.builder import QueueFileBuilder  # noqa: F401 - re-exported
from fastpost.mail.queue.qfparts import (  # noqa: F401 - re-exported: this module's API
    MAX_RECORD, QMGR_FLAG_NONE, SIZE_FORMAT, SIZE_PAYLOAD_LEN, SIZE_RECORD_LEN, CorruptQueueFile,
    Recipient, _bytes, _int, _parse_time, _text, size_payload,
)
from fastpost.mail.record import CorruptRecord

#: the record walk of every reader (parse, read_envelope, record_at).
_qwalk = select("fastpost.mail.queue._qwalk_c", "fastpost.mail.queue._qwalk_py")


@dataclass(slots=True)
class ParsedMessage:
    """What a queue file says, without its content text."""

    size: int  # content length (C field 1): what mailq shows
    data_offset: int  # offset of the first content record
    xtra_offset: int  # offset of the X record
    rcpt_count: int  # C field 3
    qmgr_flags: int  # C field 4
    smtputf8: int  # C field 6
    arrival: float  # T record, seconds with microseconds
    sender: str | None  # S record (None if missing; "" for the null sender)
    recipients: list[Recipient]
    attrs: dict[str, str]  # A records, last one wins (dsn_orig_rcpt excluded)
    records: list[tuple[int, int, bytes]] = field(default_factory=list)  # (offset, type, payload) in logical order
    end_offset: int = 0  # offset just past the E record

    @property
    def live_recipients(self) -> list[Recipient]:
        """Recipients not yet delivered."""
        return [r for r in self.recipients if not r.done]


def record_at(data, pos: int) -> tuple[int, int, int]:
    """Decode the record header at ``pos``: return (type, payload start, payload end).

    CorruptQueueFile for a type byte of 0, a bad length, or a record past the end.
    """
    try:
        return _qwalk.record_at(data, pos, MAX_RECORD)
    except CorruptRecord as exc:
        raise CorruptQueueFile(str(exc)) from None


def read_records(data, follow_pointers: bool = True, skip_content: bool = False) -> list:
    """Return (offset, type, payload) of every record up to E, in logical order.

    Pointer records ("p", written by Postfix when a header or recipient is edited in
    place) are followed unless ``follow_pointers`` is false (they are then listed
    like other records). With ``skip_content`` the content records are left out:
    when the C record's data offset and content length point at an X record, reading
    jumps there. A pointer loop, a pointer out of the file, a record that does not
    decode or a missing E record is CorruptQueueFile. (The walk is a kernel:
    fastpost.mail.queue._qwalk_c, reference _qwalk_py.)
    """
    try:
        return _qwalk.walk_records(data, follow_pointers, skip_content, MAX_RECORD)
    except CorruptRecord as exc:
        raise CorruptQueueFile(str(exc)) from None


def parse(data: bytes, *, keep_records: bool = False) -> ParsedMessage:
    """Read a queue file's envelope, recipients and section offsets.

    Works on fastpost's files and on files written by Postfix (pointer records are
    followed; padding and killed records skipped). Raise CorruptQueueFile for anything
    Postfix's qmgr would refuse: no C/T/S record, a record of the wrong section, no E.
    """
    records = read_records(data, skip_content=not keep_records)
    if not records or records[0][1] != R.REC_TYPE_SIZE:
        raise CorruptQueueFile("first record is not a size record")
    fields = records[0][2].split()
    try:
        nums = [int(f) for f in fields]
    except ValueError:
        raise CorruptQueueFile(f"bad size record {records[0][2][:60]!r}") from None
    if len(nums) < 3:
        raise CorruptQueueFile(f"size record has {len(nums)} fields, need at least 3")
    nums += [0] * (6 - len(nums))
    arrival = None
    sender = None
    recipients: list[Recipient] = []
    attrs: dict[str, str] = {}
    pending: dict = {}
    section = 0  # 0 envelope, 1 content, 2 extracted
    data_offset = xtra_offset = 0
    end_offset = 0
    for offset, rtype, payload in records[1:]:
        if rtype == R.REC_TYPE_PTR or rtype == R.REC_TYPE_DTXT:
            continue
        if section == 0:
            if rtype == R.REC_TYPE_MESG:
                section = 1
                data_offset = record_at(data, offset)[2]
                continue
            if rtype not in R.ENVELOPE_TYPES:
                raise CorruptQueueFile(f"unexpected record type {rtype} in envelope at offset {offset}")
        elif section == 1:
            if rtype == R.REC_TYPE_XTRA:
                section = 2
                xtra_offset = offset
                continue
            if rtype not in R.CONTENT_TYPES:
                raise CorruptQueueFile(f"unexpected record type {rtype} in content at offset {offset}")
            continue
        else:
            if rtype == R.REC_TYPE_END:
                end_offset = offset + 2
                break
            if rtype not in R.EXTRACT_TYPES:
                raise CorruptQueueFile(f"unexpected record type {rtype} in extracted section at offset {offset}")
        if rtype == R.REC_TYPE_TIME:
            arrival = _parse_time(payload)
        elif rtype == R.REC_TYPE_FROM:
            sender = _text(payload)
        elif rtype == R.REC_TYPE_ATTR:
            name, eq, value = _text(payload).partition("=")
            if not eq:
                raise CorruptQueueFile(f"named attribute without '=' at offset {offset}")
            if name == "dsn_orig_rcpt":
                pending["dsn_orcpt"] = value
            elif name == "notify_flags" and value.isascii() and value.isdigit():
                pending["dsn_notify"] = int(value)  # how Postfix's cleanup writes NOTIFY
            else:
                attrs[name] = value
        elif rtype == R.REC_TYPE_ORCP:
            pending["orig"] = _text(payload)
        elif rtype == R.REC_TYPE_DSN_ORCPT:
            pending["dsn_orcpt"] = _text(payload)
        elif rtype == R.REC_TYPE_DSN_NOTIFY:
            pending["dsn_notify"] = _int(payload)
        elif rtype in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE):
            recipients.append(Recipient(offset, _text(payload), pending.get("orig"), pending.get("dsn_orcpt"),
                                        pending.get("dsn_notify", 0), rtype == R.REC_TYPE_DONE, section == 2))
            pending = {}
        elif rtype == R.REC_TYPE_DRCP:
            pending = {}
    if section != 2 or not end_offset:
        raise CorruptQueueFile("missing content or extracted section")
    if arrival is None:
        arrival = float(_int(attrs["create_time"])) if attrs.get("create_time", "").isdigit() else None
    if arrival is None:
        raise CorruptQueueFile("no arrival time record")
    if sender is None:
        raise CorruptQueueFile("no sender record")
    return ParsedMessage(
        size=nums[0], data_offset=data_offset, xtra_offset=xtra_offset, rcpt_count=nums[2],
        qmgr_flags=nums[3], smtputf8=nums[5], arrival=arrival, sender=sender,
        recipients=recipients, attrs=attrs, records=records if keep_records else [],
        end_offset=end_offset,
    )


def content_text(data, parsed: ParsedMessage | None = None, eol: bytes = b"\n") -> bytes:
    """Return the message text (headers and body), following pointer records."""
    out = []
    pos = (parsed or parse(data)).data_offset
    size = len(data)
    jumps = 0
    while pos < size:
        try:
            text, pos, stop = decode_text(data, pos, MAX_RECORD, eol)
        except CorruptRecord as exc:
            raise CorruptQueueFile(str(exc)) from None
        out.append(text)
        if stop == R.REC_TYPE_XTRA:
            break
        rtype, start, end = record_at(data, pos)
        if rtype == R.REC_TYPE_PTR:
            target = _int(bytes(data[start:end]).strip() or b"0")
            jumps += 1
            if target and (jumps > 100_000 or not 0 < target < size):
                raise CorruptQueueFile(f"bad pointer record at offset {pos}")
            pos = target or end
        elif rtype == R.REC_TYPE_DTXT:
            pos = end
        else:
            raise CorruptQueueFile(f"unexpected record type {rtype} in content at offset {pos}")
    return b"".join(out)


def mark_done(data: bytes, offsets) -> bytes:
    """Return the file with the R records at ``offsets`` turned into D (export)."""
    buf = bytearray(data)
    for off in offsets:
        if buf[off] not in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE):
            raise ValueError(f"no recipient record at offset {off}")
        buf[off] = R.REC_TYPE_DONE
    return bytes(buf)
