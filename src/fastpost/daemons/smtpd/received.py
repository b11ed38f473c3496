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

Parameters: myhostname, mail_name, smtpd_tls_received_header (passed in).
Diagnostics: none.
"""

from __future__ import annotations

import time

from fastpost.daemons.smtpd.info import ClientInfo
from fastpost.mail.address import external


_last_date = [-1, ""]  # (second, its text): one strftime per second, not per message


def rfc2822_date(when: float | None = None) -> str:
    """Return the date as Postfix writes it: ``Sat, 21 Nov 2026 06:56:19 +0000 (UTC)``."""
    second = int(time.time() if when is None else when)
    last = _last_date
    if last[0] != second:
        last[1] = time.strftime("%a, %d %b %Y %H:%M:%S %z (%Z)", time.localtime(second))
        last[0] = second
    return last[1]


def protocol_name(esmtp: bool, tls: bool, auth: bool, smtputf8: bool) -> str:
    """Return the ``with`` protocol: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP..."""
    if not esmtp:
        return "SMTP"
    name = "UTF8SMTP" if smtputf8 else "ESMTP"
    return name + ("S" if tls else "") + ("A" if auth else "")


def received_header(client: ClientInfo, *, hostname: str, mail_name: str, queue_id: str,
                    protocol: str, recipients: list[str], tls_header: bool = False,
                    auth_header: bool = False, when: float | None = None) -> bytes:
    """Return the Received: header (folded, CR LF line ends) as bytes."""
    addr = client.addr
    if ":" in addr:
        addr = "IPv6:" + addr
    helo = client.helo if client.helo else client.name
    lines = [f"Received: from {helo} ({client.name} [{addr}])"]
    if tls_header and client.tls is not None:
        tls = client.tls
        lines.append(f"\t(using {tls.protocol} with cipher {tls.cipher} ({tls.bits}/{tls.bits} bits))")
        lines.append("\t(Client CA certificate not trusted)" if tls.peer_cert
                     else "\t(No client certificate requested)")
    if auth_header and client.sasl_username:
        # smtpd_sasl_authenticated_header (the login name is made printable).
        from fastpost.util.log import printable

        lines.append(f"\t(Authenticated sender: {printable(client.sasl_username)})")
    date = rfc2822_date(when)
    by = f"\tby {hostname} ({mail_name}) with {protocol} id {queue_id}"
    if len(recipients) == 1:
        lines.append(by)
        lines.append(f"\tfor <{external(recipients[0])}>; {date}")
    else:
        lines.append(by + ";")
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")
