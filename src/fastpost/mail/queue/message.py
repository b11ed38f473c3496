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
they are produced (the committer spills large messages to their own file). parse()
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
from fastpost.mail.content import decode_text, encode_text
from fastpost.mail.record import CorruptRecord, encode_record, encode_records

#: Fixed layout of the C record payload: six right-aligned %15ld fields.
SIZE_FORMAT = b"%15d %15d %15d %15d %15d %15d"
SIZE_PAYLOAD_LEN = 6 * 15 + 5
#: The whole C record (type, one length byte, payload).
SIZE_RECORD_LEN = 2 + SIZE_PAYLOAD_LEN
#: Largest record payload accepted when reading a queue file.
MAX_RECORD = 1 << 24

#: qmgr flags in the C record (Postfix's QMGR_READ_FLAG_*): only carried through.
QMGR_FLAG_NONE = 0

_ENVELOPE_BUILD_TYPES = frozenset(b"TcFILSDRO/WVA>K<ionfdPre")  # what producers may add
_EXTRACT_BUILD_TYPES = frozenset(b"DRO/PreAFIL>Kon")
_RCPT_ATTRS = frozenset({"dsn_orig_rcpt", "notify_flags"})  # attributes of the next recipient
_RCPT_ATTR_NAMES = frozenset(n.encode() for n in _RCPT_ATTRS)
_RCPT_RECORDS = frozenset({R.REC_TYPE_RCPT, R.REC_TYPE_DONE, R.REC_TYPE_ORCP, R.REC_TYPE_DSN_ORCPT,
                           R.REC_TYPE_DSN_NOTIFY})


#: cleanup's common-case envelope kernel (see QueueFileBuilder.plain_envelope).
_envblock = select("fastpost.mail._envblock_c", "fastpost.mail._envblock_py")
#: the record walk of every reader (parse, read_envelope, record_at).
_qwalk = select("fastpost.mail.queue._qwalk_c", "fastpost.mail.queue._qwalk_py")


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


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def size_payload(content_length: int, data_offset: int, rcpt_count: int,
                 qmgr_flags: int = 0, smtputf8: int = 0) -> bytes:
    """Return the C record payload (fixed width, so it can be patched in place)."""
    return SIZE_FORMAT % (content_length, data_offset, rcpt_count, qmgr_flags, content_length, smtputf8)


#: The C record a builder starts with (completed by finish() / size_record()).
_SIZE_PLACEHOLDER = encode_record(R.REC_TYPE_SIZE, size_payload(0, 0, 0))
#: The fixed records plain_content() adds: M, X and E (built once).
_MESG_RECORD = encode_record(R.REC_TYPE_MESG, b"")
_XTRA_RECORD = encode_record(R.REC_TYPE_XTRA, b"")
_END_RECORD = encode_record(R.REC_TYPE_END, b"")
_XTRA_END_RECORDS = _XTRA_RECORD + _END_RECORD


