"""DNS messages on the wire for the common lookups: one query out, its answer read back.

Postfix counterpart: none of its own (Postfix calls the C library's res_query and
dn_expand); this is what fastpost.mail.dns uses on its hot path instead of
dnspython's full object model, which costs ~1.8 ms of CPU per query in smtpd.

    wire = build_query(qid, "2.0.0.127.zen.example", A)       # bytes (RD, EDNS0 1232)
    ans = parse_response(data, qid, "2.0.0.127.zen.example", A)
    ans.rcode  ans.truncated  ans.records  ans.ttl  ans.negative_ttl

Types handled: A, AAAA, MX, TXT, NS, PTR, CNAME (``SUPPORTED``). ``records`` are the
texts fastpost.mail.dns returns: dotted/compressed addresses, ``"pref host"`` for MX,
host names without the final dot (the root is ``"."``), the joined strings of each TXT
record decoded as UTF-8 (bad bytes replaced). Names are written as dnspython writes
them (``\\DDD`` and ``\\.`` escapes), so both paths give the same strings; a CNAME
chain inside the answer is followed from the query name, and ``ttl`` is the TTL of
the final record set (its smallest). ``negative_ttl`` is the smallest of each
authority SOA's TTL and minimum field (None without an SOA).

Diagnostics: ``build_query`` raises WireError for a name it does not write itself
(non-ASCII, escapes, an empty or over-long label): the caller uses dnspython then.
``parse_response`` raises WireError for a malformed message and Mismatch for a
well-formed message that is not the answer to this question (wrong ID, not a
response, another question): a resolver ignores those and keeps waiting.
"""

from __future__ import annotations

import struct

from dns.ipv6 import inet_ntoa as _inet6_text  # the same text as dnspython's path

__all__ = ["A", "AAAA", "CNAME", "MX", "NS", "PTR", "TXT", "SOA", "SUPPORTED", "TYPES",
           "Answer", "Mismatch", "WireError", "build_query", "parse_response"]

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, OPT = 1, 2, 5, 6, 12, 15, 16, 28, 41
TYPES = {"A": A, "AAAA": AAAA, "MX": MX, "TXT": TXT, "NS": NS, "PTR": PTR, "CNAME": CNAME}
SUPPORTED = frozenset(TYPES.values())
CLASS_IN = 1
#: UDP payload size offered in the EDNS0 OPT record (the DNS flag day 2020 value).
EDNS_PAYLOAD = 1232

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_QTAIL = struct.Struct("!HH")
_OPT_RR = b"\x00" + struct.pack("!HHIH", OPT, EDNS_PAYLOAD, 0, 0)
_ESCAPED = frozenset(b'"().;\\@$')


class WireError(ValueError):
    """A name this module does not encode, or a malformed message."""


class Mismatch(WireError):
    """A well-formed message that does not answer this query."""


class Answer:
    """The parts of a response a lookup needs (module docstring)."""

    __slots__ = ("rcode", "truncated", "records", "ttl", "negative_ttl")

    def __init__(self, rcode, truncated, records, ttl, negative_ttl):
        self.rcode = rcode
        self.truncated = truncated
        self.records = records
        self.ttl = ttl
        self.negative_ttl = negative_ttl

    def __repr__(self) -> str:
        return (f"Answer(rcode={self.rcode}, truncated={self.truncated}, "
                f"records={self.records!r}, ttl={self.ttl}, negative_ttl={self.negative_ttl})")


def encode_name(name: str) -> bytes:
    """The wire form of an absolute ASCII name (a trailing dot is optional)."""
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return b"\x00"
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise WireError(f"not an ASCII name: {name!r}") from None
    if b"\\" in raw:
        raise WireError(f"escapes in name: {name!r}")
    out = bytearray()
    for label in raw.split(b"."):
        if not label or len(label) > 63:
            raise WireError(f"bad label in name: {name!r}")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > 255:
        raise WireError(f"name too long: {name!r}")
    return bytes(out)


def build_query(qid: int, name: str, rdtype: int) -> bytes:
    """A recursive query (RD) for (name, rdtype, IN) with an EDNS0 OPT record."""
    return (_HEADER.pack(qid & 0xFFFF, 0x0100, 1, 0, 0, 1) + encode_name(name)
            + _QTAIL.pack(rdtype, CLASS_IN) + _OPT_RR)


def _label_text(label: bytes) -> str:
    if label.isalnum() or all(0x20 < c < 0x7F and c not in _ESCAPED for c in label):
        return label.decode("ascii")
    out = []
    for c in label:
        if c in _ESCAPED:
            out.append("\\" + chr(c))
        elif 0x20 < c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\{c:03d}")
    return "".join(out)


