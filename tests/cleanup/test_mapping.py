"""Address mapping in cleanup: canonical, masquerading, virtual aliases, BCC maps,
always_bcc, original recipients, duplicate elimination - each compared with the queue
file C Postfix 3.7 writes for the same tables and envelope (see docs/accept.md).
"""

from __future__ import annotations

VIRTUAL = """\
alias1@example.net target1@example.net, target2@example.net
target2@example.net final2@example.net
loop1@example.net loop2@example.net
loop2@example.net loop1@example.net
@catch.example catchall@example.net
multi@example.net m1@example.net, m2@example.net, m1@example.net
self@example.net self@example.net, other@example.net
"""

CANONICAL = """\
a@example.net b@example.net
b@example.net c@example.net
@dom.example @other.example
x@example.net y
l1@example.net l2@example.net
l2@example.net l1@example.net
sender@example.org canon-sender@example.org
"""


def recipients(env: list[str]) -> list[tuple[str, str]]:
    """(original_recipient, recipient) pairs of an envelope listing."""
    out = []
    orig = ""
    for line in env:
        if line.startswith("original_recipient: "):
            orig = line.split(": ", 1)[1]
        elif line.startswith("recipient: "):
            out.append((orig, line.split(": ", 1)[1]))
            orig = ""
    return out


