"""smtpd as the master runs it: master.cf service, multi skeleton, privilege drop, the
cleanup service as the sink (into the queue store), STARTTLS with a certificate that
only root can read, and Postfix's log lines in maillog_file.
"""

import smtplib
import socket
import ssl

from fastpost.mail.queue import QueueStore
from helpers.instance import free_port


def test_smtpd_under_the_master(fastpost_instance, tmp_path):
    from fastpost.cli.tls import new_server_files

    port = free_port()
    inst = fastpost_instance(
        master_cf=f"127.0.0.1:{port} inet n - n - - smtpd\n"
                  "cleanup unix n - n - 0 cleanup\n"
                  "rewrite unix - - n - - trivial-rewrite\n"
                  "postlog unix-dgram n - n - 1 postlogd\n",
        main_cf={"mynetworks": "127.0.0.1/32", "smtpd_peername_lookup": "no"})
    key, cert = new_server_files(str(inst.etc), ["test.localdomain"], algorithm="ecdsa")
    inst.update_main_cf(smtpd_tls_cert_file=cert, smtpd_tls_key_file=key,
                        smtpd_tls_security_level="may")
    inst.start()
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as s:
        s.ehlo()
        assert s.has_extn("starttls") and s.has_extn("pipelining")
        s.starttls(context=ctx)
        s.ehlo()
        assert s.sendmail("a@example.org", ["b@example.net"],
                          b"Subject: through the master\r\n\r\nhello\r\n") == {}
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0)) as s:
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("victim@elsewhere.example")[0] == 454  # no open relay
    # A burst: smtpd watches the listening socket through several handles
    # (accept_handles); every connection of a burst is accepted and greeted.
    burst = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(24)]
    try:
        for conn in burst:
            assert conn.recv(512).startswith(b"220 ")
    finally:
        for conn in burst:
            conn.close()
    inst.wait_log(r"disconnect from unknown\[127\.0\.0\.2\]")
    log = inst.log_text()
    assert "fptest/smtpd[" in log
    assert "connect from unknown[127.0.0.1]" in log
    assert "Relay access denied; from=<a@example.org> to=<victim@elsewhere.example>" in log
    queued = [line for line in log.splitlines() if ": client=unknown[127.0.0.1]" in line]
    assert len(queued) == 1
    queue_id = queued[0].split(": client=")[0].rsplit(" ", 1)[1]
    inst.stop()
    store = QueueStore.open(str(inst.queue), readonly=True)
    try:
        info = store.get(queue_id)
        queue_file = store.read(queue_id)
    finally:
        store.close()
    assert info.sender == "a@example.org"
    assert [r.address for r in info.recipients] == ["b@example.net"]
    # A Postfix queue file: records with the Received: header and the message text.
    assert b"Subject: through the master" in queue_file
    assert b"log_client_address=127.0.0.1" in queue_file


def one_smtpd(fastpost_instance, options: str = ""):
    """A started instance with one smtpd worker (maxproc 1) on a free port, cleanup and
    trivial-rewrite; returns (instance, port)."""
    port = free_port()
    inst = fastpost_instance(
        master_cf=f"127.0.0.1:{port} inet n - n - 1 smtpd {options}\n"
                  "cleanup unix n - n - 0 cleanup\n"
                  "rewrite unix - - n - - trivial-rewrite\n",
        main_cf={"smtpd_peername_lookup": "no"})
    inst.start()
    return inst, port


def test_smtpd_counts_its_clients_for_the_skeleton(fastpost_instance):
    # smtpd's sessions count themselves (multi skeleton, self_counting): at
    # fastpost_multi_client_limit the only worker (maxproc 1) stops accepting, and
    # when a session ends it accepts again.
    inst, port = one_smtpd(fastpost_instance, "-o fastpost_multi_client_limit=2")
    first = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
    third = None
    try:
        for conn in first:
            assert conn.recv(512).startswith(b"220 ")
        inst.wait_log(r"connect from unknown\[127\.0\.0\.1\]", count=2)
        third = socket.create_connection(("127.0.0.1", port), timeout=30)
        third.settimeout(0.5)
        try:
            early = third.recv(512)
        except TimeoutError:
            early = b""
        assert early == b""  # at the limit: queued in the listen backlog, not greeted
        first[0].sendall(b"QUIT\r\n")
        assert first[0].recv(512).startswith(b"221 ")
        third.settimeout(30)
        assert third.recv(512).startswith(b"220 ")  # one gone: accepting again
    finally:
        for conn in first + [third]:
            if conn is not None:
                conn.close()
    inst.wait_log(r"disconnect from unknown\[127\.0\.0\.1\]", count=3)


def test_smtpd_loop_thread_batch_while_busy(fastpost_instance, monkeypatch):
    # FASTPOST_SCHED_ADAPT=3:1:0 (util/threadprio.py BusySwitch): the worker's loop
    # thread goes to SCHED_BATCH at the third client and back to SCHED_OTHER at one
    # (no hold time); the policy is read back from the kernel.
    import os
    import re

    monkeypatch.setenv("FASTPOST_SCHED_ADAPT", "3:1:0")
    monkeypatch.delenv("FASTPOST_SCHED", raising=False)
    inst, port = one_smtpd(fastpost_instance)
    conns = []
    try:
        for _ in range(2):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=30))
            assert conns[-1].recv(512).startswith(b"220 ")
        pid = int(re.search(r"/smtpd\[(\d+)\]", inst.log_text()).group(1))
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER  # 2 clients: below HIGH
        conns.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        assert conns[-1].recv(512).startswith(b"220 ")
        inst.wait_log(r"thread \d+: SCHED_BATCH at 3 clients \(change 1\)")
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH
        for conn in conns[:2]:
            conn.sendall(b"QUIT\r\n")
            assert conn.recv(512).startswith(b"221 ")
        inst.wait_log(r"thread \d+: SCHED_OTHER at 1 clients \(change 2\)")
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        # the sessions themselves never notice: the last one still works
        conns[2].sendall(b"NOOP\r\n")
        assert conns[2].recv(512).startswith(b"250 ")
    finally:
        for conn in conns:
            conn.close()
