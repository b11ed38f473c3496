"""fastpost cat: show queue file contents, as postcat(1) does.

Postfix counterpart: src/postcat/postcat.c

    fastpost cat [-bdehoqrv] [-c config_dir] [-s offset] [files...]

Prints each named Postfix-format queue file (standard input when none is named) in
postcat's layout. With -q the names are queue IDs looked up in the fastpost queue; the
message is shown as it would be exported (recipients already delivered appear as
done_recipient) under the name Postfix would give its file (``deferred/5/ID``).

    -e  envelope records (with the section banners)   -h  header lines   -b  body lines
        (default: all three; -h ends before the first line that is not a header or
        a continuation line, -b starts there)
    -o  each record's file offset                     -d  each record's decimal type
    -v  record names for content records too, pointer and padding records
    -r  file order: do not follow pointer records     -s  start at this file offset

Diagnostics (standard error, as postcat): ``warning: NAME: input is not a valid queue
file`` (the next file is tried), ``warning: NAME: unexpected EOF in data, record type N
length L`` and ``fatal: record read error`` (exit 1), ``fatal: open NAME: reason`` (exit 1),
``warning: invalid size record: ...``, out-of-order section markers. main.cf's global
values are judged first, as postcat's (fastpost.mail.mainvalues, not maillog_file):
``postcat: fatal: ...``, exit 1.

Differences from postcat 3.7: reading standard input works (postcat 3.7 fails with a
seek error after the end record); -q looks in the fastpost queue.
"""

from __future__ import annotations

import getopt
import re
import sys
import time

from fastpost.cli.queuetool import Tool, ToolFatal

USAGE = ("usage: postcat [-b (body text)] [-c config_dir] [-d (decimal record type)] "
         "[-e (envelope records)] [-h (header text)] [-q (access queue)] [-v] [file(s)...]")

#: Record names as postcat 3.7 prints them (types it does not know: unknown_record_type).
NAMES = {
    ord("C"): "message_size", ord("T"): "message_arrival_time", ord("c"): "queue_file_create_time",
    ord("F"): "sender_fullname", ord("I"): "content_inspector", ord("L"): "content_filter",
    ord("S"): "sender", ord("D"): "done_recipient", ord("/"): "canceled_recipient",
    ord("R"): "recipient", ord("O"): "original_recipient", ord("W"): "warning_message_time",
    ord("A"): "named_attribute", ord("K"): "killed_record", ord(">"): "redirect_to",
    ord("f"): "flags", ord("<"): "dsn_return_flags", ord("i"): "dsn_envelope_id",
    ord("o"): "dsn_original_recipient", ord("n"): "dsn_notify_flags", ord("V"): "verp_delimiters",
    ord("P"): "priority", ord("r"): "return_receipt", ord("e"): "errors_to",
    ord("p"): "pointer_record", ord("w"): "padding", ord("M"): "message_content",
    ord("N"): "regular_text", ord("X"): "extracted_info", ord("E"): "message_end",
}
CONTENT_NAMES = {ord("N"): "regular_text", ord("L"): "unterminated_text"}

_HEADER_RE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")

ENVELOPE, CONTENT, EXTRACTED = range(3)


class ReadError(Exception):
    """A record that cannot be read: postcat's ``record read error``."""


def ctime(seconds: int) -> str:
    return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(seconds))


def is_header(line: bytes) -> bool:
    """True for a line that starts a header: a name of printable characters, then ':'."""
    return bool(_HEADER_RE.match(line))


class Options:
    def __init__(self):
        self.body = self.header = self.envelope = False
        self.offsets = self.decimal = self.raw = self.queue = False
        self.verbose = 0
        self.start: int | None = None
        self.config_dir: str | None = None


def _record_at(data: bytes, pos: int):
    """Return (type, payload start, payload end) or raise ReadError (with postcat's text)."""
    size = len(data)
    rtype = data[pos]
    p = pos + 1
    length = 0
    shift = 0
    while True:
        if p >= size:
            raise ReadError(f"unexpected EOF in data, record type {rtype} length {length}")
        byte = data[p]
        p += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 28:
            raise ReadError(f"illegal length {length}, record type {rtype}")
    if p + length > size:
        raise ReadError(f"unexpected EOF in data, record type {rtype} length {length}")
    return rtype, p, p + length


