"""The side-by-side benchmark harness and the reliability battery, as a library.

``benchmarks/run.py`` (``./dev bench``) and ``benchmarks/torture.py`` (``./dev torture``)
are thin command lines over this package; ``tests/battery/`` imports it for the short
battery and for the tests of the harness itself.

Modules:
    procs       CPU seconds by daemon and RSS of an MTA's process tree, from /proc
    tools       Postfix's smtp-source and smtp-sink, free ports, installing Postfix
    mta         a private C Postfix instance and a private fastpost instance, one API
    durability  the strace checker: every "250 ... queued as ID" after its fsync
    smtp        a small SMTP client and sink that track Message-IDs (the battery's)
    machine     machine description and the small-file fsync rate
    scenarios   the benchmark scenarios (accept, relay, gateway, idle, sendmail, context)
    report      table, JSON and PNG of a run
    battery     the reliability battery's scenarios

Postfix counterpart: none (Postfix ships smtp-source/smtp-sink and leaves the method to
its users). Nothing here is imported by fastpost itself.
"""
