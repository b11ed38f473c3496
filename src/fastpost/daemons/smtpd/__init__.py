"""smtpd: the SMTP server daemon, as a multi-client session layer.

Postfix counterpart: src/smtpd/ (smtpd(8)).

    service.py    SmtpdService: per-process state, the protocol factory
    session.py    SmtpdProtocol: one asyncio BufferedProtocol per connection
    settings.py   every main.cf value smtpd reads, typed, read once
    policy.py     the Policy seam and DefaultPolicy (permit_mynetworks,
                  reject_unauth_destination)
    sink.py       the MessageSink seam (the cleanup client implements it)
    testsink.py   FileTestSink: messages as files, for tests and benchmarks only
    tls.py        the SSLContext from smtpd_tls_*
    received.py   the Received: header
    peer.py       asynchronous, cached, forward-confirmed reverse lookups
    netmatch.py   mynetworks-style host lists and domain lists
    sasl.py       the SASL seam of AUTH and a static-table authenticator
    info.py       ClientInfo / Envelope / PolicyRequest passed to the seams
    standalone.py a runner for development and benchmarks (one process, test sink)

The protocol itself (parsing, sequencing, pipelining rules, DATA/BDAT) is
fastpost.smtp.server; this package decides, logs, and moves bytes. See docs/smtp.md.

Diagnostics: none here; see each module.
"""
