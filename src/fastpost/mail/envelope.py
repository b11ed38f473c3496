"""What qmgr and the bounce daemon need from a queue file: its envelope, in one pass.

Postfix counterpart: src/qmgr/qmgr_message.c (qmgr_message_read), src/bounce/
bounce_notify_util.c (reading the original message's envelope).

``read_envelope(data)`` walks the records of a queue file (fastpost's or Postfix's,
pointer records followed, content skipped) and returns an Envelope: arrival time,
sender, the C record's sizes, the named attributes (``rewrite_context``,
``log_client_name`` ..., ``encoding``), DSN data (``envelope_id``, ``ret_flags``; per
recipient ``notify_flags`` and ``dsn_orig_rcpt``, whether written as named attributes,
as Postfix's cleanup does, or as ``n``/``o`` records), the original recipient (``O``)
of each recipient, the delay-warning time (``W``), and the recipients of both the
envelope and the extracted section with the offsets of their R (or D) records.

Diagnostics: fastpost.mail.queue.message.CorruptQueueFile for a file that does not
decode or lacks its arrival time or sender.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastpost.mail import rectype as R
from fastpost.mail.queue.message import CorruptQueueFile, read_records


@dataclass(slots=True)
class EnvRecipient:
    """One recipient as the queue file has it."""

    offset: int  # of its R (or D) record: the recipient's identity
    address: str
    orig: str = ""  # O record (the address before alias/virtual expansion)
    notify: int = 0  # DSN NOTIFY bits (0 = not given)
    orcpt: str = ""  # DSN ORCPT ("rfc822;user@example.com")
    done: bool = False  # a D record (Postfix wrote it delivered)


@dataclass(slots=True)
class Envelope:
    arrival: float
    sender: str
    size: int  # content length (what mailq shows, and SIZE= on the wire)
    data_offset: int
    rcpt_count: int
    smtputf8: int = 0  # C record field 6: the message needs SMTPUTF8
    recipients: list[EnvRecipient] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    envid: str = ""  # DSN ENVID
    ret: int = 0  # DSN RET: 1 full, 2 headers
    warn_time: float = 0.0  # W record: when to send a delay warning (0 = none)
    full_name: str = ""  # F record
    rcpt_total: int = 0  # every R/D record, also those ``only`` left out

    @property
    def encoding(self) -> str:
        return self.attrs.get("encoding", "")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _int(b, default: int = 0) -> int:
    try:
        return int(b)
    except (TypeError, ValueError):
        return default


def read_envelope(data, only=None) -> Envelope:
    """Read a queue file's envelope and recipients (see the module docstring).

    ``only``: a set of recipient record offsets; then only those recipients are kept
    (qmgr reads a message with many recipients one slice at a time). ``rcpt_total``
    always counts every recipient record."""
    arrival = None
    sender = None
    sizes = [0, 0, 0, 0, 0, 0]
    attrs: dict[str, str] = {}
    rcpts: list[EnvRecipient] = []
    pending: dict = {}
    envid = ""
    ret = 0
    warn = 0.0
    full_name = ""
    total = 0
    for offset, rtype, payload in read_records(data, skip_content=True):
        if rtype == R.REC_TYPE_SIZE and offset == 0:
            parts = payload.split()
            sizes = [_int(p) for p in parts[:6]] + [0] * (6 - min(6, len(parts)))
        elif rtype == R.REC_TYPE_TIME:
            parts = payload.split()
            try:
                arrival = int(parts[0]) + (int(parts[1]) / 1e6 if len(parts) > 1 else 0.0)
            except (IndexError, ValueError):
                raise CorruptQueueFile(f"bad arrival time record at offset {offset}") from None
        elif rtype == R.REC_TYPE_FROM:
            sender = _text(payload)
        elif rtype == R.REC_TYPE_ATTR:
            name, eq, value = _text(payload).partition("=")
            if not eq:
                continue
            if name == "dsn_orig_rcpt":
                pending["orcpt"] = value
            elif name == "notify_flags":
                pending["notify"] = _int(value)
            elif name == "envelope_id":
                envid = value
            elif name == "ret_flags":
                ret = _int(value)
            else:
                attrs[name] = value
        elif rtype == R.REC_TYPE_ORCP:
            pending["orig"] = _text(payload)
        elif rtype == R.REC_TYPE_DSN_ORCPT:
            pending["orcpt"] = _text(payload)
        elif rtype == R.REC_TYPE_DSN_NOTIFY:
            pending["notify"] = _int(payload)
        elif rtype == R.REC_TYPE_DSN_ENVID:
            envid = _text(payload)
        elif rtype == R.REC_TYPE_DSN_RET:
            ret = _int(payload)
        elif rtype == R.REC_TYPE_WARN:
            warn = float(_int(payload.strip()))
        elif rtype == R.REC_TYPE_FULL:
            full_name = _text(payload)
        elif rtype in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE):
            total += 1
            if only is None or offset in only:
                rcpts.append(EnvRecipient(offset, _text(payload), pending.get("orig", ""),
                                          pending.get("notify", 0), pending.get("orcpt", ""),
                                          rtype == R.REC_TYPE_DONE))
            if pending:
                pending = {}
        elif rtype == R.REC_TYPE_DRCP:
            pending = {}
    if arrival is None:
        created = attrs.get("create_time", "")
        if not created.isdigit():
            raise CorruptQueueFile("no arrival time record")
        arrival = float(created)
    if sender is None:
        raise CorruptQueueFile("no sender record")
    return Envelope(arrival, sender, sizes[0], sizes[1], sizes[2], sizes[5], rcpts, attrs, envid,
                    ret, warn, full_name, total)


#: Records that may stand between two recipients' R records (their per-recipient
#: records, done recipients, canceled ones); anything else ends a window read.
_BETWEEN = frozenset((R.REC_TYPE_RCPT, R.REC_TYPE_DONE, R.REC_TYPE_ATTR, R.REC_TYPE_ORCP,
                      R.REC_TYPE_DSN_ORCPT, R.REC_TYPE_DSN_NOTIFY, R.REC_TYPE_DRCP))


def read_recipient_window(read, after: int, offsets) -> list[EnvRecipient] | None:
    """Read the recipients at ``offsets`` (R record offsets, sorted) without reading the
    rest of the queue file: qmgr's next slice of a message with many recipients.

    ``read(offset, length)`` returns bytes of the queue file (fewer at its end);
    ``after`` is the offset of a recipient record (R or D) before the first wanted one
    (the last recipient of the previous slice): the per-recipient records of the wanted
    ones (O, ``A dsn_orig_rcpt=``/``notify_flags=``, ``o``, ``n``) follow it. The window
    from there to the last wanted record is read (grown until that record is whole)
    and decoded as read_envelope() does. Return None when the window holds anything
    but recipient records (the envelope section ends inside it, a pointer record, a
    record that does not decode, a wanted offset that is not an R record): the caller
    then reads the whole file, which checks it.
    """
    from fastpost.mail.queue.message import record_at

    if not offsets:
        return []
    want = set(offsets)
    last = offsets[-1]
    length = last - after + 4096
    while True:
        data = read(after, length)
        short = len(data) < length  # the window reaches the end of the file
        rcpts: list[EnvRecipient] = []
        pending: dict = {}
        pos = 0
        first = True
        try:
            while True:
                rtype, start, end = record_at(data, pos)
                here = after + pos
                pos = end
                if rtype not in _BETWEEN or (first and rtype not in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE)):
                    return None
                if first:  # the previous slice's recipient: its records are not ours
                    first = False
                    continue
                payload = bytes(data[start:end])
                if rtype == R.REC_TYPE_ATTR:
                    name, eq, value = _text(payload).partition("=")
                    if name == "dsn_orig_rcpt":
                        pending["orcpt"] = value
                    elif name == "notify_flags":
                        pending["notify"] = _int(value)
                elif rtype == R.REC_TYPE_ORCP:
                    pending["orig"] = _text(payload)
                elif rtype == R.REC_TYPE_DSN_ORCPT:
                    pending["orcpt"] = _text(payload)
                elif rtype == R.REC_TYPE_DSN_NOTIFY:
                    pending["notify"] = _int(payload)
                elif rtype == R.REC_TYPE_DRCP:
                    pending = {}
                else:  # R or D
                    if here in want:
                        if rtype != R.REC_TYPE_RCPT:
                            return None
                        rcpts.append(EnvRecipient(here, _text(payload), pending.get("orig", ""),
                                                  pending.get("notify", 0), pending.get("orcpt", "")))
                    pending = {}
                    if here >= last:
                        return rcpts if here == last and len(rcpts) == len(want) else None
        except CorruptQueueFile:
            if short or length > (64 << 20):
                return None
            length *= 2  # the last wanted record is not whole yet


__all__ = ["EnvRecipient", "Envelope", "read_envelope", "read_recipient_window"]
