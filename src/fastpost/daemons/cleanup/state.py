"""One message going through cleanup: envelope, headers, body, commit.

Postfix counterpart: src/cleanup/cleanup_envelope.c, cleanup_message.c,
cleanup_extracted.c, cleanup_final.c, cleanup_api.c (CLEANUP_STATE and what happens
to it), cleanup_out_recipient.c (duplicates, BCC), cleanup_addr.c.

A CleanupState is made by an OPEN frame (it takes a queue ID from the process's
committer at once) and fed the client's frames in order (``handle``). Each frame is
processed by an ``async`` step run eagerly (fastpost.util.eager): nothing waits
unless a lookup must (a trivial-rewrite cache miss, a network table) or the commit's
fsync; while a step waits, later frames of the same message queue behind it, other
messages go on.

The common case takes a shorter road (``_fast``): a whole message in its END frame
(every message below 64 KiB from smtpd or pickup), with no checks, no canonical /
virtual / masquerade / BCC tables, no -t, no strict 8-bit body, no MIME structure and
every address already in the rewrite caches, is done in one synchronous pass: the
header kernel splits the section, ``header.header_pass`` (Cython) classifies, counts
hops, finds Message-Id / Resent- / Content-Transfer-Encoding, drops
message_drop_headers and puts in the cached rewritten address headers,
``QueueFileBuilder.plain_envelope`` (Cython) writes the whole envelope as one buffer,
and the commit calls back (``Committer.commit_cb``) instead of resolving a future. It
decides before it writes or logs anything; what it declines goes the general way
below, unchanged. The two are held to the same queue file bytes and log lines by a
differential test (tests/unit/daemons/test_cleanup_fastpath.py). The OPEN set-up, the
frame dispatch, the fast pass and its commit callback are CleanupState's base class
StateCore (fastpost.daemons.cleanup.statecore), compiled from one source by Cython's
pure-Python mode; this module is the general path.

The stages, in the order of the queue file:

1. envelope (at the first content or at END, when every recipient is known):
   ``T``/create_time, the content_filter ``L``, log_ident, rewrite_context, DSN
   envid/ret, ``F`` full name, the sender (trivial-rewrite ``local``, canonical,
   masquerading) with its sender_bcc_maps copy, the client attributes, encoding, then
   per recipient (rewrite, canonical, masquerading when configured, virtual alias
   expansion, duplicate elimination up to duplicate_filter_limit) its DSN records,
   ``O`` original and ``R``, each followed by its recipient_bcc_maps copy;
2. primary headers (fastpost.mail.header's kernel): hop count, 8-bit check,
   header_checks / mime_header_checks with every action, message_drop_headers,
   address rewriting of sender/recipient headers (local context, or remote with
   remote_header_rewrite_domain), what sendmail -t extracts;
3. end of headers: missing Message-Id / Date / From (Resent- variants when the
   message has Resent- headers) and undisclosed_recipients_header, for local clients
   or with always_add_missing_headers; the ``message-id=<...>`` log line;
4. body: straight through, or line by line when body_checks, MIME structure
   (nested_header_checks / mime_header_checks on part headers, 8-bit Content-
   Transfer-Encoding) or strict_8bitmime_body need it;
5. END: the extracted section (FILTER and REDIRECT results, BCC recipients, -t
   recipients, always_bcc, encoding), then the commit (hold queue for HOLD) and the
   client's reply, which goes out only after the batch's fdatasync.

Errors: a refused message is dropped at once (its builder aborted, later content
ignored) and answered at END: content rejected ``550 5.7.1`` (checks), ``554 5.4.0
Error: too many hops``, ``552 5.3.4 Error: message file too big``, ``550 5.6.0``
(strict 8-bit), ``451 4.6.0 Alias expansion error``, ``452 4.3.1 Insufficient
system storage`` (full queue file system; nothing half-written is kept), ``451
4.3.0`` for a table or trivial-rewrite that cannot answer and for internal errors.

A refusal in the headers (header_checks REJECT, too many hops, strict_7bit_headers),
as Postfix 3.7's cleanup logs it: the ``message-id=`` / ``resent-message-id=`` lines of
the headers before the refused one come first (Postfix logs them at their header), then
the refusal's line. For a client that returns what cleanup refuses (FLAG_BOUNCE:
pickup) the rest of the headers is still read, for nothing but their own such lines,
and at their end the IDs a local message would have been given are logged
(``_after_refusal``); that is the refused message's only ``message-id=`` line, so the
stand-in pickup sends to return it logs none of its own (StateCore._c_trailer). For
other clients (smtpd) nothing of the message is read after the refusal, as Postfix.

Parameters: see settings.py.
Diagnostics: Postfix's log lines (``reject:``, ``warning:``, ``hold:`` ... for checks,
``message-id=``, ``message rejected: hopcount exceeded``, alias expansion warnings).
"""

