"""Golden transcripts: client bytes in, exact server bytes (and log lines) out.

Each tests/proto/goldens/NAME.in is a client script played against a real smtpd
(SmtpdThread: the session layer and the protocol core on loopback); NAME.ref is the
exact transcript: what the client sent (C:), what the server answered (S:), the log
lines it wrote (L:), and with %messages the messages the test sink stored (M:).

Script syntax (.in):
    # comment            (the first comment line is the title)
    %main.cf LINE        a main.cf line for this server (repeatable)
    %client ADDR         connect from this loopback address (e.g. 127.0.0.2)
    %halfclose           shut the client's sending side after the last step
    %messages            append the stored messages to the transcript
    > EXPR               one step: a Python bytes expression, sent in one write

Regenerate after a deliberate change with:
    FASTPOST_UPDATE_GOLDENS=1 .venv/bin/python -m pytest tests/proto
and review the diff of the .ref files.
"""

import os
import pathlib

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread, parse_script, render, run_transcript

HERE = pathlib.Path(__file__).parent / "goldens"
SCRIPTS = sorted(HERE.glob("*.in"))
UPDATE = os.environ.get("FASTPOST_UPDATE_GOLDENS") == "1"

@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_transcript(script, tmp_path):
    main_cf, steps, opts = parse_script(script)
    with SmtpdThread(tmp_path, main_cf) as srv:
        result = run_transcript(srv, steps, source=opts["client"], half_close=opts["halfclose"])
        messages = srv.sink.messages() if opts["messages"] else []
    got = render(result, messages)
    ref = script.with_suffix(".ref")
    if UPDATE or not ref.exists():
        ref.write_text(got, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{ref.name} did not exist; written - review it and commit it")
    assert got == ref.read_text(encoding="utf-8")


def test_there_are_transcripts():
    assert len(SCRIPTS) >= 20
