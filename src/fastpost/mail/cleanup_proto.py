"""The cleanup protocol: what producers (smtpd, pickup, ...) send cleanup, and back.

Postfix counterpart: src/global/cleanup_user.h (request flags, status bits),
src/global/cleanup_strerror.c (status -> SMTP reply), src/global/mail_proto.h
(cleanup_protocol) and the stream conversation of src/cleanup/cleanup.c. Postfix opens
one connection per message and streams queue-file records; fastpost multiplexes many
messages on one persistent connection and moves content in large chunks.

Wire: fastpost.mail.attr frames on a UNIX stream socket ($queue_directory/public/
cleanup). The server speaks first: ``{"protocol": "cleanup_protocol"}``. Then the
client sends frames tagged with its own transaction number ``t`` (any int, unique
among the connection's open transactions), and the server answers with frames tagged
the same way, in whatever order transactions finish:

    client -> {"o": OPEN, "t": n, "f": flags, "time": arrival (microseconds),
               "s": sender, "a": [[name, value], ...] (envelope attributes, in order),
               ["filter": transport:nexthop], ["ret": "1"|"2"], ["envid": text],
               ["enc": "7bit"|"8bit"], ["utf8": 1], ["ctx": "local"|"remote"],
               ["uid": n] (pickup: who submitted it),
               ["reuse_id": queue_id] (pickup's returned reject: the ID of a message
               this connection was refused with a 5xx; taken if the connection was
               told it and the store does not have it, else a new ID is given)}
    server -> {"t": n, "id": queue_id}                      the message has its ID
           |  {"t": n, "c": code, "x": "d.d.d text"}         refused (no ID)

    client -> {"o": DATA, "t": n, ["r": [[address, orcpt, notify_bits], ...]],
               ["d": content bytes]}                         (no reply)
    client -> {"o": END, "t": n, ["r": ...], ["d": ...], ["hold": reason],
               ["discard": reason], ["filter": t:n], ["redirect": address],
               ["bcc": [address, ...]]}
    server -> {"t": n, "c": 250, "id": queue_id}            durable (after the fsync)
           |  {"t": n, "c": code, "x": "d.d.d text", ["id": queue_id]}   refused
    client -> {"o": ABORT, "t": n}                          (no reply)
    client -> {"o": RETURNED, "t": n, "id": queue_id, "x": "d.d.d text"}
    server -> {"t": n, "c": 250, "x": "2.0.0 Ok", "id": queue_id}
           |  {"t": n, "c": code, "x": "d.d.d text", "id": ""}

RETURNED (pickup's returned rejects, on the connection that opened the stand-in with
``reuse_id`` and committed it on hold; ``n`` a transaction number not open): cleanup
appends a ``failed`` entry with cleanup's refusal ``x`` for each of the stand-in's
recipients to its bounce log and logs Postfix's ``status=bounced`` lines
(fastpost.daemons.cleanup.returned), once per stand-in; 550 for any other message.

Content is the message as the client received it (smtpd: its Received: header first,
then the client's lines, CR LF or LF line ends, dot-unstuffed), in chunks of any size;
recipients (``r``) come before any content. ``notify_bits`` are Postfix's DSN_NOTIFY_*
(0 = not given). END may carry the last recipients and content and the access-policy
actions smtpd collected. A reply code 250 with DISCARD is a success as well: the
message was accepted and dropped, as Postfix tells the client.

Request flags (``f``) are Postfix's CLEANUP_FLAG_* ideas, with fastpost's values:
FILTER (header/body checks), BCC_OK (automatic BCC), MAP_OK (canonical, virtual,
masquerading), MILTER, EXTRACT (recipients from headers, sendmail -t), HOLD, DISCARD,
BOUNCE (the client returns what cleanup refuses: pickup).
``external_flags(cfg)`` gives what a network or local client gets, after
receive_override_options.

Parameters: receive_override_options (external_flags), cleanup_service_name (endpoint).
Diagnostics: ValueError for an unknown receive_override_options word is not raised:
unknown words are returned by unknown_override_options() for the caller to warn about.
"""

from __future__ import annotations

PROTOCOL = "cleanup_protocol"

OPEN = 1
DATA = 2
END = 3
ABORT = 4
RETURNED = 5

FLAG_FILTER = 0x0001  # apply header_checks, body_checks, ...
FLAG_HOLD = 0x0002  # put the message on hold
FLAG_DISCARD = 0x0004  # accept and drop
FLAG_BCC_OK = 0x0008  # always_bcc, sender_bcc_maps, recipient_bcc_maps
FLAG_MAP_OK = 0x0010  # canonical, masquerading, virtual alias maps
FLAG_MILTER = 0x0020  # (non_smtpd_)milters: not implemented, carried for compatibility
FLAG_EXTRACT = 0x0040  # sendmail -t: recipients from the headers too
FLAG_SMTP_REPLY = 0x0080  # the client wants an SMTP reply (always given)
# The client returns a message cleanup refuses to its sender itself, or keeps it to try
# again under soft_bounce (pickup; Postfix's CLEANUP_FLAG_BOUNCE, where cleanup does the
# returning): cleanup reads such a message's headers to their end after a refusal, for
# the message-id= lines Postfix's cleanup logs (state.py, "A refusal in the headers").
FLAG_BOUNCE = 0x0100

#: What every client gets unless receive_override_options takes it away.
FLAGS_EXTERNAL = FLAG_FILTER | FLAG_BCC_OK | FLAG_MAP_OK | FLAG_MILTER

#: receive_override_options words -> the flags they take away.
OVERRIDES = {
    "no_unknown_recipient_checks": 0,  # smtpd's business; nothing for cleanup
    "no_address_mappings": FLAG_MAP_OK | FLAG_BCC_OK,
    "no_header_body_checks": FLAG_FILTER,
    "no_milters": FLAG_MILTER,
}

#: DSN NOTIFY words -> Postfix's DSN_NOTIFY_* bits (fastpost.mail.deliver.NOTIFY_*).
NOTIFY_BITS = {"NEVER": 1, "SUCCESS": 2, "FAILURE": 4, "DELAY": 8}
#: DSN RET values -> Postfix's DSN_RET_* numbers (as text, as the queue file has them).
RET = {"FULL": "1", "HDRS": "2"}


def external_flags(cfg) -> int:
    """The request flags of an external client (smtpd, pickup) under cfg."""
    flags = FLAGS_EXTERNAL
    for word in cfg.get_list("receive_override_options"):
        flags &= ~OVERRIDES.get(word.lower(), 0)
    return flags


def unknown_override_options(cfg) -> list[str]:
    """receive_override_options words fastpost does not know (to warn about)."""
    return [w for w in cfg.get_list("receive_override_options") if w.lower() not in OVERRIDES]


def notify_bits(words) -> int:
    """RCPT NOTIFY= words as the DSN_NOTIFY_* bit set (0 when not given)."""
    bits = 0
    for word in words or ():
        bits |= NOTIFY_BITS.get(word.upper(), 0)
    return bits


__all__ = [
    "PROTOCOL", "OPEN", "DATA", "END", "ABORT", "FLAG_FILTER", "FLAG_HOLD", "FLAG_DISCARD",
    "FLAG_BCC_OK", "FLAG_MAP_OK", "FLAG_MILTER", "FLAG_EXTRACT", "FLAG_SMTP_REPLY", "FLAG_BOUNCE",
    "FLAGS_EXTERNAL", "OVERRIDES", "NOTIFY_BITS", "RET", "external_flags",
    "unknown_override_options", "notify_bits",
]
