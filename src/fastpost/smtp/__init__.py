"""The sans-IO SMTP protocol core: bytes in, events out; replies in, bytes out.

Postfix counterpart: the protocol halves of src/smtpd/smtpd.c (server) and
src/smtp/smtp_proto.c (client), without sockets, policy or logging.

    server.ServerConnection   what smtpd runs per client connection
    client.ClientConnection   what the smtp/lmtp delivery agents will run
    events                    the events both produce
    replies                   every reply smtpd sends (tests assert against these)
    grammar                   paths, ESMTP parameters, xtext, XCLIENT/XFORWARD
    state                     every state transition, as tables
    lines, data               the Cython kernels (command lines; DATA/BDAT content)
    errors                    RemoteProtocolError (the peer's fault) and
                              LocalProtocolError (ours)

Nothing here imports asyncio or touches a socket; the same objects run in smtpd,
the tests, the fuzzers and the benchmarks. See docs/smtp.md.

Diagnostics: none here; see each module.
"""
