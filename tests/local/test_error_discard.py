"""error(8), retry and discard(8): the next hop is the reason; nothing is read."""

import pytest

from helpers.mailsite import Site

MASTER_CF = """\
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
"""


@pytest.fixture(scope="module")
def esite():
    with Site(users=(), master_cf=MASTER_CF) as s:
        yield s


@pytest.mark.parametrize("transport, nexthop, status, dsn, text", [
    ("error", "5.1.1 User unknown in virtual alias table", "bounced", "5.1.1",
     "User unknown in virtual alias table"),
    ("error", "mail for this domain is not accepted", "bounced", "5.0.0",
     "mail for this domain is not accepted"),
    ("error", "4.7.1 try later", "deferred", "4.7.1", "try later"),
    ("retry", "mail transport unavailable", "deferred", "4.0.0", "mail transport unavailable"),
    ("retry", "4.3.0 mail transport unavailable", "deferred", "4.3.0", "mail transport unavailable"),
    ("discard", "spam", "sent", "2.0.0", "spam"),
    ("discard", "2.5.0 dropped by policy", "sent", "2.5.0", "dropped by policy"),
])
def test_next_hop_is_the_reason(esite, transport, nexthop, status, dsn, text):
    qid = esite.submit(["a@example.net", "b@example.net"], b"Subject: x\n\nx\n")
    results = esite.deliver(qid, transport, nexthop=nexthop)
    assert [(r.status, r.dsn, r.text, r.relay) for r in results.values()] == \
        [(status, dsn, text, "none")] * 2
    assert esite.status_lines(qid) == [
        f"to=<{a}>, relay=none, dsn={dsn}, status={status} ({text})"
        for a in ("a@example.net", "b@example.net")]
