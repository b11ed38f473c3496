"""resolve and rewrite, differentially: fastpost's library against Postfix's trivial-rewrite.

For each configuration below, a private C Postfix 3.7 runs trivial-rewrite with the same
main.cf settings and the same table files; every address of the corpus is resolved (and
rewritten, both contexts) by both, and the answers must be identical: flags (class,
ROUTED, ERROR, FAIL) and recipient always, transport and next hop whenever the address
is neither malformed nor failed (Postfix leaves them as placeholders then).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

from fastpost.mail.address import external, internal
from fastpost.mail.config import Config
from fastpost.mail.resolve import FLAG_ERROR, FLAG_FAIL, Resolver
from fastpost.mail.rewrite import Rewriter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pfx_rewrite import PostfixRewrite, need_postfix  # noqa: E402

pytestmark = pytest.mark.postfix

TRANSPORT = """\
special@remote.example   error:5.7.1 special user
user+ext@ext.example     discard:ext-only
user@ext.example         relay:[u.example]
ext.example              smtp:[ext-dom.example]:25
.parent.example          :[parent-nh.example]
nohop.example            smtp:
colon.example            :
retry.example            retry:4.2.0 try later
errtext.example          error:mailbox unavailable
local.example            local:
host.example.test        smtp:[intercept]
vmbox.example            virtual:
relayed.example          :
"""

SENDER_RELAYHOST = """\
alice@a.example   [alice-relay]:2525
@b.example        [b-relay]
<>                [null-relay]
"""

SENDER_TRANSPORT = """\
@c.example        relay:[c-nh]
@d.example        smtp:
@e.example        discard:
"""

RELOCATED = """\
moved@remote.example    moved@new.example
gone@host.example.test  new@else.example
gone                    localpart@else.example
@olddomain.example      the new domain
"""

DOMAINS_FILE = """\
# more relay domains
filed.example, other-filed.example
"""

#: Addresses every configuration resolves (internal form).
ADDRESSES = [
    "", "@", "user", "user@host.example.test", "user@HOST.example.test", "user@localhost",
    "user@localhost.example.test", "u@localhost.", "root@host.example.test.", "u@[127.0.0.1]",
    "u@[1.2.3.4]", "u@[IPv6:::1]", "u@[321.1.2.3]", "u@1.2.3.4", "u@123", "u@x.123",
    "u@x_y.com", "u@-x.com", "u@a.-b", "u@x..", "u@.", "u@", "u@a,b", "u@remote.example",
    "U@Remote.Example", "a!b", "a%b", "a!b!c", "a%b%c", "x!y%z", "a!b@remote", "a%b@remote",
    "u@x@remote", "a%b@host.example.test", "a!b@localhost", "a@b@host.example.test",
    "a!b%c@host.example.test", "u@remote@host.example.test", "-dash@remote",
    "-dash@host.example.test", "@a,@b:u@c", "@a:u@b", "@a:u", "!b", "a!", "%b", "a%",
    "a b@x", "a b%c", "x!a b", "u.@x", "a..b@x", "@x", "user+ext@host.example.test",
    "postmaster", "MAILER-DAEMON", "special@remote.example", "user+ext@ext.example",
    "user+other@ext.example", "user@ext.example", "other@ext.example", "a@x.parent.example",
    "a@parent.example", "a@nohop.example", "a@colon.example", "a@retry.example",
    "a@errtext.example", "a@local.example", "a@vmbox.example", "a@sub.vmbox.example",
    "a@valias.example", "a@rel.example", "a@sub.rel.example", "a@filed.example",
    "a@sub.filed.example", "a@not.filed.example", "moved@remote.example",
    "gone@host.example.test", "gone@localhost", "x@olddomain.example", "a@relayed.example",
]

SENDERS = ["", "alice@a.example", "bob@a.example", "x@b.example", "x@c.example", "x@d.example",
           "x@e.example"]

#: Addresses for the rewrite request (both contexts), internal form.
REWRITE_ADDRESSES = [
    "", "@", "user", "user@host", "user@host.", "a!b", "a%b", "a!b!c", "a%b%c", "a!b%c",
    "a%b!c", "@a,@b:u@c", "@a:u", "u@[1.2.3.4]", "u@x.y", "a!b@c", "u@localhost", "!b",
    "a!", "%b", "a%", "u@x..", "user+ext", "a b", "a b!c", "u@remote@host",
]


def _configs(tables: str) -> list[tuple[str, dict]]:
    t = lambda name: f"texthash:{tables}/{name}"  # noqa: E731
    return [
        ("defaults", {}),
        ("relayhost", {"relayhost": "[relay.example]:2525"}),
        ("relayhost list", {"relayhost": "relay1.example, [relay2.example]:26"}),
        ("classes", {
            "relay_domains": f"rel.example, {tables}/domains, !not.filed.example",
            "relayhost": "rh.example", "local_transport": "local",
            "virtual_alias_domains": "valias.example",
            "virtual_mailbox_domains": "vmbox.example, .vmbox.example",
            "virtual_transport": "lmtp:unix:private/dovecot",
            "default_transport": "smtp:[dflt.example]",
            "mydestination": "$myhostname, localhost.$mydomain, localhost, "
                             "inline:{{dest.example=yes}}",
        }),
        ("transport_maps", {
            "recipient_delimiter": "+", "relayhost": "[rh.example]",
            "virtual_mailbox_domains": "vmbox.example", "relay_domains": "rel.example",
            "transport_maps": t("transport"),
        }),
        ("sender dependent", {
            "relayhost": "[rh]", "relay_domains": "rel.example",
            "sender_dependent_relayhost_maps": t("sdr"),
            "sender_dependent_default_transport_maps": t("sdt"),
            "relocated_maps": t("relocated"),
        }),
        ("no hacks", {
            "swap_bangpath": "no", "allow_percent_hack": "no", "append_at_myorigin": "no",
            "resolve_dequoted_address": "no", "resolve_numeric_domain": "yes",
            "resolve_null_domain": "yes", "myorigin": "orig.example",
        }),
        ("remote domain", {
            "remote_header_rewrite_domain": "rem.example", "append_dot_mydomain": "yes",
            "myorigin": "$mydomain", "show_user_unknown_table_name": "no",
            "virtual_alias_domains": "valias.example",
        }),
        ("failing tables", {
            "transport_maps": "fail:broken", "relocated_maps": t("relocated"),
        }),
    ]


@pytest.fixture(scope="module")
def postfix_rewrite():
    need_postfix()
    root = tempfile.mkdtemp(prefix="fastpost-pfxrw-", dir="/tmp")
    os.chmod(root, 0o755)
    tables = os.path.join(root, "tables")
    os.makedirs(tables)
    for name, text in (("transport", TRANSPORT), ("sdr", SENDER_RELAYHOST),
                       ("sdt", SENDER_TRANSPORT), ("relocated", RELOCATED),
                       ("domains", DOMAINS_FILE)):
        with open(os.path.join(tables, name), "w") as fh:
            fh.write(text)
    pfx = PostfixRewrite(os.path.join(root, "pfx"))
    try:
        yield pfx, tables
    finally:
        pfx.stop()
        shutil.rmtree(root, ignore_errors=True)


def _fastpost_config(root: str, settings: dict) -> Config:
    text = "".join(f"{k} = {v}\n" for k, v in settings.items())
    return Config(root, text=text)


def _compare(pfx: PostfixRewrite, resolver: Resolver, sender: str, addr: str, where: str,
             request: str = "resolve") -> str | None:
    """Return a description of the difference, or None when both agree."""
    want = pfx.resolve(sender, addr, request)
    got = resolver.resolve(sender, addr)
    ctx = f"{where}: {request} sender=<{sender}> address=<{addr}>: postfix {want} fastpost {got}"
    if want["flags"] & FLAG_FAIL:
        return None if got.flags & FLAG_FAIL else ctx
    if got.flags != want["flags"] or got.recipient != want["recipient"]:
        return ctx
    if not want["flags"] & FLAG_ERROR and \
            (got.transport, got.nexthop) != (want["transport"], want["nexthop"]):
        return ctx
    return None


@pytest.mark.parametrize("index", range(9))
def test_resolve_same_as_postfix(postfix_rewrite, index, tmp_path):
    pfx, tables = postfix_rewrite
    name, extra = _configs(tables)[index]
    cfg = _fastpost_config(str(tmp_path), pfx.configure(extra))
    resolver = Resolver(cfg)
    diffs = [_compare(pfx, resolver, "", addr, name) for addr in ADDRESSES]
    for sender in SENDERS[1:]:
        for addr in ("u@remote", "u@rel.example", "u@host.example.test", "moved@remote.example"):
            diffs.append(_compare(pfx, resolver, sender, addr, name))
    verifier = Resolver(cfg, verify=True)
    for addr in ("u@remote", "user", "a@rel.example", "a@nohop.example"):
        diffs.append(_compare(pfx, verifier, "", addr, name, request="verify"))
    diffs = [d for d in diffs if d]
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("index", [0, 6, 7])
def test_rewrite_same_as_postfix(postfix_rewrite, index, tmp_path):
    pfx, tables = postfix_rewrite
    name, extra = _configs(tables)[index]
    rewriter = Rewriter(_fastpost_config(str(tmp_path), pfx.configure(extra)))
    diffs = []
    for addr in REWRITE_ADDRESSES:
        for rule in ("local", "remote"):
            want = internal(pfx.rewrite(rule, external(addr)))
            got = rewriter.rewrite(rule, addr)
            if got != want:
                diffs.append(f"{name}: rewrite {rule} <{addr}>: postfix <{want}> fastpost <{got}>")
    assert not diffs, "\n".join(diffs)


#: Addresses that rewrite.rewrites_to_itself calls unchanged (the rewrite client answers
#: them without asking trivial-rewrite), with operators and quoting in the local part.
ITSELF_ADDRESSES = ["u@x.y", "u@[1.2.3.4]", "a%b@x.example", "a!b@x.example", "a@b@x.example",
                    "a b@x.example", "User@Example.COM", "-u@x.y", "u+ext@sub.x.example",
                    "u@.x", "a!b%c@x.example"]


@pytest.mark.parametrize("index", [0, 6, 7])
def test_unchanged_addresses_same_as_postfix(postfix_rewrite, index):
    """Postfix's trivial-rewrite leaves alone every address the client answers itself."""
    from fastpost.mail.rewrite import rewrites_to_itself

    pfx, tables = postfix_rewrite
    name, extra = _configs(tables)[index]
    pfx.configure(extra)
    diffs = []
    for addr in ITSELF_ADDRESSES + REWRITE_ADDRESSES:
        if not rewrites_to_itself(addr):
            continue
        for rule in ("local", "remote"):
            want = internal(pfx.rewrite(rule, external(addr)))
            if want != addr:
                diffs.append(f"{name}: rewrite {rule} <{addr}>: postfix <{want}>")
    assert not diffs, "\n".join(diffs)
