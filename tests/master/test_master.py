"""The master with real workers: privileges, restarts, throttling, retirement, reload.

Every test runs a private instance (tests/helpers/instance.py) with the test daemons
of tests/testdaemons/, talks to the workers over real sockets and reads /proc and the
instance's mail log. Tests that need root (chroot, setuid) skip visibly otherwise.
"""

import os
import re
import signal
import socket
import time

import pytest

from conftest import need_program, need_root
from helpers.instance import alive, children_of, free_port, proc_ids, read_line, talk


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def session(inst, *, port=None, unix=None):
    """Open a session with a line-protocol test daemon; return (socket, worker pid)."""
    sock = inst.connect_inet(port) if port else inst.connect_unix(unix)
    greeting = read_line(sock).decode().split()
    assert greeting[0] == "ready", greeting
    return sock, int(greeting[2])


def test_chrooted_unprivileged_workers_and_root_only_master(fastpost_instance):
    need_root()
    port = free_port()
    inst = fastpost_instance(master_cf=(
        f"127.0.0.1:{port} inet n - y - - testdaemons.echo\n"
        "jail unix - - y - - testdaemons.single_echo\n"
        "privileged unix - n n - - testdaemons.single_echo\n"))
    master = inst.start()
    import pwd

    owner = pwd.getpwnam("postfix")
    s1, pid1 = session(inst, port=port)
    s2, pid2 = session(inst, unix="jail")
    s3, pid3 = session(inst, unix="privileged")
    for pid in (pid1, pid2):
        ids = proc_ids(pid)
        assert ids["uid"] == (owner.pw_uid,) * 3
        assert ids["gid"] == (owner.pw_gid,) * 3
        assert ids["groups"] == [owner.pw_gid]
        assert ids["root"] == str(inst.queue)
    # unpriv=n, chroot=n: what local delivery needs; the only other root process.
    ids = proc_ids(pid3)
    assert ids["uid"][1] == 0 and ids["root"] == "/"
    assert proc_ids(master)["uid"][1] == 0
    assert sorted(inst.workers()) == sorted([pid1, pid2, pid3])
    for s in (s1, s2, s3):
        assert talk(s, "QUIT") == "bye"


def test_killed_worker_is_replaced_and_logged(fastpost_instance):
    port = free_port()
    inst = fastpost_instance(master_cf=f"127.0.0.1:{port} inet n - n - - testdaemons.echo\n")
    inst.start()
    sock, pid = session(inst, port=port)
    assert talk(sock, "ping") == "echo: ping"
    os.kill(pid, signal.SIGKILL)
    assert sock.recv(10) == b""
    inst.wait_log(rf"warning: process testdaemons.echo pid {pid} killed by signal 9")
    sock2, pid2 = session(inst, port=port)
    assert pid2 != pid
    assert talk(sock2, "again") == "echo: again"
    assert "bad command startup" not in inst.log_text()  # it had served: not a start-up failure


def test_startup_failure_is_throttled_and_others_keep_working(fastpost_instance):
    port = free_port()
    inst = fastpost_instance(master_cf=(
        f"127.0.0.1:{port} inet n - n - - testdaemons.echo\n"
        "broken unix - - n - - testdaemons.dies\n"))
    inst.start()
    doomed = inst.connect_unix("broken")
    inst.wait_log(r"fatal: pre_init: RuntimeError: this daemon cannot start")
    text = inst.wait_log(r"warning: testdaemons.dies: bad command startup -- throttling")
    assert "warning: process testdaemons.dies pid" in text and "exit status 1" in text
    # While throttled the master forks nothing more for it, however many clients wait.
    more = [inst.connect_unix("broken") for _ in range(3)]
    sock, pid = session(inst, port=port)
    assert talk(sock, "still here") == "echo: still here"
    assert inst.log_text().count("exit status 1") == 1
    for s in more + [doomed]:
        s.close()


