"""Message headers: the kernel that splits a header section, and the names cleanup knows.

Postfix counterpart: src/global/header_opts.c (the table of header names and their
classes), src/global/is_header.c, and the header part of src/cleanup/cleanup_message.c.

    reader = HeaderReader(KINDS, header_size_limit)
    used = reader.feed(chunk)            # any chunking; CR LF or LF lines
    for kind, name_len, text, flags in reader.take(): ...
    if reader.done: body = reader.rest + chunk[used:]
    reader.finish()                      # end of input inside the headers

``text`` is one logical header, its lines joined with LF, cut at header_size_limit;
``kind`` one of the HDR_* numbers below (0 for a header cleanup has no rule for);
``flags`` EIGHT_BIT | TRUNCATED | SPACE_BEFORE_COLON. The full rules are in the
reference, _header_py.py.

Header classes (``CLASS``): which headers carry addresses, and whether they name
senders or recipients - what canonical_classes / masquerade_classes call
header_sender and header_recipient - and which are Resent- variants.

Parameters: header_size_limit (passed by the caller).
Diagnostics: ValueError for a limit below 1.
Fast path: ext/fastpost/mail/_header_c.pyx; reference: _header_py.py.
header_pass (cleanup's common-case pass over the split headers): _hdrpass_c.pyx,
reference _hdrpass_py.py.
"""

from fastpost._accel import select

_impl = select("fastpost.mail._header_c", "fastpost.mail._header_py")

HeaderReader = _impl.HeaderReader
EIGHT_BIT = _impl.EIGHT_BIT
TRUNCATED = _impl.TRUNCATED
SPACE_BEFORE_COLON = _impl.SPACE_BEFORE_COLON

# Header kinds (0 = any other header).
(HDR_OTHER, HDR_FROM, HDR_SENDER, HDR_REPLY_TO, HDR_TO, HDR_CC, HDR_BCC, HDR_APPARENTLY_TO,
 HDR_RESENT_FROM, HDR_RESENT_SENDER, HDR_RESENT_REPLY_TO, HDR_RESENT_TO, HDR_RESENT_CC,
 HDR_RESENT_BCC, HDR_ERRORS_TO, HDR_RETURN_RECEIPT_TO, HDR_RETURN_PATH,
 HDR_DISPOSITION_NOTIFICATION_TO, HDR_MESSAGE_ID, HDR_RESENT_MESSAGE_ID, HDR_DATE,
 HDR_RESENT_DATE, HDR_RECEIVED, HDR_CONTENT_LENGTH, HDR_CONTENT_TYPE,
 HDR_CONTENT_TRANSFER_ENCODING, HDR_MIME_VERSION, HDR_DELIVERED_TO, HDR_X_ORIGINAL_TO,
 HDR_RESENT_OTHER, HDR_CONTENT_OTHER, HDR_MAIL_FOLLOWUP_TO, HDR_X_MAILBOX_LINE) = range(33)

#: lower-case name -> kind, for HeaderReader.
KINDS: dict[bytes, int] = {
    b"from": HDR_FROM,
    b"sender": HDR_SENDER,
    b"reply-to": HDR_REPLY_TO,
    b"to": HDR_TO,
    b"cc": HDR_CC,
    b"bcc": HDR_BCC,
    b"apparently-to": HDR_APPARENTLY_TO,
    b"resent-from": HDR_RESENT_FROM,
    b"resent-sender": HDR_RESENT_SENDER,
    b"resent-reply-to": HDR_RESENT_REPLY_TO,
    b"resent-to": HDR_RESENT_TO,
    b"resent-cc": HDR_RESENT_CC,
    b"resent-bcc": HDR_RESENT_BCC,
    b"errors-to": HDR_ERRORS_TO,
    b"return-receipt-to": HDR_RETURN_RECEIPT_TO,
    b"return-path": HDR_RETURN_PATH,
    b"disposition-notification-to": HDR_DISPOSITION_NOTIFICATION_TO,
    b"message-id": HDR_MESSAGE_ID,
    b"resent-message-id": HDR_RESENT_MESSAGE_ID,
    b"date": HDR_DATE,
    b"resent-date": HDR_RESENT_DATE,
    b"received": HDR_RECEIVED,
    b"content-length": HDR_CONTENT_LENGTH,
    b"content-type": HDR_CONTENT_TYPE,
    b"content-transfer-encoding": HDR_CONTENT_TRANSFER_ENCODING,
    b"mime-version": HDR_MIME_VERSION,
    b"delivered-to": HDR_DELIVERED_TO,
    b"x-original-to": HDR_X_ORIGINAL_TO,
    b"mail-followup-to": HDR_MAIL_FOLLOWUP_TO,
    b"x-mailbox-line": HDR_X_MAILBOX_LINE,
    b"content-description": HDR_CONTENT_OTHER,
    b"content-disposition": HDR_CONTENT_OTHER,
    b"content-id": HDR_CONTENT_OTHER,
    b"resent-comments": HDR_RESENT_OTHER,
    b"resent-keywords": HDR_RESENT_OTHER,
    b"resent-subject": HDR_RESENT_OTHER,
}

SENDER = 1  # an address header that names senders (header_sender)
RECIPIENT = 2  # an address header that names recipients (header_recipient)
RESENT = 4  # a Resent- header (its presence switches cleanup to Resent- headers)
MIME = 8  # a MIME header (Content-*, MIME-Version): mime_header_checks

#: kind -> class bits.
CLASS: dict[int, int] = {
    HDR_FROM: SENDER, HDR_SENDER: SENDER, HDR_REPLY_TO: SENDER, HDR_ERRORS_TO: SENDER,
    HDR_RETURN_RECEIPT_TO: SENDER, HDR_DISPOSITION_NOTIFICATION_TO: SENDER,
    HDR_MAIL_FOLLOWUP_TO: SENDER,
    HDR_TO: RECIPIENT, HDR_CC: RECIPIENT, HDR_BCC: RECIPIENT, HDR_APPARENTLY_TO: RECIPIENT,
    HDR_RESENT_FROM: SENDER | RESENT, HDR_RESENT_SENDER: SENDER | RESENT,
    HDR_RESENT_REPLY_TO: SENDER | RESENT,
    HDR_RESENT_TO: RECIPIENT | RESENT, HDR_RESENT_CC: RECIPIENT | RESENT,
    HDR_RESENT_BCC: RECIPIENT | RESENT,
    HDR_RESENT_MESSAGE_ID: RESENT, HDR_RESENT_DATE: RESENT, HDR_RESENT_OTHER: RESENT,
    HDR_CONTENT_TYPE: MIME, HDR_CONTENT_TRANSFER_ENCODING: MIME, HDR_MIME_VERSION: MIME,
    HDR_CONTENT_OTHER: MIME, HDR_CONTENT_LENGTH: 0,
}

__all__ = ["HeaderReader", "EIGHT_BIT", "TRUNCATED", "SPACE_BEFORE_COLON", "KINDS", "CLASS",
           "SENDER", "RECIPIENT", "RESENT", "MIME", "header_pass", "CLASS_BYTES"] + [n for n in dir() if n.startswith("HDR_")]

# cleanup's common-case header pass (fastpost.daemons.cleanup's fast path).
_pass = select("fastpost.mail._hdrpass_c", "fastpost.mail._hdrpass_py")
header_pass = _pass.header_pass

#: CLASS as bytes indexed by kind, the form header_pass takes.
CLASS_BYTES = bytes(CLASS.get(k, 0) for k in range(max(KINDS.values()) + 1))
