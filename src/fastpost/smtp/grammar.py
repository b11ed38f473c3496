"""SMTP argument grammar: paths, ESMTP parameters, xtext, XCLIENT/XFORWARD attributes.

Postfix counterpart: src/smtpd/smtpd.c (extract_addr, mail_cmd/rcpt_cmd parameter
loops, xclient_cmd, xforward_cmd), src/global/tok822_parse.c, xtext.c,
src/util/valid_hostname.c.

Postfix is deliberately lenient with envelope addresses (unless
``strict_rfc821_envelopes = yes``) and fastpost matches what Postfix 3.7 accepts:

    MAIL FROM:a@b             accepted (no angle brackets)
    MAIL FROM: <a@b>          accepted (space after the colon)
    <<a@b>>, <a(comment)@b>   accepted: nested brackets and comments removed
    <@r1,@r2:a@b>             accepted: the source route is stripped (RFC 5321 C)
    <"a b"@c>                 accepted: internal form  a b@c  (quotes removed)
    <a@[1.2.3.4]>, <a@[IPv6:::1]>   address literals, checked
    <a@[foo]>, <a@-b.c>, <a@>, <a b>, <a,b@c>      501 bad address syntax
    <a@é.example>             only with SMTPUTF8 (8-bit local parts are accepted)

Every name here is pure: strings in, values or GrammarError out. The reply carried by
GrammarError is the one Postfix sends for that mistake (fastpost.smtp.replies).

RFC 5321 4.1.2 (the strict form, used when strict_rfc821_envelopes = yes):

    Reverse-path   = Path / "<>"
    Forward-path   = Path
    Path           = "<" [ A-d-l ":" ] Mailbox ">"
    A-d-l          = At-domain *( "," At-domain )
    At-domain      = "@" Domain
    Mailbox        = Local-part "@" ( Domain / address-literal )
    Local-part     = Dot-string / Quoted-string

RFC 3461 4 (xtext):

    xtext    = *( xchar / hexchar )
    xchar    = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
               except for "+" and "="
    hexchar  = ASCII "+" immediately followed by two upper case hexadecimal digits

Diagnostics: GrammarError(reply) for any input Postfix rejects.
"""

from __future__ import annotations

import ipaddress
import re

from fastpost.smtp import replies
from fastpost.smtp.replies import Reply

__all__ = [
    "GrammarError", "MailParams", "RcptParams", "split_args", "split_mail_from",
    "split_rcpt_to", "parse_path", "parse_mail_params", "parse_rcpt_params",
    "xtext_decode", "xtext_encode", "valid_hostname", "valid_address_literal",
    "parse_vrfy", "parse_etrn", "parse_attributes", "XCLIENT_NAMES", "XFORWARD_NAMES",
    "UNAVAILABLE", "TEMPUNAVAIL",
]


class GrammarError(Exception):
    """The argument does not parse; ``reply`` is what Postfix answers.

    ``quiet`` is set for the malformed addresses Postfix refuses without its
    "Illegal address syntax" warning (control characters, unbalanced brackets).
    """

    def __init__(self, reply: Reply, quiet: bool = False):
        super().__init__(str(reply))
        self.reply = reply
        self.quiet = quiet


# --------------------------------------------------------------------------------
# Tokens of a command line
# --------------------------------------------------------------------------------


_WS_RUN = re.compile(r"[ \t]+")


def split_args(text: str) -> list[str]:
    """Split command arguments at white space outside "quotes" and <angle brackets>.

    ``MAIL FROM:<a b> SIZE=1`` gives ``["FROM:<a b>", "SIZE=1"]``; a quote or an
    angle bracket that is never closed runs to the end of the line.
    """
    # Fast path (nearly every real command): no quotes, at most one <...> without
    # white space inside. Same result as the general scan below.
    if '"' not in text and text.count("<") <= 1:
        lt = text.find("<")
        gt = text.find(">", lt) if lt >= 0 else -1
        if lt < 0 or (gt > 0 and " " not in text[lt:gt] and "\t" not in text[lt:gt]):
            stripped = text.strip(" \t")
            return _WS_RUN.split(stripped) if stripped else []
    return _split_args_general(text)


