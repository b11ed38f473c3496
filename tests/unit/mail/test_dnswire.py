"""fastpost.mail.dnswire against dnspython: the same query bytes, the same answers.

Messages are built with dnspython (responses with answer, CNAME chains, authority SOA,
compression, duplicates, other classes) and read by both: dnswire.parse_response must
give what fastpost.mail.dns made of dnspython's answer (records as text, the final
rrset's TTL, the SOA negative TTL). Malformed messages (every truncation of a valid
one, random bytes) must raise WireError, never anything else.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpost.mail import dnswire
from fastpost.mail.dns import _rdata_text

LABEL = st.text("abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_", min_size=1, max_size=12)
ODD_LABEL = st.binary(min_size=1, max_size=10)
NAME = st.lists(LABEL, min_size=1, max_size=5).map(".".join)
TYPE = st.sampled_from(sorted(dnswire.TYPES))


def _rdata_strategy(rdtype: str):
    target = st.one_of(NAME.map(lambda n: n + "."), st.just("."),
                       st.lists(ODD_LABEL, min_size=1, max_size=3).map(
                           lambda ls: dns.name.Name(ls + [b""]).to_text()))
    if rdtype == "A":
        return st.ip_addresses(v=4).map(str)
    if rdtype == "AAAA":
        return st.ip_addresses(v=6).map(str)
    if rdtype == "MX":
        return st.tuples(st.integers(0, 65535), target).map(lambda t: f"{t[0]} {t[1]}")
    if rdtype == "TXT":
        return st.lists(st.binary(max_size=40), min_size=1, max_size=3).map(
            lambda parts: " ".join('"' + "".join(f"\\{b:03d}" for b in p) + '"' for p in parts))
    return target


@st.composite
def responses(draw):
    qname = draw(NAME)
    rdtype = draw(TYPE)
    qid = draw(st.integers(0, 65535))
    query = dns.message.make_query(qname, rdtype, use_edns=0)
    query.id = qid
    resp = dns.message.make_response(query)
    resp.set_rcode(draw(st.sampled_from([dns.rcode.NOERROR, dns.rcode.NOERROR,
                                         dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL])))
    owner = qname
    # An optional CNAME chain (as a recursive server sends it), ending at owner.
    for _ in range(draw(st.integers(0, 2))):
        if rdtype == "CNAME":
            break
        nxt = draw(NAME)
        resp.answer.append(dns.rrset.from_text(dns.name.from_text(owner), draw(st.integers(0, 10**6)), "IN",
                                               "CNAME", nxt + "."))
        owner = nxt
    if draw(st.booleans()):
        texts = draw(st.lists(_rdata_strategy(rdtype), min_size=1, max_size=4))
        ttls = draw(st.lists(st.integers(0, 2**31 - 1), min_size=len(texts), max_size=len(texts)))
        for text, ttl in zip(texts, ttls):
            rr = dns.rrset.from_text(dns.name.from_text(owner), ttl, "IN", rdtype, text)
            resp.answer.append(rr)  # separate rrsets: duplicates and TTL mixes stay
    if draw(st.booleans()):  # a record of another name or class, to be ignored
        resp.answer.append(dns.rrset.from_text(dns.name.from_text(draw(NAME)), 60, "CH", "TXT", '"x"'))
    if draw(st.booleans()):
        resp.authority.append(dns.rrset.from_text(
            dns.name.from_text(draw(NAME)), draw(st.integers(0, 10**6)), "IN", "SOA",
            f"ns.{qname}. host.{qname}. 1 2 3 4 {draw(st.integers(0, 10**6))}"))
    return qid, qname, rdtype, resp


def dnspython_view(wire: bytes, qname: str, rdtype: str):
    """What fastpost.mail.dns's dnspython path makes of a response."""
    msg = dns.message.from_wire(wire)
    rcode = msg.rcode()
    negative = None
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            value = min(rrset.ttl, rrset[0].minimum)
            negative = value if negative is None else min(negative, value)
    records, ttl = [], 0
    if rcode == dns.rcode.NOERROR or rcode == dns.rcode.NXDOMAIN:
        name = dns.name.from_text(qname)
        want = dns.rdatatype.from_text(rdtype)
        seen = set()
        while True:
            try:
                rrset = msg.find_rrset(msg.answer, name, dns.rdataclass.IN, want)
                records = [_rdata_text(rdtype, r) for r in rrset]
                ttl = rrset.ttl
                break
            except KeyError:
                pass
            if want == dns.rdatatype.CNAME:
                break
            try:
                cname = msg.find_rrset(msg.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
            except KeyError:
                break
            name = cname[0].target
            if name in seen:
                break
            seen.add(name)
    return rcode, records, ttl, negative


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_parse_matches_dnspython(case):
    qid, qname, rdtype, resp = case
    wire = resp.to_wire()
    ours = dnswire.parse_response(wire, qid, qname, dnswire.TYPES[rdtype])
    rcode, records, ttl, negative = dnspython_view(wire, qname, rdtype)
    assert ours.rcode == rcode
    assert ours.negative_ttl == negative
    if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        assert ours.records == records
        if records:
            assert ours.ttl == ttl
    # Every truncation is malformed (or still a whole message), never a crash.
    for cut in range(len(wire)):
        try:
            dnswire.parse_response(wire[:cut], qid, qname, dnswire.TYPES[rdtype])
        except dnswire.WireError:
            pass


@settings(max_examples=200, deadline=None)
@given(NAME, TYPE, st.integers(0, 65535))
def test_query_is_dnspythons(qname, rdtype, qid):
    ours = dnswire.build_query(qid, qname, dnswire.TYPES[rdtype])
    q = dns.message.make_query(qname, rdtype, use_edns=0, payload=dnswire.EDNS_PAYLOAD)
    q.id = qid
    q.flags = dns.flags.RD
    assert ours == q.to_wire()
    assert dns.message.from_wire(ours).question[0].name == dns.name.from_text(qname)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 65535))
def test_garbage_is_a_wire_error(data, qid):
    try:
        dnswire.parse_response(data, qid, "x.example", dnswire.A)
    except dnswire.WireError:
        pass


def test_mismatches_are_not_answers():
    q = dns.message.make_query("a.example", "A")
    q.id = 7
    resp = dns.message.make_response(q)
    wire = resp.to_wire()
    with pytest.raises(dnswire.Mismatch):
        dnswire.parse_response(wire, 8, "a.example", dnswire.A)      # another ID
    with pytest.raises(dnswire.Mismatch):
        dnswire.parse_response(wire, 7, "b.example", dnswire.A)      # another name
    with pytest.raises(dnswire.Mismatch):
        dnswire.parse_response(wire, 7, "a.example", dnswire.MX)     # another type
    with pytest.raises(dnswire.Mismatch):
        dnswire.parse_response(q.to_wire(), 7, "a.example", dnswire.A)  # not a response
    assert dnswire.parse_response(wire, 7, "A.Example.", dnswire.A).records == []


@pytest.mark.parametrize("name", ["ünï.example", "a..b", "x" * 64 + ".example",
                                  "a\\.b.example", ".".join(["abcdefgh"] * 32)])
def test_names_left_to_dnspython(name):
    with pytest.raises(dnswire.WireError):
        dnswire.build_query(1, name, dnswire.A)
