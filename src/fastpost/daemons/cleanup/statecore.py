"""StateCore: cleanup's per-message core, the base of CleanupState (selector).

Postfix counterpart: src/cleanup/cleanup_api.c (cleanup_open) and the plain-message
road through cleanup_envelope.c, cleanup_message.c and cleanup_final.c. The contract
(fields, methods, what the subclass provides) is in
fastpost.daemons.cleanup._statecore_py, the one source of both builds: run as Python
under that name (the reference), and compiled by Cython's pure-Python mode, typed by
ext/fastpost/daemons/cleanup/_statecore_c.pxd, into
fastpost.daemons.cleanup._statecore_c (a cdef class), which production runs.
tests/unit/daemons/test_cleanup_fastpath.py holds the two builds to each other.

Parameters and diagnostics: see _statecore_py.
Fast path: _statecore_py.py compiled as _statecore_c; reference: _statecore_py.py
interpreted.
"""

from fastpost._accel import select

_impl = select("fastpost.daemons.cleanup._statecore_c", "fastpost.daemons.cleanup._statecore_py")

StateCore = _impl.StateCore

__all__ = ["StateCore"]