def _read_name(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """The labels of the (possibly compressed) name at pos, and the position after it."""
    labels: list[bytes] = []
    end = -1
    hops = 0
    size = len(data)
    total = 0
    while True:
        if pos >= size:
            raise WireError("name runs past the end of the message")
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:
            if pos + 1 >= size:
                raise WireError("truncated compression pointer")
            if end < 0:
                end = pos + 2
            target = ((n & 0x3F) << 8) | data[pos + 1]
            hops += 1
            if hops > 127 or target >= pos:
                raise WireError("bad compression pointer")
            pos = target
            continue
        if n & 0xC0:
            raise WireError("unknown label type")
        label = data[pos + 1:pos + 1 + n]
        if len(label) != n:
            raise WireError("label runs past the end of the message")
        total += n + 1
        if total > 255:
            raise WireError("name too long")
        labels.append(label)
        pos += 1 + n
    return labels, (end if end >= 0 else pos)


def _name_text(labels: list[bytes]) -> str:
    if not labels:
        return "."
    return ".".join(_label_text(label) for label in labels)


def _key(labels: list[bytes]) -> bytes:
    return b".".join(labels).lower()


def parse_response(data: bytes, qid: int, name: str, rdtype: int) -> Answer:
    """Read the answer to (qid, name, rdtype); see the module docstring."""
    if len(data) < 12:
        raise WireError("message shorter than its header")
    rid, flags, qd, an, ns, _ar = _HEADER.unpack_from(data, 0)
    if rid != qid or not flags & 0x8000 or (flags >> 11) & 0xF != 0:
        raise Mismatch("not a response to this query")
    if qd != 1:
        raise Mismatch("not one question")
    qlabels, pos = _read_name(data, 12)
    if pos + 4 > len(data):
        raise WireError("truncated question")
    qtype, qclass = _QTAIL.unpack_from(data, pos)
    pos += 4
    want = encode_name(name)
    if qtype != rdtype or qclass != CLASS_IN or _key(qlabels) != _wire_key(want):
        raise Mismatch("another question")
    rcode = flags & 0xF
    truncated = bool(flags & 0x0200)
    # The answer section: records by owner, CNAMEs by owner.
    owners: dict[bytes, list] = {}
    cnames: dict[bytes, tuple[list[bytes], int]] = {}
    size = len(data)
    for _ in range(an):
        owner, pos = _read_name(data, pos)
        if pos + 10 > size:
            raise WireError("truncated resource record")
        t, cls, ttl, rdlen = _RR.unpack_from(data, pos)
        pos += 10
        rd_end = pos + rdlen
        if rd_end > size:
            raise WireError("record data runs past the end of the message")
        if cls == CLASS_IN:
            if t == CNAME and rdtype != CNAME:
                target, after = _read_name(data, pos)
                if after != rd_end:
                    raise WireError("bad CNAME record")
                cnames[_key(owner)] = (target, ttl)  # a singleton: the last one counts
            elif t == rdtype:
                text = _rdata(data, pos, rd_end, t)
                # An rdataset holds each record once (names compare without case).
                same = data[pos:rd_end] if t in (A, AAAA, TXT) else text.lower()
                rrs = owners.setdefault(_key(owner), {})
                if t == CNAME and rrs and same not in rrs:
                    # A singleton type: the last one stays, with the smallest TTL.
                    low = min(ttl, min(v[0] for v in rrs.values()))
                    rrs.clear()
                    rrs[same] = [low, text]
                hit = rrs.get(same)
                if hit is None:
                    rrs[same] = [ttl, text]
                elif ttl < hit[0]:
                    hit[0] = ttl
        pos = rd_end
    negative = None
    for _ in range(ns):
        owner, pos = _read_name(data, pos)
        if pos + 10 > size:
            raise WireError("truncated resource record")
        t, cls, ttl, rdlen = _RR.unpack_from(data, pos)
        pos += 10
        rd_end = pos + rdlen
        if rd_end > size:
            raise WireError("record data runs past the end of the message")
        if t == SOA:
            _mname, p = _read_name(data, pos)
            _rname, p = _read_name(data, p)
            if p + 20 != rd_end:
                raise WireError("bad SOA record")
            minimum = struct.unpack_from("!I", data, p + 16)[0]
            value = min(ttl, minimum)
            negative = value if negative is None else min(negative, value)
        pos = rd_end
    # Follow the CNAME chain from the query name.
    current = _key(qlabels)
    seen = {current}
    while current not in owners and current in cnames:
        current = _key(cnames[current][0])
        if current in seen:
            break
        seen.add(current)
    found = owners.get(current)
    if not found:
        return Answer(rcode, truncated, [], 0, negative)
    return Answer(rcode, truncated, [text for _, text in found.values()],
                  min(ttl for ttl, _ in found.values()), negative)


def _wire_key(wire: bytes) -> bytes:
    labels = []
    pos = 0
    while wire[pos]:
        n = wire[pos]
        labels.append(wire[pos + 1:pos + 1 + n])
        pos += 1 + n
    return _key(labels)


def _rdata(data: bytes, pos: int, end: int, t: int) -> str:
    if t == A:
        if end - pos != 4:
            raise WireError("bad A record")
        return "%d.%d.%d.%d" % (data[pos], data[pos + 1], data[pos + 2], data[pos + 3])
    if t == AAAA:
        if end - pos != 16:
            raise WireError("bad AAAA record")
        return _inet6_text(data[pos:end])
    if t == MX:
        if end - pos < 3:
            raise WireError("bad MX record")
        pref = (data[pos] << 8) | data[pos + 1]
        labels, after = _read_name(data, pos + 2)
        if after != end:
            raise WireError("bad MX record")
        return f"{pref} {_name_text(labels)}"
    if t == TXT:
        parts = []
        p = pos
        while p < end:
            n = data[p]
            if p + 1 + n > end:
                raise WireError("bad TXT record")
            parts.append(data[p + 1:p + 1 + n])
            p += 1 + n
        if not parts:
            raise WireError("empty TXT record")
        return b"".join(parts).decode("utf-8", "replace")
    # NS, PTR, CNAME
    labels, after = _read_name(data, pos)
    if after != end:
        raise WireError("bad name record")
    return _name_text(labels)