class QueueFileBuilder:
    """Build a Postfix queue file in order: envelope, content, extracted, end.

    Encoded bytes accumulate in ``chunks``; the first SIZE_RECORD_LEN bytes are the C
    record, written with zeros and completed by finish() (size_record() gives its final
    bytes). take_chunks() hands over what is built so far, so a caller can stream a
    large message to a file while it is built.
    """

    ENVELOPE, CONTENT, EXTRACTED, DONE = range(4)

    def __init__(self, line_limit: int = 2048):
        if line_limit < 1:
            raise ValueError("line_limit must be >= 1")
        self.line_limit = line_limit
        self.chunks: list[bytes] = [_SIZE_PLACEHOLDER]
        self.offset = SIZE_RECORD_LEN  # bytes produced so far (including taken chunks)
        self.section = self.ENVELOPE
        self.arrival: float | None = None
        self.sender: str | None = None
        self.recipients: list[Recipient] = []
        self.attrs: dict[str, str] = {}
        self.data_offset = 0
        self.xtra_offset = 0
        self.qmgr_flags = QMGR_FLAG_NONE
        self.smtputf8 = 0
        self._pending = b""  # partial content line
        self._pending_rcpt: dict = {}

    # -- low level -------------------------------------------------------------------

    def _put(self, rtype: int, data: bytes) -> int:
        rec = encode_record(rtype, data)
        at = self.offset
        self.chunks.append(rec)
        self.offset += len(rec)
        return at

    def _need(self, section: int, what: str) -> None:
        if self.section > section:
            raise ValueError(f"queue file builder: {what} after the section it belongs to")

    # -- envelope --------------------------------------------------------------------

    def envelope(self, rtype: int, data: bytes | str) -> int:
        """Add any envelope record (type from Postfix's envelope set); return its offset."""
        self._need(self.ENVELOPE, "envelope record")
        if rtype not in _ENVELOPE_BUILD_TYPES:
            raise ValueError(f"record type {chr(rtype)!r} is not an envelope record")
        data = _bytes(data)
        if rtype == R.REC_TYPE_TIME:
            self.arrival = _parse_time(data)
        elif rtype == R.REC_TYPE_FROM:
            self.sender = _text(data)
        elif rtype == R.REC_TYPE_ATTR:
            self._note_attr(data)
        elif rtype == R.REC_TYPE_ORCP:
            self._pending_rcpt["orig"] = _text(data)
        elif rtype == R.REC_TYPE_DSN_ORCPT:
            self._pending_rcpt["dsn_orcpt"] = _text(data)
        elif rtype == R.REC_TYPE_DSN_NOTIFY:
            self._pending_rcpt["dsn_notify"] = _int(data)
        at = self._put(rtype, data)
        if rtype in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE):
            self._add_rcpt(at, data, rtype == R.REC_TYPE_DONE, False)
        return at

    def _note_attr(self, data: bytes) -> None:
        name, eq, value = _text(data).partition("=")
        if not eq:
            raise ValueError(f"named attribute without '=': {_text(data)!r}")
        if name == "dsn_orig_rcpt":
            self._pending_rcpt["dsn_orcpt"] = value
        elif name == "notify_flags" and value.isascii() and value.isdigit():
            self._pending_rcpt["dsn_notify"] = int(value)  # how Postfix's cleanup writes NOTIFY
        else:
            self.attrs[name] = value

    def _add_rcpt(self, at: int, data: bytes, done: bool, extracted: bool) -> None:
        p = self._pending_rcpt
        self.recipients.append(Recipient(at, _text(data), p.get("orig"), p.get("dsn_orcpt"),
                                         p.get("dsn_notify", 0), done, extracted))
        self._pending_rcpt = {}

    def time(self, seconds: float) -> None:
        """Add the arrival time (T "sec usec") and create_time attribute, as cleanup does."""
        for rtype, data in self.time_records(seconds):
            self.envelope(rtype, data)

    def attr(self, name: str, value: str) -> None:
        """Add a named attribute (A name=value)."""
        self.envelope(R.REC_TYPE_ATTR, f"{name}={value}")

    def envelope_many(self, records) -> None:
        """envelope() for many records, encoded in one buffer where it can.

        Recipient records and the records that belong to the next recipient (O, o, n,
        A dsn_orig_rcpt/notify_flags) go through envelope() one by one (their offsets
        and bookkeeping); everything else is checked and noted as envelope() does.
        """
        self._need(self.ENVELOPE, "envelope record")
        recs = []
        for rtype, data in records:
            if rtype not in _ENVELOPE_BUILD_TYPES:
                raise ValueError(f"record type {chr(rtype)!r} is not an envelope record")
            data = _bytes(data)
            if rtype in _RCPT_RECORDS or (rtype == R.REC_TYPE_ATTR and data.split(b"=", 1)[0] in _RCPT_ATTR_NAMES):
                if recs:
                    self._put_many(recs)
                    recs = []
                self.envelope(rtype, data)
                continue
            if rtype == R.REC_TYPE_TIME:
                self.arrival = _parse_time(data)
            elif rtype == R.REC_TYPE_FROM:
                self.sender = _text(data)
            elif rtype == R.REC_TYPE_ATTR:
                self._note_attr(data)
            recs.append((rtype, data))
        if recs:
            self._put_many(recs)

    @staticmethod
    def time_records(seconds: float) -> list:
        """The records time() adds: T "sec usec" and A create_time=sec."""
        sec = int(seconds)
        usec = min(999_999, int(round((seconds - sec) * 1_000_000)))
        return [(R.REC_TYPE_TIME, b"%d %d" % (sec, usec)), (R.REC_TYPE_ATTR, b"create_time=%d" % sec)]

    def add_attrs(self, pairs) -> None:
        """Add many named attributes (A name=value) in order, encoded in one buffer.

        The same records and bookkeeping as attr() for each pair.
        """
        self._need(self.ENVELOPE, "envelope record")
        recs = []
        notes = self.attrs
        for name, value in pairs:
            if "=" in name or name in _RCPT_ATTRS:
                if recs:
                    self._put_many(recs)
                    recs = []
                self.attr(name, value)
                continue
            notes[name] = value
            recs.append((R.REC_TYPE_ATTR, f"{name}={value}".encode("utf-8", "surrogateescape")))
        if recs:
            self._put_many(recs)

    def plain_envelope(self, arrival: float, filt, ident, ctx_local: bool, envid, ret, fullname,
                       sender: str, encoding, attrs: list, rcpts: list, orig_rcpt: bool,
                       dup_limit: int, dups: set):
        """A plain message's whole envelope in one kernel call; None: not plain.

        The same records and bookkeeping as time(), envelope_many() of the L/A/F/S
        records, attr("encoding"), add_attrs(attrs) and, per (dsn_orcpt, notify, orig,
        address) not in ``dups``, the A notify_flags / A dsn_orig_rcpt / O / R records
        cleanup writes (fastpost.mail._envblock_py says exactly what, and when it
        declines; tests/unit/mail/queue/test_envblock.py compares both with those calls).
        Returns (qmgr flag bits, recipients written).
        """
        if self.section > self.ENVELOPE:  # _need(ENVELOPE), without its call
            raise ValueError("queue file builder: envelope record after the section it belongs to")
        got = _envblock.envelope_block(arrival, filt, ident, ctx_local, envid, ret, fullname,
                                       sender, encoding, attrs, rcpts, orig_rcpt, dup_limit,
                                       dups, self.offset)
        if got is None:
            return None
        data, self.arrival, notes, recipients, qmgr, count = got
        self.sender = sender
        if self.attrs:
            self.attrs.update(notes)
        else:  # the common case: nothing noted yet, the kernel's fresh dict is ours
            self.attrs = notes
        add = self.recipients.append
        for at, address, orig, dsn_orcpt, notify in recipients:
            add(Recipient(at, address, orig, dsn_orcpt, notify, False, False))
        self.chunks.append(data)
        self.offset += len(data)
        return qmgr, count

    def plain_content(self, text: bytes, encoding, limit: int) -> bool:
        """A plain message's content and end in one call, after plain_envelope().

        Adds what write(text), then extracted(A, "encoding=<encoding>") (when
        ``encoding``) and finish() add, with the same bookkeeping (offsets, section,
        attrs), for a builder still in its envelope section. Returns False, with only
        the M record and the text added, when the offset after the text reaches
        ``limit`` (the caller's large-message size: it must not take this road then).
        ValueError as finish() (no arrival time or sender) before anything is added.
        """
        if self.section != self.ENVELOPE:
            raise ValueError("queue file builder: plain_content after the envelope section")
        if self.arrival is None:
            raise ValueError("queue file builder: no arrival time (call time())")
        if self.sender is None:
            raise ValueError("queue file builder: no sender")
        chunks = self.chunks
        chunks.append(_MESG_RECORD)
        offset = self.offset + len(_MESG_RECORD)
        self.data_offset = offset
        self.section = self.CONTENT
        recs, _ = encode_text(text, self.line_limit, True)
        if recs:
            chunks.append(recs)
            offset += len(recs)
        self.offset = offset
        if offset >= limit:
            return False
        self.xtra_offset = offset
        if encoding:
            attr = encode_record(R.REC_TYPE_ATTR, b"encoding=" + _bytes(encoding))
            self.attrs["encoding"] = encoding
            chunks.append(_XTRA_RECORD + attr + _END_RECORD)
            self.offset = offset + len(_XTRA_RECORD) + len(attr) + len(_END_RECORD)
        else:
            chunks.append(_XTRA_END_RECORDS)
            self.offset = offset + len(_XTRA_END_RECORDS)
        self.section = self.DONE
        return True

    def _put_many(self, recs: list) -> None:
        data = encode_records(recs)
        self.chunks.append(data)
        self.offset += len(data)

    def set_sender(self, address: str) -> None:
        """Add the envelope sender (S; "" is the null sender)."""
        self.envelope(R.REC_TYPE_FROM, address)

    def add_recipient(self, address: str, orig: str | None = None, *,
                      dsn_orcpt: str | None = None, dsn_notify: int = 0) -> int:
        """Add a recipient with its original address and DSN data; return its offset."""
        if dsn_orcpt is not None:
            self.attr("dsn_orig_rcpt", dsn_orcpt)
        if dsn_notify:
            self.envelope(R.REC_TYPE_DSN_NOTIFY, str(dsn_notify))
        if orig is not None:
            self.envelope(R.REC_TYPE_ORCP, orig)
        return self.envelope(R.REC_TYPE_RCPT, address)

    # -- content ---------------------------------------------------------------------

    def _start_content(self) -> None:
        if self.section == self.ENVELOPE:
            self._put(R.REC_TYPE_MESG, b"")
            self.data_offset = self.offset
            self.section = self.CONTENT

    def write(self, text: bytes) -> None:
        """Add message text (lines ending in LF or CRLF, in chunks of any size)."""
        self._need(self.CONTENT, "message text")
        self._start_content()
        data = self._pending + text if self._pending else text
        recs, used = encode_text(data, self.line_limit, False)
        if recs:
            self.chunks.append(recs)
            self.offset += len(recs)
        self._pending = data[used:]

    def content_record(self, rtype: int, data: bytes) -> None:
        """Add one content record as is (N or L), for producers that already have records."""
        self._need(self.CONTENT, "content record")
        if rtype not in (R.REC_TYPE_NORM, R.REC_TYPE_CONT):
            raise ValueError(f"record type {chr(rtype)!r} is not a content record")
        self._start_content()
        self._flush_text()
        self._put(rtype, data)

    def _flush_text(self) -> None:
        if self._pending:
            recs, _ = encode_text(self._pending, self.line_limit, True)
            self.chunks.append(recs)
            self.offset += len(recs)
            self._pending = b""

    # -- extracted -------------------------------------------------------------------

    def _start_extracted(self) -> None:
        self._start_content()
        if self.section == self.CONTENT:
            self._flush_text()
            self.xtra_offset = self._put(R.REC_TYPE_XTRA, b"")
            self.section = self.EXTRACTED

    def extracted(self, rtype: int, data: bytes | str) -> int:
        """Add a record to the extracted section (e.g. R from sendmail -t); return its offset."""
        self._need(self.EXTRACTED, "extracted record")
        if rtype not in _EXTRACT_BUILD_TYPES:
            raise ValueError(f"record type {chr(rtype)!r} is not an extracted record")
        self._start_extracted()
        data = _bytes(data)
        if rtype == R.REC_TYPE_ATTR:
            self._note_attr(data)
        elif rtype == R.REC_TYPE_ORCP:
            self._pending_rcpt["orig"] = _text(data)
        elif rtype == R.REC_TYPE_DSN_ORCPT:
            self._pending_rcpt["dsn_orcpt"] = _text(data)
        elif rtype == R.REC_TYPE_DSN_NOTIFY:
            self._pending_rcpt["dsn_notify"] = _int(data)
        at = self._put(rtype, data)
        if rtype in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE):
            self._add_rcpt(at, data, rtype == R.REC_TYPE_DONE, True)
        return at

    # -- end -------------------------------------------------------------------------

    @property
    def content_length(self) -> int:
        """Bytes of content records so far (the size mailq shows, once finished)."""
        if not self.data_offset:
            return 0
        end = self.xtra_offset or self.offset
        return end - self.data_offset + len(self._pending)

    def finish(self) -> None:
        """Close the extracted section and add the end record."""
        if self.section == self.DONE:
            return
        if self.arrival is None:
            raise ValueError("queue file builder: no arrival time (call time())")
        if self.sender is None:
            raise ValueError("queue file builder: no sender")
        self._start_extracted()
        self._put(R.REC_TYPE_END, b"")
        self.section = self.DONE

    def size_record(self) -> bytes:
        """Return the completed C record (after finish())."""
        length = self.xtra_offset - self.data_offset
        return encode_record(R.REC_TYPE_SIZE, size_payload(
            length, self.data_offset, len(self.recipients), self.qmgr_flags, self.smtputf8))

    def take_chunks(self) -> list[bytes]:
        """Return the chunks built since the last call and forget them."""
        out, self.chunks = self.chunks, []
        return out

    def build(self) -> bytes:
        """finish() and return the whole queue file (only if no chunks were taken)."""
        self.finish()
        if not self.chunks or len(self.chunks[0]) != SIZE_RECORD_LEN or self.offset != sum(map(len, self.chunks)):
            raise ValueError("queue file builder: chunks were taken; use size_record()")
        self.chunks[0] = self.size_record()
        return b"".join(self.chunks)


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
