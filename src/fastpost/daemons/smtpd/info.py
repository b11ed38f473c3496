"""What smtpd knows about a client and a mail transaction, as passed to the seams.

Postfix counterpart: the SMTPD_STATE fields of src/smtpd/smtpd.h that
smtpd_check.c and the policy protocol (SMTPD_POLICY_README) read, and the
attributes smtpd sends to cleanup (client_name, client_address, helo_name, ...).

ClientInfo is one per connection (replaced by XCLIENT, completed by HELO, TLS and
AUTH); Envelope is one per mail transaction. The Policy and MessageSink seams get
read-only views of both; they must not keep references past the call that got them
(the session reuses nothing, but XCLIENT replaces the ClientInfo).

Diagnostics: none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ClientInfo", "TlsInfo", "Envelope", "Recipient", "PolicyRequest"]

UNKNOWN = "unknown"

#: Outcomes of the client name lookups (Postfix's SMTPD_PEER_CODE_*): the name is
#: verified, the lookup failed temporarily, it failed for good, or the PTR name does
#: not resolve back to the address (name "unknown", reverse_name still set).
NAME_OK = "ok"
NAME_TEMP = "temp"
NAME_PERM = "perm"
NAME_FORGED = "forged"


@dataclass(slots=True)
class TlsInfo:
    """The TLS session of a connection (after STARTTLS or in wrapper mode)."""

    protocol: str  # "TLSv1.3"
    cipher: str  # "TLS_AES_256_GCM_SHA384"
    bits: int  # secret bits of the cipher (also the "algorithm bits" Postfix shows)
    peer_cert: bool = False  # the client presented a certificate
    #: The client certificate passed verification against smtpd_tls_CAfile/CApath.
    peer_verified: bool = False
    #: Colon-separated upper-case hex digests (smtpd_tls_fingerprint_digest) of the
    #: certificate and of its public key, "" without a certificate.
    peer_fingerprint: str = ""
    peer_pubkey_fingerprint: str = ""
    peer_subject: str = ""  # subject CommonName
    peer_issuer: str = ""  # issuer CommonName


@dataclass(slots=True)
class ClientInfo:
    """One SMTP client as smtpd identifies it."""

    name: str = UNKNOWN  # verified (forward-confirmed) host name, or "unknown"
    addr: str = ""  # IP address as text, "" for a UNIX-domain peer
    port: str = UNKNOWN  # TCP port as text
    reverse_name: str = UNKNOWN  # the PTR name, even when it does not forward-confirm
    name_status: str = NAME_OK  # NAME_*: how the name lookup ended ("unknown" -> not OK)
    reverse_name_status: str = NAME_OK  # NAME_*: how the PTR lookup ended
    server_addr: str = ""  # our address of this connection
    peer_addr: str = ""  # the socket's peer address (XCLIENT does not change it)
    server_port: str = ""
    helo: str | None = None  # the last HELO/EHLO argument accepted
    protocol: str = "SMTP"  # SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP...
    tls: TlsInfo | None = None
    sasl_method: str | None = None
    sasl_username: str | None = None
    #: XFORWARD attributes (logged and passed to cleanup, never used for access control)
    forwarded: dict[str, str] = field(default_factory=dict)
    #: The client sent a command before our reply to the previous one when it may not
    #: pipeline (reject_unauth_pipelining); set by the session, sticky.
    improper_pipelining: bool = False
    #: Opaque per-connection state of the Policy (it is replaced with the ClientInfo
    #: by XCLIENT, which starts a new session as far as policy is concerned).
    policy_state: object = None

    @property
    def text(self) -> str:
        """Return ``name[addr]``, the form every Postfix log line uses."""
        return f"{self.name}[{self.addr}]"


@dataclass(slots=True)
class Recipient:
    """One accepted recipient and its DSN parameters."""

    address: str  # internal form
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None  # "type;address" (decoded)


@dataclass(slots=True)
class Envelope:
    """One mail transaction: MAIL FROM and its parameters, recipients so far."""

    sender: str  # internal form, "" for the null sender
    size: int | None = None  # SIZE= from MAIL
    body: str | None = None  # BODY=
    smtputf8: bool = False
    ret: str | None = None  # DSN RET=
    envid: str | None = None  # DSN ENVID= (decoded)
    auth: str | None = None  # AUTH= (decoded), only when SASL is on
    recipients: list[Recipient] = field(default_factory=list)
    queue_id: str | None = None  # set when the sink opened the transaction
    # What the access policy asked for this message (access(5) actions); the sink
    # reads them at finish(). PREPEND headers are written by smtpd itself.
    hold: str | None = None  # HOLD: put the message on hold; the reason logged
    discard: str | None = None  # DISCARD: accept and drop it; the reason logged
    filter: str | None = None  # FILTER transport:destination (content_filter override)
    redirect: str | None = None  # REDIRECT address: replaces every recipient
    bcc: list[str] = field(default_factory=list)  # BCC addresses to add
    prepend: list[str] = field(default_factory=list)  # PREPEND header lines, in order


@dataclass(slots=True)
class PolicyRequest:
    """One question to the Policy seam: may the client do ``stage`` now?

    ``stage`` is Postfix's protocol_state: CONNECT, EHLO (or HELO), MAIL, RCPT, VRFY,
    DATA, BDAT (before the first chunk), END-OF-MESSAGE, ETRN. ``recipient`` is set
    for RCPT and VRFY, ``etrn_domain`` for ETRN, ``helo`` at HELO/EHLO, ``size`` at
    END-OF-MESSAGE is the real size (at MAIL the SIZE= estimate).
    """

    stage: str
    client: ClientInfo
    envelope: Envelope | None = None
    recipient: str | None = None
    etrn_domain: str | None = None
    size: int | None = None
    helo: str | None = None  # at HELO/EHLO: the name being checked