def test_canonical_is_recursive_and_rewritten(accept):
    acc = accept({"canonical_maps": "hash:@ETC@/canonical"}, tables={"canonical": CANONICAL})
    _, text = acc.send("sender@example.org", ["a@example.net", "u@dom.example", "x@example.net",
                                              "l1@example.net"],
                       b"From: sender@example.org\r\nTo: a@example.net\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    env = acc.envelope(qid)
    assert "sender: canon-sender@example.org" in env
    assert recipients(env) == [("a@example.net", "c@example.net"),
                               ("u@dom.example", "u@other.example"),
                               ("x@example.net", "y@mx.example.com"),
                               ("l1@example.net", "l1@example.net")]
    # a loop is logged and leaves the address alone; the message is accepted (as Postfix)
    assert ("warning: unreasonable canonical_maps map nesting for l1@example.net -- message "
            "not accepted, try again later") in acc.log()
    # header addresses (local client) too
    assert acc.headers(qid)[3:5] == ["From: canon-sender@example.org", "To: c@example.net"]


def test_sender_and_recipient_canonical_classes(accept):
    acc = accept({"sender_canonical_maps": "hash:@ETC@/sc", "recipient_canonical_maps": "hash:@ETC@/rc",
                  "recipient_canonical_classes": "envelope_recipient"},
                 tables={"sc": "s@example.org s2@example.org\n", "rc": "r@example.net r2@example.net\n"})
    _, text = acc.send("s@example.org", ["r@example.net"],
                       b"From: s@example.org\r\nTo: r@example.net\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    env = acc.envelope(qid)
    assert "sender: s2@example.org" in env
    assert recipients(env) == [("r@example.net", "r2@example.net")]
    # header_recipient is not in recipient_canonical_classes here
    assert acc.headers(qid)[3:5] == ["From: s2@example.org", "To: r@example.net"]


def test_masquerading(accept):
    acc = accept({"masquerade_domains": "!keep.example.org, example.org",
                  "masquerade_exceptions": "root"})
    _, text = acc.send("u@host.example.org", ["x@a.sub.example.org"],
                       b"From: u@host.example.org\r\nTo: x@a.sub.example.org, root@h.example.org\r\n"
                       b"Cc: k@a.keep.example.org\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    env = acc.envelope(qid)
    assert "sender: u@example.org" in env  # envelope_sender is masqueraded by default
    assert recipients(env) == [("x@a.sub.example.org", "x@a.sub.example.org")]  # not recipients
    assert acc.headers(qid)[3:6] == ["From: u@example.org",
                                     "To: x@example.org, root@h.example.org",
                                     "Cc: k@a.keep.example.org"]


def test_virtual_alias_expansion(accept):
    acc = accept({"virtual_alias_maps": "hash:@ETC@/virtual"}, tables={"virtual": VIRTUAL})
    _, text = acc.send("s@example.org", ["rcpt@example.net", "rcpt@example.net", "alias1@example.net",
                                         "x@catch.example", "multi@example.net", "self@example.net"],
                       b"Subject: v\r\nTo: alias1@example.net\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    env = acc.envelope(qid)
    assert recipients(env) == [
        ("rcpt@example.net", "rcpt@example.net"),  # the duplicate RCPT is gone
        ("alias1@example.net", "target1@example.net"),
        ("alias1@example.net", "final2@example.net"),  # recursive
        ("x@catch.example", "catchall@example.net"),
        ("multi@example.net", "m1@example.net"),  # duplicates from an expansion are gone
        ("multi@example.net", "m2@example.net"),
        ("self@example.net", "self@example.net"),  # an alias of itself is final
        ("self@example.net", "other@example.net"),
    ]
    i = env.index("original_recipient: alias1@example.net")
    assert env[i - 1] == "named_attribute: dsn_orig_rcpt=rfc822;alias1@example.net"
    assert acc.headers(qid)[4] == "To: alias1@example.net"  # headers are not expanded


def test_virtual_alias_loop_is_a_temporary_error(accept):
    acc = accept({"virtual_alias_maps": "hash:@ETC@/virtual"}, tables={"virtual": VIRTUAL})
    code, text = acc.send("s@example.org", ["loop1@example.net"], b"Subject: v\r\n\r\nbody\r\n")
    assert (code, text) == (451, "4.6.0 Alias expansion error")
    assert ("unreasonable virtual_alias_maps map nesting for loop1@example.net -- message not "
            "accepted, try again later") in acc.log()
    assert acc.count() == 0


def test_virtual_alias_expansion_limit(accept):
    table = "big@example.net " + ", ".join(f"u{i}@example.net" for i in range(20)) + "\n"
    acc = accept({"virtual_alias_maps": "hash:@ETC@/virtual", "virtual_alias_expansion_limit": "10"},
                 tables={"virtual": table})
    code, text = acc.send("s@example.org", ["big@example.net"], b"Subject: v\r\n\r\nbody\r\n")
    assert (code, text) == (451, "4.6.0 Alias expansion error")
    assert "unreasonable virtual_alias_maps map expansion size for big@example.net" in acc.log()


def test_bcc_maps_and_always_bcc(accept):
    acc = accept({"recipient_bcc_maps": "hash:@ETC@/rbcc", "sender_bcc_maps": "hash:@ETC@/sbcc",
                  "always_bcc": "always@example.com"},
                 tables={"rbcc": "rcpt@example.net rbcc@example.com\n",
                         "sbcc": "other@example.org sbcc@example.com\n"})
    _, text = acc.send("other@example.org", ["rcpt@example.net", "plain@example.net"],
                       b"Subject: bcc\r\n\r\nbody\r\n")
    qid = acc.queued_id(text)
    env = acc.envelope(qid)
    head = env[env.index("sender: other@example.org"):]
    # the sender's BCC right after the sender, a recipient's right after that recipient,
    # all with NOTIFY=NEVER and no DSN original recipient; always_bcc in the extracted part
    assert head[1:4] == ["named_attribute: notify_flags=1", "original_recipient: sbcc@example.com",
                         "recipient: sbcc@example.com"]
    i = env.index("recipient: rcpt@example.net")
    assert env[i + 1:i + 4] == ["named_attribute: notify_flags=1", "original_recipient: rbcc@example.com",
                                "recipient: rbcc@example.com"]
    extracted = acc.cat(qid, "-e").split("*** HEADER EXTRACTED")[1].splitlines()[1:4]
    assert extracted == ["named_attribute: notify_flags=1", "original_recipient: always@example.com",
                         "recipient: always@example.com"]
    assert env[0].split()[3] == "5"


def test_no_original_recipient(accept):
    acc = accept({"enable_original_recipient": "no"})
    _, text = acc.send("s@example.org", ["r@example.net"], b"Subject: x\r\n\r\nbody\r\n")
    env = acc.envelope(acc.queued_id(text))
    assert not any(line.startswith("original_recipient:") for line in env)
    assert "recipient: r@example.net" in env


def test_no_address_mappings_for_a_client_that_may_skip_them(accept):
    master = ("{port} inet n - n - - smtpd\n  -o receive_override_options=no_address_mappings\n"
              "cleanup unix n - n - 0 cleanup\nrewrite unix - - n - - trivial-rewrite\n"
              "postlog unix-dgram n - n - 1 postlogd\n")
    acc = accept({"virtual_alias_maps": "hash:@ETC@/virtual", "always_bcc": "always@example.com"},
                 tables={"virtual": VIRTUAL}, master=master)
    _, text = acc.send("s@example.org", ["alias1@example.net"], b"Subject: v\r\n\r\nbody\r\n")
    env = acc.envelope(acc.queued_id(text))
    assert recipients(env) == [("alias1@example.net", "alias1@example.net")]


def test_trivial_rewrite_missing_is_a_temporary_error(accept):
    master = ("{port} inet n - n - - smtpd\ncleanup unix n - n - 0 cleanup\n"
              "postlog unix-dgram n - n - 1 postlogd\n")
    acc = accept(master=master)
    # r@nodot needs trivial-rewrite (a domain without a dot may get .$mydomain)
    code, text = acc.send("s@example.org", ["r@nodot"], b"Subject: x\r\n\r\nbody\r\n")
    assert (code, text) == (451, "4.3.0 Error: queue file write error")
    assert "address rewriting:" in acc.log()
    # addresses that rewriting leaves as they are under any configuration are not
    # asked for (rewrite.rewrites_to_itself): such a message is accepted
    code, text = acc.send("s@example.org", ["r@example.net"], b"Subject: x\r\n\r\nbody\r\n")
    assert code == 250, text
