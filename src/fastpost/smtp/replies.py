"""SMTP replies: the Reply type and every canned reply fastpost's smtpd sends.

Postfix counterpart: the reply strings of src/smtpd/smtpd.c (and smtpd_chat.c for
the wire form). Texts and codes were checked against Postfix 3.7.11 on this machine
(see docs/smtp.md); tests assert against the names here, never against literals.

A Reply is a code, an optional enhanced status code (RFC 3463, "2.1.0") and one or
more text lines. ``wire`` is the bytes sent: every line but the last uses ``code-``,
the last ``code ``; the enhanced code is repeated on each line, as Postfix does. A
multi-line reply is one bytes object so that it goes out in one write (some clients
misread replies split across TCP segments).

Untrusted text put into a reply (an echoed parameter, an address) goes through
``printable()``: control characters become "?" so that a peer cannot inject a line
break into our output.

Diagnostics: ValueError for a code outside 200..599 (an internal bug).
"""

from __future__ import annotations

from fastpost._accel import select

__all__ = ["Reply", "printable"]


def printable(text: str) -> str:
    """Return text with control characters (and DEL) replaced by '?'."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else "?" for c in text)


# The Reply type: see _reply_py (one source of both builds).
Reply = select("fastpost.smtp._reply_c", "fastpost.smtp._reply_py").Reply


# --------------------------------------------------------------------------------
# Positive replies
# --------------------------------------------------------------------------------

OK = Reply(250, "Ok", "2.0.0")
MAIL_OK = Reply(250, "Ok", "2.1.0")
RCPT_OK = Reply(250, "Ok", "2.1.5")
BYE = Reply(221, "Bye", "2.0.0")
START_DATA = Reply(354, "End data with <CR><LF>.<CR><LF>")
START_TLS = Reply(220, "Ready to start TLS", "2.0.0")
ETRN_STARTED = Reply(250, "Queuing started")
ETRN_FAILED = Reply(458, "Unable to queue messages")
AUTH_OK = Reply(235, "Authentication successful", "2.7.0")


def greeting(banner: str) -> Reply:
    """Return the 220 greeting (``smtpd_banner``, already expanded)."""
    return Reply(220, printable(banner))


def helo(hostname: str) -> Reply:
    """Return the reply to HELO: ``250 myhostname``."""
    return Reply(250, hostname)


def ehlo(hostname: str, keywords) -> Reply:
    """Return the multi-line EHLO reply: the host name, then one keyword per line."""
    return Reply(250, (hostname, *keywords))


def queued(queue_id: str) -> Reply:
    """Return ``250 2.0.0 Ok: queued as ID`` (sent only after the sink made it durable)."""
    return Reply(250, f"Ok: queued as {queue_id}", "2.0.0")


def bdat_ok(nbytes: int) -> Reply:
    """Return the reply to a non-final BDAT chunk: ``250 2.0.0 Ok: N bytes``."""
    return Reply(250, f"Ok: {nbytes} bytes", "2.0.0")


def bdat_queued(nbytes: int, queue_id: str) -> Reply:
    """Return the reply to BDAT LAST: ``250 2.0.0 Ok: N bytes queued as ID``."""
    return Reply(250, f"Ok: {nbytes} bytes queued as {queue_id}", "2.0.0")


def vrfy_ok(argument: str) -> Reply:
    """Return ``252 2.0.0 <argument as given>``: cannot verify, but will accept."""
    return Reply(252, printable(argument), "2.0.0")


def auth_challenge(challenge_b64: str) -> Reply:
    """Return a ``334`` SASL challenge (base64 text, possibly empty)."""
    return Reply(334, challenge_b64)


# --------------------------------------------------------------------------------
# Sequencing and syntax errors (decided by the core)
# --------------------------------------------------------------------------------

UNRECOGNIZED = Reply(500, "Error: command not recognized", "5.5.2")
BAD_SYNTAX = Reply(500, "Error: bad syntax", "5.5.2")
BAD_UTF8 = Reply(500, "Error: bad UTF-8 syntax", "5.5.2")
NOT_IMPLEMENTED = Reply(502, "Error: command not implemented", "5.5.1")
HELO_SYNTAX = Reply(501, "Syntax: HELO hostname")
EHLO_SYNTAX = Reply(501, "Syntax: EHLO hostname")
NEED_HELO = Reply(503, "Error: send HELO/EHLO first", "5.5.1")
NESTED_MAIL = Reply(503, "Error: nested MAIL command", "5.5.1")
NEED_MAIL = Reply(503, "Error: need MAIL command", "5.5.1")
NEED_RCPT = Reply(503, "Error: need RCPT command", "5.5.1")
NO_VALID_RCPT = Reply(554, "Error: no valid recipients", "5.5.1")
MAIL_SYNTAX = Reply(501, "Syntax: MAIL FROM:<address>", "5.5.4")
RCPT_SYNTAX = Reply(501, "Syntax: RCPT TO:<address>", "5.5.4")
BAD_SENDER = Reply(501, "Bad sender address syntax", "5.1.7")
BAD_RECIPIENT = Reply(501, "Bad recipient address syntax", "5.1.3")
BAD_SIZE = Reply(501, "Bad message size syntax", "5.5.4")
SIZE_EXCEEDED = Reply(552, "Message size exceeds fixed limit", "5.3.4")
SIZE_OVERFLOW = Reply(552, "Message size exceeds file system imposed limit", "5.3.4")
BAD_RET = Reply(501, "Bad RET parameter syntax", "5.5.4")
BAD_ENVID = Reply(501, "Bad ENVID parameter syntax", "5.5.4")
BAD_AUTH_PARAM = Reply(501, "Bad AUTH parameter syntax", "5.5.4")
BAD_NOTIFY = Reply(501, "Error: Bad NOTIFY parameter syntax", "5.5.4")
BAD_ORCPT = Reply(501, "Error: Bad ORCPT parameter syntax", "5.5.4")
BINARYMIME_NEEDS_BDAT = Reply(503, "Error: BDAT required with BODY=BINARYMIME", "5.5.1")
TOO_MANY_RECIPIENTS = Reply(452, "Error: too many recipients", "4.5.3")
RSET_SYNTAX = Reply(501, "Syntax: RSET", "5.5.4")
STARTTLS_SYNTAX = Reply(501, "Syntax: STARTTLS", "5.5.4")
TLS_ACTIVE = Reply(554, "Error: TLS already active", "5.5.1")
TLS_UNAVAILABLE = Reply(454, "TLS not available due to local problem", "4.7.0")
MUST_STARTTLS = Reply(530, "Must issue a STARTTLS command first", "5.7.0")
VRFY_SYNTAX = Reply(501, "Syntax: VRFY address [SMTPUTF8]", "5.5.4")
VRFY_DISABLED = Reply(502, "VRFY command is disabled", "5.5.1")
ETRN_SYNTAX = Reply(500, "Syntax: ETRN domain")
ETRN_NEED_HELO = Reply(503, "Error: send HELO/EHLO first")
ETRN_IN_MAIL = Reply(503, "Error: MAIL transaction in progress")
ETRN_BAD_DOMAIN = Reply(501, "Error: invalid parameter syntax")
MAIL_IN_PROGRESS = Reply(503, "Error: MAIL transaction in progress", "5.5.1")
XCLIENT_SYNTAX = Reply(501, "Syntax: XCLIENT attribute=value...", "5.5.4")
XFORWARD_SYNTAX = Reply(501, "Syntax: XFORWARD attribute=value...", "5.5.4")
ATTR_EXPECTED = Reply(501, "Error: attribute=value expected", "5.5.4")
NOT_AUTHORIZED = Reply(550, "Error: insufficient authorization", "5.7.0")
BDAT_SYNTAX = Reply(521, "Syntax: BDAT count [LAST]", "5.5.4")
BDAT_NOT_IMPLEMENTED = Reply(521, "Error: command not implemented", "5.5.1")
NULL_BDAT = Reply(551, "Null BDAT request", "5.7.1")
DATA_AFTER_BDAT = Reply(503, "Error: DATA after BDAT", "5.5.1")
MAIL_AFTER_BDAT = Reply(503, "Error: MAIL after BDAT", "5.5.1")
RCPT_AFTER_BDAT = Reply(503, "Error: RCPT after BDAT", "5.5.1")
CHUNK_TOO_BIG = Reply(552, "Chunk exceeds message size limit", "5.3.4")
MESSAGE_TOO_BIG = Reply(552, "Error: message file too big", "5.3.4")
PIPELINING_SYNC = Reply(554, "Error: SMTP protocol synchronization", "5.5.0")
FORBIDDEN_COMMAND = Reply(221, "Error: I can break rules, too. Goodbye.", "2.7.0")
AUTH_NOT_ENABLED = Reply(503, "Error: authentication not enabled", "5.5.1")
AUTH_SYNTAX = Reply(501, "Syntax: AUTH mechanism", "5.5.4")
AUTH_ALREADY = Reply(503, "Error: already authenticated", "5.5.1")
AUTH_ABORTED = Reply(501, "Authentication aborted", "5.7.0")
AUTH_BAD_RESPONSE = Reply(501, "Cannot decode response", "5.5.2")
AUTH_LINE_TOO_LONG = Reply(500, "Authentication exchange line is too long", "5.5.6")
AUTH_MECH_UNSUPPORTED = Reply(504, "Unsupported authentication mechanism", "5.5.4")
AUTH_FAILED = Reply(535, "Error: authentication failed: authentication failure", "5.7.8")
INSUFFICIENT_STORAGE = Reply(452, "Insufficient system storage", "4.3.1")
WRITE_ERROR = Reply(451, "Error: queue file write error", "4.3.0")
SERVER_CONFIG_ERROR = Reply(451, "Server configuration error", "4.3.5")


def unsupported_option(text: str) -> Reply:
    """Return ``555 5.5.4 Unsupported option: TEXT`` for an unknown MAIL/RCPT parameter."""
    return Reply(555, f"Unsupported option: {printable(text)}", "5.5.4")


def bad_attribute_name(command: str, name: str) -> Reply:
    """Return ``501 5.5.4 Bad XCLIENT attribute name: NAME`` (or XFORWARD)."""
    return Reply(501, f"Bad {command} attribute name: {printable(name)}", "5.5.4")


def bad_attribute_value(name: str, value: str) -> Reply:
    """Return ``501 5.5.4 Bad ADDR syntax: VALUE`` for an XCLIENT/XFORWARD value."""
    return Reply(501, f"Bad {name} syntax: {printable(value)}", "5.5.4")


def bdat_discarded(nbytes: int) -> Reply:
    """Return the reply to a BDAT chunk read and dropped after an earlier BDAT error."""
    return Reply(551, f"Discarded {nbytes} bytes after earlier error", "5.0.0")


def etrn_unavailable(domain: str) -> Reply:
    """Return ``459 <domain>: service unavailable`` (no fast-flush service for it)."""
    return Reply(459, f"<{printable(domain)}>: service unavailable")


def timeout(hostname: str) -> Reply:
    """Return ``421 4.4.2 myhostname Error: timeout exceeded`` (then disconnect)."""
    return Reply(421, f"{hostname} Error: timeout exceeded", "4.4.2")


def too_many_errors(hostname: str) -> Reply:
    """Return ``421 4.7.0 myhostname Error: too many errors`` (then disconnect)."""
    return Reply(421, f"{hostname} Error: too many errors", "4.7.0")


def shutting_down(hostname: str) -> Reply:
    """Return ``421 4.3.2 myhostname Service shutting down`` (server stops)."""
    return Reply(421, f"{hostname} Service shutting down, closing transmission channel", "4.3.2")


def bare_lf(code: int, hostname: str) -> Reply:
    """Return the smtpd_forbid_bare_newline=reject reply (code from its _reject_code)."""
    return Reply(code, f"{hostname} Error: bare <LF> received", f"{str(code)[0]}.5.2")


def relay_denied(address: str, code: int = 554) -> Reply:
    """Return ``554 5.7.1 <addr>: Relay access denied`` (454 4.7.1 for the defer form)."""
    return Reply(code, f"<{printable(address)}>: Relay access denied", f"{str(code)[0]}.7.1")


def rejected(code: int, enhanced: str, text: str) -> Reply:
    """Return a policy reply from its parts (text made printable)."""
    return Reply(code, printable(text), enhanced)
