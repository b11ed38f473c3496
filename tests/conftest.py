"""Shared fixtures for the whole suite.

``impl`` runs a parity test once per implementation of a kernel (the compiled one and
its pure-Python reference); ``kernel_pair`` returns both for differential tests.
"""

import importlib
import os
import shutil

import pytest


def kernel_modules(compiled: str, reference: str):
    """Return (compiled module, reference module); the compiled one must exist."""
    return importlib.import_module(compiled), importlib.import_module(reference)


def need_root():
    """Skip the calling test unless it runs as root (CI does)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root)")


def need_program(name: str) -> str:
    """Return the path of a program the test needs, or skip with the package hint."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        pytest.skip(f"{name} not installed (./dev test installs tests/apt-packages.txt as root)")
    return path


# -- a private fastpost instance (tests/helpers/instance.py) ---------------------------

import sys as _sys

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in _sys.path:
    _sys.path.insert(0, _TESTS_DIR)  # `from helpers.instance import Instance`


@pytest.fixture
def fastpost_instance(tmp_path):
    """Factory: fastpost_instance(master_cf=..., main_cf={...}) -> a started-on-demand
    Instance under tmp_path, stopped (with every process it started) at the end."""
    from helpers.instance import Instance

    made = []

    def make(**kwargs):
        kwargs.setdefault("name", f"fp{len(made)}")
        inst = Instance(tmp_path, **kwargs)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        inst.cleanup()


# -- soak: long checks kept out of the default run ---------------------------------------

def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``soak`` unless FASTPOST_SOAK=1 or ``-m`` selects them.

    The default run (``./dev test``, CI) must stay well under CI's limit; soak tests are
    the long versions (``./dev torture`` runs the same checks, and more, on its own).
    """
    if os.environ.get("FASTPOST_SOAK") == "1" or "soak" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: FASTPOST_SOAK=1 ./dev test, or ./dev torture")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
