"""cleanup's common-case header pass: the pure-Python reference of the compiled kernel.

Postfix counterpart: the header part of src/cleanup/cleanup_message.c
(cleanup_header_callback: hop count, Message-Id/Resent-, MIME type, address headers
rewritten, message_drop_headers) for the case cleanup's fast path handles.

    got = header_pass(headers, classes, drop, hop_limit, strict7, mime,
                      cache, ctx, map_ok, sender_class, rcpt_class, now)

``headers``: the list HeaderReader.take() returned for the whole header section
(kind, name_len, text, flags). ``classes``: bytes indexed by kind, the class bits of
fastpost.mail.header.CLASS (SENDER 1, RECIPIENT 2, RESENT 4, MIME 8). ``drop``: the
message_drop_headers names, lower-case bytes. ``cache``: the address mapper's cache of
rewritten headers, ``(ctx, class, map_ok, header bytes) -> (new bytes, expiry)``;
``ctx`` the header rewriting context (None: address headers stay as they are);
``sender_class`` / ``rcpt_class`` the cache's class names, None when that class may not
be served from the cache; ``now`` time.monotonic().

Returns None when the general path must take the message (nothing was changed: the
caller just goes on with it): more Received: headers than hop_limit, an 8-bit header
with strict7, a Content-Type that may say multipart/ or message/ (when mime), an
address header to rewrite that is not in the cache (or expired there). Otherwise
``(out, have, resent, message_id, resent_message_id, cte_8bit)``: the headers' output
(each kept header, rewritten where it has addresses, followed by LF), a bit mask of the
kinds present (1 << kind), whether a Resent- header was seen, the last Message-Id and
Resent-Message-Id values stripped (bytes, or None), and whether a
Content-Transfer-Encoding said 8bit or binary. These are exactly what the general path
(fastpost.daemons.cleanup.state) computes for the same headers; the differential test
(tests/unit/daemons/test_cleanup_fastpath.py) holds both to it.

Parameters: hopcount_limit, strict_7bit_headers, disable_mime_input_processing,
message_drop_headers (all passed in by the caller).
Diagnostics: none (a malformed header is data, never an error here).
Fast path: ext/fastpost/mail/_hdrpass_c.pyx.
"""

from __future__ import annotations

_SENDER, _RECIPIENT, _RESENT = 1, 2, 4
_HDR_MESSAGE_ID, _HDR_RESENT_MESSAGE_ID, _HDR_RECEIVED = 18, 19, 22
_HDR_CONTENT_TYPE, _HDR_CTE = 24, 25
_EIGHT_BIT = 1


def header_pass(headers, classes, drop, hop_limit, strict7, mime, cache, ctx, map_ok,
                sender_class, rcpt_class, now):
    """One pass over a message's headers for the common case (see the module docstring)."""
    out = []
    have = 0
    resent = False
    message_id = None
    resent_message_id = None
    cte_8bit = False
    hops = 0
    for kind, name_len, text, flags in headers:
        if kind == _HDR_RECEIVED:
            hops += 1
            if hops > hop_limit:
                return None
        if flags & _EIGHT_BIT and strict7:
            return None
        cls = classes[kind] if 0 <= kind < len(classes) else 0
        if kind:
            have |= 1 << kind
            if cls & _RESENT:
                resent = True
            if kind == _HDR_MESSAGE_ID:
                message_id = text[name_len + 1:].strip()
            elif kind == _HDR_RESENT_MESSAGE_ID:
                resent_message_id = text[name_len + 1:].strip()
            elif kind == _HDR_CONTENT_TYPE and mime:
                value = text[name_len + 1:].lower()
                if b"multipart/" in value or b"message/" in value:
                    return None
            elif kind == _HDR_CTE:
                if text[name_len + 1:].strip().lower() in (b"8bit", b"binary"):
                    cte_8bit = True
        if drop and text[:name_len].lower() in drop:
            continue
        if cls & (_SENDER | _RECIPIENT) and kind and ctx is not None:
            hclass = sender_class if cls & _SENDER else rcpt_class
            if hclass is None:
                return None
            item = cache.get((ctx, hclass, map_ok, text))
            if item is None or item[1] < now:
                return None
            text = item[0]
        out.append(text)
        out.append(b"\n")
    return (b"".join(out), have, resent, message_id, resent_message_id, cte_8bit)
