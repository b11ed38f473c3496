"""Every compiled kernel is built, imported, and each of its classes constructs.

A silently missing extension (a build that skipped a .pyx, a .pxd that Cython ignored)
fails here rather than at run time.
"""

import importlib
import inspect
import pathlib
import types

import pytest

from fastpost import _accel

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYX = sorted((ROOT / "ext").rglob("*.pyx"))
#: Kernels in Cython's pure-Python mode: an ext/.../_x_c.pxd with no .pyx beside it;
#: setup.py compiles the twin src/fastpost/.../_x_py.py itself as _x_c.
PURE = sorted(p for p in (ROOT / "ext").rglob("_*_c.pxd") if not p.with_suffix(".pyx").exists())
MODULES = [".".join(p.relative_to(ROOT / "ext").with_suffix("").parts) for p in PYX + PURE]

#: Constructor arguments for every class a kernel defines. A new compiled class must be
#: added here, or this test fails.
def _service_fields(**fields):
    """smtpd's compiled ServiceFields (SmtpdService's base) with ``fields`` set."""
    from fastpost.daemons.smtpd._session_c import ServiceFields

    obj = ServiceFields()
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj


CONSTRUCT = {
    "fastpost.mail._record_c.RecordDecoder": ((1024,), {}),
    "fastpost.mail._attr_c.FrameDecoder": ((1 << 20, 8), {}),
    "fastpost.mail.maps._indexed_c.IndexedReader": (({}.get, True, 0), {}),
    "fastpost.mail.maps._pcre2_c.Pattern": ((b"a(b)c", 0), {}),
    "fastpost.mail.maps._pcre2_c.RuleSet": (([],), {}),
    "fastpost.mail.maps._rules_c.RuleScan": (([],), {}),
    "fastpost.smtp._lines_c.LineReader": ((2048,), {}),
    "fastpost.smtp._data_c.DotDecoder": ((10240000,), {}),
    "fastpost.smtp._data_c.ChunkDecoder": ((10240000,), {}),
    "fastpost.mail._header_c.HeaderReader": (({}, 102400), {}),
    "fastpost.smtp._server_c.ServerConnection": ((), {}),
    "fastpost.smtp._server_c._OptionCopies": ((), {}),
    # A stand-in for SmtpdService (its compiled base, ServiceFields, with the fields
    # set): the core reads only .settings(.timeout), the loop (._loop), .read_view
    # and .policy(.idle_stages) at start, and sets .last_session.
    "fastpost.daemons.smtpd._session_c.SessionCore": ((_service_fields(
        settings=types.SimpleNamespace(timeout=300), _loop=object(),
        read_view=memoryview(bytearray(16)),
        policy=types.SimpleNamespace(idle_stages=frozenset())),), {}),
    "fastpost.daemons.smtpd._session_c.ServiceFields": ((), {}),
    # The sessions' timeout checks: a loop stand-in (not called at construction), the
    # delay; one check (its time, its session, its queue).
    "fastpost.daemons.smtpd._session_c._Deadlines": ((object(), 300), {}),
    "fastpost.daemons.smtpd._session_c._Deadline": ((0.0, None, None), {}),
    # smtpd's message to cleanup: an envelope (not read at construction) and the endpoint.
    "fastpost.daemons.smtpd._cleanuptxn_c.CleanupTransaction": ((None, "public/cleanup"), {}),
    "fastpost.smtp._state_c.ServerState": ((), {}),
    # The cleanup connection's per-message fields: a loop (not called here), ipc_ttl.
    "fastpost.mail._cleanupconn_c.ConnFields": ((None, 1000.0), {}),
    "fastpost.smtp._reply_c.Reply": ((250, "Ok", "2.0.0"), {}),
    # smtpd's client, envelope and recipient (dataclasses compiled as cdef classes).
    "fastpost.daemons.smtpd._info_c.ClientInfo": ((), {}),
    "fastpost.daemons.smtpd._info_c.Envelope": (("sender@example.org",), {}),
    "fastpost.daemons.smtpd._info_c.Recipient": (("rcpt@example.net",), {}),
    "fastpost.util._logline_c.LineKeeper": ((), {}),
    # An empty core (no service): CleanupState's fields at their defaults.
    "fastpost.daemons.cleanup._statecore_c.StateCore": ((), {}),
    # A stand-in builder: CommitRec reads its queue ID and its records' envelope fields.
    "fastpost.mail.queue._commitrec_c.CommitRec": ((types.SimpleNamespace(
        queue_id="4AB1C", records=types.SimpleNamespace(
            arrival=1.0, xtra_offset=10, data_offset=5, sender="", recipients=[])), 1, None, None), {}),
    "fastpost.mail.queue._builder_c.QueueFileBuilder": ((2048,), {}),
    # No committer is needed until a commit or a spill.
    "fastpost.mail.queue._builder_c.MessageBuilder": ((None, "4AB1C", 2048, 1 << 20), {}),
}


def test_there_are_kernels():
    assert MODULES, "no .pyx under ext/"


@pytest.mark.parametrize("name", MODULES)
def test_kernel_is_compiled(name):
    if _accel.PURE_PYTHON:
        pytest.fail("FASTPOST_PURE_PYTHON=1 is set: the suite must run the compiled kernels")
    mod = importlib.import_module(name)
    assert mod.__file__.endswith(".so"), f"{name} is not an extension: {mod.__file__}"
    classes = [obj for _, obj in inspect.getmembers(mod, inspect.isclass) if obj.__module__ == name]
    for cls in classes:
        key = f"{name}.{cls.__name__}"
        if inspect.isclass(cls) and issubclass(cls, BaseException):
            continue
        assert key in CONSTRUCT, f"add constructor arguments for {key} to CONSTRUCT"
        args, kwargs = CONSTRUCT[key]
        cls(*args, **kwargs)


@pytest.mark.parametrize("name", MODULES)
def test_kernel_has_reference(name):
    """Each compiled kernel `_x_c` has a pure-Python twin `_x_py` with the same API."""
    assert name.endswith("_c"), f"{name}: compiled kernels are named _<x>_c"
    ref = importlib.import_module(name[:-2] + "_py")
    mod = importlib.import_module(name)
    public = {n for n in dir(ref) if not n.startswith("_") and callable(getattr(ref, n))}
    public -= {n for n in public if getattr(getattr(ref, n), "__module__", "") != ref.__name__}
    missing = {n for n in public if not hasattr(mod, n)}
    assert not missing, f"{name} lacks {sorted(missing)} that {ref.__name__} has"
