"""smtp_header_checks, smtp_mime_header_checks, smtp_body_checks: checks on output.

Postfix counterpart: the output inspection of src/smtp/smtp_proto.c (header_body_checks
in the smtp client, Postfix 2.5 and later). What the agent sends can be edited on the
way out — the classic use is dropping internal Received: headers — while the queue
file stays as it is. The actions are the restricted set Postfix allows here:

| action | effect | logged (``QUEUEID: ...``) |
|---|---|---|
| IGNORE | drop the line | nothing |
| STRIP [text] | drop the line | ``strip: header TEXT[: text]`` |
| REPLACE text | send text instead | ``replace: header TEXT: text`` |
| PREPEND text | send text before the line | ``prepend: header TEXT: text`` |
| WARN [text], INFO [text] | nothing | ``warning: ...`` / ``info: ...`` |
| DUNNO, OK | nothing | nothing |

(``body`` instead of ``header`` for body lines; TEXT is the logical line, bytes outside
0x20..0x7E as ``?``, cut at 200 characters.) Any other action of header_checks(5)
(REJECT, HOLD, DISCARD, FILTER, REDIRECT, BCC, PASS) logs ``warning: unsupported
command in smtp_header_checks map: VALUE`` and does nothing; an unknown word
``warning: unknown command in ... map: VALUE``. All as Postfix 3.7's client does here
(tests/smtpagent/test_output_checks.py).

Which table: the primary header's lines go to P_header_checks, except MIME headers
(MIME-Version, Content-*) which go to P_mime_header_checks when that is set; every line
after the primary header goes to P_body_checks. Not as Postfix: the headers of MIME
parts and attached messages are body lines here (Postfix gives them to
P_mime_header_checks / P_nested_header_checks and keeps them from P_body_checks);
P_nested_header_checks is not used.

Parameters: P_header_checks, P_mime_header_checks, P_body_checks (P = smtp_ / lmtp_;
lmtp has header and body only).
Diagnostics: a table that cannot answer raises SiteError 4.3.0 "... lookup error" and
the message is deferred before anything is sent.
"""

from __future__ import annotations

from fastpost.daemons.cleanup.checks import KNOWN, parse_action
from fastpost.daemons.cleanup.checks import ascii_text as _ascii
from fastpost.daemons.smtp.headers import blocks as header_blocks
from fastpost.daemons.smtp.headers import name_of
from fastpost.daemons.smtp.session import SiteError
from fastpost.mail import header as H
from fastpost.util import log

__all__ = ["OutputChecks", "param_names"]

_ALLOWED = {"IGNORE", "STRIP", "REPLACE", "PREPEND", "WARN", "INFO", "DUNNO", "OK"}
_MIME_HEADERS = {name for name, kind in H.KINDS.items() if H.CLASS.get(kind, 0) & H.MIME}


def param_names(lmtp: bool) -> tuple[str, ...]:
    if lmtp:
        return ("lmtp_header_checks", "lmtp_body_checks")
    return ("smtp_header_checks", "smtp_mime_header_checks", "smtp_body_checks")


class _Table:
    __slots__ = ("name", "maps")

    def __init__(self, cfg, name: str):
        from fastpost.mail import maps

        self.name = name
        self.maps = maps.MapList.from_param(cfg, name) if cfg.get(name).strip() else None


class OutputChecks:
    """One agent process's output checks (module docstring)."""

    def __init__(self, header, mime, body):
        self.header = header
        self.mime = mime
        self.body = body

    @classmethod
    def from_config(cls, cfg, lmtp: bool) -> "OutputChecks | None":
        p = "lmtp_" if lmtp else "smtp_"
        header = _Table(cfg, p + "header_checks")
        mime = _Table(cfg, "smtp_mime_header_checks") if not lmtp else None
        body = _Table(cfg, p + "body_checks")
        if not (header.maps or (mime and mime.maps) or body.maps):
            return None
        return cls(header, mime if mime and mime.maps else None, body)

    async def _verdict(self, table: _Table, where: str, text: bytes, qid: str):
        """(verb, text) for one logical line, or None; logs as the module says."""
        from fastpost.mail import maps

        try:
            value = await table.maps.aget(text.decode("utf-8", "surrogateescape"))
        except maps.MapRetry as exc:
            log.warn("%s: %s lookup error: %s", qid, table.name, exc)
            raise SiteError("4.3.0", f"{table.name} lookup error") from None
        if value is None:
            return None
        act = parse_action(value)
        if act.verb == "?" or act.verb not in KNOWN:
            log.warn("unknown command in %s map: %s", table.name, log.printable(act.raw))
            return None
        if act.verb not in _ALLOWED:
            log.warn("unsupported command in %s map: %s", table.name, log.printable(act.raw))
            return None
        verb = act.verb
        if verb in ("DUNNO", "OK"):
            return None
        if verb == "IGNORE":
            return ("IGNORE", "")
        label = {"WARN": "warning", "INFO": "info"}.get(verb, verb.lower())
        extra = f": {log.printable(act.text)}" if act.text else ""
        log.info("%s: %s: %s %s%s", qid, label, where, _ascii(text), extra)
        if verb == "STRIP":
            return ("IGNORE", "")
        if verb in ("PREPEND", "REPLACE"):
            return (verb, act.text)
        return None

    async def apply(self, content: bytes, qid: str) -> bytes:
        """``content`` (CR LF lines) as it is to be sent."""
        lines = content.split(b"\r\n")
        last_eol = lines and lines[-1] == b""
        if last_eol:
            lines.pop()
        out: list[bytes] = []
        groups, i = header_blocks(lines)
        for block in groups:
            name = name_of(block)
            table = self.mime if self.mime is not None and name in _MIME_HEADERS else self.header
            verdict = None
            if table.maps is not None:
                verdict = await self._verdict(table, "header", b"\n".join(block), qid)
            out += self._edited(block, verdict)
        if i > 0 and lines[i - 1] == b"":
            out.append(b"")  # the empty line after the header
        for line in lines[i:]:
            verdict = None
            if self.body.maps is not None:
                verdict = await self._verdict(self.body, "body", line, qid)
            out += self._edited([line], verdict)
        return b"\r\n".join(out) + (b"\r\n" if last_eol else b"")

    @staticmethod
    def _edited(block: list[bytes], verdict) -> list[bytes]:
        if verdict is None:
            return block
        verb, text = verdict
        if verb == "IGNORE":
            return []
        new = text.encode("utf-8", "surrogateescape").split(b"\n")
        return new + block if verb == "PREPEND" else new
