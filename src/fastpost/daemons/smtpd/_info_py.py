# cython: language_level=3, annotation_typing=False
"""ClientInfo, Envelope and Recipient: one source, run as Python and compiled.

What they are, and who reads them, is fastpost.daemons.smtpd.info's docstring (the
selector every other module imports them from). This file is the reference, imported
as fastpost.daemons.smtpd._info_py; setup.py compiles it, typed by
ext/fastpost/daemons/smtpd/_info_c.pxd, into fastpost.daemons.smtpd._info_c, which
production runs (Cython's pure-Python mode, docs/conventions.md). Compiled, each class
is a cdef class that is still a dataclass (Cython makes the same __init__, __repr__,
__eq__ and dataclasses.fields()/replace() work): the compiled session core, the
cleanup sink and the Received: header read and write its fields as C members instead
of through the slots' descriptors, and make one without an interpreted __init__.
Every field is a Python object in both builds (no conversion: what is stored is what
is read back). Cython's dataclass takes no ``slots=True``: the interpreted build (the
reference, FASTPOST_PURE_PYTHON=1) has an instance dictionary, the compiled one the
fixed fields (no attribute outside them, as the slotted classes were).
tests/unit/daemons/test_info_builds.py holds the two to each other.

Diagnostics: none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ClientInfo", "Envelope", "Recipient", "UNKNOWN", "NAME_OK"]

UNKNOWN = "unknown"
NAME_OK = "ok"

#: The default of a field whose default is a new empty list or dict (the dataclass's
#: default_factory): __init__ makes one when it is given no value. (The __init__
#: methods are written out because Cython's generated one imports the dataclasses
#: module for every default_factory of every call; test_info_builds.py holds their
#: parameters to the fields.)
_FRESH = object()


@dataclass(init=False)
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

    def __init__(self, name=UNKNOWN, addr="", port=UNKNOWN, reverse_name=UNKNOWN,
                 name_status=NAME_OK, reverse_name_status=NAME_OK, server_addr="",
                 peer_addr="", server_port="", helo=None, protocol="SMTP", tls=None,
                 sasl_method=None, sasl_username=None, forwarded=_FRESH,
                 improper_pipelining=False, policy_state=None):
        self.name = name
        self.addr = addr
        self.port = port
        self.reverse_name = reverse_name
        self.name_status = name_status
        self.reverse_name_status = reverse_name_status
        self.server_addr = server_addr
        self.peer_addr = peer_addr
        self.server_port = server_port
        self.helo = helo
        self.protocol = protocol
        self.tls = tls
        self.sasl_method = sasl_method
        self.sasl_username = sasl_username
        self.forwarded = {} if forwarded is _FRESH else forwarded
        self.improper_pipelining = improper_pipelining
        self.policy_state = policy_state

    @property
    def text(self) -> str:
        """Return ``name[addr]``, the form every Postfix log line uses."""
        return f"{self.name}[{self.addr}]"


@dataclass
class Recipient:
    """One accepted recipient and its DSN parameters."""

    address: str  # internal form
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None  # "type;address" (decoded)


@dataclass(init=False)
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

    def __init__(self, sender, size=None, body=None, smtputf8=False, ret=None, envid=None,
                 auth=None, recipients=_FRESH, queue_id=None, hold=None, discard=None,
                 filter=None, redirect=None, bcc=_FRESH, prepend=_FRESH):  # noqa: A002
        self.sender = sender
        self.size = size
        self.body = body
        self.smtputf8 = smtputf8
        self.ret = ret
        self.envid = envid
        self.auth = auth
        self.recipients = [] if recipients is _FRESH else recipients
        self.queue_id = queue_id
        self.hold = hold
        self.discard = discard
        self.filter = filter
        self.redirect = redirect
        self.bcc = [] if bcc is _FRESH else bcc
        self.prepend = [] if prepend is _FRESH else prepend
