# cython: language_level=3, annotation_typing=False
"""QueueFileBuilder and MessageBuilder: a message's queue file while cleanup builds it;
one source run as Python and compiled.

Postfix counterpart: the queue file cleanup writes while it receives a message
(src/cleanup/cleanup_envelope.c ... cleanup_final.c, src/global/mail_stream.c).

    QueueFileBuilder(line_limit)
        a Postfix queue file built in order (envelope, content, extracted, end) as
        encoded chunks; fastpost.mail.queue.message documents the layout.
    MessageBuilder(committer, queue_id, line_limit, spill_threshold)
        one message being received: its queue ID, its QueueFileBuilder (``records``),
        the spill of a large message to a file of its own (LargeFile), its state;
        fastpost.mail.queue.builder documents its use.

Compiled by setup.py as fastpost.mail.queue._builder_c, typed by
ext/fastpost/mail/queue/_builder_c.pxd (Cython pure-Python mode, docs/conventions.md):
a message's two builders are made and freed once per message on cleanup's loop: as
compiled classes ~2.5k instructions instead of ~7.3k (benchmarks/kernels/bench_builder.py),
and their plain_envelope / plain_content passes run compiled too. The selector is
fastpost.mail.queue.builder; message re-exports QueueFileBuilder.

Parameters: line_length_limit (content line pieces), fastpost_queue_large_message_size.
Diagnostics: ValueError for records added out of order (a bug in the caller);
InsufficientStorage from write() when spilling finds the disk full; RuntimeError when
used after commit or abort.
"""

from __future__ import annotations

from fastpost._accel import select
from fastpost.mail import rectype as R
from fastpost.mail.content import encode_text
from fastpost.mail.queue.qfparts import (
    QMGR_FLAG_NONE, SIZE_RECORD_LEN, Recipient, _bytes, _int, _parse_time, _text, size_payload,
)
from fastpost.mail.queue.largefile import LargeFile
from fastpost.mail.record import encode_record, encode_records

_ENVELOPE_BUILD_TYPES = frozenset(b"TcFILSDRO/WVA>K<ionfdPre")  # what producers may add
_EXTRACT_BUILD_TYPES = frozenset(b"DRO/PreAFIL>Kon")
_RCPT_ATTRS = frozenset({"dsn_orig_rcpt", "notify_flags"})  # attributes of the next recipient
_RCPT_ATTR_NAMES = frozenset(n.encode() for n in _RCPT_ATTRS)
_RCPT_RECORDS = frozenset({R.REC_TYPE_RCPT, R.REC_TYPE_DONE, R.REC_TYPE_ORCP, R.REC_TYPE_DSN_ORCPT,
                           R.REC_TYPE_DSN_NOTIFY})


#: The builder's sections, in order (QueueFileBuilder.ENVELOPE ... DONE).
_ENVELOPE = 0
_CONTENT = 1
_EXTRACTED = 2
_DONE = 3