from __future__ import annotations

import re
import time

from fastpost.daemons.cleanup import addrmap
from fastpost.daemons.cleanup import hdraddr
from fastpost.daemons.cleanup.statecore import StateCore
from fastpost.daemons.cleanup.checks import ascii_text as _ascii
from fastpost.daemons.cleanup.checks import parse_action, reject_reply
from fastpost.mail import cleanup_proto as P
from fastpost.mail import header as H
from fastpost.mail import rectype as R
from fastpost.mail.address import external
from fastpost.mail.ipc import IPCError
from fastpost.mail.maps import MapRetry
from fastpost.mail.queue import HOLD, INCOMING, InsufficientStorage, QueueError
from fastpost.util import log

__all__ = ["CleanupState"]

_printable = log.printable




_CT_PARAM = re.compile(r'boundary\s*=\s*(?:"([^"]*)"|([^\s;]+))', re.I)

# MIME body states
_BODY, _PART_HEADERS, _NESTED_HEADERS, _BLANK_THEN_NESTED = range(4)


class Refused(Exception):
    """The message cannot be accepted: ``code`` and ``text`` are the reply."""

    def __init__(self, code: int, text: str, warning: str = ""):
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.warning = warning


def _date(when: float) -> str:
    t = time.localtime(when)
    return time.strftime("%a, ", t) + str(t.tm_mday) + time.strftime(" %b %Y %H:%M:%S %z (%Z)", t)


