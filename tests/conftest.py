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
