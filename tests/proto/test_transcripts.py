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
import re

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread, run_transcript

HERE = pathlib.Path(__file__).parent / "goldens"
SCRIPTS = sorted(HERE.glob("*.in"))
UPDATE = os.environ.get("FASTPOST_UPDATE_GOLDENS") == "1"

_DATE = re.compile(rb"\w{3}, \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4} \([^)]*\)")


def escape(data: bytes) -> str:
    out = []
    for b in data:
        if b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def lines_of(data: bytes) -> list[bytes]:
    """Split after each LF, keeping it, for one transcript line per protocol line."""
    parts = data.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def parse_script(path: pathlib.Path):
    main_cf, steps, opts = [], [], {"client": None, "halfclose": False, "messages": False}
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("%main.cf "):
            main_cf.append(raw[len("%main.cf "):])
        elif raw.startswith("%client "):
            opts["client"] = raw.split(None, 1)[1].strip()
        elif raw.strip() == "%halfclose":
            opts["halfclose"] = True
        elif raw.strip() == "%messages":
            opts["messages"] = True
        elif raw.startswith("> "):
            value = eval(raw[2:], {"__builtins__": {}}, {})  # noqa: S307 - our own test data
            assert isinstance(value, bytes), f"{path.name}: step is not bytes: {raw}"
            steps.append(value)
        elif raw.strip() and not raw.startswith("#"):
            raise AssertionError(f"{path.name}: cannot parse line: {raw}")
    return "\n".join(main_cf), steps, opts


def render(result, messages) -> str:
    out = []
    for client, server, logs in result:
        for line in lines_of(client):
            out.append("C: " + escape(line))
        for line in lines_of(server):
            out.append("S: " + escape(line))
        for line in logs:
            out.append("L: " + line)
    for meta, content in messages:
        rcpts = ",".join(r["address"] for r in meta["recipients"])
        out.append(f"M: from=<{meta['sender']}> to=<{rcpts}> size={len(content)}")
        for line in lines_of(_DATE.sub(b"DATE", content)):
            out.append("M| " + escape(line))
    return "\n".join(out) + "\n"


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
