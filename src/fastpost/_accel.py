"""Choose between a compiled kernel and its pure-Python reference.

Every Cython kernel in ext/ has a pure-Python twin (``_x_py.py``) with the same
interface; the twin is the specification and the oracle of the differential tests.
Production runs the compiled kernels. A missing extension is an error at import
time, not a silent slow path: the message says how to build it.

Environment:
    FASTPOST_PURE_PYTHON=1  use the references everywhere (debugging only; every
                            daemon logs ``accelerated=no`` at start-up).

Diagnostics: ImportError naming the missing kernel and the command that builds it.
"""

import importlib
import os

PURE_PYTHON = os.environ.get("FASTPOST_PURE_PYTHON") == "1"

#: Every compiled kernel module, for the smoke test and ``fastpost check``.
KERNELS: dict[str, str] = {}


def select(compiled: str, reference: str):
    """Return the compiled module, or the reference one in pure-Python mode."""
    KERNELS[compiled] = reference
    if PURE_PYTHON:
        return importlib.import_module(reference)
    try:
        return importlib.import_module(compiled)
    except ImportError as exc:
        raise ImportError(
            f"fastpost's compiled kernel {compiled} is missing ({exc}); build it with "
            f"'./dev build' (or 'pip install .'), or set FASTPOST_PURE_PYTHON=1 to run "
            f"the slow pure-Python reference for debugging"
        ) from exc


def describe() -> str:
    """Return 'accelerated=yes' or 'accelerated=no' for start-up log lines."""
    return "accelerated=no" if PURE_PYTHON else "accelerated=yes"
