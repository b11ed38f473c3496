"""Fixtures of the short reliability battery and of the harness's own tests.

The harness lives in ``benchmarks/harness`` (not in the fastpost package); this puts
``benchmarks/`` on sys.path so the tests import it as ``harness``.
"""

import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "benchmarks")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