def test_worker_killed_during_startup_is_not_a_bad_startup(fastpost_instance):
    # SIGKILL from outside (the OOM killer, an operator, the kill -9 battery) while a
    # worker starts says nothing about the command: no throttling, the next client
    # gets a fresh worker at once (throttling refused clients for a minute).
    # a short stop timeout: the master starts one more slow worker for the connection
    # left in the listen queue, and only the timeout's SIGTERM ends it
    inst = fastpost_instance(master_cf="slow unix - - n - - testdaemons.dies slow\n",
                             main_cf={"fastpost_stop_timeout": "1s"})
    inst.start()
    first = inst.connect_unix("slow")
    text = inst.wait_log(r"\[(\d+)\]: starting slowly")
    pid = int(re.findall(r"\[(\d+)\]: starting slowly", text)[0])
    os.kill(pid, signal.SIGKILL)
    inst.wait_log(rf"warning: process testdaemons.dies pid {pid} killed by signal 9")
    second = inst.connect_unix("slow")
    inst.wait_log(r"\[(?!%d\])\d+\]: starting slowly" % pid)
    assert "bad command startup" not in inst.log_text()
    first.close()
    second.close()
    for other in children_of(inst.master_pid):
        os.kill(other, signal.SIGKILL)  # they would sleep through the graceful stop


def test_max_use_retires_a_worker(fastpost_instance):
    inst = fastpost_instance(
        master_cf="one unix - - n - 1 testdaemons.single_echo -o max_use=2\n")
    inst.start()
    pids = []
    for _ in range(3):
        sock, pid = session(inst, unix="one")
        pids.append(pid)
        assert talk(sock, "QUIT") == "bye"
        sock.close()
    assert pids[0] == pids[1] != pids[2]
    wait_for(lambda: not alive(pids[0]), what="the retired worker to exit")
    assert f"pid {pids[0]}" not in inst.log_text()  # a normal exit is not logged


def test_max_idle_retires_a_worker(fastpost_instance):
    inst = fastpost_instance(
        master_cf="idle unix - - n - - testdaemons.stream_echo -o max_idle=1s\n")
    inst.start()
    sock, pid = session(inst, unix="idle")
    assert talk(sock, "QUIT") == "bye"
    sock.close()
    wait_for(lambda: not alive(pid), what="the idle worker to exit")
    assert inst.workers() == []
    sock, pid2 = session(inst, unix="idle")  # the next client gets a new one
    assert pid2 != pid
    sock.close()


def test_spawns_on_demand_up_to_maxproc(fastpost_instance):
    inst = fastpost_instance(master_cf="pool unix - - n - 2 testdaemons.single_echo\n")
    inst.start()
    assert inst.workers() == []  # nothing runs before a client comes
    s1, p1 = session(inst, unix="pool")
    s2, p2 = session(inst, unix="pool")
    assert p1 != p2
    third = inst.connect_unix("pool")  # waits in the listen queue: both workers are busy
    inst.wait_log(r'service "pool" \(unix\) has reached its process limit 2')
    assert sorted(inst.workers()) == sorted([p1, p2])
    assert talk(s1, "QUIT") == "bye"
    s1.close()
    greeting = read_line(third).decode().split()  # served as soon as a worker is free
    assert greeting[:2] == ["ready", "pool"] and int(greeting[2]) == p1
    for s in (s2, third):
        assert talk(s, "QUIT") == "bye"


def test_multi_worker_serves_many_clients_then_the_limit_forks_another(fastpost_instance):
    inst = fastpost_instance(
        master_cf="many unix - - n - - testdaemons.echo -o fastpost_multi_client_limit=3\n")
    inst.start()
    socks = [session(inst, unix="many") for _ in range(3)]
    assert len({pid for _, pid in socks}) == 1  # one process, three sessions
    s4, p4 = session(inst, unix="many")  # the fourth exceeds the limit: a second worker
    assert p4 != socks[0][1]
    for s, _ in socks + [(s4, p4)]:
        assert talk(s, "x") == "echo: x"
        s.close()
    # Finished sessions are freed by reference counting (the worker runs without the
    # cycle collector): each worker ends up holding only the session that asks.
    s5, _ = session(inst, unix="many")
    wait_for(lambda: talk(s5, "LIVE") == "1", timeout=10, what="finished sessions to be freed")
    s5.close()


