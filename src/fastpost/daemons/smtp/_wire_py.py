"""Message text -> SMTP DATA bytes (dot-stuffing and long-line folding): the reference.

Postfix counterpart: the content loop of src/smtp/smtp_proto.c (smtp_text_out: dot
transparency, smtp_line_length_limit folding).

This is the specification of ext/fastpost/daemons/smtp/_wire_c.pyx and the oracle of
the differential tests; production code imports fastpost.daemons.smtp.wire.

    out, folded = wire_text(text, fold_limit=998, stuff=True)

``text`` is a whole message with CR LF line ends (what the content kernel's
``decode_text(..., eol=b"\\r\\n")`` returns; a bare CR is ordinary data). Line by line
(the last line may lack its CR LF):

* with ``stuff``, a line that starts with "." gets a second "." in front (RFC 5321
  4.5.2); the added dot does not count toward the line's length;
* with ``fold_limit`` > 0, a line longer than that is broken as Postfix's smtp does:
  after ``fold_limit`` bytes CR LF and one SPACE are inserted, and each continuation
  carries the SPACE and at most ``fold_limit`` - 1 further bytes (998, then " " + 997,
  ...). 0 disables folding.

``folded`` is True when at least one line was broken (the agent logs it, as Postfix).
The output ends exactly as the input does (with or without CR LF).

Diagnostics: ValueError for a fold_limit below 0 or of 1 (a continuation line would
hold nothing but its SPACE).
"""

__all__ = ["wire_text"]


def wire_text(text, fold_limit: int = 998, stuff: bool = True):
    """Return ``(out, folded)``; see the module docstring."""
    if fold_limit < 0 or fold_limit == 1:
        raise ValueError("fold_limit must be 0 or at least 2")
    data = bytes(text)
    lines = data.split(b"\r\n")
    out = []
    folded = False
    for line in lines:
        prefix = b"." if stuff and line[:1] == b"." else b""
        if fold_limit and len(line) > fold_limit:
            folded = True
            pieces = [line[:fold_limit]]
            pos = fold_limit
            while pos < len(line):
                pieces.append(b" " + line[pos:pos + fold_limit - 1])
                pos += fold_limit - 1
            line = b"\r\n".join(pieces)
        out.append(prefix + line)
    return b"\r\n".join(out), folded
