# cython: language_level=3, annotation_typing=False
"""The Received: header smtpd puts at the top of every message it accepts.

Postfix counterpart: the header written at the start of DATA in
src/smtpd/smtpd.c (data_cmd / common_pre_message_handling), as Postfix 3.7.11 writes
it (checked with postcat on this machine):

    Received: from HELO (NAME [ADDR])
    <TAB>(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))
    <TAB>(No client certificate requested)
    <TAB>by MYHOSTNAME (MAIL_NAME) with PROTOCOL id QUEUEID
    <TAB>for <RCPT>; Sat, 21 Nov 2026 06:56:19 +0000 (UTC)

* without HELO/EHLO, the client name stands for the HELO name;
* ADDR of an IPv6 client is written ``IPv6:addr`` (RFC 5321 address literal);
* the two TLS lines only with smtpd_tls_received_header = yes and a TLS session
  (fastpost cannot show Postfix's key-exchange/signature details: Python's ssl
  module does not expose them);
* ``for <rcpt>`` (quoted external form) only with exactly one recipient, otherwise
  ``id QUEUEID;`` ends the line and the date goes on the next;
* PROTOCOL: SMTP, ESMTP, +S with TLS, +A after AUTH; UTF8SMTP... with SMTPUTF8.

One source, two modules (Cython's pure-Python mode, docs/conventions.md): this file
is the reference, imported as fastpost.daemons.smtpd._received_py; setup.py compiles
it, typed by ext/fastpost/daemons/smtpd/_received_c.pxd, into
fastpost.daemons.smtpd._received_c, which production runs (the selector is
fastpost.daemons.smtpd.received). It runs once per message in smtpd: compiled, the
header is built by C string joins instead of the interpreter's frames.

Parameters: myhostname, mail_name, smtpd_tls_received_header (passed in).
Diagnostics: none.
"""

from __future__ import annotations

import time

from fastpost.daemons.smtpd.info import ClientInfo
from fastpost.mail.address import external
from fastpost.util.log import printable

__all__ = ["received_header", "rfc2822_date", "protocol_name"]

_last_date = [-1, ""]  # (second, its text): one strftime per second, not per message
_strftime = time.strftime
_localtime = time.localtime
_time = time.time
_DATE_FORMAT = "%a, %d %b %Y %H:%M:%S %z (%Z)"


def rfc2822_date(when: float | None = None) -> str:
    """Return the date as Postfix writes it: ``Sat, 21 Nov 2026 06:56:19 +0000 (UTC)``."""
    second = int(_time() if when is None else when)
    last = _last_date
    if last[0] != second:
        last[1] = _strftime(_DATE_FORMAT, _localtime(second))
        last[0] = second
    return last[1]


def protocol_name(esmtp: bool, tls: bool, auth: bool, smtputf8: bool) -> str:
    """Return the ``with`` protocol: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP..."""
    if not esmtp:
        return "SMTP"
    name = "UTF8SMTP" if smtputf8 else "ESMTP"
    return name + ("S" if tls else "") + ("A" if auth else "")


def _dot_atom(local):
    """True when ``local`` is an RFC 5322 dot-atom (address._DOT_ATOM's language:
    ASCII atext runs joined by single dots), by a loop over the characters instead of
    the regex (compiled: a C loop; tests/unit/daemons/test_received.py compares)."""
    dot = True  # (no dot first, none twice in a row, none last)
    for ch in local:
        if ch == ".":
            if dot:
                return False
            dot = True
        elif ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-":
            dot = False
        else:
            return False
    return not dot


def _external(address):
    """address.external(address), without its call when the local part is a dot-atom
    (nothing to quote: the address itself; address.external's own shortcut, taken here
    so that the compiled build makes no interpreted call for the common address)."""
    local, at, domain = address.rpartition("@")
    if at and _dot_atom(local):
        return address
    return external(address)


def received_header(client: ClientInfo, hostname: str, mail_name: str, queue_id: str,
                    protocol: str, recipients: list[str], tls_header: bool = False,
                    auth_header: bool = False, when: float | None = None) -> bytes:
    """Return the Received: header (folded, CR LF line ends) as bytes.

    (The arguments may be given by position: the session does, which spares the
    compiled call a keyword dictionary.)
    """
    addr = client.addr
    if ":" in addr:
        addr = "IPv6:" + addr
    name = client.name
    helo = client.helo
    if not helo:
        helo = name
    head = f"Received: from {helo} ({name} [{addr}])\r\n"
    if tls_header and client.tls is not None:
        tls = client.tls
        head += (f"\t(using {tls.protocol} with cipher {tls.cipher} ({tls.bits}/{tls.bits} bits))"
                 "\r\n")
        head += ("\t(Client CA certificate not trusted)\r\n" if tls.peer_cert
                 else "\t(No client certificate requested)\r\n")
    if auth_header and client.sasl_username:
        # smtpd_sasl_authenticated_header (the login name is made printable).
        head += f"\t(Authenticated sender: {printable(client.sasl_username)})\r\n"
    date = rfc2822_date(when)
    if len(recipients) == 1:
        text = (f"{head}\tby {hostname} ({mail_name}) with {protocol} id {queue_id}\r\n"
                f"\tfor <{_external(recipients[0])}>; {date}\r\n")
    else:
        text = f"{head}\tby {hostname} ({mail_name}) with {protocol} id {queue_id};\r\n\t{date}\r\n"
    return text.encode("utf-8", "surrogateescape")
