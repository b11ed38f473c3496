"""The benchmark harness's own pieces: CPU accounting by process, summaries and ratios,
and the capability detection that decides what runs against fastpost."""

import subprocess
import sys

from harness import mta, procs, report, scenarios, smtp


def test_monitor_attributes_cpu_of_children_by_name():
    # a real tree: a parent that forks a short-lived busy child (exits between samples)
    # and a long-lived one; the total must include both
    # The root stays alive until the monitor stops, as an MTA master does: reaped
    # children are then counted exactly through its cutime, whatever the sampling.
    code = ("import os, time, subprocess, sys\n"
            "busy = 'import time\\nt=time.process_time()\\nwhile time.process_time()-t<%s: pass'\n"
            "long = subprocess.Popen([sys.executable, '-c', busy % 0.6])\n"
            "time.sleep(0.3)\n"
            "subprocess.run([sys.executable, '-c', busy % 0.3])\n"
            "long.wait()\n"
            "print('done', flush=True)\n"
            "sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    mon = procs.ProcessMonitor(parent.pid, interval=0.5).start()
    assert parent.stdout.readline() == "done\n"
    res = mon.stop()
    parent.stdin.close()
    parent.wait()
    assert res["cpu_total"] >= 0.85, res
    assert res["peak_processes"] >= 2


def test_groups_ratio_is_pairwise():
    recs = []
    for rep, (a, b) in enumerate([(100, 300), (200, 400), (150, 600)]):
        recs.append({"scenario": "accept", "variant": "s20 1KiB", "mta": "postfix", "rep": rep,
                     "ok": True, "rate": a, "messages": 1000, "cpu_total": 2.0,
                     "cpu_s_per_1k": 2.0, "cpu_by_daemon": {"smtpd": 1.0, "cleanup": 1.0}})
        recs.append({"scenario": "accept", "variant": "s20 1KiB", "mta": "fastpost", "rep": rep,
                     "ok": True, "rate": b, "messages": 1000})
    row = report.groups(recs)[0]
    assert row["ratio"]["median"] == 3.0          # pairs: 3.0, 2.0, 4.0
    assert (row["ratio"]["min"], row["ratio"]["max"]) == (2.0, 4.0)
    assert row["postfix"]["value"]["median"] == 150
    assert row["postfix"]["cpu_by_daemon"] == {"smtpd": 1.0, "cleanup": 1.0}
    text = report.table([row])
    assert "3.00 [2.00-4.00]" in text


def test_unavailable_rows_name_missing_pieces():
    caps = {"fastpost": True, "control": False, "smtpd": True}
    assert mta.missing(caps, ("control", "smtpd", "cleanup")) == ["control", "cleanup"]
    recs = [{"scenario": "accept", "variant": "s1", "mta": "fastpost", "rep": 0, "ok": False,
             "unavailable": ["control", "cleanup"]}]
    text = report.table(report.groups(recs))
    assert "not yet available" in text and "missing: control, cleanup" in text


def test_every_scenario_declares_variants_and_needs():
    class Opts:
        messages, idle_sessions, submitters, fsync_files = 100, 10, 2, 10

        @staticmethod
        def sessions_for(name):
            return [1, 20]
    for sc in scenarios.ALL:
        assert sc.variants(Opts), sc.name
        assert sc.uses_mta is False or sc.needs, sc.name


def test_pysink_records_message_ids():
    with smtp.PySink() as sink:
        res = smtp.send(sink.port, ["<a@x>", "<b@x>", "<c@x>"], 2)
        assert smtp.acked(res) == {"<a@x>", "<b@x>", "<c@x>"}
        assert sorted(sink.received) == ["<a@x>", "<b@x>", "<c@x>"]


def test_daemon_name_of_a_fastpost_worker_title():
    # a real process whose title is a worker's argv, as the master sets it
    # (setproctitle): comm is its first 15 bytes, the daemon is the first word
    code = ("import setproctitle, sys\n"
            "setproctitle.setproctitle('cleanup -n cleanup -t unix -u -z -s 1')\n"
            "print('ok', flush=True)\nsys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ok\n"
        comm = open(f"/proc/{child.pid}/comm").read().strip()
        assert comm == "cleanup -n clea"
        assert procs.daemon_name(child.pid, comm) == "cleanup"
    finally:
        child.stdin.close()
        child.wait()


def test_pipe_relay_takes_a_message_to_the_sink():
    # the pipe(8) command that stands in for smtp(8) in the battery, against the real sink
    msg = smtp.message("<relay.1@battery>")
    with smtp.PySink() as sink:
        ok = subprocess.run(["/usr/bin/python3", mta.PIPE_RELAY, "127.0.0.1", str(sink.port),
                             "a@example.com", "b@example.com"], input=msg, capture_output=True)
        assert ok.returncode == 0, ok.stderr
        assert sink.received == ["<relay.1@battery>"]
    # nobody listening: EX_TEMPFAIL, so pipe defers and qmgr retries
    down = subprocess.run(["/usr/bin/python3", mta.PIPE_RELAY, "127.0.0.1", str(sink.port),
                           "a@example.com", "b@example.com"], input=msg, capture_output=True)
    assert down.returncode == 75
    assert b"cannot relay" in down.stderr


def test_pipe_stands_in_for_smtp_in_fastpost_master_cf(tmp_path):
    inst = mta.make("fastpost", str(tmp_path / "fp"), sink_port=4321)
    lines = {svc[0]: svc for svc in inst.service_lines()}
    if mta.fastpost_capabilities().get("smtp"):
        assert lines["smtp"][7] == "smtp"
    else:
        assert lines["smtp"][7] == "pipe" and lines["relay"][7] == "pipe"
        assert "127.0.0.1 4321 ${sender} ${recipient}" in lines["smtp"][-1]
