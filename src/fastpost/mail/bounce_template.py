"""Bounce templates: the words at the top of delivery status notices (bounce(5)).

Postfix counterpart: the bounce template format of bounce(5), read by the bounce
daemon and by ``postconf -b`` / ``postconf -t``. The built-in texts below are fastpost's
own wording; the file format, the template names, the header labels and the special
``$name`` forms are Postfix's, so a site's ``bounce_template_file`` works unchanged.

A template file holds up to four templates, ``failure_template``, ``delay_template``,
``success_template`` and ``verify_template``, each written as::

    failure_template = <<EOF
    Charset: us-ascii                        optional header lines, any case,
    From: Mail Delivery System <MAILER-DAEMON>    one line each, no $name
    Subject: ...
    Postmaster-Subject: ...                  (failure and delay only)

    text, where $name, ${name} and $(name) are main.cf parameters and $$ is a "$"
    EOF

The end word after ``<<`` may be any word. Outside a template, empty lines and lines
starting with ``#`` are ignored. Besides main.cf's parameters, the text may use
``$delay_warning_time_UNIT`` and ``$maximal_queue_lifetime_UNIT`` with UNIT one of
seconds, minutes, hours, days, weeks (the time in that unit, rounded down).

How it fails (as Postfix, in Postfix's words, with the file and line):
- a line outside a template that is not ``name = value``: ``TemplateError`` (fatal for
  ``fastpost conf -b``; the bounce daemon logs it and uses the built-in templates);
- an unknown template name, an unknown header label, 8-bit text under a us-ascii
  charset, a template with no text: a warning, and that template is ignored (the
  built-in one is used);
- a missing end word: a warning; the text runs to the end of the file;
- an undefined ``$name`` in the text: ``TemplateError`` from ``expand`` (fatal for
  ``fastpost conf -b``; the bounce daemon logs it and uses the built-in text for that
  notice, where Postfix's bounce daemon would exit and retry the notice later).

Parameters: bounce_template_file (read by the callers), and whatever the texts refer to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

FAILURE = "failure_template"
DELAY = "delay_template"
SUCCESS = "success_template"
VERIFY = "verify_template"
NAMES = (FAILURE, DELAY, SUCCESS, VERIFY)

#: seconds per unit, for $delay_warning_time_UNIT and $maximal_queue_lifetime_UNIT
UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 7 * 86400}
TIME_PARAMETERS = ("delay_warning_time", "maximal_queue_lifetime")

_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)$")
_LABELS = {"charset": "charset", "from": "sender", "subject": "subject",
           "postmaster-subject": "postmaster_subject"}
_START = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*<<\s*(\S+)\s*$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=")


class TemplateError(Exception):
    """A template file that cannot be used at all, or a text that cannot be expanded."""


@dataclass(frozen=True)
class Template:
    name: str
    charset: str
    sender: str              # the From: header
    subject: str
    postmaster_subject: str  # "" for success and verify: they have no postmaster copy
    text: str                # LF line ends, no final LF

    def render(self) -> str:
        """The template in the file format (what ``fastpost conf -t`` prints)."""
        lines = [f"{self.name} = <<EOF", f"Charset: {self.charset}", f"From: {self.sender}",
                 f"Subject: {self.subject}"]
        if self.postmaster_subject:
            lines.append(f"Postmaster-Subject: {self.postmaster_subject}")
        return "\n".join(lines + ["", self.text, "EOF"])


_SIGNATURE = "\n\n                        The mail system at $myhostname"

BUILTIN: dict[str, Template] = {
    FAILURE: Template(
        FAILURE, "us-ascii", "Mail Delivery System <MAILER-DAEMON>",
        "Mail delivery failed: returning message to sender",
        "Postmaster copy: mail delivery failed",
        "This is the mail system at $myhostname.\n\n"
        "Your message could not be delivered to one or more recipients.\n"
        "The reasons are given below; a copy of the message is attached.\n\n"
        "If you need help, contact the postmaster of this system and quote this\n"
        "report. Please delete your own text from any reply." + _SIGNATURE),
    DELAY: Template(
        DELAY, "us-ascii", "Mail Delivery System <MAILER-DAEMON>",
        "Mail delivery delayed: message still in queue",
        "Postmaster warning: mail delivery delayed",
        "This is the mail system at $myhostname.\n\n"
        "*** This is a warning only: you do not need to send your message again. ***\n\n"
        "Your message has not been delivered yet to the recipients below, after\n"
        "$delay_warning_time_hours hour(s). Delivery will be tried again until it is\n"
        "$maximal_queue_lifetime_days day(s) old. Its header is attached.\n\n"
        "If you need help, contact the postmaster of this system and quote this\n"
        "report." + _SIGNATURE),
    SUCCESS: Template(
        SUCCESS, "us-ascii", "Mail Delivery System <MAILER-DAEMON>",
        "Mail delivery status: message delivered", "",
        "This is the mail system at $myhostname.\n\n"
        "Your message was delivered to the recipients below, as you asked to be told.\n"
        "Where it went into a mailbox you will hear nothing more; where it was passed\n"
        "on to another system, that system may still report problems." + _SIGNATURE),
    VERIFY: Template(
        VERIFY, "us-ascii", "Mail Delivery System <MAILER-DAEMON>",
        "Mail delivery status report", "",
        "This is the mail system at $myhostname.\n\n"
        "Here is the delivery report you asked for. Nothing was delivered: the\n"
        "report says what would happen to the message." + _SIGNATURE),
}


@dataclass
class TemplateSet:
    """The four templates in use, and the warnings reading them produced."""

    templates: dict[str, Template]
    warnings: list[str]

    def __getitem__(self, name: str) -> Template:
        return self.templates[name]

    def render(self) -> str:
        return "\n\n".join(self.templates[n].render() for n in NAMES) + "\n"


def builtin() -> TemplateSet:
    return TemplateSet(dict(BUILTIN), [])


def parse(path: str, text: str | None = None) -> TemplateSet:
    """Read a template file; the templates it does not give (or that are bad) are built-in.

    Raises OSError when the file cannot be read, TemplateError when it is malformed.
    """
    if text is None:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    result = dict(BUILTIN)
    warnings: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        lineno = i + 1
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _START.match(line)
        if not m:
            if _ASSIGN.match(line):
                raise TemplateError(f'{path}, line {lineno}: a template starts with '
                                    f'"name = <<EOF": "{line.strip()}"')
            raise TemplateError(f"{path}, line {lineno}: missing '=' after attribute name: "
                                f'"{line.strip()}"')
        name, word = m.group(1), m.group(2)
        body: list[str] = []
        ended = False
        while i < len(lines):
            raw = lines[i].rstrip("\r")
            i += 1
            if raw == word:
                ended = True
                break
            body.append(raw)
        if not ended:
            warnings.append(f'{path}, line {lineno}: missing "{word}" end marker')
        if name not in NAMES:
            warnings.append(f"{path}, line {lineno}: unknown template name: {name} "
                            "-- ignoring this template")
            continue
        tmpl, problem = _build(name, body)
        if problem:
            warnings.append(f"{path}, line {lineno}: {problem} -- ignoring this template")
            continue
        result[name] = tmpl
    return TemplateSet(result, warnings)


def _build(name: str, body: list[str]) -> tuple[Template | None, str]:
    """The template made of one ``<<EOF`` block, or (None, why it cannot be used)."""
    fields = {}
    j = 0
    while j < len(body):
        m = _HEADER.match(body[j])
        if not m:
            break
        label = m.group(1).lower()
        if label not in _LABELS:
            return None, f'unknown "{m.group(1)}" header label in {name.split("_")[0]} template'
        value = m.group(2).strip()
        if not value.isascii() or "\0" in value:
            return None, f"non-ASCII or null character in the {m.group(1)} header"
        fields[_LABELS[label]] = value
        j += 1
    if j < len(body) and body[j] == "" and j > 0:
        j += 1  # the empty line that ends the header lines
    text = "\n".join(body[j:])
    kind = name.split("_")[0]
    if not text.strip():
        return None, f"no message text in {kind} template"
    base = BUILTIN[name]
    tmpl = replace(base, text=text, **fields)
    if name in (SUCCESS, VERIFY):
        tmpl = replace(tmpl, postmaster_subject="")
    if not text.isascii() and tmpl.charset.lower() in ("us-ascii", "ascii"):
        return None, (f"8-bit message text in {kind} template; specify a charset value "
                      "other than us-ascii")
    return tmpl, ""


def time_values(seconds_of: Callable[[str], int]) -> dict[str, str]:
    """The special ``$delay_warning_time_UNIT`` / ``$maximal_queue_lifetime_UNIT`` values."""
    out = {}
    for param in TIME_PARAMETERS:
        seconds = seconds_of(param)
        for unit, size in UNITS.items():
            out[f"{param}_{unit}"] = str(seconds // size)
    return out


def expand(tmpl: Template, cfg) -> str:
    """The template's text with its $names expanded from cfg (a fastpost Config).

    Raises TemplateError naming the template when a $name is not defined.
    """
    specials = time_values(lambda p: int(cfg.typed(p)))
    view = cfg.with_overrides(specials)
    view.undefined.clear()
    try:
        text = view.expand(tmpl.text, _where=f"{tmpl.name.split('_')[0]} template")
    except Exception as exc:  # ConfigError: a malformed $ form
        raise TemplateError(str(exc)) from None
    if view.undefined:
        raise TemplateError(f"undefined $name in {tmpl.name.split('_')[0]} template: "
                            f"{sorted(view.undefined)[0]}")
    return text


def load(cfg, log_warning: Callable[[str], None] | None = None) -> TemplateSet:
    """The templates bounce_template_file names (built-in ones when it is empty).

    Warnings go to log_warning; an unreadable or malformed file raises (OSError,
    TemplateError): the caller decides whether that is fatal.
    """
    path = cfg.get("bounce_template_file").strip()
    if not path:
        return builtin()
    ts = parse(path)
    if log_warning is not None:
        for w in ts.warnings:
            log_warning(w)
    return ts


__all__ = ["BUILTIN", "DELAY", "FAILURE", "NAMES", "SUCCESS", "Template", "TemplateError",
           "TemplateSet", "VERIFY", "builtin", "expand", "load", "parse", "time_values"]
