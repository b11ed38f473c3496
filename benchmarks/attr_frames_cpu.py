#!/usr/bin/env python3
"""Instructions of cleanup's frame steps alone: decoding its OPEN or END frame, encoding
a message's text as records.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=F1000 \\
        .venv/bin/python benchmarks/attr_frames_cpu.py open|end|text 1000
    (the same with 3000 into F3000; per step: (Ir(F3000) - Ir(F1000)) / 2000)

Why: ``cleanup_loop.py`` counts a whole message; this counts one kernel call as
cleanup makes it (the frames and the text are ``cleanup_loop.py``'s own: its stand-in
client's OPEN frame with 14 client attributes, its END frame, its 1,257-byte message),
so that a change to the decoder (``_attr_c.FrameDecoder``) or to ``encode_text`` can
be counted without the rest. The loop's own interpreted overhead (a call, an append)
is in the count, the same in every tree. Fails with a usage error on other arguments.
Not part of the test suite.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cleanup_loop as CL  # noqa: E402  (the frames and text of its stand-in client)

from fastpost.mail import attr, content  # noqa: E402


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("open", "end", "text"):
        raise SystemExit("usage: attr_frames_cpu.py open|end|text COUNT")
    what, count = sys.argv[1], int(sys.argv[2])

    class _Loop:
        def create_future(self):
            return None

    client = CL.Client(_Loop(), None, 1, 1)
    keep = []  # (the results live a while, as cleanup's do, then go)
    if what == "text":
        text = CL.CONTENT
        for _ in range(count):
            keep.append(content.encode_text(text, 2048, True))
            if len(keep) > 50:
                keep.clear()
        return
    frame = (dict(client.open_tpl, o=CL.P.OPEN, t=1, time=int(time.time() * 1e6))
             if what == "open" else dict(client.end_tpl, t=1))
    data = attr.encode(frame)
    decoder = attr.FrameDecoder(1 << 24, 8)
    for _ in range(count):
        decoder.feed(data)
        keep.append(decoder.next_frame())
        if len(keep) > 50:
            keep.clear()


if __name__ == "__main__":
    main()