#: cleanup's common-case envelope kernel (see QueueFileBuilder.plain_envelope).
_envblock = select("fastpost.mail._envblock_c", "fastpost.mail._envblock_py")

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

    ENVELOPE = _ENVELOPE
    CONTENT = _CONTENT
    EXTRACTED = _EXTRACTED
    DONE = _DONE

    def __init__(self, line_limit: int = 2048):
        if line_limit < 1:
            raise ValueError("line_limit must be >= 1")
        self.line_limit = line_limit
        self.chunks = [_SIZE_PLACEHOLDER]
        self.offset = SIZE_RECORD_LEN  # bytes produced so far (including taken chunks)
        self.section = _ENVELOPE
        self.arrival = None  # float, once the T record is in
        self.sender = None  # str, once the S record is in
        self.recipients = []
        self.attrs = {}
        self.data_offset = 0
        self.xtra_offset = 0
        self.qmgr_flags = QMGR_FLAG_NONE
        self.smtputf8 = 0
        self._pending = b""  # partial content line
        self._pending_rcpt = {}

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
        self._need(_ENVELOPE, "envelope record")
        if rtype not in _ENVELOPE_BUILD_TYPES:
            raise ValueError(f"record type {chr(rtype)!r} is not an envelope record")
        data = _bytes(data)
        if rtype == R.REC_TYPE_TIME:
            self.arrival = _parse_time(data)
        elif rtype == R.REC_TYPE_FROM:
            self.sender = _text(data)
        return self._put_noted(rtype, data, False)

    def _put_noted(self, rtype, data, extracted):
        """Put an envelope or extracted record, noting what it says of the message:
        an A record's attribute, a recipient's O/o/n data, the R/D record's
        recipient (its offset returned)."""
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
            self._add_rcpt(at, data, rtype == R.REC_TYPE_DONE, extracted)
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
        self._need(_ENVELOPE, "envelope record")
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
        self._need(_ENVELOPE, "envelope record")
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
        if self.section > _ENVELOPE:  # _need(ENVELOPE), without its call
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
        if self.section != _ENVELOPE:
            raise ValueError("queue file builder: plain_content after the envelope section")
        if self.arrival is None:
            raise ValueError("queue file builder: no arrival time (call time())")
        if self.sender is None:
            raise ValueError("queue file builder: no sender")
        chunks = self.chunks
        chunks.append(_MESG_RECORD)
        offset = self.offset + len(_MESG_RECORD)
        self.data_offset = offset
        self.section = _CONTENT
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
        self.section = _DONE
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
        if self.section == _ENVELOPE:
            self._put(R.REC_TYPE_MESG, b"")
            self.data_offset = self.offset
            self.section = _CONTENT

    def write(self, text: bytes) -> None:
        """Add message text (lines ending in LF or CRLF, in chunks of any size)."""
        self._need(_CONTENT, "message text")
        self._start_content()
        data = self._pending + text if self._pending else text
        recs, used = encode_text(data, self.line_limit, False)
        if recs:
            self.chunks.append(recs)
            self.offset += len(recs)
        self._pending = data[used:]

    def content_record(self, rtype: int, data: bytes) -> None:
        """Add one content record as is (N or L), for producers that already have records."""
        self._need(_CONTENT, "content record")
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
        if self.section == _CONTENT:
            self._flush_text()
            self.xtra_offset = self._put(R.REC_TYPE_XTRA, b"")
            self.section = _EXTRACTED

    def extracted(self, rtype: int, data: bytes | str) -> int:
        """Add a record to the extracted section (e.g. R from sendmail -t); return its offset."""
        self._need(_EXTRACTED, "extracted record")
        if rtype not in _EXTRACT_BUILD_TYPES:
            raise ValueError(f"record type {chr(rtype)!r} is not an extracted record")
        self._start_extracted()
        return self._put_noted(rtype, _bytes(data), True)

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
        if self.section == _DONE:
            return
        if self.arrival is None:
            raise ValueError("queue file builder: no arrival time (call time())")
        if self.sender is None:
            raise ValueError("queue file builder: no sender")
        self._start_extracted()
        self._put(R.REC_TYPE_END, b"")
        self.section = _DONE

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


class MessageBuilder:
    """One message being received; see the module docstring."""

    def __init__(self, committer, queue_id: str, line_limit: int, spill_threshold: int):
        self.committer = committer
        self.queue_id = queue_id
        self.records = QueueFileBuilder(line_limit)
        self.spill_threshold = spill_threshold
        self.large = None
        self.state = "open"  # open, committing, committed, aborted

    # -- envelope (delegated; see QueueFileBuilder) --------------------------------------

    def time(self, seconds: float) -> None:
        self.records.time(seconds)

    def attr(self, name: str, value: str) -> None:
        self.records.attr(name, value)

    def add_attrs(self, pairs) -> None:
        self.records.add_attrs(pairs)

    def envelope_many(self, records) -> None:
        self.records.envelope_many(records)

    def set_sender(self, address: str) -> None:
        self.records.set_sender(address)

    def add_recipient(self, address: str, orig: str | None = None, **dsn) -> int:
        return self.records.add_recipient(address, orig, **dsn)

    def envelope(self, rtype: int, data) -> int:
        return self.records.envelope(rtype, data)

    def extracted(self, rtype: int, data) -> int:
        return self.records.extracted(rtype, data)

    @property
    def content_length(self) -> int:
        return self.records.content_length

    @property
    def size(self) -> int:
        """Bytes of queue file built so far."""
        return self.records.offset

    # -- content ----------------------------------------------------------------------

    async def write(self, text: bytes) -> None:
        """Add message text; spill to the message's own file past the threshold."""
        self._check_open()
        self.records.write(text)
        if self.large is not None or self.records.offset >= self.spill_threshold:
            await self.committer.run_io(self._spill)

    def write_nowait(self, text: bytes) -> bool:
        """Add message text without spilling; True when the caller should ``await spill()``."""
        self._check_open()
        self.records.write(text)
        return self.large is not None or self.records.offset >= self.spill_threshold

    async def spill(self) -> None:
        """Move what is buffered to the message's own file (in the I/O thread)."""
        self._check_open()
        await self.committer.run_io(self._spill)

    def _spill(self) -> None:
        if self.large is None:
            self.large = LargeFile(self.committer.store, self.queue_id)
        self.large.append(self.records.take_chunks())

    def _check_open(self) -> None:
        if self.state != "open":
            raise RuntimeError(f"message {self.queue_id} is {self.state}")

    # -- end --------------------------------------------------------------------------

    def abort(self) -> None:
        """Forget the message (and remove its file, if it has one)."""
        if self.state in ("committed", "aborted"):
            return
        self.state = "aborted"
        if self.large is not None:
            self.large.discard()
            self.large = None

    def __del__(self):
        large = getattr(self, "large", None)
        if large is not None and getattr(self, "state", "") != "committed":
            large.discard()
