# cython: language_level=3, annotation_typing=False
"""cleanup's per-message core: the OPEN set-up and the common-case END, one source run
as Python and compiled.

Postfix counterpart: src/cleanup/cleanup_api.c (cleanup_open: a new CLEANUP_STATE and
its queue file) and the plain-message road through cleanup_envelope.c,
cleanup_message.c and cleanup_final.c, as fastpost.daemons.cleanup.state describes.

StateCore is the base class of fastpost.daemons.cleanup.state.CleanupState. It holds
the fields every message touches (the service, the connection, the transaction ID, the
OPEN frame's envelope fields, the builder and its queue ID, the flags the common case
tests, the bookkeeping the fast pass fills in) and the methods that run once per
message of the common case:

    StateCore(svc, conn, tid, frame)   OPEN: the fields, the builder (queue ID) and the
                                       header reader; StateCore() is an empty core
    handle(frame)                      the next frame: queued while a step waits, the
                                       fast pass for a plain END, else the subclass's _run
    _fast(frame) -> bool               the common case in one synchronous pass
                                       (CleanupState's docstring: when it is taken)
    _committed(queue_id, exc)          commit_cb's callback: the 250 (or the error)
    _resume()                          the frames that queued behind a step

What the general path needs only (the MIME stack, the header kinds seen, the -t and
BCC lists) the subclass makes at its first general step (``_init_general``), not at
OPEN. The subclass provides ``_run``, ``_fail_exc``, ``_reply_error`` and, for a
message that gets missing headers added, ``_new_message_id``, ``_date_header`` and
``_from_value``. ``_header_trailer`` (the missing headers and the ``message-id=``
line, written to the maillog with the replies: log.info_later) is the core's, for both
paths.

Compiled by setup.py as fastpost.daemons.cleanup._statecore_c, typed by
ext/fastpost/daemons/cleanup/_statecore_c.pxd (Cython pure-Python mode, see
docs/conventions.md); the interpreter imports this file as _statecore_py, the
reference. tests/unit/daemons/test_cleanup_fastpath.py holds the two builds to the same
queue files, replies and log lines.

Parameters: those CleanupState._fast reads (settings.py): message_size_limit,
always_bcc, hopcount_limit, strict_7bit_headers, mime (disable_mime_input_processing),
header_size_limit, enable_original_recipient, duplicate_filter_limit,
always_add_missing_headers, message_drop_headers.
Failures: whatever the builder or the committer raises at OPEN goes to the caller
(service.py answers 452/451); in the fast pass every failure after the decision
becomes the message's reply (``_fail_exc`` + ``_reply_error``), as on the general path.
"""

import time

from fastpost.mail import cleanup_proto as P
from fastpost.mail import header as H
from fastpost.mail.queue import HOLD, INCOMING, QueueError
from fastpost.util import log

__all__ = ["StateCore"]

_END = P.END
_FLAGS_EXTERNAL = P.FLAGS_EXTERNAL
_FLAG_FILTER = P.FLAG_FILTER
_FLAG_HOLD = P.FLAG_HOLD
_FLAG_DISCARD = P.FLAG_DISCARD
_FLAG_EXTRACT = P.FLAG_EXTRACT
_FLAG_MAP_OK = P.FLAG_MAP_OK
_FLAG_BCC_OK = P.FLAG_BCC_OK
_KINDS = H.KINDS
_HDR_MESSAGE_ID = H.HDR_MESSAGE_ID
_HDR_DATE = H.HDR_DATE
_HDR_FROM = H.HDR_FROM
_HDR_RESENT_MESSAGE_ID = H.HDR_RESENT_MESSAGE_ID
_HDR_RESENT_DATE = H.HDR_RESENT_DATE
_HDR_RESENT_FROM = H.HDR_RESENT_FROM
_RCPT_MASK = 1 << H.HDR_TO | 1 << H.HDR_CC | 1 << H.HDR_BCC
_RESENT_RCPT_MASK = 1 << H.HDR_RESENT_TO | 1 << H.HDR_RESENT_CC | 1 << H.HDR_RESENT_BCC
_CLASS_BYTES = H.CLASS_BYTES
_HeaderReader = H.HeaderReader
_header_pass = H.header_pass
_HOLD = HOLD
_INCOMING = INCOMING
_QueueError = QueueError
_printable = log.printable
_info_later = log.info_later
_KEEPER = log.KEEPER
_monotonic = time.monotonic
_time = time.time


