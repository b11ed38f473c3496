"""Addresses in message headers: parse, rewrite, write back as Postfix does.

Postfix counterpart: src/global/tok822_parse.c, tok822_rewrite.c, tok822_tree.c and
src/cleanup/cleanup_message.c (cleanup_rewrite_sender/_recipient: address headers are
parsed into tokens, every address is rewritten, and only when something changed is
the header written out again, folded).

    parsed = parse(value, token_limit)       # value: the text after "Name:"
    parsed.addresses()                       # internal-form addresses, in order
    new = parsed.rewrite(fn)                 # fn(address) -> address; None if unchanged
    header = format_header(name, new)        # "Name: a@b, c@d" folded like Postfix

What was learned by running Postfix 3.7's cleanup on address headers (and is kept
here): an unchanged header keeps its exact text; a rewritten one is written from its
tokens with one space between words, none around "." and "@", a space before "<" and
before a comment except right after ">", comments of a bare address moved after it,
source routes dropped from angle addresses, one ", " between addresses; a group
(``name: a, b;``) is one unit; the result is folded before an address with
LF TAB when the line (the header name counts on the first line, the TAB does not on
the others) would pass 69 columns with that address and its comma.

Parameters: header_address_token_limit (the caller passes it as token_limit).
Diagnostics: none: text that does not parse as addresses is kept as it is (a header
that yields no address is never rewritten).
"""

from __future__ import annotations

from fastpost.mail.address import external

__all__ = ["parse", "format_header", "Parsed", "FOLD_COLUMNS"]

#: A line of a rewritten header stays within this many columns when it can.
FOLD_COLUMNS = 69

_SPECIALS = set('()<>@,;:\\".[]')
ATOM, QSTR, COMMENT, DLIT, SPECIAL = range(5)


def tokenize(text: str, limit: int) -> list:
    """RFC 822 tokens of text as (type, text) pairs; at most ``limit`` tokens."""
    out: list = []
    i = 0
    n = len(text)
    while i < n and len(out) < limit:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append((QSTR, text[i:j + 1]))
            i = j + 1
        elif c == "(":
            depth = 0
            j = i
            while j < n:
                ch = text[j]
                if ch == "\\":
                    j += 2
                    continue
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            out.append((COMMENT, text[i:j + 1]))
            i = j + 1
        elif c == "[":
            j = text.find("]", i)
            j = n - 1 if j < 0 else j
            out.append((DLIT, text[i:j + 1]))
            i = j + 1
        elif c in _SPECIALS:
            out.append((SPECIAL, c))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in " \t\r\n":
                j += 1
            out.append((ATOM, text[i:j]))
            i = j
    return out


def _unquote(qstr: str) -> str:
    body = qstr[1:-1] if qstr.endswith('"') and len(qstr) > 1 else qstr[1:]
    out = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            i += 1
        out.append(body[i])
        i += 1
    return "".join(out)


def _internal(tokens: list) -> str:
    """The internal form of an addr-spec's tokens (comments ignored)."""
    parts = []
    for t, v in tokens:
        if t == QSTR:
            parts.append(_unquote(v))
        elif t != COMMENT:
            parts.append(v)
    return "".join(parts)


def _words(tokens: list) -> str:
    """Phrase tokens as Postfix writes them: one space between words, none around '.'."""
    out = ""
    prev = None
    for t, v in tokens:
        if not out:
            out = v
        elif t == SPECIAL and v == ".":
            out += v
        elif prev is not None and prev[0] == SPECIAL and prev[1] == ".":
            out += v
        elif t == COMMENT and prev is not None and prev[0] == SPECIAL and prev[1] == ">":
            out += v
        else:
            out += " " + v
        prev = (t, v)
    return out


class _Element:
    """One address of a header: bare addr-spec, phrase <addr>, or a group of them."""

    __slots__ = ("kind", "phrase", "addr", "comments", "members", "raw")

    def __init__(self, kind: str, phrase=None, addr=None, comments=None, members=None, raw=None):
        self.kind = kind  # "bare", "angle", "group", "empty"
        self.phrase = phrase or []
        self.addr = addr or []  # addr-spec tokens (route removed)
        self.comments = comments or []
        self.members = members or []
        self.raw = raw or []  # all tokens, for elements that are not addresses