def _valid_size(payload: bytes) -> bool:
    fields = payload.split()
    if len(fields) < 3 or not all(f.lstrip(b"-").isdigit() for f in fields):
        return False
    nums = [int(f) for f in fields]
    return nums[0] > 0 and nums[1] > 0 and nums[2] >= 0 and min(nums) >= 0


def _size_fields(payload: bytes) -> tuple[int, int] | None:
    """(content length, data offset) from a valid C record payload, else None."""
    fields = payload.split()
    if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
        return int(fields[0]), int(fields[1])
    return None


def show(data: bytes, name: str, opts: Options, out, tool: Tool) -> None:
    """Print one queue file. ReadError for a broken record (the caller exits 1).

    As postcat does, sections that are not shown are skipped with the offsets of the
    size record: without -e reading jumps to the content, without -h and -b it jumps
    over the content to the extracted section. Pointer and padding records that are
    not printed (no -v) lend their offset to the next record printed with -o.
    """
    w = out.write
    pos = opts.start if opts.start is not None else 0
    state = ENVELOPE
    sizes = None
    if opts.start is None:
        if not data or data[0] not in (ord("C"), ord("T")):
            tool.warn(f"{name}: input is not a valid queue file")
            return
        if opts.envelope:
            w(f"*** ENVELOPE RECORDS {name} ***\n".encode())
    want_content = opts.header or opts.body
    in_header = True
    at_line_start = True
    skip_until = -1  # -r: records before a pointer's target are dead (shown with -v only)
    carry = None  # offset lent by skipped pointer/padding records
    jumps = 0
    size = len(data)
    while True:
        if pos >= size:
            return  # the file ends at a record boundary: postcat stops quietly
        try:
            rtype, start, end = _record_at(data, pos)
        except ReadError as exc:
            raise ReadError(f"{name}: {exc}") from None
        payload = data[start:end]
        here = pos
        pos = end
        prefix = b""
        if opts.offsets:
            prefix += b"%9d " % (carry if carry is not None else here)
        if opts.decimal:
            prefix += b"%3d " % rtype
        if rtype == ord("p"):  # pointer
            value = payload.strip()
            target = int(value) if value.isdigit() else 0
            if opts.verbose and (opts.envelope or state == CONTENT):
                w(prefix + b"pointer_record: " + payload + b"\n")
            elif carry is None:
                carry = here
            if target:
                if opts.raw:
                    skip_until = target
                else:
                    jumps += 1
                    if jumps > 100_000 or not 0 < target < size:
                        raise ReadError(f"{name}: bad pointer record at offset {here}")
                    pos = target
            continue
        if rtype == ord("w") and not opts.verbose:
            if carry is None:
                carry = here
            continue
        carry = None
        if opts.raw and 0 <= here < skip_until and not opts.verbose:
            continue
        if here == 0 and rtype == ord("C"):
            sizes = _size_fields(payload)
            if not opts.envelope:
                if not _valid_size(payload):
                    tool.warn(f"invalid size record: {payload.decode('latin-1')}")
                if sizes is not None:
                    pos = sizes[1]
                    state = CONTENT
                continue
        if rtype == ord("M"):
            if state != ENVELOPE:
                tool.warn(f"{name}: out-of-order message content marker")
            state = CONTENT
            if opts.envelope:
                w(prefix + f"*** MESSAGE CONTENTS {name} ***\n".encode())
            if not want_content and sizes is not None:
                pos = sizes[0] + sizes[1]
            continue
        if rtype == ord("X"):
            if state != CONTENT:
                tool.warn(f"{name}: out-of-order extracted segment marker")
            state = EXTRACTED
            if opts.envelope:
                w(prefix + f"*** HEADER EXTRACTED {name} ***\n".encode())
            continue
        if rtype == ord("E"):
            if opts.envelope:
                w(prefix + f"*** MESSAGE FILE END {name} ***\n".encode())
            return
        if state == CONTENT and rtype in (ord("N"), ord("L")):
            if at_line_start and in_header and not (is_header(payload) or payload[:1] in (b" ", b"\t")):
                in_header = False
            selected = opts.header if in_header else opts.body
            at_line_start = rtype == ord("N")
            if not selected:
                continue
            if opts.verbose:
                w(prefix + CONTENT_NAMES[rtype].encode() + b": " + payload + b"\n")
            elif rtype == ord("N") or opts.offsets:
                w(prefix + payload + b"\n")
            else:
                w(prefix + payload)
            continue
        if state == CONTENT and rtype == ord("w"):
            if opts.header if in_header else opts.body:
                w(prefix + b"padding: " + payload + b"\n")
            continue
        if not opts.envelope:
            continue
        if rtype == ord("N"):
            w(prefix + payload + b"\n")
        elif rtype == ord("C"):
            if not _valid_size(payload):
                tool.warn(f"invalid size record: {payload.decode('latin-1')}")
            w(prefix + b"message_size: " + payload + b"\n")
        elif rtype == ord("T"):
            fields = payload.split()
            text = ctime(int(fields[0])).encode() if fields and fields[0].isdigit() else payload
            w(prefix + b"message_arrival_time: " + text + b"\n")
        elif rtype == ord("W"):
            value = payload.strip()
            text = ctime(int(value)).encode() if value.isdigit() else payload
            w(prefix + b"warning_message_time: " + text + b"\n")
        elif rtype == ord("A") and payload.startswith(b"create_time=") and payload[12:].isdigit():
            w(prefix + b"create_time: " + ctime(int(payload[12:])).encode() + b"\n")
        else:
            w(prefix + NAMES.get(rtype, "unknown_record_type").encode() + b": " + payload + b"\n")


