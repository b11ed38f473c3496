#!/usr/bin/env python3
"""A tiny "MTA" that acknowledges messages over TCP, right or wrong, for the strace checker.

    durable_writer.py MODE QUEUE_DIR [COUNT]

It listens on loopback, connects to itself, and for each of COUNT messages stores the
message in QUEUE_DIR and writes "250 2.0.0 Ok: queued as ID" on the TCP connection.
MODE says how (each is a real sequence of syscalls that strace sees):

    file        one file per message named by its ID: write, fsync, then the reply (right)
    segment     messages appended to one segment with writev, one fdatasync per batch of
                4, then the replies of the batch (right: group commit)
    dsync       one segment opened O_DSYNC, write, then the reply (right)
    rename      write to tmp/ID, fsync, rename into queue/ID, reply (right)
    reply-first write, reply, then fsync (wrong)
    no-sync     write and reply, never fsync (wrong)
    other-file  write the message, fsync another file, reply (wrong)
    early-sync  fsync, then one more write of the message, then reply (wrong)

Test helper for tests/battery/test_durability.py; not part of fastpost.
"""

import os
import socket
import sys


def main() -> int:
    mode, qdir = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    ids = [f"Q{n:04d}X{os.getpid():X}" for n in range(count)]

    def body(qid: str) -> bytes:
        return (f"Received: from client by test with ESMTP id {qid}\n".encode() + b"x" * 1000)

    def reply(qid: str) -> None:
        conn.sendall(f"250 2.0.0 Ok: queued as {qid}\r\n".encode())

    if mode in ("file", "reply-first", "no-sync", "other-file", "early-sync", "rename"):
        other = os.open(os.path.join(qdir, "other"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.makedirs(os.path.join(qdir, "tmp"), exist_ok=True)
        for qid in ids:
            name = os.path.join(qdir, "tmp" if mode == "rename" else "", qid)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            data = body(qid)
            if mode == "early-sync":
                os.write(fd, data[:500])
                os.fsync(fd)
                os.write(fd, data[500:])
            else:
                os.write(fd, data)
            if mode == "file":
                os.fsync(fd)
            elif mode == "rename":
                os.fsync(fd)
                os.rename(name, os.path.join(qdir, qid))
            elif mode == "other-file":
                os.fsync(other)
            reply(qid)
            if mode == "reply-first":
                os.fsync(fd)
            os.close(fd)
    elif mode == "segment":
        seg = os.open(os.path.join(qdir, "segment.0"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for start in range(0, count, 4):
            batch = ids[start:start + 4]
            os.writev(seg, [body(q) for q in batch])
            os.fdatasync(seg)
            for qid in batch:
                reply(qid)
    elif mode == "dsync":
        seg = os.open(os.path.join(qdir, "segment.0"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_DSYNC, 0o600)
        for qid in ids:
            os.write(seg, body(qid))
            reply(qid)
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 64
    conn.close()
    got = b""
    while True:
        chunk = cli.recv(65536)
        if not chunk:
            break
        got += chunk
    return 0 if got.count(b"250 ") == count else 1


if __name__ == "__main__":
    sys.exit(main())