@pytest.mark.parametrize("daemon", ["testdaemons.echo", "testdaemons.single_echo"])
def test_reload_keeps_open_session_and_new_clients_get_new_config(fastpost_instance, daemon):
    port = free_port()
    inst = fastpost_instance(master_cf=f"127.0.0.1:{port} inet n - n - - {daemon}\n",
                             main_cf={"test_marker": "before"})
    inst.start()
    old, old_pid = session(inst, port=port)
    assert talk(old, "CONF test_marker") == "before"
    inst.update_main_cf(test_marker="after")
    inst.reload()
    new, new_pid = session(inst, port=port)
    assert new_pid != old_pid
    assert talk(new, "CONF test_marker") == "after"
    assert talk(new, "CONF process_id") == str(new_pid)  # read-only, per process
    assert talk(new, "CONF service_name") == f"127.0.0.1:{port}"
    # The session that was open across the reload still works, with its old settings.
    assert talk(old, "CONF test_marker") == "before"
    assert talk(old, "still there?") == "echo: still there?"
    assert talk(old, "QUIT") == "bye"
    old.close()
    wait_for(lambda: not alive(old_pid), what="the old worker to exit after its session")
    assert talk(new, "QUIT") == "bye"
    assert "warning" not in inst.log_text()


def test_reload_adds_and_removes_services(fastpost_instance):
    inst = fastpost_instance(master_cf="first unix - - n - - testdaemons.echo\n")
    inst.start()
    sock, pid = session(inst, unix="first")
    inst.write_master_cf("second unix - - n - - testdaemons.echo\n")
    inst.reload()
    assert not os.path.exists(inst.endpoint("first"))
    wait_for(lambda: not alive(pid), what="the removed service's worker to be terminated")
    sock2, pid2 = session(inst, unix="second")
    assert talk(sock2, "hi") == "echo: hi"
    sock2.close()


def test_bad_reload_keeps_running_configuration(fastpost_instance):
    inst = fastpost_instance(master_cf="svc unix - - n - - testdaemons.echo\n")
    inst.start()
    inst.write_master_cf("svc unix - - n - - testdaemons.no_such_daemon\n")
    result = inst.command("reload")
    assert result.returncode == 1
    assert "cannot load daemon" in result.stderr and "not reloaded" in result.stderr
    sock, _ = session(inst, unix="svc")  # the old configuration still serves
    assert talk(sock, "ok?") == "echo: ok?"
    sock.close()


def test_graceful_stop_waits_for_sessions_and_leaves_nothing(fastpost_instance):
    port = free_port()
    inst = fastpost_instance(master_cf=(
        f"127.0.0.1:{port} inet n - n - - testdaemons.echo\n"
        "single unix - - n - - testdaemons.single_echo\n"))
    master = inst.start()
    sock, pid = session(inst, port=port)
    sock2, pid2 = session(inst, unix="single")
    import subprocess
    import sys

    stopper = subprocess.Popen([sys.executable, "-m", "fastpost", "-c", str(inst.etc), "stop"],
                               env=inst.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    inst.wait_log(r"terminating on signal 15")
    # Listeners are gone for new clients, the sessions in progress go on.
    with pytest.raises(OSError):
        inst.connect_unix("single")
    assert talk(sock, "working") == "echo: working"
    assert talk(sock2, "working") == "echo: working"
    assert talk(sock, "QUIT") == "bye"
    assert talk(sock2, "QUIT") == "bye"
    out, _ = stopper.communicate(timeout=60)
    assert stopper.returncode == 0, out
    inst.proc.wait(timeout=30)
    for p in (master, pid, pid2):
        assert not alive(p)
    assert not os.path.exists(inst.queue / "pid" / "master.pid")
    assert not os.path.exists(inst.endpoint("single"))
    assert "warning" not in inst.log_text()


def test_stop_terminates_sessions_that_outlast_the_timeout(fastpost_instance):
    inst = fastpost_instance(master_cf="s unix - - n - - testdaemons.echo\n",
                             main_cf={"fastpost_stop_timeout": "1s"})
    master = inst.start()
    sock, pid = session(inst, unix="s")
    result = inst.stop()
    assert result.returncode == 0
    assert not alive(pid) and not alive(master)
    assert "still running after fastpost_stop_timeout" in inst.log_text()
    sock.close()


def test_abort_stops_at_once(fastpost_instance):
    inst = fastpost_instance(master_cf="s unix - - n - - testdaemons.echo\n")
    master = inst.start()
    sock, pid = session(inst, unix="s")
    result = inst.command("abort")
    assert result.returncode == 0, result.stderr
    assert "aborting the fastpost mail system" in result.stderr
    inst.proc.wait(timeout=30)
    assert not alive(pid) and not alive(master)
    assert sock.recv(10) == b""


def test_start_twice_is_refused(fastpost_instance):
    inst = fastpost_instance(master_cf="s unix - - n - - testdaemons.echo\n")
    first = inst.start_daemon()
    assert first.returncode == 0, first.stderr
    assert inst.master_pid and alive(inst.master_pid)
    second = inst.command("start")
    assert second.returncode == 1
    assert f"fatal: the fastpost mail system is already running (pid {inst.master_pid})" in \
        second.stderr
    fg = inst.command("start-fg")
    assert fg.returncode == 1 and "already running" in fg.stderr
    status = inst.command("status")
    assert status.returncode == 0
    assert f"the fastpost mail system is running: PID: {inst.master_pid}" in status.stderr
    stopped = inst.command("stop")
    assert stopped.returncode == 0
    assert not alive(inst.master_pid)
    status = inst.command("status")
    assert status.returncode == 1 and "is not running" in status.stderr
    again = inst.command("stop")
    assert again.returncode == 1 and "fatal: the fastpost mail system is not running" in again.stderr


def test_start_reports_why_it_failed(fastpost_instance):
    port = free_port()
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    try:
        inst = fastpost_instance(master_cf=f"127.0.0.1:{port} inet n - n - - testdaemons.echo\n")
        result = inst.start_daemon()
        assert result.returncode == 1
        assert f"bind 127.0.0.1 port {port}: Address already in use" in result.stderr
        assert "master.cf, line 1" in result.stderr
        assert not os.path.exists(inst.queue / "pid" / "master.pid")
    finally:
        blocker.close()


def test_wakeup_and_flush_triggers_arrive(fastpost_instance, tmp_path):
    wake_log = tmp_path / "wakeups"
    flush_log = tmp_path / "flushes"
    fifo_log = tmp_path / "fifo"
    inst = fastpost_instance(master_cf=(
        f"tick unix n - n 1 1 testdaemons.trigger_log {wake_log}\n"
        f"qmgr unix n - n - 1 testdaemons.trigger_log {flush_log}\n"
        f"pipe fifo n - n - 1 testdaemons.trigger_log {fifo_log}\n"))
    inst.start()
    wait_for(lambda: wake_log.exists() and wake_log.read_text().count(" W\n") >= 2,
             what="two wakeups from the master")
    result = inst.command("flush")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: flush_log.exists() and flush_log.read_text().endswith(" AFDI\n"),
             what="the flush trigger")
    from fastpost.mail import ipc

    ipc.trigger(inst.endpoint("pipe", public=True), b"I")
    wait_for(lambda: fifo_log.exists() and fifo_log.read_text().endswith(" I\n"),
             what="a FIFO trigger")