class CleanupState(StateCore):
    """One message in cleanup (see the module docstring).

    The fields and methods of the common case (OPEN's set-up, ``handle``, the fast
    pass ``_fast``, ``_committed``) are StateCore's (fastpost.daemons.cleanup.statecore,
    compiled); this class is the general path.
    """

    # Defaults every message of the general path starts from (class attributes: set
    # once, not per message; an assignment makes the instance's own).
    hops = 0
    redirect = None
    filter_action = None
    mime_type = None  # top-level Content-Type (lower-case type/subtype)
    mime_boundary = None
    line_mode = False
    carry = b""
    mime_mode = _BODY
    part_reader = None
    part_nested = False
    part_ctype = None
    part_boundary = None
    segment_checked = 0
    separator = False  # the next body line may be the empty line after the headers
    general = False  # _init_general has run
    after_refusal = False  # refused in the headers, the rest read for its IDs (FLAG_BOUNCE)
    ids_logged = False  # a stand-in whose refused message logged the message-id= lines

    def _init_general(self) -> None:
        """What only the general path uses, made at its first step (not at OPEN)."""
        self.general = True
        self.have: set = set()
        self.hbc_rcpts: list = []
        self.extracted_to: list = []  # (resent, address) from To/Cc/Bcc for sendmail -t
        self.mime_stack: list = []  # open multipart boundaries (bytes)
        self.id_headers: list = []  # ("" or "resent-", value) of the ID headers, in order

    # -- frame handling -----------------------------------------------------------------

    def _run(self, frame: dict) -> None:
        from fastpost.util.eager import run_eager

        if not self.general:
            self._init_general()
        self.blocked = True
        done = run_eager(self._frame(frame), self._step_done, self._step_failed)
        if done:
            self.blocked = False

    def _step_done(self, _result) -> None:
        if self.blocked:
            self.svc.loop.call_soon(self._resume)

    def _step_failed(self, exc: BaseException) -> None:
        self._fail_exc(exc)
        self._step_done(None)

    async def _frame(self, frame: dict) -> None:
        op = frame.get("o")
        if op == P.ABORT:
            self._abort()
            return
        rcpts = frame.get("r")
        if rcpts:
            self.rcpts_raw.extend(rcpts)
        data = frame.get("d")
        if self.after_refusal:
            self._after_refusal(data, op == P.END)
        if self.error is None:
            try:
                if data is not None or op == P.END:
                    if not self.envelope_done:
                        await self._envelope()
                    if data:
                        await self._content(data)
                if op == P.END:
                    await self._end(frame)
                    return
            except BaseException as exc:  # noqa: BLE001 - every failure becomes a reply
                self._fail_exc(exc)
                if self.after_refusal and op == P.END:  # headers that END itself ends
                    self._after_refusal(None, True)
        if op == P.END:
            self._reply_error()

    # -- failures -----------------------------------------------------------------------

    def _fail(self, refused: Refused) -> None:
        if self.error is not None:
            return
        self.error = refused
        if refused.warning:
            log.warn("%s: %s", self.queue_id, refused.warning)
        self.builder.abort()

    def _fail_exc(self, exc: BaseException) -> None:
        if isinstance(exc, Refused):
            self._fail(exc)
        elif isinstance(exc, InsufficientStorage):
            self._fail(Refused(452, "4.3.1 Insufficient system storage", f"queue file write error: {exc}"))
        elif isinstance(exc, addrmap.ExpansionError):
            self._fail(Refused(451, "4.6.0 Alias expansion error",
                               f"{exc} -- message not accepted, try again later"))
        elif isinstance(exc, MapRetry):
            self._fail(Refused(451, "4.3.0 Error: queue file write error", f"table lookup problem: {exc}"))
        elif isinstance(exc, IPCError):
            self._fail(Refused(451, "4.3.0 Error: queue file write error", f"address rewriting: {exc}"))
        elif isinstance(exc, (QueueError, OSError)):
            self._fail(Refused(451, "4.3.0 Error: queue file write error", f"queue file write error: {exc}"))
        else:
            from fastpost.server.lifecycle import describe_exception

            self._fail(Refused(451, "4.3.0 Error: internal error",
                               f"internal error: {describe_exception(exc)}"))

    def _reply_error(self) -> None:
        e = self.error
        if e.code // 100 == 5:
            self.conn.refused(self.queue_id)
        self.conn.reply(self, {"t": self.tid, "c": e.code, "x": e.text, "id": self.queue_id})

    def _abort(self) -> None:
        self.error = self.error or Refused(451, "4.3.0 aborted")
        self.builder.abort()
        self.conn.forget(self)

    # -- logging ------------------------------------------------------------------------

    def _attr(self, name: str, default: str = "") -> str:
        for n, v in self.attrs:
            if n == name:
                return v
        return default

    def _log_action(self, action: str, where: str, text: str, extra: str | None) -> None:
        name = self._attr("log_client_name")
        addr = self._attr("log_client_address")
        client = f"{name}[{addr}]" if name or addr else "local"
        line = (f"{self.queue_id}: {action}: {where} {_ascii(text)} from {client}; "
                f"from=<{_printable(self.sender)}> to=<{_printable(self.last_rcpt)}>")
        proto = self._attr("log_protocol_name")
        if proto:
            line += f" proto={proto}"
        helo = self._attr("log_helo_name")
        if helo:
            line += f" helo=<{_printable(helo)}>"
        if extra:
            line += f": {_printable(extra)}"
        log.info("%s", line)

    # -- envelope -----------------------------------------------------------------------

    async def _envelope(self) -> None:
        self.envelope_done = True
        s = self.s
        b = self.builder
        m = self.svc.mapper
        map_ok = bool(self.flags & P.FLAG_MAP_OK)
        sender = self.sender_raw
        if sender:
            sender = await m.rewrite("local", sender)
            if map_ok:
                sender = await m.canonical(sender, addrmap.SENDER_ENVELOPE, "local")
                if addrmap.SENDER_ENVELOPE in s.masquerade_classes:
                    sender = m.masquerade(sender)
        self.sender = sender
        self._envelope_head(sender)
        if map_ok and self.flags & P.FLAG_BCC_OK and s.sender_bcc and sender:
            bcc = await m.bcc(s.sender_bcc, sender)
            if bcc:
                await self._out_recipient(None, 1, bcc, bcc)
        if self.encoding:
            b.attr("encoding", self.encoding)
        b.add_attrs(self.attrs)
        for item in self.rcpts_raw:
            await self._add_recipient(item[0], item[1] if len(item) > 1 else "",
                                      int(item[2]) if len(item) > 2 else 0)
        self.rcpts_raw = []

    def _envelope_head(self, sender: str) -> None:
        """The envelope records before the client attributes and recipients."""
        b = self.builder
        # T, A create_time, [L], [A log_ident], A rewrite_context, [A envelope_id],
        # [A ret_flags], [F], S: one buffer
        recs = b.records.time_records(self.arrival)
        if self.filter:
            recs.append((R.REC_TYPE_FILT, self.filter))
        if self.log_ident:
            recs.append((R.REC_TYPE_ATTR, f"log_ident={self.queue_id}"))
        recs.append((R.REC_TYPE_ATTR, _CTX_LOCAL if self.context == "local" else _CTX_REMOTE))
        if self.envid:
            recs.append((R.REC_TYPE_ATTR, f"envelope_id={self.envid}"))
        if self.ret:
            recs.append((R.REC_TYPE_ATTR, f"ret_flags={self.ret}"))
        if self.fullname is not None:
            recs.append((R.REC_TYPE_FULL, self.fullname))
        recs.append((R.REC_TYPE_FROM, sender))
        b.envelope_many(recs)

    async def _add_recipient(self, raw: str, orcpt: str, notify: int) -> None:
        s = self.s
        m = self.svc.mapper
        map_ok = bool(self.flags & P.FLAG_MAP_OK)
        addr = await m.rewrite("local", raw)
        if map_ok:
            addr = await m.canonical(addr, addrmap.RECIPIENT_ENVELOPE, "local")
            if addrmap.RECIPIENT_ENVELOPE in s.masquerade_classes:
                addr = m.masquerade(addr)
        self.last_rcpt = raw
        await self._out_recipient(orcpt or f"rfc822;{raw}", notify, raw, addr)
        if map_ok and self.flags & P.FLAG_BCC_OK and s.recipient_bcc:
            bcc = await m.bcc(s.recipient_bcc, addr)
            if bcc:
                await self._out_recipient(None, 1, bcc, bcc)

    async def _out_recipient(self, dsn_orcpt, notify: int, orig: str, addr: str,
                             extracted: bool = False) -> None:
        """Virtual alias expansion, duplicate elimination, then the records."""
        s = self.s
        if self.flags & P.FLAG_MAP_OK and s.virtual:
            targets = await self.svc.mapper.virtual(addr)
        else:
            targets = (addr,)
        self._out_records(dsn_orcpt, notify, orig, targets, extracted)

    def _out_records(self, dsn_orcpt, notify: int, orig: str, targets, extracted: bool) -> None:
        """Duplicate elimination and the records of each (final) recipient address."""
        s = self.s
        b = self.builder
        put = b.extracted if extracted else b.envelope
        for target in targets:
            key = (dsn_orcpt, notify, orig, target)
            if key in self.dups:
                continue
            if len(self.dups) < s.duplicate_limit:
                self.dups.add(key)
            if notify:
                put(R.REC_TYPE_ATTR, f"notify_flags={notify}")
                # the C record's qmgr flags: the union of the NOTIFY bits, shifted
                # one place up (what Postfix 3.7 writes: NEVER 2 ... DELAY 16)
                self.qmgr_flags |= (notify & 0xF) << 1
            if dsn_orcpt:
                put(R.REC_TYPE_ATTR, f"dsn_orig_rcpt={dsn_orcpt}")
            if s.original_recipient:
                put(R.REC_TYPE_ORCP, orig)
            put(R.REC_TYPE_RCPT, target)
            self.rcpt_count += 1

    # -- content ------------------------------------------------------------------------

    async def _content(self, data: bytes) -> None:
        s = self.s
        self.size += len(data)
        if s.message_size_limit and self.size > s.message_size_limit:
            raise Refused(552, "5.3.4 Error: message file too big",
                          "queue file size limit exceeded")
        if self.in_headers:
            reader = self.reader
            used = reader.feed(data)
            out = []  # the headers' output: written at once
            headers = reader.take()
            for n, h in enumerate(headers):
                try:
                    out.append(await self._header(*h))
                except Refused:
                    if self.flags & P.FLAG_BOUNCE:
                        self.after_refusal = True
                        self._ids_after_refusal(headers[n + 1:])
                        if reader.done:
                            self._ids_after_refusal_end()
                    raise
                if self.error is not None:
                    return
            if not reader.done:
                if out:
                    await self._put(b"".join(out))
                return
            body = reader.rest + data[used:] if reader.rest else data[used:]
            await self._end_of_headers(body, out)
            return
        await self._body(data)

    async def _lookup_check(self, table, text: str):
        if table.network:
            import asyncio

            return await asyncio.ensure_future(table.maps.aget(text))
        return table.maps.get(text)

    async def _check(self, table, where: str, text: str):
        """Apply one check table to a header or body line; return (verb, text)."""
        value = await self._lookup_check(table, text)
        if value is None:
            return None
        act = parse_action(value)
        v = act.verb
        if v == "?":
            log.warn("unknown command in %s map: %s", table.name, _printable(act.raw))
            return None
        if v in ("DUNNO", "OK"):
            return None
        if v == "REJECT":
            code, reply = reject_reply(act.text)
            if self.in_headers:
                self._log_ids_so_far()
            self._log_action("reject", where, text, reply)
            self.inspect = False
            raise Refused(code, reply)
        if v == "WARN":
            self._log_action("warning", where, text, act.text or None)
            return None
        if v == "INFO":
            self._log_action("info", where, text, act.text or None)
            return None
        if v == "HOLD":
            self._log_action("hold", where, text, act.text or None)
            self.hold = True
            return None
        if v == "DISCARD":
            self._log_action("discard", where, text, act.text or None)
            self.discard = True
            self.inspect = False
            return None
        if v == "FILTER":
            if ":" not in act.text:
                log.warn("bad FILTER action in %s map: %s", table.name, _printable(act.raw))
                return None
            self._log_action("filter", where, text, act.text)
            self.filter_action = act.text
            return None
        if v == "REDIRECT":
            if not act.text:
                log.warn("missing REDIRECT address in %s map", table.name)
                return None
            self._log_action("redirect", where, text, act.text)
            self.redirect = act.text
            self.inspect = False
            return None
        if v == "BCC":
            if not act.text:
                log.warn("missing BCC address in %s map", table.name)
                return None
            self._log_action("bcc", where, text, act.text)
            self.hbc_rcpts.append(act.text)
            return None
        if v == "PASS":
            self._log_action("pass", where, text, None)
            self.inspect = False
            return None
        if v in ("PREPEND", "REPLACE"):
            self._log_action(v.lower(), where, text, act.text)
            return (v, act.text)
        if v == "STRIP":
            self._log_action("strip", where, text, act.text or None)
            return ("IGNORE", "")
        return (v, act.text)  # IGNORE

    def _write(self, data: bytes):
        """Content to the builder; spill a large message to its own file."""
        if self.builder.write_nowait(data):
            return self.builder.spill()
        return None

    async def _header(self, kind: int, name_len: int, text: bytes, flags: int) -> bytes:
        """One primary header: checks, bookkeeping, rewriting; return what to write (b"": dropped)."""
        s = self.s
        if kind == H.HDR_RECEIVED:
            self.hops += 1
            if self.hops > s.hopcount_limit:
                self._log_ids_so_far()
                raise Refused(554, "5.4.0 Error: too many hops", "message rejected: hopcount exceeded")
        if flags & H.EIGHT_BIT and s.strict_7bit_headers:
            self._log_ids_so_far()
            self._log_mime_error("message header", text)
            raise Refused(550, "5.6.0 improper use of 8-bit data in message header")
        cls = H.CLASS.get(kind, 0)
        prefix = b""
        if self.inspect:
            table = self.svc.mime_header_checks if cls & H.MIME else self.svc.header_checks
            if table:
                htext = text.decode("utf-8", "surrogateescape")
                act = await self._check(table, "header", htext)
                if act is not None:
                    verb, arg = act
                    if verb == "IGNORE":
                        return b""
                    if verb == "PREPEND":
                        prefix = arg.encode("utf-8", "surrogateescape") + b"\n"
                    elif verb == "REPLACE":
                        new = arg.encode("utf-8", "surrogateescape")
                        r = H.HeaderReader(H.KINDS, s.header_size_limit)
                        r.feed(new + b"\n")
                        r.finish()
                        got = r.take()
                        if got:
                            kind, name_len, text, flags = got[0]
                            cls = H.CLASS.get(kind, 0)
                        else:
                            return new + b"\n"
        if kind:
            self.have.add(kind)
            if cls & H.RESENT:
                self.resent = True
            if kind == H.HDR_MESSAGE_ID:
                self.message_id = text[name_len + 1:].strip()
                self.id_headers.append(("", self.message_id))
            elif kind == H.HDR_RESENT_MESSAGE_ID:
                self.resent_message_id = text[name_len + 1:].strip()
                self.id_headers.append(("resent-", self.resent_message_id))
            elif kind == H.HDR_CONTENT_TYPE and s.mime:
                self._content_type(text[name_len + 1:], top=True)
            elif kind == H.HDR_CONTENT_TRANSFER_ENCODING:
                self._cte(text[name_len + 1:])
            if cls & (H.SENDER | H.RECIPIENT):
                if self.extract and kind in _EXTRACT_KINDS:
                    value = text[name_len + 1:].decode("utf-8", "surrogateescape")
                    for a in hdraddr.parse(value, s.header_token_limit).addresses():
                        if a:
                            self.extracted_to.append((bool(cls & H.RESENT), a))
                if text[:name_len].lower().decode("latin-1") in s.drop_headers:
                    return prefix
                if self.header_context is not None:
                    text = await self._rewrite_header(kind, cls, name_len, text)
            elif s.drop_headers and text[:name_len].lower().decode("latin-1") in s.drop_headers:
                return prefix
        elif s.drop_headers and text[:name_len].lower().decode("latin-1") in s.drop_headers:
            return prefix
        return prefix + text + b"\n" if prefix else text + b"\n"

    async def _put(self, data: bytes) -> None:
        waiter = self._write(data)
        if waiter is not None:
            await waiter

    async def _rewrite_header(self, kind: int, cls: int, name_len: int, text: bytes) -> bytes:
        s = self.s
        m = self.svc.mapper
        ctx = self.header_context
        map_ok = bool(self.flags & P.FLAG_MAP_OK)
        hclass = addrmap.SENDER_HEADER if cls & H.SENDER else addrmap.RECIPIENT_HEADER
        if m.header_cacheable(hclass, map_ok):
            key = (ctx, hclass, map_ok, text)
            done = m.header_cached(key)
            if done is None:
                done = await self._rewrite_header_text(ctx, hclass, map_ok, name_len, text)
                m.header_remember(key, done)
            return done
        return await self._rewrite_header_text(ctx, hclass, map_ok, name_len, text)

    async def _rewrite_header_text(self, ctx: str, hclass: str, map_ok: bool, name_len: int,
                                   text: bytes) -> bytes:
        s = self.s
        m = self.svc.mapper
        value = text[name_len + 1:].decode("utf-8", "surrogateescape")
        parsed = hdraddr.parse(value, s.header_token_limit)
        addrs = parsed.addresses()
        if not addrs:
            return text
        new: dict = {}
        for a in addrs:
            if not a or a in new:
                continue
            r = await m.rewrite(ctx, a)
            if map_ok:
                r = await m.canonical(r, hclass, ctx)
                if hclass in s.masquerade_classes:
                    r = m.masquerade(r)
            new[a] = r
        elements = parsed.rewrite(new.get)
        if elements is None:
            return text
        name = text[:name_len].decode("utf-8", "surrogateescape")
        return hdraddr.format_header(name, elements).encode("utf-8", "surrogateescape")

    def _header_context(self):
        """The trivial-rewrite context for header addresses, or None: leave them alone."""
        if self.context == "local":
            return "local"
        if self.s.remote_header_domain:
            return "remote"
        return None

    def _content_type(self, value: bytes, top: bool) -> None:
        text = value.decode("latin-1").strip()
        ctype = text.split(";", 1)[0].strip().lower()
        boundary = None
        if ctype.startswith("multipart/"):
            m = _CT_PARAM.search(text)
            if m:
                boundary = (m.group(1) if m.group(1) is not None else m.group(2))
                boundary = boundary[: self.s.mime_boundary_limit].encode("latin-1")
        if top:
            self.mime_type = ctype
            self.mime_boundary = boundary
        else:
            self.part_ctype = ctype
            self.part_boundary = boundary

    def _cte(self, value: bytes) -> None:
        word = value.strip().lower()
        if word in (b"8bit", b"binary"):
            self.cte_8bit = True

    def _log_mime_error(self, what: str, text: str) -> None:
        name = self._attr("log_client_name")
        addr = self._attr("log_client_address")
        client = f"{name}[{addr}]" if name or addr else "local"
        log.info("%s: reject: mime-error improper use of 8-bit data in %s: %s from %s; "
                 "from=<%s> to=<%s>", self.queue_id, what, _ascii(text, 100), client,
                 _printable(self.sender), _printable(self.last_rcpt))

    # -- a refusal in the headers (the module docstring) ------------------------------

    def _log_id(self, prefix: str, value) -> None:
        log.info("%s: %smessage-id=%s", self.queue_id, prefix,
                 _printable(value.decode("utf-8", "replace")) if value is not None else "<>")

    def _log_ids_so_far(self) -> None:
        """Before a refusal's line: the ID lines of the headers already read."""
        for prefix, value in self.id_headers:
            self._log_id(prefix, value)

    def _after_refusal(self, data, end: bool) -> None:
        """A later frame of a message refused in its headers (FLAG_BOUNCE)."""
        reader = self.reader
        if data:
            reader.feed(data)
        if end and not reader.done:
            reader.finish()
        self._ids_after_refusal(reader.take())
        if reader.done or end:
            self._ids_after_refusal_end()

    def _ids_after_refusal(self, headers) -> None:
        for kind, name_len, text, _flags in headers:
            if H.CLASS.get(kind, 0) & H.RESENT:
                self.resent = True
            if kind == H.HDR_MESSAGE_ID:
                self.message_id = text[name_len + 1:].strip()
                self._log_id("", self.message_id)
            elif kind == H.HDR_RESENT_MESSAGE_ID:
                self.resent_message_id = text[name_len + 1:].strip()
                self._log_id("resent-", self.resent_message_id)

    def _ids_after_refusal_end(self) -> None:
        """The end of a refused message's headers: the IDs it would have been given."""
        self.after_refusal = False
        add = self.context == "local" or self.s.always_add_missing_headers
        if self.resent:
            if add and self.resent_message_id is None:
                self._log_id("resent-", self._new_message_id().encode())
        elif add and self.message_id is None:
            self.message_id = self._new_message_id().encode()
            self._log_id("", self.message_id)
        if self.message_id is None:
            self._log_id("", None)

    # -- end of headers -----------------------------------------------------------------

    async def _end_of_headers(self, body: bytes, hdrs: list) -> None:
        """hdrs: the output of the last headers, not written yet (this writes it)."""
        self.in_headers = False
        s = self.s
        out = self._header_trailer(self.have)
        if out:
            hdrs.append(b"\n".join(out) + b"\n")
        # A header section that did not end with an empty line gets one.
        first = body[:2]
        if body and not (first.startswith(b"\n") or first == b"\r\n"):
            hdrs.append(b"\n")
        # What the body needs: straight through, or line by line (the empty line that
        # ends the headers is not body text: body_checks never see it).
        mime_struct = s.mime and (self.mime_boundary is not None
                                  or (self.mime_type or "").startswith("message/"))
        self.line_mode = bool((self.inspect and self.svc.body_checks) or mime_struct
                              or (s.strict_8bitmime_body and not self._declared_8bit()))
        if mime_struct:
            if self.mime_boundary is not None:
                self.mime_stack.append(self.mime_boundary)
            elif self.mime_type == "message/rfc822":
                # the blank line that ends the primary headers, then the attached message
                self.mime_mode = _BLANK_THEN_NESTED
        self.separator = self.line_mode and self.mime_mode == _BODY
        if body and not self.line_mode:
            hdrs.append(body)  # straight through: headers and body in one write
            body = b""
        if hdrs:
            await self._put(b"".join(hdrs))
        if body:
            await self._body(body)

    def _date_header(self) -> bytes:
        """The value of an added Date: / Resent-Date: (StateCore._header_trailer)."""
        return _date(self.arrival).encode()

    def _declared_8bit(self) -> bool:
        return self.encoding == "8bit" or self.cte_8bit

    def _new_message_id(self) -> str:
        s = self.s
        if self.svc.long_ids:
            return f"<{self.queue_id}@{s.myhostname}>"
        return time.strftime("<%Y%m%d%H%M%S.", time.gmtime()) + f"{self.queue_id}@{s.myhostname}>"

    def _from_value(self) -> bytes:
        s = self.s
        addr = external(self.sender) if self.sender else s.empty_address_recipient
        name = self.fullname
        if name:
            if s.header_from_format == "obsolete":
                text = f"{addr} ({_comment_text(name)})"
            else:
                text = f"{_phrase(name)} <{addr}>"
        else:
            text = addr
        return text.encode("utf-8", "surrogateescape")

    # -- body ---------------------------------------------------------------------------

    async def _body(self, data: bytes) -> None:
        if not self.line_mode:
            waiter = self._write(data)
            if waiter is not None:
                await waiter
            return
        data = self.carry + data if self.carry else data
        lines = data.split(b"\n")
        self.carry = lines.pop()
        out = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.separator:
                self.separator = False
                if not line:
                    out.append(b"\n")
                    continue
            res = await self._body_line(line)
            if self.error is not None:
                return
            if res is not None:
                out.append(res)
        if out:
            await self._put(b"".join(out))

    async def _body_line(self, line: bytes) -> bytes | None:
        """One body line in line mode: MIME structure and body_checks; return output."""
        s = self.s
        mode = self.mime_mode
        if mode == _BLANK_THEN_NESTED:
            self.mime_mode = _NESTED_HEADERS
            self.part_reader = H.HeaderReader(H.KINDS, s.header_size_limit)
            self.part_nested = True
            self.part_ctype = None
            self.part_boundary = None
            if not line.strip():
                return line + b"\n"
            mode = _NESTED_HEADERS
        if mode != _BODY:
            return await self._part_header_line(line)
        if self.mime_stack and line.startswith(b"--"):
            for depth in range(len(self.mime_stack) - 1, -1, -1):
                bnd = self.mime_stack[depth]
                if line.startswith(b"--" + bnd):
                    rest = line[2 + len(bnd):]
                    del self.mime_stack[depth + 1:]
                    if rest.startswith(b"--"):
                        self.mime_stack.pop()
                    else:
                        self.mime_mode = _PART_HEADERS
                        self.part_reader = H.HeaderReader(H.KINDS, s.header_size_limit)
                        self.part_nested = False
                        self.part_ctype = None
                        self.part_boundary = None
                    self.segment_checked = 0
                    break
        if s.strict_8bitmime_body and not self._declared_8bit() and _has_8bit(line):
            self._log_mime_error("message body", line)
            raise Refused(550, "5.6.0 improper use of 8-bit data in message body")
        if self.inspect and self.svc.body_checks and self.segment_checked < s.body_checks_size_limit:
            self.segment_checked += len(line) + 1
            text = line.decode("utf-8", "surrogateescape")
            act = await self._check(self.svc.body_checks, "body", text)
            if act is not None:
                verb, arg = act
                if verb == "IGNORE":
                    return None
                if verb == "PREPEND":
                    return arg.encode("utf-8", "surrogateescape") + b"\n" + line + b"\n"
                if verb == "REPLACE":
                    return arg.encode("utf-8", "surrogateescape") + b"\n"
        return line + b"\n"

    async def _part_header_line(self, line: bytes) -> bytes | None:
        """A line of a MIME part's (or an attached message's) header section."""
        s = self.s
        reader = self.part_reader
        reader.feed(line + b"\n")
        out = []
        for kind, name_len, text, flags in reader.take():
            res = await self._part_header(kind, name_len, text)
            if res is not None:
                out.append(res)
        if not reader.done:
            return b"".join(out) if out else None
        # The section ended at this line (blank, or the first body line).
        self.mime_mode = _BODY
        self.segment_checked = 0
        ctype = self.part_ctype
        if ctype is not None and ctype.startswith("multipart/") and self.part_boundary:
            if len(self.mime_stack) < s.mime_nesting_limit:
                self.mime_stack.append(self.part_boundary)
        elif ctype == "message/rfc822" and len(self.mime_stack) < s.mime_nesting_limit:
            self.part_reader = H.HeaderReader(H.KINDS, s.header_size_limit)
            self.part_nested = True
            self.part_ctype = None
            self.part_boundary = None
            self.mime_mode = _NESTED_HEADERS
            out.append(line + b"\n")
            return b"".join(out)
        if not line.strip():
            out.append(line + b"\n")
        else:
            res = await self._body_line(line)
            if res is not None:
                out.append(res)
        return b"".join(out)

    async def _part_header(self, kind: int, name_len: int, text: bytes) -> bytes | None:
        cls = H.CLASS.get(kind, 0)
        if kind == H.HDR_CONTENT_TYPE:
            self._content_type(text[name_len + 1:], top=False)
        elif kind == H.HDR_CONTENT_TRANSFER_ENCODING:
            self._cte(text[name_len + 1:])
        if self.inspect:
            if self.part_nested and not cls & H.MIME:
                table = self.svc.nested_header_checks
            else:
                table = self.svc.mime_header_checks
            if table:
                act = await self._check(table, "header", text.decode("utf-8", "surrogateescape"))
                if act is not None:
                    verb, arg = act
                    if verb == "IGNORE":
                        return None
                    if verb == "PREPEND":
                        return arg.encode("utf-8", "surrogateescape") + b"\n" + text + b"\n"
                    if verb == "REPLACE":
                        return arg.encode("utf-8", "surrogateescape") + b"\n"
        return text + b"\n"

    # -- the end ------------------------------------------------------------------------

    async def _end(self, frame: dict) -> None:
        s = self.s
        if self.in_headers:
            self.reader.finish()
            out = []
            for h in self.reader.take():
                out.append(await self._header(*h))
                if self.error is not None:
                    raise self.error
            await self._end_of_headers(self.reader.rest, out)
        if self.line_mode and self.carry:
            carry, self.carry = self.carry, b""
            if carry.endswith(b"\r"):
                carry = carry[:-1]
            res = await self._body_line(carry)
            if res is not None:
                await self._put(res[:-1] if res.endswith(b"\n") else res)
        if self.error is not None:
            raise self.error
        # What smtpd's access policy decided for the whole message.
        if frame.get("hold"):
            self.hold = True
        if frame.get("discard"):
            self.discard = True
        if frame.get("filter"):
            self.filter_action = frame["filter"]
        if frame.get("redirect"):
            self.redirect = frame["redirect"]
        for bcc in frame.get("bcc") or ():
            self.hbc_rcpts.append(bcc)
        b = self.builder
        if self.discard:
            self.builder.abort()
            self.conn.reply(self, {"t": self.tid, "c": 250, "id": self.queue_id, "discard": 1})
            return
        if self.filter_action:
            b.extracted(R.REC_TYPE_FILT, self.filter_action)
        if self.redirect:
            b.extracted(R.REC_TYPE_RDR, self.redirect)
        for bcc in self.hbc_rcpts:
            b.extracted(R.REC_TYPE_ATTR, "notify_flags=1")
            b.extracted(R.REC_TYPE_RCPT, bcc)
            self.rcpt_count += 1
        if self.extract and self.extracted_to:
            resent = self.resent
            for r, addr in self.extracted_to:
                if r != resent:
                    continue
                addr = await self.svc.mapper.rewrite("local", addr)
                await self._out_recipient(None, 0, addr, addr, extracted=True)
        if s.always_bcc and self.flags & P.FLAG_BCC_OK:
            bcc = await self.svc.mapper.rewrite("local", s.always_bcc)
            await self._out_recipient(None, 1, bcc, bcc, extracted=True)
        enc = "8bit" if self.cte_8bit else self.encoding
        if enc:
            b.extracted(R.REC_TYPE_ATTR, f"encoding={enc}")
        if not b.records.recipients and not self.redirect:
            raise Refused(550, "5.1.0 No recipients specified", "no recipients specified")
        b.records.qmgr_flags = self.qmgr_flags
        queue_id = await self.svc.commit(b, HOLD if self.hold else INCOMING)
        self.conn.reply(self, {"t": self.tid, "c": 250, "id": queue_id})


_CTX_LOCAL = b"rewrite_context=local"
_CTX_REMOTE = b"rewrite_context=remote"
_EXTRACT_KINDS = frozenset({H.HDR_TO, H.HDR_CC, H.HDR_BCC, H.HDR_RESENT_TO, H.HDR_RESENT_CC,
                            H.HDR_RESENT_BCC})
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ .-]*")


def _has_8bit(data: bytes) -> bool:
    return not data.isascii()


def _phrase(name: str) -> str:
    """A display name as a phrase (quoted when it has specials)."""
    if _ATOM_PHRASE.fullmatch(name) and not name.startswith(".") and ".." not in name:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment_text(name: str) -> str:
    return name.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
