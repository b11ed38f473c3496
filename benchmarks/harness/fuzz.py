"""Fuzzing entry point: hypothesis on fastpost's parsers, and random input for the wire.

Postfix counterpart: none.

A *target* is a function of bytes and the exceptions it is allowed to raise (its defined
errors). Anything else that comes out (IndexError, RecursionError, a crash) is a finding:
the input is saved as ``benchmarks/fuzz-corpus/<target>/finding-<sha1>.bin`` and the
target's status is "fail". The seeds in ``benchmarks/fuzz-corpus/<target>/`` (kept in the
repository) are mutated by hypothesis next to fully random inputs.

Targets are found, not assumed: the built-in ones below wrap the parsers that exist now
(queue records, main.cf, master.cf, address forms). A module of fastpost that grows a
parser declares more with a module-level ``FUZZ_TARGETS = {name: (callable, (exc, ...))}``
in one of ``LATER_MODULES`` (the SMTP core, the header parser, the table parsers); until
the module exists its target is reported "unavailable".

Fails: never raises for a finding; returns {target: {"status", "examples", "finding"}}.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import random

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz-corpus")

#: modules that will declare FUZZ_TARGETS when they land
LATER_MODULES = {
    "smtp-core": "fastpost.smtp",
    "header": "fastpost.mail.header",
    "tables": "fastpost.mail.maps",
}


def _builtin() -> dict:
    targets = {}
    try:
        from fastpost.mail import record
        from fastpost.mail.rectype import CorruptRecord

        def records(data: bytes) -> None:
            record.split_records(data, 4096)
            dec = record.RecordDecoder(4096)
            for i in range(0, len(data), 7):
                dec.feed(data[i:i + 7])
                dec.records()
        targets["record"] = (records, (CorruptRecord,))
    except ImportError:
        pass
    try:
        from fastpost.mail import config

        def main_cf(data: bytes) -> None:
            config.parse_main_cf("fuzz/main.cf", data.decode("utf-8", "surrogateescape"))
        targets["main.cf"] = (main_cf, (config.ConfigError,))
    except ImportError:
        pass
    try:
        from fastpost.mail import mastercf
        from fastpost.mail.config import ConfigError

        def master_cf(data: bytes) -> None:
            mastercf.parse_master_cf("fuzz/master.cf", data.decode("utf-8", "surrogateescape"))
        targets["master.cf"] = (master_cf, (ConfigError,))
    except ImportError:
        pass
    try:
        from fastpost.mail import address

        def addresses(data: bytes) -> None:
            text = data.decode("utf-8", "surrogateescape")
            address.internal(text)
            address.external(text)
            address.valid_hostname(text)
            address.valid_hostaddr(text)
        targets["address"] = (addresses, (ValueError,))
    except ImportError:
        pass
    return targets


def targets() -> dict:
    """{name: (callable, exceptions) or None if not available yet}."""
    out = dict(_builtin())
    for name, module in LATER_MODULES.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            out[name] = None
            continue
        declared = getattr(mod, "FUZZ_TARGETS", None)
        if not declared:
            out[name] = None
        else:
            for sub, spec in declared.items():
                out[f"{name}:{sub}"] = spec
    return out


def seeds(name: str) -> list[bytes]:
    d = os.path.join(CORPUS, name.split(":")[0])
    out = []
    if os.path.isdir(d):
        for f in sorted(os.listdir(d)):
            with open(os.path.join(d, f), "rb") as fh:
                out.append(fh.read())
    return out or [b""]


def run_target(name: str, fn, allowed: tuple, examples: int) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    corpus = seeds(name)

    def mutate(seed: bytes, edits: list) -> bytes:
        buf = bytearray(seed)
        for pos, byte, op in edits:
            if op == 0 and buf:
                buf[pos % len(buf)] = byte
            elif op == 1:
                buf.insert(pos % (len(buf) + 1), byte)
            elif op == 2 and buf:
                del buf[pos % len(buf)]
            else:
                buf = buf[: pos % (len(buf) + 1)]
        return bytes(buf)

    edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255), st.integers(0, 3)), max_size=8)
    data = st.one_of(st.binary(max_size=4096),
                     st.builds(mutate, st.sampled_from(corpus), edits))
    finding: dict = {}

    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data)
    def prop(blob: bytes) -> None:
        try:
            fn(blob)
        except allowed:
            pass
        except Exception as exc:  # noqa: BLE001 - an undefined error is the finding
            if not finding:
                finding.update({"error": f"{type(exc).__name__}: {exc}"[:300], "input": blob})
            raise

    try:
        prop()
    except Exception:  # noqa: BLE001 - reported below
        pass
    if finding:
        blob = finding.pop("input")
        d = os.path.join(CORPUS, name.split(":")[0])
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"finding-{hashlib.sha1(blob).hexdigest()[:12]}.bin")
        with open(path, "wb") as fh:
            fh.write(blob)
        return {"status": "fail", "examples": examples, "finding": finding, "saved": path}
    return {"status": "pass", "examples": examples}


def run_targets(examples: int = 200, only: list[str] | None = None) -> dict:
    out = {}
    for name, spec in targets().items():
        if only and name not in only:
            continue
        if spec is None:
            out[name] = {"status": "unavailable", "examples": 0}
            continue
        out[name] = run_target(name, spec[0], spec[1], examples)
    return out


_COMMANDS = [b"EHLO", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT", b"RSET", b"NOOP", b"VRFY",
             b"EXPN", b"STARTTLS", b"AUTH", b"XCLIENT", b"XFORWARD", b"ETRN", b"HELP", b"QUIT"]


def wire_inputs(rng: random.Random, n: int) -> list[bytes]:
    """Random SMTP-ish chunks: known verbs with junk, binary, NULs, bare CR/LF, long lines."""
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            out.append(rng.choice(_COMMANDS) + bytes(rng.randrange(32, 127) for _ in range(rng.randrange(0, 80)))
                       + b"\r\n")
        elif kind == 1:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\r\n")
        elif kind == 2:
            out.append(rng.choice(_COMMANDS) + b"\0" + b"<a@b>\r\n")
        elif kind == 3:
            out.append(b"MAIL FROM:<" + b"a" * rng.randrange(100, 5000) + b"@x>\r\n")
        elif kind == 4:
            out.append(b"RCPT TO:<x@y>\rDATA\n.\r\n" * rng.randrange(1, 4))
        else:
            out.append(b"".join(rng.choice(_COMMANDS) + b" x\r\n" for _ in range(rng.randrange(2, 40))))
    return out
