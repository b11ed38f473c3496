"""Common-command kernel: the pure-Python reference.

Postfix counterpart: the argument parsing at the top of helo_cmd, ehlo_cmd,
mail_cmd, rcpt_cmd, data_cmd, rset_cmd, noop_cmd and quit_cmd in src/smtpd/smtpd.c
(extract_addr's common case), for the forms nearly every client sends.

This is the specification of ext/fastpost/smtp/_command_c.pyx and the oracle of its
differential tests; production code imports fastpost.smtp.command.

    quick_command(verb, args) -> (kind, text, size) or None

``verb`` and ``args`` are what LineReader.read_command() returns (verb upper-cased,
the argument bytes after the white space that follows it). The answer is not None
only for these exact forms, all ASCII:

    HELO name / EHLO name   name: 1+ bytes of 0x21-0x7e        -> (HELO|EHLO, name, -1)
    MAIL FROM:<path>[ SIZE=n]                                  -> (MAIL, address, n or -1)
    RCPT TO:<path>                                             -> (RCPT, address, -1)
    DATA / RSET / QUIT / NOOP   with no argument at all        -> (kind, "", -1)

``FROM:``, ``TO:`` and ``SIZE=`` in any letter case; n is 1-18 ASCII digits, one space
before SIZE; path is <local@domain>: local a dot-atom of RFC 5322 atext, domain
labels of letters, digits, "_" and "-" (1-63 long, no "-" at either end), at most 255
long, one trailing dot allowed, not all digits (a numeric host name is illegal).
The address is the text between the brackets. For these forms the general parser
(grammar.split_mail_from/parse_mail_params/parse_path and ServerConnection._helo ...)
gives the same address, name and size: anything else (other parameters, quotes,
source routes, address literals, white space the general parser would strip, UTF-8,
the null sender) answers None and takes the general path. Whether the command is
allowed now (sequence, limits, options) is not decided here.

Diagnostics: none; TypeError for arguments that are not bytes-like.
"""

from __future__ import annotations

HELO = 1
EHLO = 2
MAIL = 3
RCPT = 4
DATA = 5
RSET = 6
NOOP = 7
QUIT = 8

#: The verbs this kernel knows, by kind (the ServerConnection verb names).
VERBS = ("", "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT")

_ATEXT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                   b"!#$%&'*+/=?^_`{|}~-")
_LDH = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_DIGITS = frozenset(b"0123456789")
_NOARG = {b"DATA": DATA, b"RSET": RSET, b"NOOP": NOOP, b"QUIT": QUIT}


def _address(path: bytes) -> str | None:
    """The address of ``<local@domain>`` in the simple form (module docstring)."""
    n = len(path)
    if n < 5 or path[0] != 0x3C or path[n - 1] != 0x3E:  # < >
        return None
    inner = path[1:n - 1]
    at = inner.find(b"@")
    if at <= 0:
        return None
    local = inner[:at]
    domain = inner[at + 1:]
    # local: dot-atom (atoms of atext separated by single dots)
    prev_dot = True
    for c in local:
        if c == 0x2E:
            if prev_dot:
                return None
            prev_dot = True
        elif c in _ATEXT:
            prev_dot = False
        else:
            return None
    if prev_dot:
        return None
    if domain.endswith(b"."):
        domain = domain[:-1]
    if not domain or len(domain) > 255:
        return None
    numeric = True
    for label in domain.split(b"."):
        if not label or len(label) > 63 or label[0] == 0x2D or label[-1] == 0x2D:
            return None
        for c in label:
            if c not in _LDH:
                return None
            if c not in _DIGITS:
                numeric = False
    if numeric:
        return None
    return inner.decode("ascii")


def quick_command(verb, args):
    """Return (kind, text, size) for a common command in its simple form, else None."""
    verb = bytes(verb)
    args = bytes(args)
    kind = _NOARG.get(verb)
    if kind is not None:
        return (kind, "", -1) if not args else None
    if verb == b"HELO" or verb == b"EHLO":
        if not args or any(c < 0x21 or c > 0x7E for c in args):
            return None
        return (HELO if verb == b"HELO" else EHLO, args.decode("ascii"), -1)
    if verb == b"MAIL":
        if args[:5].upper() != b"FROM:":
            return None
        rest = args[5:]
        size = -1
        sp = rest.find(b" ")
        if sp >= 0:
            param = rest[sp + 1:]
            rest = rest[:sp]
            if param[:5].upper() != b"SIZE=":
                return None
            digits = param[5:]
            if not digits or len(digits) > 18 or any(c not in _DIGITS for c in digits):
                return None
            size = int(digits)
        address = _address(rest)
        return None if address is None else (MAIL, address, size)
    if verb == b"RCPT":
        if args[:3].upper() != b"TO:":
            return None
        address = _address(args[3:])
        return None if address is None else (RCPT, address, -1)
    return None