def test_conditional_wakeup_waits_for_first_use(fastpost_instance, tmp_path):
    wake_log = tmp_path / "wakeups"
    inst = fastpost_instance(
        master_cf=f"tick unix n - n 1? 1 testdaemons.trigger_log {wake_log}\n")
    inst.start()
    time.sleep(2.5)  # two wakeup periods: none is sent before the service is used
    assert not wake_log.exists() and inst.workers() == []
    from fastpost.mail import ipc

    ipc.trigger(inst.endpoint("tick", public=True), b"I")
    wait_for(lambda: wake_log.exists() and " W\n" in wake_log.read_text(),
             what="wakeups after the first use")


def test_non_root_master_runs_without_chroot_and_says_so(tmp_path):
    need_root()  # we need root to become someone else for this test
    import pwd
    import shutil
    import subprocess
    import sys
    import tempfile

    from helpers.instance import Instance

    nobody = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="fastpost-nonroot-")
    try:
        os.chmod(top, 0o755)
        inst = Instance(top, master_cf="s unix - - y - - testdaemons.single_echo\n")
        # default_privs: not mail_owner's user, which Postfix (and fastpost's daemons, since
        # session 10) refuse: "parameters default_privs and mail_owner specify the same user"
        inst.update_main_cf(mail_owner="nobody", setgid_group="nogroup", default_privs="daemon")
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), nobody.pw_uid, nobody.pw_gid)
        os.chown(top, nobody.pw_uid, nobody.pw_gid)

        # The interpreter lives under /root (mode 0700): the non-root master keeps only
        # CAP_DAC_READ_SEARCH to reach it. It is still not root (euid 65534).
        setpriv = need_program("setpriv")
        env = inst.env()
        env["HOME"] = top
        proc = subprocess.Popen(
            [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
             "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
             sys.executable, "-m", "fastpost", "-c", str(inst.etc), "start-fg"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        inst.proc, inst.master_pid = proc, proc.pid
        try:
            inst.wait_log("daemon started", proc=proc)
            text = inst.log_text()
            assert text.count("not running as root") == 1
            assert "services run as nobody, without chroot or privilege separation" in text
            sock, pid = session(inst, unix="s")
            ids = proc_ids(pid)
            assert ids["uid"] == (nobody.pw_uid,) * 3 and ids["root"] == "/"
            sock.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            inst.cleanup()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_watchdog_kills_a_worker_whose_loop_is_stuck(fastpost_instance):
    inst = fastpost_instance(
        master_cf="stuck unix - - n - - testdaemons.echo -o daemon_timeout=1s\n")
    inst.start()
    sock, pid = session(inst, unix="stuck")
    sock.sendall(b"BLOCK 30\n")
    assert sock.recv(100) == b""  # the worker died instead of answering after 30 s
    inst.wait_log(rf"warning: process testdaemons.echo pid {pid} exit status 1")
    assert "Timeout (0:00:01)!" in inst.stdout()  # faulthandler's stack dump, on stderr
    sock2, pid2 = session(inst, unix="stuck")
    assert talk(sock2, "fine") == "echo: fine"


def test_unix_dgram_service(fastpost_instance, tmp_path):
    out = tmp_path / "datagrams"
    inst = fastpost_instance(master_cf=f"dg unix-dgram n - n - 1 testdaemons.trigger_log {out}\n")
    inst.start()
    from fastpost.mail import ipc

    for word in (b"one", b"two"):
        ipc.trigger(inst.endpoint("dg", public=True), word)
    wait_for(lambda: out.exists() and out.read_text().endswith(" two\n"), what="two datagrams")
    assert [line.split()[1] for line in out.read_text().splitlines()] == ["one", "two"]


def test_chrooted_worker_needs_nothing_from_etc(fastpost_instance):
    """What a jail lacks (zoneinfo, codecs) was loaded before chroot: nothing is copied."""
    need_root()
    inst = fastpost_instance(master_cf="jail unix - - y - - testdaemons.single_echo\n")
    os.environ["TZ"] = "Asia/Tokyo"  # +09:00 all year; the zone file is not in the jail
    try:
        inst.start()
    finally:
        del os.environ["TZ"]
    sock, pid = session(inst, unix="jail")
    assert proc_ids(pid)["root"] == str(inst.queue)
    assert not os.path.exists(inst.queue / "etc")
    assert talk(sock, "IDNA bücher.example") == "xn--bcher-kva.example"
    before = time.gmtime(time.time() + 9 * 3600)
    assert talk(sock, "LOG tick from the jail") == "logged"
    after = time.gmtime(time.time() + 9 * 3600)
    line = next(l for l in inst.log_text().splitlines() if "tick from the jail" in l)
    stamp = line.split()[2]  # "Mmm dd HH:MM:SS host tag[pid]: text"
    assert stamp[:5] in (time.strftime("%H:%M", before), time.strftime("%H:%M", after)), line
    sock.close()


def test_inet_listeners_follow_inet_interfaces_and_protocols(fastpost_instance):
    port = free_port()
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")
    inst = fastpost_instance(master_cf=f"{port} inet n - n - - testdaemons.echo\n",
                             main_cf={"inet_interfaces": "127.0.0.1, [::1]",
                                      "inet_protocols": "all"})
    inst.start()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as sock:
            sock.settimeout(30)
            sock.connect((host, port))
            assert read_line(sock).startswith(b"ready ")
    argv = open(f"/proc/{inst.workers()[0]}/cmdline").read()
    assert " -s 2 " in argv  # one worker has both listeners (its title is its argv)


def test_panic_exits_with_status_2(fastpost_instance):
    inst = fastpost_instance(master_cf="p unix - - n - - testdaemons.dies panic\n")
    inst.start()
    sock = inst.connect_unix("p")
    text = inst.wait_log(r"warning: testdaemons.dies: bad command startup -- throttling")
    assert "panic: inconsistent state, on purpose" in text
    assert "exit status 2" in text
    sock.close()


def test_workers_from_before_a_reload_count_toward_maxproc(fastpost_instance):
    """A solitary service (maxproc 1, like qmgr) never has two processes, even across a
    reload: the new worker starts when the old one has finished its client."""
    inst = fastpost_instance(master_cf="solo unix - - n - 1 testdaemons.single_echo\n")
    inst.start()
    old, old_pid = session(inst, unix="solo")
    inst.reload()
    waiting = inst.connect_unix("solo")
    time.sleep(0.5)
    assert inst.workers() == [old_pid]
    assert talk(old, "QUIT") == "bye"
    old.close()
    greeting = read_line(waiting).decode().split()
    assert greeting[0] == "ready" and int(greeting[2]) != old_pid
    wait_for(lambda: not alive(old_pid), what="the old worker to exit")
    assert len(inst.workers()) == 1
    waiting.close()


def test_wakeups_do_not_pile_up_while_a_service_is_throttled(fastpost_instance):
    ss = need_program("ss")
    import subprocess
    import uuid

    name = "w" + uuid.uuid4().hex[:12]  # ss shows the (relative) path: make it unique
    inst = fastpost_instance(master_cf=f"{name} unix n - n 1 1 testdaemons.dies\n")
    inst.start()
    inst.wait_log(r"bad command startup -- throttling")
    time.sleep(3.5)  # three wakeup periods while throttled

    def pending() -> int:
        out = subprocess.run([ss, "-xl"], capture_output=True, text=True).stdout
        rows = [line.split() for line in out.splitlines() if f"public/{name} " in line]
        assert len(rows) == 1, out
        return int(rows[0][2])  # Recv-Q of a listening socket: connections not accepted

    # The wakeup that forked the doomed worker is still queued; no others were added.
    assert pending() == 1
    assert inst.log_text().count("exit status 1") == 1


def test_a_daemon_judges_the_global_values_at_start_as_postfix(fastpost_instance):
    """A global parameter's bad value reaching a daemon (here a master.cf ``-o``, which
    postfix(1) does not judge): the daemon stops at start with Postfix's words and the
    master throttles the service, as for any daemon that dies before serving. Run side
    by side with a private Postfix 3.7 whose smtpd has the same -o; it logged
        smtpd[P]: fatal: bad boolean configuration: soft_bounce = maybe
        master[P]: warning: process /usr/lib/postfix/sbin/smtpd pid P exit status 1
        master[P]: warning: /usr/lib/postfix/sbin/smtpd: bad command startup -- throttling
    (session 10); ``postfix start`` had gone through (postfix(1) does not judge -o)."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "queue"))
    from postfix_instance import PostfixInstance, postfix_tmpdir

    def shape(lines):
        """(program, text) with the pids and the program's path taken out."""
        out = []
        for line in lines:
            found = re.search(r"/(\w[\w.]*)\[\d+\]: (.*)", line)
            prog, text = found.groups()
            text = re.sub(r"pid \d+", "pid P", text)
            text = re.sub(r"(/usr/lib/postfix/sbin/smtpd|testdaemons\.echo)", "DAEMON", text)
            out.append(("master" if prog == "master" else "daemon", text))
        return out

    def wanted(log):
        return [line for line in log.splitlines()
                if "fatal:" in line or "exit status" in line or "bad command startup" in line]

    with postfix_tmpdir() as root:
        pfx = PostfixInstance(root)
        master_cf = os.path.join(pfx.etc, "master.cf")
        with open(master_cf) as fh:
            text = fh.read()
        with open(master_cf, "w") as fh:
            fh.write(text.replace(" smtpd\n", " smtpd -o soft_bounce=maybe\n", 1))
        pfx.start()
        try:
            try:
                with socket.create_connection(("127.0.0.1", pfx.port), timeout=5) as s:
                    s.settimeout(5)
                    s.recv(100)  # nothing comes: the smtpd died
            except OSError:
                pass
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with open(pfx.maillog) as fh:
                    theirs = wanted(fh.read())
                if any("throttling" in line for line in theirs):
                    break
                time.sleep(0.1)
        finally:
            pfx.stop()
    assert shape(theirs) == [
        ("daemon", "fatal: bad boolean configuration: soft_bounce = maybe"),
        ("master", "warning: process DAEMON pid P exit status 1"),
        ("master", "warning: DAEMON: bad command startup -- throttling")], theirs

    port = free_port()
    inst = fastpost_instance(master_cf=(
        f"127.0.0.1:{port} inet n - n - - testdaemons.echo -o soft_bounce=maybe\n"))
    inst.start()
    with inst.connect_inet(port):
        inst.wait_log(r"bad command startup -- throttling")
    assert shape(wanted(inst.log_text())) == shape(theirs)
    # fastpost check / postfix check: master.cf's -o values are the daemons' to judge
    proc = inst.command("check")
    assert proc.returncode == 0, proc.stderr
