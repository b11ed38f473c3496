"""The data-driven SMTP session suite of the access policy (not a test module).

Case files (``cases/*.cases``) hold many cases; each is an SMTP session with its own
main.cf lines, played against fastpost's smtpd and against a private C Postfix 3.7
configured alike. Syntax::

    == name                       a new case
    # text                        a comment
    %main.cf name = value         a main.cf line of this case (many allowed)
    %client 127.0.0.2             connect from this address (default 127.0.0.1)
    %differs text                 fastpost deliberately differs from Postfix here:
                                  its expected output is the "[fastpost]" section
    > COMMAND                     a command line (``\\r\\n`` and ``\\t`` escapes; CR LF
                                  is appended); several lines separated by
                                  ``\\r\\n`` are pipelined and expect one reply each
    >> CONTENT                    message content after DATA (``.`` ends it; CR LF is
                                  appended): one reply after a 354, else one per line

The expected output of each case is in ``refs/NAME.ref`` (same name as the case
file), recorded from C Postfix: every command that got an answer (``C:``) and
every reply line (``S:``), and the smtpd log lines of the session (``L:``, queue IDs
masked). A command sent after the server hung up is left out (whether the client
still managed to send it is a race). ``test_sessions.py`` checks
fastpost against it; the ``postfix`` test checks that Postfix still produces it.
Regenerate after adding cases: ``FASTPOST_UPDATE_POLICY_REFS=1`` with the postfix
test (as root).
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass, field

HERE = pathlib.Path(__file__).parent
CASES = HERE / "cases"
REFS = HERE / "refs"

#: Where the tables named by the cases live (the same path for both MTAs, so that
#: log lines that name a table match). Written atomically; deterministic content.
TABLES = "/tmp/fastpost-policy-tables"

#: main.cf lines both MTAs share (then each case's own lines). Parameters that only
#: trivial-rewrite reads (the domain classes) can only be set here for Postfix.
BASE = """\
compatibility_level = 3.7
myhostname = mx.fastpost.test
mydomain = fastpost.test
myorigin = $myhostname
mydestination = $myhostname, localhost
mynetworks = 127.0.0.1/32
inet_interfaces = 127.0.0.1
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP fastpost
smtpd_forbid_bare_newline = normalize
smtpd_forbid_unauth_pipelining = yes
smtpd_authorized_xclient_hosts = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = relay.example, texthash:{TABLES}/relay_domains
virtual_alias_domains = alias.example
virtual_alias_maps = texthash:{TABLES}/virtual
virtual_mailbox_domains = mailbox.example
virtual_mailbox_maps = texthash:{TABLES}/mailboxes
""".replace("{TABLES}", TABLES)

#: Only for C Postfix: keep its mail on this machine and quiet.
POSTFIX_ONLY = """\
inet_protocols = ipv4
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
syslog_name = postfix
"""

#: Table files the cases use: name -> content.
TABLE_FILES = {
    "relay_domains": "relaytable.example OK\n",
    "virtual": "alias@alias.example user@mx.fastpost.test\nalias2@mailbox.example x@y.example\n",
    "mailboxes": "box@mailbox.example box/\n",
    "clients.cidr": "192.0.2.0/28 REJECT listed network\n192.0.2.64/26 OK\n"
                    "198.51.100.7 DUNNO\n198.51.100.0/24 REJECT cidr says no\n",
    "senders.regexp": "/^spam[0-9]*@/ REJECT regexp sender\n/@bad\\.example$/ 550 5.7.1 bad domain\n"
                      "/^hold@/ HOLD\n",
    "recipients.pcre": "/^(blocked)@relay\\.example$/ 554 5.7.1 $1 is blocked\n"
                       "/^warn@/ WARN pcre warning\n",
    "access": "example.com OK\nsub.example.net REJECT sub\nexample.net DEFER\n"
              "user@example.org REJECT user\nexample.org DUNNO\npostmaster@ OK\n"
              "192.0.2 REJECT net 192.0.2\n192.0.2.9 OK\n10 REJECT ten\n"
              "client.example.com REJECT by name\n<> REJECT null sender\n"
              "foo+bar@example.org OK\n",
    "login_maps": "owner@example.com alice\nshared@example.com alice, bob\n@example.net carol\n",
    "recipients": "known@relaytable.example OK\n",
}

_QID = re.compile(r"\b[0-9A-F]{10,15}\b")
_QUEUED = re.compile(r"queued as [0-9A-Za-z]+")
_NON_SMTP = re.compile(r"(warning: non-SMTP command from \S+: )(.*)")


@dataclass
class Step:
    kind: str  # ">" command line(s), ">>" content
    text: str  # as written in the case file
    data: bytes  # what is sent


@dataclass
class Case:
    name: str
    file: str
    main_cf: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    client: str | None = None
    differs: str = ""

    @property
    def config_key(self) -> str:
        return "\n".join(self.main_cf)


def _unescape(text: str) -> str:
    return text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")


def parse_cases(path: pathlib.Path) -> list[Case]:
    cases: list[Case] = []
    case = None
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.startswith("== "):
            case = Case(raw[3:].strip(), path.stem)
            cases.append(case)
            continue
        if case is None:
            raise ValueError(f"{path}:{lineno}: text before the first case")
        if raw.startswith("%main.cf "):
            case.main_cf.append(raw[len("%main.cf "):].replace("{TABLES}", TABLES))
        elif raw.startswith("%client "):
            case.client = raw.split(None, 1)[1].strip()
        elif raw.startswith("%differs "):
            case.differs = raw.split(None, 1)[1].strip()
        elif raw.startswith(">> "):
            text = raw[3:]
            case.steps.append(Step(">>", text, _unescape(text).encode() + b"\r\n"))
        elif raw.startswith("> "):
            text = raw[2:]
            case.steps.append(Step(">", text, _unescape(text).encode() + b"\r\n"))
        else:
            raise ValueError(f"{path}:{lineno}: cannot parse: {raw}")
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"{path}: duplicate case names {sorted(dup)}")
    return cases


def all_cases() -> list[Case]:
    out = []
    for path in sorted(CASES.glob("*.cases")):
        out += parse_cases(path)
    return out


def write_tables() -> None:
    """Create TABLES (atomically per file; the content never changes between runs)."""
    os.makedirs(TABLES, exist_ok=True)
    os.chmod(TABLES, 0o755)
    for name, text in TABLE_FILES.items():
        path = os.path.join(TABLES, name)
        try:
            with open(path, encoding="utf-8") as fh:
                if fh.read() == text:
                    continue
        except OSError:
            pass
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def expected_replies(step: Step, previous: bytes) -> int:
    """How many replies a step gets (see the module docstring)."""
    last = previous.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
    if step.kind == ">>" and last.startswith(b"354"):
        return 1
    return max(1, step.data.count(b"\r\n"))


#: smtpd log lines that are not compared (fastpost logs a table that cannot be
#: opened once, at start-up; Postfix at every lookup).
_IGNORED_LOG = re.compile(r"is unavailable\.|^error: open database |^connect from unknown\[127\.0\.0\.1\]$"
                          r"|after `permit' is ignored$")


def render(case: Case, replies: list[bytes], logs: list[str]) -> str:
    out = [f"== {case.name}"]
    for i, data in enumerate(replies):
        if i and data:
            # A command the server never answered (it had hung up, or did so
            # without a reply) is left out: whether the client still managed to
            # send it is a race, not a behaviour.
            out.append("C: " + case.steps[i - 1].text)
        for line in data.decode("utf-8", "replace").split("\r\n"):
            if line:
                out.append("S: " + _QUEUED.sub("queued as QUEUEID", line))
    for line in logs:
        if _IGNORED_LOG.search(line):
            continue
        m = _NON_SMTP.match(line)
        if m:
            # smtpd's line reader upper-cases the verb before the core sees it, so
            # fastpost logs "SUBJECT: x" where Postfix logs "Subject: x".
            line = m.group(1) + m.group(2).upper()
        out.append("L: " + _QID.sub("QUEUEID", line))
    return "\n".join(out) + "\n"


def read_refs(path: pathlib.Path) -> dict[str, str]:
    """Return section name -> rendered text of a refs file."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    current = None
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("== "):
            current = line[3:].strip()
            out[current] = line
        elif current is not None:
            out[current] += line
    return out


