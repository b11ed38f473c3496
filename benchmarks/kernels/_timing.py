"""The kernel micro-benchmarks' shared timer (imported by bench_*.py in this directory).

rate(fn, seconds) calls fn in rounds of 20 for five slices of ``seconds`` and returns
the median calls per second of the slices; it measures, never asserts.
"""

import statistics
import time

def rate(fn, seconds: float) -> float:
    rounds = []
    for _ in range(5):
        n = 0
        start = time.perf_counter()
        end = start + seconds / 5
        while True:
            for _ in range(20):
                fn()
            n += 20
            now = time.perf_counter()
            if now >= end:
                break
        rounds.append(n / (now - start))
    return statistics.median(rounds)
