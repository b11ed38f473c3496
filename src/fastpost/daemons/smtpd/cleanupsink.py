"""CleanupSink: smtpd hands every accepted message to the cleanup service.

Postfix counterpart: smtpd's conversation with cleanup(8) in src/smtpd/smtpd.c
(mail_open_stream at the first accepted recipient, the attributes and records it
sends, the X-Mailbox-Line and blank-line fix-ups of the first content line, and
mail_stream_finish waiting for cleanup's status), over fastpost's multiplexed cleanup
protocol (fastpost.mail.cleanup_proto, fastpost.mail.cleanup_clnt): every session of
an smtpd worker shares one persistent connection to cleanup.

    sink = CleanupSink.from_config(cfg)       # in post_init (the endpoint is relative)
    txn = sink.begin(client, envelope)        # at the first accepted RCPT
    txn.session = session                     # a direct transaction (sink.py): cleanup's
                                              # answers call session._sink_opened(txn)
    txn.add_recipient(rcpt); txn.write(data)  # and, after
    txn.finish()                              # this, session._sink_answered(txn, id, exc)

``250 ... queued as ID`` follows from _sink_answered only after cleanup answered, and
cleanup answers only after the fdatasync that covers the message. The per-message
code (begin, the transaction) is compiled: fastpost.daemons.smtpd._cleanuptxn_py.

What smtpd decides and cleanup records: the client attributes (log_* from XFORWARD
when a content filter sent them), rewrite_context (``local`` when the client matches
local_header_rewrite_clients: permit_inet_interfaces, permit_mynetworks,
permit_sasl_authenticated, permit_tls_clientcerts, permit_tls_all_clientcerts,
check_address_map type:table or a bare type:table), content_filter, the
receive_override_options flags, DSN ENVID/RET/NOTIFY/ORCPT, BODY= as the encoding, and
the access policy's HOLD / DISCARD / FILTER / REDIRECT / BCC (Envelope fields, when
the policy sets them). The first line the client sends is fixed up as Postfix's smtpd
does: a ``From `` line (after any ``>``) becomes ``X-Mailbox-Line: From ...``, and a
line starting with white space gets an empty line before it (so that it cannot
continue the Received: header).

Parameters: cleanup_service_name, ipc_timeout, ipc_idle, ipc_ttl, content_filter,
receive_override_options, local_header_rewrite_clients, mynetworks, inet_interfaces,
proxy_interfaces, parent_domain_matches_subdomains.
Diagnostics: SinkError with cleanup's reply (content rejected, too many hops, message
too big, full disk, ...) or ``451 4.3.0 Error: queue file write error`` (logged as a
warning) when cleanup cannot be reached.
"""

from __future__ import annotations

import ipaddress

from fastpost._accel import select
from fastpost.daemons.smtpd.info import ClientInfo
from fastpost.daemons.smtpd.sink import MessageSink
from fastpost.mail import cleanup_proto as P
from fastpost.mail.cleanup_clnt import CleanupClient
from fastpost.util import log

#: The per-message path (the transaction, begin, reply_of): one source,
#: _cleanuptxn_py.py, compiled as _cleanuptxn_c (docs/conventions.md).
_impl = select("fastpost.daemons.smtpd._cleanuptxn_c", "fastpost.daemons.smtpd._cleanuptxn_py")
CleanupTransaction = _impl.CleanupTransaction
reply_of = _impl.reply_of

__all__ = ["CleanupSink", "LocalClients", "reply_of"]


class LocalClients:
    """local_header_rewrite_clients: who gets rewrite_context=local (module docstring)."""

    def __init__(self, cfg):
        from fastpost.daemons.smtpd.netmatch import HostList, parent_matching
        from fastpost.mail import maps

        self.inet_interfaces = False
        self.mynetworks = None
        self.sasl = False
        self.tls_certs = False
        self.tls_all_certs = False
        self.tables: list = []
        words = cfg.get_list("local_header_rewrite_clients")
        i = 0
        while i < len(words):
            w = words[i]
            lw = w.lower()
            if lw == "permit_inet_interfaces":
                self.inet_interfaces = True
            elif lw == "permit_mynetworks":
                self.mynetworks = HostList(
                    cfg.get_list("mynetworks"),
                    parent=parent_matching("mynetworks", cfg.get("parent_domain_matches_subdomains")),
                    cfg=cfg)
            elif lw == "permit_sasl_authenticated":
                self.sasl = True
            elif lw == "permit_tls_clientcerts":
                self.tls_certs = True
            elif lw == "permit_tls_all_clientcerts":
                self.tls_all_certs = True
            elif lw == "check_address_map" and i + 1 < len(words):
                i += 1
                self.tables.append(maps.open_map(words[i], cfg))
            elif ":" in w:
                self.tables.append(maps.open_map(w, cfg))
            else:
                log.warn("local_header_rewrite_clients: unknown element '%s' ignored", w)
            i += 1
        self.interfaces: set[str] = set()
        self.any_interface = False
        for word in cfg.get_list("inet_interfaces") + cfg.get_list("proxy_interfaces"):
            lw = word.lower()
            if lw in ("all", "loopback-only", "localhost"):
                self.any_interface = lw == "all"
                self.interfaces.update({"127.0.0.1", "::1"})
                continue
            try:
                self.interfaces.add(str(ipaddress.ip_address(word.strip("[]"))))
            except ValueError:
                pass
        self._cache: dict = {}

    def is_local(self, client: ClientInfo) -> bool:
        """True when the client's message headers are rewritten as local mail."""
        return _impl.is_local(self, client)


class CleanupSink(MessageSink):
    """Messages to the cleanup service (module docstring)."""

    def __init__(self, client: CleanupClient, *, flags: int, content_filter: str = "",
                 local_clients: LocalClients | None = None):
        self.client = client
        self.flags = flags
        self.content_filter = content_filter
        self.local_clients = local_clients

    @classmethod
    def from_config(cls, cfg, queue_directory: str | None = None) -> "CleanupSink":
        from fastpost.mail import ipc

        qdir = queue_directory if queue_directory is not None else cfg.get("queue_directory")
        path = ipc.endpoint(qdir, cfg.get("cleanup_service_name"), ipc.PUBLIC)
        client = CleanupClient(path, timeout=float(cfg.get_time("ipc_timeout")),
                               idle=float(cfg.get_time("ipc_idle")),
                               ttl=float(cfg.get_time("ipc_ttl")))
        for word in P.unknown_override_options(cfg):
            log.warn("receive_override_options: unknown option '%s' ignored", word)
        return cls(client, flags=P.external_flags(cfg), content_filter=cfg.get("content_filter"),
                   local_clients=LocalClients(cfg))

    #: begin() returns direct transactions (sink.py): they call the session back
    direct = True

    #: begin(client, envelope): the OPEN frame and the message's CleanupTransaction,
    #: compiled (_cleanuptxn_py.begin; a method of this class as any function is)
    begin = _impl.begin

    async def close(self) -> None:
        self.client.close()
