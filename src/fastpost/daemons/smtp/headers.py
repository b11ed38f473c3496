"""The header section of a message in CR LF lines, as logical headers.

Postfix counterpart: none by itself (Postfix's smtp client gets its headers from
mime_state); shared by the output steps of the smtp/lmtp agent that edit headers on
the way out: checks.py (smtp_header_checks), generic.py (smtp_generic_maps) and
mime7bit.py (8BITMIME to quoted-printable).

    groups, body = blocks(lines, start)

``lines`` are the message's lines without their CR LF; ``groups`` the header lines from
``start``, each logical header a list of its physical lines (continuations start with a
space or tab); ``body`` the index of the first body line: after the empty line that ends
the header, or at the first line that is not a header (a message without a header
break). Diagnostics: none.
"""

from __future__ import annotations

__all__ = ["blocks", "name_of"]


def blocks(lines: list[bytes], start: int = 0) -> tuple[list[list[bytes]], int]:
    groups: list[list[bytes]] = []
    i = start
    while i < len(lines):
        line = lines[i]
        if line == b"":
            return groups, i + 1
        if line[:1] in (b" ", b"\t") and groups:
            groups[-1].append(line)
        elif b":" in line:
            groups.append([line])
        else:
            return groups, i  # not a header: the body starts here
        i += 1
    return groups, i


def name_of(group: list[bytes]) -> bytes:
    """The header's name, lower case, without white space."""
    return group[0].partition(b":")[0].strip().lower()