def write_refs(path: pathlib.Path, sections: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sections[k] for k in sections), encoding="utf-8")


# -- fastpost ---------------------------------------------------------------------------

def run_fastpost(case: Case, directory, extra_cf: str = "") -> str:
    """Play the case against fastpost's smtpd (a real server on loopback)."""
    from fastpost.daemons.smtpd.testing import SmtpdThread, run_transcript

    from fastpost.mail.config import ConfigError

    main_cf = BASE + extra_cf + "\n".join(case.main_cf) + "\n"
    try:
        srv = SmtpdThread(directory, main_cf)
        srv.start()
    except ConfigError as exc:
        # The daemon would log this and exit: the client sees the connection close.
        return render(case, [b""], [f"fatal: {exc}"])
    try:
        result = run_transcript(srv, [s.data for s in case.steps], source=case.client)
    finally:
        srv.stop()
    replies = [server for _, server, _ in result]
    logs = []
    for _, _, lines in result:
        for line in lines:
            tag, _, rest = line.partition(": ")
            if tag.endswith("/smtpd"):
                logs.append(rest)
    return render(case, replies, logs)


def fastpost_error(case: Case, directory, extra_cf: str = "") -> str | None:
    """The start-up error of a case whose configuration fastpost refuses, or None."""
    from fastpost.daemons.smtpd.testing import SmtpdThread

    main_cf = BASE + extra_cf + "\n".join(case.main_cf) + "\n"
    try:
        with SmtpdThread(directory, main_cf):
            return None
    except Exception as exc:  # noqa: BLE001 - the error is the result
        return str(exc)
