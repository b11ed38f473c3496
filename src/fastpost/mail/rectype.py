"""Queue-file record types and the record error.

Postfix counterpart: src/global/rec_type.h

A queue file (and the cleanup stream) is a sequence of records: one type byte, the
payload length as a base-128 varint (low 7 bits first, high bit = more follows), then
the payload. The type letters are Postfix's, so a fastpost message can be exported as
a Postfix queue file and a Postfix queue file imported.

Diagnostics: CorruptRecord (a ValueError) for a malformed or oversized record.
"""

REC_TYPE_SIZE = ord("C")  # first record: sizes and counts
REC_TYPE_TIME = ord("T")  # arrival time "sec usec"
REC_TYPE_CTIME = ord("c")  # create time
REC_TYPE_FULL = ord("F")  # sender full name
REC_TYPE_INSP = ord("I")  # content inspector (content_filter)
REC_TYPE_FILT = ord("L")  # loop filter transport (envelope); CONT in content
REC_TYPE_FROM = ord("S")  # envelope sender
REC_TYPE_DONE = ord("D")  # recipient already delivered
REC_TYPE_DRCP = ord("/")  # canceled recipient
REC_TYPE_RCPT = ord("R")  # recipient
REC_TYPE_ORCP = ord("O")  # original recipient
REC_TYPE_WARN = ord("W")  # time of the next delay warning
REC_TYPE_ATTR = ord("A")  # name=value attribute
REC_TYPE_KILL = ord("K")  # killed record
REC_TYPE_RDR = ord(">")  # redirect target
REC_TYPE_FLGS = ord("f")  # cleanup processing flags
REC_TYPE_DELAY = ord("d")  # delay
REC_TYPE_DSN_RET = ord("<")  # RFC 3461 RET
REC_TYPE_DSN_ENVID = ord("i")  # RFC 3461 ENVID
REC_TYPE_DSN_ORCPT = ord("o")  # RFC 3461 ORCPT
REC_TYPE_DSN_NOTIFY = ord("n")  # RFC 3461 NOTIFY
REC_TYPE_VERP = ord("V")  # VERP delimiters
REC_TYPE_PRIO = ord("P")  # priority
REC_TYPE_RRTO = ord("r")  # Return-Receipt-To
REC_TYPE_ERTO = ord("e")  # Errors-To
REC_TYPE_PTR = ord("p")  # pointer to another offset
REC_TYPE_DTXT = ord("w")  # padding
REC_TYPE_MESG = ord("M")  # start of content
REC_TYPE_NORM = ord("N")  # content line ending in a newline
REC_TYPE_CONT = ord("L")  # piece of a long content line, continued by the next record
REC_TYPE_XTRA = ord("X")  # start of the extracted section
REC_TYPE_MILT_COUNT = ord("m")  # milter count
REC_TYPE_END = ord("E")  # terminator

#: Record types allowed in each section (Postfix's REC_TYPE_ENVELOPE etc.).
ENVELOPE_TYPES = frozenset(b"MCTcFILSDRO/WVA>K<ion")
CONTENT_TYPES = frozenset(b"XLNw")
EXTRACT_TYPES = frozenset(b"EDRO/PreAFIL>Kon")

#: Human-readable names, as postcat prints them.
REC_TYPE_NAMES = {
    REC_TYPE_SIZE: "message_size",
    REC_TYPE_TIME: "message_arrival_time",
    REC_TYPE_CTIME: "create_time",
    REC_TYPE_FULL: "sender_fullname",
    REC_TYPE_INSP: "content_filter",
    REC_TYPE_FROM: "sender",
    REC_TYPE_DONE: "done_recipient",
    REC_TYPE_DRCP: "canceled_recipient",
    REC_TYPE_RCPT: "recipient",
    REC_TYPE_ORCP: "original_recipient",
    REC_TYPE_WARN: "warning_message_time",
    REC_TYPE_ATTR: "named_attribute",
    REC_TYPE_KILL: "killed_recipient",
    REC_TYPE_RDR: "redirect_to",
    REC_TYPE_FLGS: "cleanup_flags",
    REC_TYPE_DELAY: "delay_time",
    REC_TYPE_DSN_RET: "dsn_return_flags",
    REC_TYPE_DSN_ENVID: "dsn_envelope_id",
    REC_TYPE_DSN_ORCPT: "dsn_original_recipient",
    REC_TYPE_DSN_NOTIFY: "dsn_notify_flags",
    REC_TYPE_VERP: "verp_delimiters",
    REC_TYPE_PRIO: "priority",
    REC_TYPE_RRTO: "return_receipt",
    REC_TYPE_ERTO: "errors_to",
    REC_TYPE_PTR: "pointer_record",
    REC_TYPE_DTXT: "padding",
    REC_TYPE_MESG: "message_content",
    REC_TYPE_NORM: "regular_text",
    REC_TYPE_CONT: "long_text",
    REC_TYPE_XTRA: "extracted_info",
    REC_TYPE_MILT_COUNT: "milter_count",
    REC_TYPE_END: "message_end",
}


class CorruptRecord(ValueError):
    """A record whose type or length cannot be trusted.

    ``offset`` is the position in the input where the bad record starts.
    """

    def __init__(self, message: str, offset: int = -1):
        super().__init__(message)
        self.offset = offset
