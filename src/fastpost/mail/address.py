"""Mail addresses: internal and external forms, splitting, extensions, host names.

Postfix counterparts: src/global/quote_822_local.c, split_addr.c, strip_addr.c,
valid_hostname.c (util), mail_addr_find.c (the key forms).

fastpost keeps addresses in Postfix's *internal* form: the local part unquoted
(``a b@example.com``), the domain as written. The *external* form quotes a local part
that needs it (``"a b"@example.com``), as RFC 5321 requires on the wire and as table
lookups try first.

Nothing here does DNS or reads configuration; callers pass the delimiter set
(``recipient_delimiter``) and similar values.

Diagnostics: none; malformed input gives a best-effort result or False from the
validity predicates.
"""

from __future__ import annotations

import ipaddress
import re

# RFC 5322 atext, plus "." between atoms (dot-atom).
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def split_addr(address: str) -> tuple[str, str]:
    """Return (localpart, domain) split at the rightmost '@'; domain "" if none."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain


def needs_quoting(local: str) -> bool:
    """Return True when a local part must be quoted in the external form."""
    if local == "":
        return False
    if _DOT_ATOM.fullmatch(local):
        return False
    # 8-bit (SMTPUTF8) local parts are dot-atoms of UTF-8 text.
    if not local.isascii():
        ascii_equiv = "".join("a" if ord(c) > 127 else c for c in local)
        return not _DOT_ATOM.fullmatch(ascii_equiv)
    return True


def quote_local(local: str) -> str:
    """Return the external (RFC 5321) form of a local part."""
    if not needs_quoting(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def external(address: str) -> str:
    """Return ``address`` with its local part quoted when needed."""
    if address == "":
        return ""
    local, at, domain = address.rpartition("@")
    if not at:
        return quote_local(address)
    if local == "" or _DOT_ATOM.fullmatch(local):
        return address  # nothing to quote (the common case: no further calls)
    return f"{quote_local(local)}@{domain}"


def unquote_local(local: str) -> str:
    """Return the internal form of a (possibly quoted) local part."""
    if '"' not in local and "\\" not in local:
        return local
    out = []
    in_quote = False
    i = 0
    while i < len(local):
        c = local[i]
        if c == "\\" and i + 1 < len(local):
            out.append(local[i + 1])
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        else:
            out.append(c)
        i += 1
    return "".join(out)


def internal(address: str) -> str:
    """Return the internal form of an external address (quotes removed)."""
    if '"' not in address and "\\" not in address:
        return address
    # The rightmost @ outside quotes separates the domain.
    in_quote = False
    split_at = -1
    i = 0
    while i < len(address):
        c = address[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == "@" and not in_quote:
            split_at = i
        i += 1
    if split_at < 0:
        return unquote_local(address)
    return unquote_local(address[:split_at]) + address[split_at:]


def split_extension(local: str, delimiters: str) -> tuple[str, str]:
    """Return (base, extension) of a local part split at the first delimiter.

    ``delimiters`` is recipient_delimiter: each character is a delimiter. Postfix does
    not split off an extension from ``owner-`` / ``-request`` names here; callers
    handle those. The extension excludes the delimiter itself; ("user", "") when there
    is none. A delimiter at position 0 does not split (``+foo`` stays whole).
    """
    if not delimiters:
        return local, ""
    for i, c in enumerate(local):
        if c in delimiters and i > 0:
            return local[:i], local[i + 1 :]
    return local, ""


def strip_extension(address: str, delimiters: str) -> str:
    """Return the address without its local-part extension (``user+ext@d`` -> ``user@d``)."""
    local, domain = split_addr(address)
    base, ext = split_extension(local, delimiters)
    if not ext and base == local:
        return address
    return f"{base}@{domain}" if "@" in address else base


def delimiter_of(local: str, delimiters: str) -> str:
    """Return the delimiter character that starts the extension, or ""."""
    for i, c in enumerate(local):
        if c in delimiters and i > 0:
            return c
    return ""


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def valid_hostname(name: str, *, allow_trailing_dot: bool = False) -> bool:
    """Return True for a syntactically valid DNS host name (Postfix valid_hostname).

    Labels of letters, digits and hyphens (not at either end), at most 63 characters,
    the whole at most 255; a name made only of digits and dots is not a host name.
    """
    if allow_trailing_dot and name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 255:
        return False
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return False
    return not all(label.isdigit() for label in labels)


def valid_hostaddr(text: str) -> bool:
    """Return True for an IPv4 address or an IPv6 address (optionally ``IPv6:``-prefixed)."""
    if text[:5].lower() == "ipv6:":
        text = text[5:]
        try:
            return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
        except ValueError:
            return False
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def valid_address_literal(domain: str) -> bool:
    """Return True for ``[1.2.3.4]`` or ``[IPv6:...]``."""
    return len(domain) > 2 and domain[0] == "[" and domain[-1] == "]" and valid_hostaddr(domain[1:-1])


def is_fqdn(domain: str) -> bool:
    """Return True when domain has a dot (or is an address literal), as Postfix's
    reject_non_fqdn_* checks require."""
    if domain.startswith("["):
        return valid_address_literal(domain)
    return "." in domain.strip(".") and valid_hostname(domain, allow_trailing_dot=True)


def fold_key(text: str) -> str:
    """Return a lookup key folded as Postfix folds keys of indexed tables (lower case)."""
    return text.lower()