def _elements(tokens: list) -> list:
    """The addresses of one comma-separated piece: an angle address, or bare words.

    As Postfix does, words in a row that no special joins (``joe bob``) are separate
    addresses; comments stay with the address they follow (or the first one).
    """
    if not [t for t in tokens if t[0] != COMMENT]:
        return [_Element("empty", comments=[t for t in tokens if t[0] == COMMENT], raw=tokens)]
    lt = next((i for i, t in enumerate(tokens) if t == (SPECIAL, "<")), -1)
    if lt >= 0:
        gt = next((i for i in range(lt + 1, len(tokens)) if tokens[i] == (SPECIAL, ">")), len(tokens))
        inner = tokens[lt + 1:gt]
        colon = next((i for i, t in enumerate(inner) if t == (SPECIAL, ":")), -1)
        if colon >= 0 and inner and inner[0] == (SPECIAL, "@"):
            inner = inner[colon + 1:]  # source route
        addr = [t for t in inner if t[0] != COMMENT]
        return [_Element("angle", phrase=tokens[:lt], addr=addr,
                         comments=[t for t in tokens[gt + 1:] if t[0] == COMMENT]
                         + [t for t in inner if t[0] == COMMENT])]
    out: list = []
    pending_comments: list = []
    prev = None
    for tok in tokens:
        t = tok[0]
        if t == COMMENT:
            if out:
                out[-1].comments.append(tok)
            else:
                pending_comments.append(tok)
            continue
        if t != SPECIAL and prev is not None and prev != SPECIAL:
            out.append(_Element("bare"))
        elif not out:
            out.append(_Element("bare"))
        out[-1].addr.append(tok)
        prev = t
    if out and pending_comments:
        out[0].comments[:0] = pending_comments
    return out


class Parsed:
    """The addresses of one header value (see the module docstring)."""

    __slots__ = ("elements",)

    def __init__(self, elements: list):
        self.elements = elements

    def _leaves(self):
        for el in self.elements:
            if el.kind == "group":
                yield from (m for m in el.members if m.kind in ("bare", "angle"))
            elif el.kind in ("bare", "angle"):
                yield el

    def addresses(self) -> list[str]:
        """The internal-form addresses, in order (empty ones included as "")."""
        return [_internal(el.addr) for el in self._leaves()]

    def rewrite(self, fn) -> list[str] | None:
        """Rewrite every address with fn; return the new element texts, or None if none changed."""
        changed = False
        new: dict[int, str] = {}
        for el in self._leaves():
            old = _internal(el.addr)
            if not old:
                continue
            res = fn(old)
            if res is not None and res != old:
                changed = True
                new[id(el)] = res
            else:
                new[id(el)] = old
        if not changed:
            return None
        return [self._text(el, new) for el in self.elements]

    def _text(self, el: _Element, new: dict) -> str:
        if el.kind == "group":
            head = _words(el.phrase)
            inner = ", ".join(self._text(m, new) for m in el.members if m.kind != "empty" or m.raw)
            return f"{head}: {inner};" if inner else f"{head}:;"
        if el.kind == "empty":
            return _words(el.raw)
        addr = new.get(id(el))
        if addr is None:
            addr = _internal(el.addr)
        ext = external(addr) if addr else ""
        if el.kind == "angle":
            phrase = _words(el.phrase)
            text = f"{phrase} <{ext}>" if phrase else f"<{ext}>"
            if el.comments:
                text += "".join(v for _, v in el.comments[:1]) + "".join(
                    " " + v for _, v in el.comments[1:])
            return text
        text = ext
        for _, v in el.comments:
            text += " " + v
        return text


def parse(value: str, token_limit: int = 10240) -> Parsed:
    """Parse a header value (the text after the colon) into addresses."""
    elements: list = []
    cur: list = []
    group: _Element | None = None
    depth = 0
    closed = False  # a group just ended: the comma after it makes no empty address
    for tok in tokenize(value, token_limit):
        t, v = tok
        if t == SPECIAL:
            if v == "<":
                depth += 1
            elif v == ">":
                depth = max(0, depth - 1)
            elif depth == 0:
                if v == ":" and group is None and not any(
                        x == (SPECIAL, "<") or x == (SPECIAL, "@") for x in cur):
                    group = _Element("group", phrase=cur)
                    cur = []
                    continue
                if v == ",":
                    if group is not None:
                        group.members.extend(_elements(cur))
                    elif cur or not closed:
                        elements.extend(_elements(cur))
                    cur = []
                    closed = False
                    continue
                if v == ";" and group is not None:
                    group.members.extend(_elements(cur))
                    elements.append(group)
                    group = None
                    cur = []
                    closed = True
                    continue
        cur.append(tok)
    if group is not None:
        group.members.extend(_elements(cur))
        elements.append(group)
    elif cur or (elements and not closed):
        elements.extend(_elements(cur))
    for el in elements:
        if el.kind == "group":
            el.members = [m for m in el.members if m.kind != "empty" or m.raw]
    return Parsed(elements)


def format_header(name: str, elements: list[str], columns: int = FOLD_COLUMNS) -> str:
    """``Name: e1, e2, ...`` folded with LF TAB before an address that would pass columns."""
    line = f"{name}:"
    lines: list[str] = []
    first = True
    for i, el in enumerate(elements):
        last = i == len(elements) - 1
        piece = el + ("" if last else ",")
        if first:
            line += " " + piece
            first = False
            continue
        if len(line) + 1 + len(piece) > columns:
            lines.append(line)
            line = piece
            continue
        line += " " + piece
    lines.append(line)
    return "\n\t".join(lines)


