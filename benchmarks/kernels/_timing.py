"""The kernel micro-benchmarks' shared timer (imported by bench_*.py in this directory).

rate(fn, seconds, batch=20) calls fn in rounds of ``batch`` for five slices of
``seconds`` and returns the median calls per second of the slices; rate_over(fn, items,
seconds) is the same for fn(item) over every item of a list, in items per second. They
measure, never assert.
"""

import statistics
import time


def rate(fn, seconds: float, batch: int = 20) -> float:
    rounds = []
    for _ in range(5):
        n = 0
        start = time.perf_counter()
        end = start + seconds / 5
        while True:
            for _ in range(batch):
                fn()
            n += batch
            now = time.perf_counter()
            if now >= end:
                break
        rounds.append(n / (now - start))
    return statistics.median(rounds)


def rate_over(fn, items, seconds: float) -> float:
    def each():
        for item in items:
            fn(item)
    return rate(each, seconds, batch=1) * len(items)
