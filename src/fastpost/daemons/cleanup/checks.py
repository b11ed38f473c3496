"""header_checks, mime_header_checks, nested_header_checks and body_checks actions.

Postfix counterpart: src/cleanup/cleanup_message.c (cleanup_act), src/global/
header_body_checks.c; the actions are header_checks(5)'s.

``parse_action(value)`` turns a table result into an ``Action``; the message state
(state.py) applies it. Actions, case-insensitive, as Postfix 3.7 does them (checked
against it, see tests/cleanup/):

| action | effect | logged |
|---|---|---|
| REJECT [text] | refuse the message: ``550 5.7.1 text`` (text may start with its own d.d.d; default "message content rejected"); stop inspecting | ``reject: header ...: 5.7.1 text`` |
| WARN [text], INFO [text] | nothing | ``warning: ...`` / ``info: ...`` |
| HOLD [text] | the message goes to the hold queue | ``hold: ...`` |
| DISCARD [text] | accept and drop; stop inspecting | ``discard: ...`` |
| FILTER transport:nexthop | content filter for this message (last one wins) | ``filter: ...`` |
| REDIRECT address | send to address instead of the recipients (last wins); stop inspecting | ``redirect: ...`` |
| BCC address | add a recipient (NOTIFY=NEVER) | ``bcc: ...`` |
| PREPEND text | a line before this one (not inspected, not rewritten) | ``prepend: ...`` |
| REPLACE text | this line becomes text (still rewritten, still counts) | ``replace: ...`` |
| IGNORE | drop this line | (nothing) |
| STRIP [text] | drop this line | ``strip: ...`` |
| DUNNO, OK | nothing | (nothing) |
| PASS | stop inspecting this message | ``pass: ...`` |

Anything else: ``warning: unknown command in header_checks map: VALUE`` and no action
(so "450 text" and DEFER, which header_checks does not have, do nothing).

Log lines: ``QUEUEID: ACTION: header|body TEXT from CLIENT; from=<S> to=<R>
proto=P helo=<H>[: extra]``; TEXT is the logical line, unprintable bytes as ``?``,
cut at 200 characters.

Parameters: none (the tables come from settings.py).
Diagnostics: the warning above; a table that cannot answer (MapRetry) is the caller's
(the message gets 451 4.3.0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Action", "parse_action", "KNOWN", "reject_reply", "ascii_text"]

KNOWN = frozenset({
    "REJECT", "WARN", "INFO", "HOLD", "DISCARD", "FILTER", "REDIRECT", "BCC", "PREPEND",
    "REPLACE", "IGNORE", "STRIP", "DUNNO", "OK", "PASS",
})

_DSN = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b\s*")


_ASCII_MAP = {c: "?" for c in list(range(0x20)) + list(range(0x7F, 0x100))}


def ascii_text(text, limit: int = 200) -> str:
    """A header or body line for a log line, as Postfix prints it: at most ``limit``
    bytes, each byte outside 0x20..0x7E as '?' (also for the smtp client's checks)."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return data[:limit].decode("latin-1").translate(_ASCII_MAP)


@dataclass(slots=True, frozen=True)
class Action:
    """One table result: its verb (upper case) and text ("" when none)."""

    verb: str
    text: str
    raw: str  # the whole result, for the unknown-command warning


def parse_action(value: str) -> Action:
    """Split a header/body check result into an Action (verb "?" when unknown)."""
    value = value.strip()
    word, _, text = value.partition(" ")
    if not _:
        word, _, text = value.partition("\t")
    verb = word.upper()
    if verb not in KNOWN:
        return Action("?", "", value)
    return Action(verb, text.strip(), value)


def reject_reply(text: str) -> tuple[int, str]:
    """The SMTP reply of REJECT text: (code, "d.d.d text")."""
    m = _DSN.match(text)
    if m:
        dsn = f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        rest = text[m.end():] or "message content rejected"
    else:
        dsn = "5.7.1"
        rest = text or "message content rejected"
    code = 450 if dsn[0] == "4" else 550
    return code, f"{dsn} {rest}"
