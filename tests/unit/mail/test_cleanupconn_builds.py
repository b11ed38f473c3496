"""The cleanup connection's per-message fields and attach() (mail/_cleanupconn_py.py):
the interpreted reference and the compiled build do the same, step by step."""

from __future__ import annotations

import importlib

import pytest

BUILDS = ["fastpost.mail._cleanupconn_py", "fastpost.mail._cleanupconn_c"]


class FakeLoop:
    """Records call_soon (attach schedules the connection's flush with it)."""

    def __init__(self):
        self.soon = []

    def call_soon(self, fn):
        self.soon.append(fn)


class FakeHandle:
    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Txn:
    conn = None
    tid = 0


def _conn_class(mod):
    class Conn(mod.ConnFields):
        """As cleanup_clnt._Conn: flush() and armed() are the subclass's."""

        def __init__(self, loop, ttl):
            mod.ConnFields.__init__(self, loop, ttl)
            self.flushes = 0
            self.armed_for = []

        def flush(self):
            self.flushes += 1

        def armed(self, txn):
            self.armed_for.append(txn)
            self.watch_handle = FakeHandle()

    return Conn


def _trace(mod, ready, idle):
    loop = FakeLoop()
    conn = _conn_class(mod)(loop, 1000.0)
    conn.ready = ready
    conn.next_tid = 7
    handle = conn.idle_handle = FakeHandle() if idle else None
    out = []
    for _ in range(3):
        txn = Txn()
        frame = {"f": 0}
        assert conn.attach(txn, frame) is txn
        out.append((txn.conn is conn, txn.tid, dict(frame), conn.next_tid,
                    sorted(conn.txns), conn.flush_scheduled, len(loop.soon),
                    conn.idle_handle is None, len(conn.armed_for)))
    out.append((handle.cancelled if handle else None, len(conn.out)))
    return out


@pytest.mark.parametrize("ready", [True, False])
@pytest.mark.parametrize("idle", [True, False])
def test_attach_is_the_same_in_both_builds(ready, idle):
    py, c = (importlib.import_module(name) for name in BUILDS)
    assert _trace(py, ready, idle) == _trace(c, ready, idle)
    trace = _trace(c, ready, idle)
    assert [t[1] for t in trace[:3]] == [7, 8, 9]
    assert trace[0][2] == {"f": 0, "o": py._OP_OPEN, "t": 7}
    assert [t[6] for t in trace[:3]] == ([1, 1, 1] if ready else [0, 0, 0])
    assert [t[8] for t in trace[:3]] == [1, 1, 1]  # the watchdog armed once


@pytest.mark.parametrize("name", BUILDS)
def test_usable(name):
    mod = importlib.import_module(name)
    conn = mod.ConnFields(FakeLoop(), 1000.0)
    assert conn.usable()
    conn.started -= 999.0
    assert conn.usable()
    conn.started -= 2.0
    assert not conn.usable()  # older than ipc_ttl
    conn = mod.ConnFields(FakeLoop(), 1000.0)
    conn.closed = True
    assert not conn.usable()


def test_the_client_runs_the_compiled_build():
    from fastpost import _accel
    from fastpost.mail import cleanup_clnt

    expected = BUILDS[0] if _accel.PURE_PYTHON else BUILDS[1]
    assert cleanup_clnt.ConnFields is importlib.import_module(expected).ConnFields
    assert issubclass(cleanup_clnt._Conn, cleanup_clnt.ConnFields)
