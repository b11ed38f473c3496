# cython: language_level=3, annotation_typing=False
"""The Reply type (fastpost.smtp.replies): one source, run as Python and compiled.

What a Reply is and how its wire bytes are made is fastpost.smtp.replies' docstring
(the module every other one imports Reply from). This file is the reference, imported
as fastpost.smtp._reply_py; setup.py compiles it, typed by ext/fastpost/smtp/_reply_c.pxd,
into fastpost.smtp._reply_c, which production runs (Cython's pure-Python mode,
docs/conventions.md): a cdef class whose four fields the compiled protocol core and
smtpd's session read as C members (a reply's code and bytes at every reply sent).
The fields are Python objects in both builds (what is stored is what is read back).
tests/unit/smtp/test_reply_builds.py holds the two builds to each other.

Diagnostics: ValueError for a code outside 200..599 (an internal bug).
"""

from __future__ import annotations

__all__ = ["Reply"]


class Reply:
    """One SMTP reply (possibly multi-line); immutable by convention, hashable."""

    __slots__ = ("code", "enhanced", "lines", "wire")

    def __init__(self, code: int, text: str | tuple[str, ...] | list[str], enhanced: str = ""):
        if not 200 <= code <= 599:
            raise ValueError(f"bad SMTP reply code {code}")
        if isinstance(text, str):
            # One line (nearly every reply made per message, e.g. "queued as"): the
            # same wire bytes as the loop below, without it.
            self.code = code
            self.enhanced = enhanced
            self.lines = (text,)
            self.wire = (f"{code} {enhanced} {text}\r\n" if enhanced
                         else f"{code} {text}\r\n").encode("utf-8", "surrogateescape")
            return
        lines = tuple(text)
        if not lines:
            lines = ("",)
        self.code = code
        self.enhanced = enhanced
        self.lines = lines
        prefix = f"{enhanced} " if enhanced else ""
        out = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            sep = " " if i == last else "-"
            out.append(f"{code}{sep}{prefix}{line}\r\n")
        self.wire = "".join(out).encode("utf-8", "surrogateescape")

    @property
    def text(self) -> str:
        """Return the text lines joined by newlines (for logs and tests)."""
        return "\n".join(self.lines)

    def __str__(self) -> str:
        """Return the one-line form Postfix logs: "554 5.7.1 text"."""
        head = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
        return head + " ".join(self.lines)

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.lines!r}, {self.enhanced!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Reply) and self.wire == other.wire

    def __hash__(self) -> int:
        return hash(self.wire)

    @property
    def is_positive(self) -> bool:
        """True for 2xx and 3xx replies."""
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        """True for 4xx replies."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """True for 5xx replies."""
        return self.code >= 500