def _id_text(value):
    """A Message-Id's bytes as its log line shows them: log.printable's text, without
    the call when the decoded text is already printable ASCII (nearly always)."""
    if type(value) is bytes:
        data = value
        n = len(data)
        for i in range(n):
            c = data[i]
            if c < 0x20 or c > 0x7E:  # (ASCII outside these is what isprintable refuses)
                break
        else:  # printable ASCII: its text, decoded without a check per character
            return data.decode("ascii")
    text = value.decode("utf-8", "replace")
    if text.isascii() and text.isprintable():
        return text
    return _printable(text)


def _to_itself(address):
    """fastpost.mail.rewrite.rewrites_to_itself, compiled here: True for an address
    rewriting leaves unchanged in either context (``user@example.com``), whose
    rewrite_cached answer is the address itself without a look-up. A twin of that
    function, held to it by tests/unit/daemons/test_cleanup_fastpath.py."""
    at = address.rfind("@")
    if at <= 0 or address[0] == "@":
        return False
    dot = address.find(".", at + 1)
    return dot > 0 and address[-1] != "."


def _mask_of(kinds):
    """The bit mask (header_pass's form) of a set of header kinds."""
    mask = 0
    for kind in kinds:
        mask |= 1 << kind
    return mask


class StateCore:
    """One message's common fields and common-case methods (module docstring)."""

    def __init__(self, svc=None, conn=None, tid=0, frame=None):
        self.sender = ""
        self.last_rcpt = ""
        self.error = None
        self.blocked = False
        self.envelope_done = False
        self.size = 0
        self.rcpt_count = 0
        self.qmgr_flags = 0
        self.in_headers = True
        self.resent = False
        self.message_id = None
        self.resent_message_id = None
        self.cte_8bit = False
        if svc is None:
            return  # an empty core (tests, CONSTRUCT)
        self._c_open(svc, conn, tid, frame)

    def _c_open(self, svc, conn, tid, frame):
        """The message's set-up from its OPEN frame (a dict: compiled, its look-ups are
        the dict's own, not calls of its ``get`` method)."""
        s = svc.settings
        self.svc = svc
        self.s = s
        self.conn = conn
        self.tid = tid
        flags = int(frame.get("f", _FLAGS_EXTERNAL))
        self.flags = flags
        usec = frame.get("time")
        self.arrival = usec / 1e6 if usec else _time()
        self.sender_raw = frame.get("s", "")
        self.attrs = frame.get("a") or []
        self.filter = frame.get("filter")
        self.ret = frame.get("ret")
        self.envid = frame.get("envid")
        self.encoding = frame.get("enc")
        context = frame.get("ctx", "remote")
        self.context = context
        self.fullname = frame.get("fullname")
        self.log_ident = bool(frame.get("ident"))
        self.uid = frame.get("uid")
        reuse = frame.get("reuse_id")  # pickup's returned reject (service.py: reusable)
        granted = conn.reusable(reuse) if reuse else None
        builder = svc.committer.builder(granted)
        self.builder = builder
        self.queue_id = builder.queue_id
        if reuse:
            conn.stand_in(self.queue_id, granted)
            if self.queue_id == reuse:
                # its refused message logged the message-id= lines (CleanupState's
                # docstring): a Python attribute of the subclass, off the common path
                self.ids_logged = True
        self.rcpts_raw = []
        self.pending = []
        self.dups = set()
        self.reader = _HeaderReader(_KINDS, s.header_size_limit)
        self.inspect = bool(flags & _FLAG_FILTER) and bool(svc.checks_in_use)
        self.hold = bool(flags & _FLAG_HOLD)
        self.discard = bool(flags & _FLAG_DISCARD)
        self.extract = bool(flags & _FLAG_EXTRACT)
        # the trivial-rewrite context for header addresses, or None: leave them alone
        if context == "local":
            self.header_context = "local"
        elif s.remote_header_domain:
            self.header_context = "remote"
        else:
            self.header_context = None

    # -- frame handling -----------------------------------------------------------------

    def handle(self, frame):
        """Take the next frame of this message (in order)."""
        if self.blocked:
            self.pending.append(frame)
            return
        if frame.get("o") == _END and self.svc.fast_path and self._c_fast(frame):
            return
        self._run(frame)

    def _resume(self):
        self.blocked = False
        while self.pending and not self.blocked:
            self._run(self.pending.pop(0))

    def _committed(self, queue_id, exc):
        """commit_cb's callback: the batch holding this message is on disk (or failed)."""
        if exc is None:
            self.svc.messages += 1
            self.conn.reply(self, {"t": self.tid, "c": 250, "id": queue_id})
        else:
            self._fail_exc(exc)
            self._reply_error()
        self.blocked = False
        if self.pending:
            self._resume()

    # -- the common case in one pass ------------------------------------------------------

    def _fast(self, frame):
        """The fast pass (see _c_fast); the name the subclass and the tests call."""
        return self._c_fast(frame)

    def _c_fast(self, frame):
        """A whole message in its END frame, in one synchronous pass; False: not here.

        CleanupState's docstring says when it is taken. Everything is decided before
        anything is written or logged: when this returns False the general path
        (``_run``) takes the frame as if this had not looked at it.
        """
        data = frame.get("d")
        if (data is None or self.envelope_done or self.inspect or self.extract or self.discard
                or self.error is not None or frame.get("discard") or frame.get("filter")
                or frame.get("redirect") or frame.get("bcc")):
            return False
        svc = self.svc
        s = self.s
        flags = self.flags
        map_ok = bool(flags & _FLAG_MAP_OK)
        if (map_ok and svc.fast_maps) or (flags & _FLAG_BCC_OK and s.always_bcc):
            return False
        size = len(data)
        limit = s.message_size_limit
        if limit and size > limit:
            return False
        more = frame.get("r")
        rcpts = self.rcpts_raw + more if more is not None else self.rcpts_raw
        if not rcpts:
            return False
        m = svc.mapper
        cached = m.rewriter.rewrite_cached
        sender = self.sender_raw
        # rewrite_cached("local", a) is ``a`` itself for an address rewriting leaves
        # unchanged (_to_itself); only the others are looked up in the cache
        if sender and not _to_itself(sender):
            sender = cached("local", sender)
            if sender is None:
                return False
        todo = []  # (dsn_orcpt, notify, orig, address): the duplicate key of each
        env_size = len(sender) + 1024
        for item in rcpts:
            raw = item[0]
            addr = cached("local", raw) if raw and not _to_itself(raw) else raw
            if addr is None:
                return False
            k = len(item)
            orcpt = item[1] if k > 1 else ""
            todo.append((orcpt or f"rfc822;{raw}", int(item[2]) if k > 2 else 0, raw, addr))
            env_size += 2 * len(raw) + len(orcpt) + len(addr) + 64
        reader = self.reader
        used = reader.feed(data)
        if reader.done:
            rest = reader.rest
            body = rest + data[used:] if rest else data[used:]
        else:
            reader.finish()
            body = reader.rest
        classes = svc.fast_classes[map_ok]
        got = _header_pass(reader.take(), _CLASS_BYTES, svc.drop_bytes, s.hopcount_limit,
                           s.strict_7bit_headers, s.mime, m._hdr_cache, self.header_context,
                           map_ok, classes[0], classes[1], _monotonic())
        b = self.builder
        if got is not None:
            for n, v in self.attrs:
                env_size += len(n) + len(v) + 8
            fullname = self.fullname
            if fullname:
                env_size += 3 * len(fullname)
            # content records are at most twice the text (a record per short line)
            # b.records.offset: MessageBuilder.size, without the property's call
            if b.records.offset + env_size + 2 * (len(got[0]) + len(body)) + 4096 >= b.spill_threshold:
                got = None
        env = None
        if got is not None:
            # the whole envelope, one kernel call (None: something not plain in it)
            env = b.records.plain_envelope(
                self.arrival, self.filter, self.queue_id if self.log_ident else None,
                self.context == "local", self.envid, self.ret, self.fullname, sender,
                self.encoding, self.attrs, todo, s.original_recipient, s.duplicate_limit,
                self.dups)
        if env is None:
            self.reader = _HeaderReader(_KINDS, s.header_size_limit)
            return False
        # From here on this is the message's path.
        svc.fast_messages += 1
        hdr_out = got[0]
        mask = got[1]
        self.resent = got[2]
        self.message_id = got[3]
        self.resent_message_id = got[4]
        self.cte_8bit = got[5]
        self.qmgr_flags |= env[0]
        self.rcpt_count += env[1]
        self.last_rcpt = todo[-1][2]
        self.envelope_done = True
        self.in_headers = False
        self.rcpts_raw = []
        self.size = size
        self.sender = sender
        hdrs = [hdr_out]
        out = self._c_trailer(mask)
        if out:
            hdrs.append(b"\n".join(out) + b"\n")
        if body:
            first = body[:2]
            if not (first.startswith(b"\n") or first == b"\r\n"):
                hdrs.append(b"\n")
            hdrs.append(body)
        try:
            if b.state != "open":
                raise RuntimeError(f"message {b.queue_id} is {b.state}")
            if frame.get("hold"):
                self.hold = True
            # content, the extracted encoding and the end, one call (MessageBuilder's
            # write + extracted + the commit's finish, for a builder that never spills)
            records = b.records
            if not records.plain_content(b"".join(hdrs), "8bit" if self.cte_8bit else self.encoding,
                                         b.spill_threshold):
                raise _QueueError("message grew past the large-message size in the fast path")
            records.qmgr_flags = self.qmgr_flags
            self.blocked = True  # the commit is under way (connection_lost leaves it alone)
            svc.committer.commit_cb(b, _HOLD if self.hold else _INCOMING, self._committed,
                                    svc.loop)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a reply
            self.blocked = False
            self._fail_exc(exc)
            self._reply_error()
        return True

    # -- end of headers -----------------------------------------------------------------

    def _header_trailer(self, kinds):
        """The missing headers to add, as lines without their newline (``kinds``: the
        header kinds the message has, a set or header_pass's bit mask); logs the
        message-id (and resent-message-id) line. Both paths call this."""
        return self._c_trailer(kinds if isinstance(kinds, int) else _mask_of(kinds))

    def _c_trailer(self, mask):
        s = self.s
        out = []
        if self.context == "local" or s.always_add_missing_headers:
            if self.resent:
                if not mask >> _HDR_RESENT_MESSAGE_ID & 1:
                    self.resent_message_id = self._new_message_id().encode()
                    out.append(b"Resent-Message-Id: " + self.resent_message_id)
                if not mask >> _HDR_RESENT_DATE & 1:
                    out.append(b"Resent-Date: " + self._date_header())
                if not mask >> _HDR_RESENT_FROM & 1:
                    out.append(b"Resent-From: " + self._from_value())
            else:
                if not mask >> _HDR_MESSAGE_ID & 1:
                    self.message_id = self._new_message_id().encode()
                    out.append(b"Message-Id: " + self.message_id)
                if not mask >> _HDR_DATE & 1:
                    out.append(b"Date: " + self._date_header())
                if not mask >> _HDR_FROM & 1:
                    out.append(b"From: " + self._from_value())
            if s.undisclosed_header:
                if not mask & (_RESENT_RCPT_MASK if self.resent else _RCPT_MASK):
                    out.append(s.undisclosed_header.encode("utf-8", "surrogateescape"))
            if self.context == "local" and self.ids_logged:
                return out  # a returned reject's stand-in: logged when it was refused
        self._c_log_ids()
        return out

    def _c_log_ids(self):
        """The ``message-id=`` (and ``resent-message-id=``) log lines. Written to the maillog file with the replies (log.info_later; the protocol's
        reply flush calls log.flush), not one write per message."""
        qid = self.queue_id
        if self.resent_message_id is not None:
            text = qid + ": resent-message-id=" + _id_text(self.resent_message_id)
            if not _KEEPER.later(text):
                _info_later(text)
        mid = self.message_id
        # the line whole, without info_later's formatting (no arguments: taken as is);
        # KEEPER.later (compiled) appends it when the maillog file is the only sink
        text = qid + ": message-id=" + (_id_text(mid) if mid is not None else "<>")
        if not _KEEPER.later(text):
            _info_later(text)