def parse_args(argv: list[str]) -> tuple[Options, list[str]]:
    opts = Options()
    try:
        pairs, args = getopt.getopt(argv, "bc:dehoqrs:v")
    except getopt.GetoptError as exc:
        raise ToolFatal(f"{exc}\n{USAGE}") from None
    for opt, val in pairs:
        if opt == "-b":
            opts.body = True
        elif opt == "-c":
            opts.config_dir = val
        elif opt == "-d":
            opts.decimal = True
        elif opt == "-e":
            opts.envelope = True
        elif opt == "-h":
            opts.header = True
        elif opt == "-o":
            opts.offsets = True
        elif opt == "-q":
            opts.queue = True
        elif opt == "-r":
            opts.raw = True
        elif opt == "-s":
            if not val.isdigit():
                raise ToolFatal(f"bad offset: {val}")
            opts.start = int(val)
        elif opt == "-v":
            opts.verbose += 1
    if not (opts.body or opts.header or opts.envelope):
        opts.body = opts.header = opts.envelope = True
    return opts, args


def main(argv: list[str]) -> int:
    tool = Tool("postcat")
    out = sys.stdout.buffer
    try:
        opts, args = parse_args(argv)
        from fastpost.mail.mainvalues import refused

        if refused(opts.config_dir, "postcat", maillog=False):  # as Postfix's postcat
            return 1
        if opts.queue:
            if not args:
                raise ToolFatal(USAGE)
            cfg = tool.config(opts.config_dir)
            store = tool.open_store(cfg)
            try:
                from fastpost.mail.queue import QueueError

                for qid in args:
                    info = store.get(qid, recipients=False)
                    if info is None:
                        raise ToolFatal(f"open queue file {qid}: No such file or directory")
                    try:
                        data = store.export(qid)
                    except QueueError as exc:
                        raise ToolFatal(f"open queue file {qid}: {exc}") from None
                    show(data, store.queue_path(info), opts, out, tool)
            finally:
                store.close()
        elif not args:
            show(sys.stdin.buffer.read(), "stdin", opts, out, tool)
        else:
            for path in args:
                try:
                    with open(path, "rb") as fh:
                        data = fh.read()
                except OSError as exc:
                    raise ToolFatal(f"open {path}: {exc.strerror}") from None
                show(data, path, opts, out, tool)
    except ReadError as exc:
        out.flush()
        tool.warn(f"{exc}")
        return tool.fatal("record read error")
    except ToolFatal as exc:
        out.flush()
        return tool.fatal(str(exc))
    finally:
        try:
            out.flush()
        except BrokenPipeError:
            pass
    return 0
