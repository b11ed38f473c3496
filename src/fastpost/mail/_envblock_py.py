"""cleanup's common-case envelope in one buffer: the pure-Python reference of the kernel.

Postfix counterpart: src/cleanup/cleanup_envelope.c and cleanup_out_recipient.c (the
records cleanup writes before the content: arrival time, content_filter, attributes,
full name, sender, client attributes, and each recipient with its DSN records).

    got = envelope_block(arrival, filt, ident, ctx_local, envid, ret, fullname, sender,
                         encoding, attrs, rcpts, orig_rcpt, dup_limit, dups, base)

Writes, in this order, what fastpost.daemons.cleanup.state writes through
QueueFileBuilder for a message without BCC or virtual alias expansion:

    T "sec usec", A create_time=sec, [L filt], [A log_ident=ident], A rewrite_context=
    local|remote, [A envelope_id=envid], [A ret_flags=ret], [F fullname], S sender,
    [A encoding=encoding], A name=value per client attribute, then per recipient
    (dsn_orcpt, notify, orig, address) not already in ``dups`` (the key is the tuple;
    ``dups`` is added to while it holds fewer than dup_limit keys):
    [A notify_flags=N], [A dsn_orig_rcpt=...], [O orig when orig_rcpt], R address.

Text is encoded UTF-8 with surrogateescape (the builder's rule). ``base`` is the queue
file offset the buffer will start at (recipients are identified by the offset of their
R record).

Returns None, before touching ``dups``, when the builder would treat something
differently from a plain record (a client attribute that is not text, whose name has
"=" or is dsn_orig_rcpt / notify_flags; a NOTIFY value outside 0..2**32-1): the caller then takes the
general path. Otherwise ``(data, arrival, notes, recipients, qmgr_bits, count)``: the
records, the arrival time as the builder reads it back from T, the named attributes
the builder notes (name -> value, in order), ``(offset, address, orig, dsn_orcpt,
notify)`` per R record, the union of (notify & 0xF) << 1 over the records written (the
C record's qmgr flags), and how many R records were written.
The differential test (tests/unit/mail/queue/test_envblock.py) holds both kernels to
the builder's own methods.

Parameters: enable_original_recipient, duplicate_filter_limit (passed by the caller).
Diagnostics: none.
Fast path: ext/fastpost/mail/_envblock_c.pyx.
"""

from __future__ import annotations

from fastpost.mail.record import encode_record

_RCPT_ATTRS = ("dsn_orig_rcpt", "notify_flags")


def _b(text) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def envelope_block(arrival, filt, ident, ctx_local, envid, ret, fullname, sender, encoding,
                   attrs, rcpts, orig_rcpt, dup_limit, dups, base):
    """The envelope records of a plain message in one buffer (see the module docstring)."""
    for name, value in attrs:
        if not isinstance(name, str) or not isinstance(value, str) or "=" in name or name in _RCPT_ATTRS:
            return None
    for _d, notify, _o, _a in rcpts:
        if not 0 <= notify <= 0xFFFFFFFF:
            return None
    sec = int(arrival)
    usec = min(999_999, int(round((arrival - sec) * 1_000_000)))
    notes = {"create_time": str(sec)}
    out = [encode_record(ord("T"), b"%d %d" % (sec, usec)),
           encode_record(ord("A"), b"create_time=%d" % sec)]
    if filt:
        out.append(encode_record(ord("L"), _b(filt)))
    if ident:
        out.append(encode_record(ord("A"), b"log_ident=" + _b(ident)))
        notes["log_ident"] = ident
    out.append(encode_record(ord("A"), b"rewrite_context=local" if ctx_local
                             else b"rewrite_context=remote"))
    notes["rewrite_context"] = "local" if ctx_local else "remote"
    if envid:
        out.append(encode_record(ord("A"), b"envelope_id=" + _b(envid)))
        notes["envelope_id"] = envid
    if ret:
        out.append(encode_record(ord("A"), b"ret_flags=" + _b(ret)))
        notes["ret_flags"] = ret
    if fullname is not None:
        out.append(encode_record(ord("F"), _b(fullname)))
    out.append(encode_record(ord("S"), _b(sender)))
    if encoding:
        out.append(encode_record(ord("A"), b"encoding=" + _b(encoding)))
        notes["encoding"] = encoding
    for name, value in attrs:
        out.append(encode_record(ord("A"), _b(f"{name}={value}")))
        notes[name] = value
    pos = base + sum(len(r) for r in out)
    recipients = []
    qmgr = 0
    count = 0
    for key in rcpts:
        dsn_orcpt, notify, orig, address = key
        if key in dups:
            continue
        if len(dups) < dup_limit:
            dups.add(key)
        recs = []
        if notify:
            recs.append(encode_record(ord("A"), b"notify_flags=%d" % notify))
            qmgr |= (notify & 0xF) << 1
        if dsn_orcpt:
            recs.append(encode_record(ord("A"), b"dsn_orig_rcpt=" + _b(dsn_orcpt)))
        if orig_rcpt:
            recs.append(encode_record(ord("O"), _b(orig)))
        for r in recs:
            pos += len(r)
        recipients.append((pos, address, orig if orig_rcpt else None, dsn_orcpt or None, notify))
        rec = encode_record(ord("R"), _b(address))
        recs.append(rec)
        pos += len(rec)
        out.extend(recs)
        count += 1
    return (b"".join(out), sec + usec / 1_000_000, notes, recipients, qmgr, count)
