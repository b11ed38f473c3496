#!/usr/bin/env python3
"""Micro-benchmark: the committer's per-message record, compiled vs interpreted, and
against the MessageInfo path it replaced.

    .venv/bin/python benchmarks/kernels/bench_commitrec.py [--seconds S]

Workload: cleanup_loop.py's message shape (one recipient, a 1 KiB body, 20 envelope
attributes). Per message: CommitRec + message_frame (what Committer._enqueue does), and
insert_records of 10-message rounds into an LMDB write transaction that is aborted
(what the index thread does, without the sync); the old path builds MessageInfo and
RcptInfo, joins the frame twice and runs Index.insert_many. The compiled side uses the
frame kernel _qframe_c, the interpreted one its twin _qframe_py. Prints messages per
second of each (higher is better) and the speed-ups.
"""

import argparse
import shutil
import sys
import tempfile
import time
import types
import zlib

from fastpost.mail.queue import _commitrec_c as C
from fastpost.mail.queue import _commitrec_py as P
from fastpost.mail.queue import _qframe_c, _qframe_py
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.message import QueueFileBuilder
from fastpost.mail.queue.segment import KIND_MESSAGE, frame_header
from _timing import rate  # noqa: E402  (this directory is sys.path[0])

ROUND = 10


def builder(n):
    q = QueueFileBuilder(2048)
    q.time(time.time())
    q.set_sender("src@example.org")
    q.add_attrs([(f"attr{i}", f"value number {i}") for i in range(20)])
    q.add_recipient("dst@example.net", "dst@example.net")
    q.write(b"Subject: test\r\n\r\n" + b"La de da de da 1.\r\n" * 50)
    q.finish()
    return types.SimpleNamespace(records=q, queue_id=f"4AB{n:05X}")


def old_enqueue(b):
    qfb = b.records
    info = ix.MessageInfo(
        b.queue_id, ix.INCOMING, 0, 0, 0, 0, qfb.arrival or time.time(), 0.0,
        qfb.xtra_offset - qfb.data_offset, qfb.sender or "",
        [ix.RcptInfo(r.offset, r.address, ix.RCPT_DONE if r.done else ix.RCPT_PENDING)
         for r in qfb.recipients])
    chunks = list(qfb.chunks)
    chunks[0] = qfb.size_record()
    payload = b"".join(chunks)
    frame = frame_header(KIND_MESSAGE, ix.INCOMING, b.queue_id.encode("ascii"), len(payload),
                         zlib.crc32(payload)) + payload
    info.segid, info.offset, info.length = 1, 4096, len(frame)
    return info


def new_enqueue(impl, b):
    rec = impl.CommitRec(b, ix.INCOMING, None, None)
    rec.frame = (_qframe_c if impl is C else _qframe_py).message_frame(ix.INCOMING, rec.key, list(b.records.chunks), b.records.size_record())
    rec.segid, rec.offset, rec.length = 1, 4096, len(rec.frame)
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    builders = [builder(n) for n in range(ROUND)]
    d = tempfile.mkdtemp(prefix="fp-bench-commitrec-", dir="/var/tmp")
    index = ix.Index(d, map_size=256 << 20)
    try:
        def insert_old():
            infos = [old_enqueue(b) for b in builders]
            with index.env.begin(write=True) as txn:
                index.insert_many(txn, infos)
                txn.abort()

        def insert_new(impl):
            recs = [new_enqueue(impl, b) for b in builders]
            with index.env.begin(write=True) as txn:
                impl.insert_records(txn, recs, index)
                txn.abort()

        b0 = builders[0]
        rows = [
            ("enqueue: MessageInfo path", rate(lambda: old_enqueue(b0), args.seconds)),
            ("enqueue: CommitRec interpreted", rate(lambda: new_enqueue(P, b0), args.seconds)),
            ("enqueue: CommitRec compiled", rate(lambda: new_enqueue(C, b0), args.seconds)),
            ("enqueue+index: MessageInfo path", ROUND * rate(insert_old, args.seconds, batch=1)),
            ("enqueue+index: interpreted", ROUND * rate(lambda: insert_new(P), args.seconds, batch=1)),
            ("enqueue+index: compiled", ROUND * rate(lambda: insert_new(C), args.seconds, batch=1)),
        ]
        for name, r in rows:
            print(f"{name:34s} {r:12,.0f} msgs/s")
        print(f"speed-up enqueue, compiled vs MessageInfo path: {rows[2][1] / rows[0][1]:.2f}x; "
              f"vs interpreted: {rows[2][1] / rows[1][1]:.2f}x")
        print(f"speed-up enqueue+index, compiled vs MessageInfo path: {rows[5][1] / rows[3][1]:.2f}x; "
              f"vs interpreted: {rows[5][1] / rows[4][1]:.2f}x")
    finally:
        index.close()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
