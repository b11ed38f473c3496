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

from dataclasses import dataclass

from fastpost._accel import select

__all__ = ["ClientInfo", "TlsInfo", "Envelope", "Recipient", "PolicyRequest"]

# (the two defaults ClientInfo's fields use are defined with it, in _info_py)
from fastpost.daemons.smtpd._info_py import NAME_OK, UNKNOWN  # noqa: E402

#: Outcomes of the client name lookups (Postfix's SMTPD_PEER_CODE_*): the name is
#: verified, the lookup failed temporarily, it failed for good, or the PTR name does
#: not resolve back to the address (name "unknown", reverse_name still set).
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


# ClientInfo, Recipient and Envelope: see _info_py (one source of both builds).
_impl = select("fastpost.daemons.smtpd._info_c", "fastpost.daemons.smtpd._info_py")
ClientInfo = _impl.ClientInfo
Recipient = _impl.Recipient
Envelope = _impl.Envelope


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