def _split_args_general(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    in_quote = False
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if in_quote:
            cur.append(c)
            if c == "\\" and i + 1 < n:
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
            cur.append(c)
        elif c == "<":
            depth += 1
            cur.append(c)
        elif c == ">":
            if depth:
                depth -= 1
            cur.append(c)
        elif c in " \t" and not depth:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        out.append("".join(cur))
    return out


def _split_keyword(tokens: list[str], keyword: str, syntax: Reply) -> tuple[str, list[str]]:
    """Return (path text, parameter tokens) for ``FROM:`` / ``TO:`` commands."""
    if not tokens or not tokens[0][: len(keyword)].upper() == keyword:
        raise GrammarError(syntax)
    first = tokens[0][len(keyword):]
    if first:
        return first, tokens[1:]
    if len(tokens) < 2:
        raise GrammarError(syntax)
    return tokens[1], tokens[2:]


def split_mail_from(args: str) -> tuple[str, list[str]]:
    """Return (path text, parameter tokens) of ``MAIL FROM:path params``."""
    return _split_keyword(split_args(args), "FROM:", replies.MAIL_SYNTAX)


def split_rcpt_to(args: str) -> tuple[str, list[str]]:
    """Return (path text, parameter tokens) of ``RCPT TO:path params``."""
    return _split_keyword(split_args(args), "TO:", replies.RCPT_SYNTAX)


# --------------------------------------------------------------------------------
# Host names and address literals
# --------------------------------------------------------------------------------

# Postfix's valid_hostname() also allows "_" (it is common in real host names).
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_LABEL_UTF8 = re.compile(r"[\w](?:[\w-]{0,61}[\w])?")


def valid_hostname(name: str, *, utf8: bool = False) -> bool:
    """Return True for a syntactically valid host name (one trailing dot allowed).

    With ``utf8`` the labels may hold non-ASCII letters (SMTPUTF8 domains).
    """
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 255:
        return False
    label = _LABEL_UTF8 if utf8 and not name.isascii() else _LABEL
    return all(label.fullmatch(part) for part in name.split("."))


def _numeric(domain: str) -> bool:
    """True for a domain of digits and dots only (``user@1.2.3.4``): Postfix's
    valid_hostname() refuses it as a numeric host name, so the address is illegal
    syntax (an address belongs in brackets)."""
    return domain.replace(".", "").isdigit()


def valid_address_literal(text: str) -> bool:
    """Return True for ``[1.2.3.4]`` or ``[IPv6:...]`` (RFC 5321 4.1.3)."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
            return True
        ipaddress.IPv4Address(inner)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------

_SPECIALS = "<>@,;:.[]"


def _tokenize_address(text: str) -> list[tuple[str, str]] | None:
    """Return RFC 822-style tokens (kind, text); None when unbalanced.

    Kinds: "atom", "quoted" (text is the unquoted content), "literal" ("[...]"),
    "space", or a special character itself. Comments are dropped.
    """
    out: list[tuple[str, str]] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            j = i
            while j < n and text[j] in " \t":
                j += 1
            out.append(("space", text[i:j]))
            i = j
        elif c == "(":
            depth = 0
            while i < n:
                ch = text[i]
                if ch == "\\":
                    i += 2
                    continue
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            if i >= n:
                return None
            i += 1
        elif c == '"':
            buf = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                return None
            i += 1
            out.append(("quoted", "".join(buf)))
        elif c == "[":
            j = text.find("]", i)
            if j < 0:
                return None
            out.append(("literal", text[i: j + 1]))
            i = j + 1
        elif c in _SPECIALS:
            out.append((c, c))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in ' \t"(':
                j += 1
            out.append(("atom", text[i:j]))
            i = j
    return out


_STRICT_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[^\[\]\\]+\])"
_STRICT_PATH = re.compile(
    r"<(?:@" + _STRICT_DOMAIN + r"(?:,@" + _STRICT_DOMAIN + r")*:)?"
    r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+)*"
    r'|"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x20-\x7e])*")'
    r"@" + _STRICT_DOMAIN + r">"
)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The common case: <dot-atom@host.name> with nothing to unquote or strip.
_SIMPLE_PATH = re.compile(
    r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?)>")


def parse_path(text: str, bad: Reply, *, utf8: bool = False, strict: bool = False,
               allow_empty: bool = True) -> str:
    """Return the internal form of an envelope address, or raise GrammarError(bad).

    ``utf8`` allows non-ASCII domains (SMTPUTF8 was requested); ``strict`` applies
    RFC 5321 syntax (strict_rfc821_envelopes); ``allow_empty`` accepts the null
    address ``<>`` (MAIL FROM), which RCPT TO does not.
    """
    m = None if strict else _SIMPLE_PATH.fullmatch(text)
    if m is not None and valid_hostname(m.group(2)) and not _numeric(m.group(2)):
        return f"{m.group(1)}@{m.group(2)}"
    return _parse_path_general(text, bad, utf8=utf8, strict=strict, allow_empty=allow_empty)


def _parse_path_general(text: str, bad: Reply, *, utf8: bool, strict: bool,
                        allow_empty: bool) -> str:
    text = text.strip(" \t")
    if _CONTROL.search(text) or text.count("<") != text.count(">"):
        raise GrammarError(bad, quiet=True)
    if strict:
        if text == "<>":
            if allow_empty:
                return ""
            raise GrammarError(bad)
        if not _STRICT_PATH.fullmatch(text):
            raise GrammarError(bad)
    tokens = _tokenize_address(text)
    if tokens is None:
        raise GrammarError(bad)
    # Drop white space at the edges and inside angle brackets at the edges.
    tokens = [t for t in tokens]
    while True:
        while tokens and tokens[0][0] == "space":
            tokens.pop(0)
        while tokens and tokens[-1][0] == "space":
            tokens.pop()
        if len(tokens) >= 2 and tokens[0][0] == "<" and tokens[-1][0] == ">":
            tokens = tokens[1:-1]
            continue
        break
    # Source route: @a,@b:mailbox (RFC 5321 appendix C: accept and ignore).
    if tokens and tokens[0][0] == "@":
        k = 0
        while True:
            if k < len(tokens) and tokens[k][0] == "@":
                k += 1
                while k < len(tokens) and tokens[k][0] in ("atom", ".", "literal"):
                    k += 1
                if k < len(tokens) and tokens[k][0] == ",":
                    k += 1
                    continue
                if k < len(tokens) and tokens[k][0] == ":":
                    tokens = tokens[k + 1:]
                break
            break
    parts: list[str] = []
    at = -1
    for kind, value in tokens:
        if kind in ("space", "<", ">", ",", ";", ":"):
            raise GrammarError(bad)
        if kind == "@":
            at = len(parts)
        parts.append(value)
    if not parts:
        if allow_empty:
            return ""
        raise GrammarError(bad)
    if at < 0:
        # An unqualified address ("postmaster"): cleanup appends $myorigin later.
        local = "".join(parts)
        if not allow_empty and local == "":
            raise GrammarError(bad)
        return local
    local = "".join(parts[:at])
    domain = "".join(parts[at + 1:])
    if not domain:
        raise GrammarError(bad)
    if domain[0] == "[":
        if not valid_address_literal(domain):
            raise GrammarError(bad)
    elif not valid_hostname(domain, utf8=utf8) or _numeric(domain):
        raise GrammarError(bad)
    if not allow_empty and not local and not domain:
        raise GrammarError(bad)
    return f"{local}@{domain}"


# --------------------------------------------------------------------------------
# xtext (RFC 3461 section 4)
# --------------------------------------------------------------------------------

_HEX = "0123456789ABCDEF"


def xtext_decode(text: str, *, strict: bool = True) -> str | None:
    """Return the decoded xtext, or None when it is not valid xtext.

    Escaped bytes are read as UTF-8 (undecodable ones as surrogates), so that
    xtext_decode(xtext_encode(s)) == s. With ``strict=False`` a malformed ``+``
    escape is kept literally instead (what Postfix's XCLIENT tolerates).
    """
    if "+" not in text:
        if strict and any(not 33 <= ord(c) <= 126 or c == "=" for c in text):
            return None
        return text
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "+":
            pair = text[i + 1: i + 3]
            if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
                out.append(int(pair, 16))
                i += 3
                continue
            if strict:
                return None
            out += b"+"
        elif strict and (not 33 <= ord(c) <= 126 or c == "="):
            return None
        else:
            out += c.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "surrogateescape")


def xtext_encode(text: str) -> str:
    """Return text as xtext: "+", "=" and characters outside 33..126 as +HH (UTF-8)."""
    if text.isascii() and text.isprintable() and " " not in text and "+" not in text \
            and "=" not in text:
        return text  # 33..126 without "+" and "=": nothing to encode (the usual address)
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


# --------------------------------------------------------------------------------
# MAIL and RCPT parameters
# --------------------------------------------------------------------------------

#: Largest SIZE= we treat as a number at all (Postfix: beyond off_t is a different 552).
_SIZE_MAX = (1 << 63) - 1


class MailParams:
    """The parsed parameters of one MAIL command."""

    __slots__ = ("size", "body", "smtputf8", "ret", "envid", "auth")

    def __init__(self):
        self.size: int | None = None
        self.body: str | None = None
        self.smtputf8 = False
        self.ret: str | None = None
        self.envid: str | None = None
        self.auth: str | None = None


class RcptParams:
    """The parsed parameters of one RCPT command."""

    __slots__ = ("notify", "orcpt")

    def __init__(self):
        self.notify: tuple[str, ...] | None = None
        self.orcpt: str | None = None


def _name_value(token: str) -> tuple[str, str | None]:
    name, eq, value = token.partition("=")
    return name.upper(), (value if eq else None)


def parse_mail_params(tokens: list[str], *, size_limit: int = 0, smtputf8: bool = True,
                      binarymime: bool = False, auth: bool = False) -> MailParams:
    """Return the MAIL parameters, or raise GrammarError with Postfix's reply.

    ``size_limit`` is message_size_limit (0: none); ``smtputf8`` is smtputf8_enable;
    ``binarymime`` says whether BODY=BINARYMIME is offered (Postfix: no); ``auth``
    whether SASL is on (AUTH= is ignored otherwise, as Postfix does).
    """
    out = MailParams()
    for token in tokens:
        name, value = _name_value(token)
        if name == "SIZE" and value is not None:
            if not value.isdigit() or not value.isascii():
                raise GrammarError(replies.BAD_SIZE)
            size = int(value)
            if size > _SIZE_MAX:
                raise GrammarError(replies.SIZE_OVERFLOW)
            out.size = size
        elif name == "BODY" and value is not None:
            body = value.upper()
            if body in ("7BIT", "8BITMIME") or (body == "BINARYMIME" and binarymime):
                out.body = body
            else:
                raise GrammarError(replies.unsupported_option(token))
        elif name == "SMTPUTF8" and value is None and smtputf8:
            out.smtputf8 = True
        elif name == "RET" and value is not None:
            ret = value.upper()
            if out.ret is not None or ret not in ("FULL", "HDRS"):
                raise GrammarError(replies.BAD_RET)
            out.ret = ret
        elif name == "ENVID" and value is not None:
            decoded = xtext_decode(value)
            if out.envid is not None or not decoded:
                raise GrammarError(replies.BAD_ENVID)
            out.envid = decoded
        elif name == "AUTH" and value is not None:
            if auth:
                decoded = "<>" if value == "<>" else xtext_decode(value)
                if not decoded:
                    raise GrammarError(replies.BAD_AUTH_PARAM)
                out.auth = decoded
        else:
            raise GrammarError(replies.unsupported_option(token))
    if size_limit and out.size is not None and out.size > size_limit:
        raise GrammarError(replies.SIZE_EXCEEDED)
    return out


_NOTIFY_WORDS = ("SUCCESS", "FAILURE", "DELAY")


def parse_rcpt_params(tokens: list[str]) -> RcptParams:
    """Return the RCPT parameters, or raise GrammarError with Postfix's reply."""
    out = RcptParams()
    for token in tokens:
        name, value = _name_value(token)
        if name == "NOTIFY" and value is not None:
            words = tuple(w.upper() for w in value.split(","))
            if out.notify is not None or not value:
                raise GrammarError(replies.BAD_NOTIFY)
            if words == ("NEVER",):
                out.notify = words
            elif all(w in _NOTIFY_WORDS for w in words):
                out.notify = words
            else:
                raise GrammarError(replies.BAD_NOTIFY)
        elif name == "ORCPT" and value is not None:
            addr_type, semi, xtext = value.partition(";")
            decoded = xtext_decode(xtext) if semi else None
            if out.orcpt is not None or not addr_type or decoded is None:
                raise GrammarError(replies.BAD_ORCPT)
            out.orcpt = f"{addr_type};{decoded}"
        else:
            raise GrammarError(replies.unsupported_option(token))
    return out


# --------------------------------------------------------------------------------
# VRFY, ETRN
# --------------------------------------------------------------------------------


def parse_vrfy(args: str, *, utf8: bool = True) -> tuple[str, str, bool]:
    """Return (argument as given, internal address, SMTPUTF8) of ``VRFY address``."""
    tokens = split_args(args)
    smtputf8 = False
    if len(tokens) > 1 and tokens[-1].upper() == "SMTPUTF8":
        smtputf8 = True
        tokens = tokens[:-1]
    if not tokens:
        raise GrammarError(replies.VRFY_SYNTAX)
    if len(tokens) > 1:
        raise GrammarError(replies.BAD_RECIPIENT)
    address = parse_path(tokens[0], replies.BAD_RECIPIENT, utf8=utf8 or smtputf8,
                         allow_empty=False)
    return tokens[0], address, smtputf8


def parse_etrn(args: str) -> str:
    """Return the domain of ``ETRN [@|#]domain``."""
    arg = args.strip(" \t")
    if not arg:
        raise GrammarError(replies.ETRN_SYNTAX)
    if arg[0] in "@#":
        arg = arg[1:]
    if not valid_hostname(arg):
        raise GrammarError(replies.ETRN_BAD_DOMAIN)
    return arg


# --------------------------------------------------------------------------------
# XCLIENT / XFORWARD (Postfix XCLIENT_README, XFORWARD_README)
# --------------------------------------------------------------------------------

UNAVAILABLE = "[UNAVAILABLE]"
TEMPUNAVAIL = "[TEMPUNAVAIL]"

XCLIENT_NAMES = ("NAME", "ADDR", "PROTO", "HELO", "REVERSE_NAME", "PORT", "LOGIN",
                 "DESTADDR", "DESTPORT")
XFORWARD_NAMES = ("NAME", "ADDR", "PROTO", "HELO", "SOURCE", "PORT", "IDENT")

_PROTO_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


def _normal_addr(value: str) -> str | None:
    """Return the address in Postfix's printed form, or None when invalid."""
    try:
        if value.startswith("IPv6:"):
            return str(ipaddress.IPv6Address(value[5:]))
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None


def _check_attribute(command: str, name: str, value: str) -> str:
    """Return the normalised value of one attribute, or raise GrammarError."""
    bad = GrammarError(replies.bad_attribute_value(name, value))
    if value == UNAVAILABLE:
        return value
    if name in ("NAME", "REVERSE_NAME"):
        if value == TEMPUNAVAIL or valid_hostname(value):
            return value
        raise bad
    if name in ("ADDR", "DESTADDR"):
        addr = _normal_addr(value)
        if addr is None:
            raise bad
        return addr
    if name in ("PORT", "DESTPORT"):
        if value.isdigit() and value.isascii():
            return value
        raise bad
    if name == "PROTO":
        if command == "XCLIENT":
            if value.upper() in ("SMTP", "ESMTP"):
                return value.upper()
            raise bad
        if _PROTO_NAME.fullmatch(value):
            return value
        raise bad
    if name == "SOURCE":
        if value.upper() in ("LOCAL", "REMOTE"):
            return value.upper()
        raise bad
    # HELO, LOGIN, IDENT: any printable text.
    if not value.isprintable():
        raise bad
    return value


def parse_attributes(command: str, args: str) -> tuple[tuple[str, str], ...]:
    """Return the (NAME, value) pairs of XCLIENT or XFORWARD, checked as Postfix does."""
    names = XCLIENT_NAMES if command == "XCLIENT" else XFORWARD_NAMES
    tokens = args.split()
    if not tokens:
        raise GrammarError(replies.XCLIENT_SYNTAX if command == "XCLIENT"
                           else replies.XFORWARD_SYNTAX)
    out = []
    for token in tokens:
        raw_name, eq, raw_value = token.partition("=")
        if not eq:
            raise GrammarError(replies.ATTR_EXPECTED)
        name = raw_name.upper()
        if name not in names:
            raise GrammarError(replies.bad_attribute_name(command, raw_name))
        value = xtext_decode(raw_value, strict=False) or ""
        out.append((name, _check_attribute(command, name, value)))
    return tuple(out)
