"""Timing that survives noisy 2-core machines: warm up, calibrate a repeat count so one sample lasts
long enough, then take samples of all implementations round-robin (with a short pause) so drift
hits each alike, and report medians and ratios measured in the same run."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Timing:
    """Per-call seconds of one implementation: every sample, and their median and spread."""

    name: str
    samples: list[float] = field(default_factory=list)
    number: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the interquartile range relative to the median (0.05 means +-5%)."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / (2 * self.median)
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / (2 * self.median)


def _calibrate(fn: Callable[[], Any], sync: Callable[[], None], min_sample_s: float) -> int:
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample_s or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_sample_s / max(elapsed, 1e-9) * 1.2))


def compare(impls: dict[str, Callable[[], Any]], *, samples: int = 7, min_sample_s: float = 0.02,
            pause_s: float = 0.01, sync: Callable[[], None] | None = None) -> dict[str, Timing]:
    """Time each zero-argument callable; returns name -> Timing (per-call seconds).

    `sync` waits for asynchronous work (GPU) before a clock is read; round r starts at implementation
    r mod n, so no implementation always runs right after the same other one."""
    sync = sync or (lambda: None)
    names = list(impls)
    numbers = {}
    for name in names:
        impls[name]()  # warm-up: compilation, caches, allocator
        sync()
        numbers[name] = _calibrate(impls[name], sync, min_sample_s)
    timings = {name: Timing(name, number=numbers[name]) for name in names}
    for r in range(samples):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            fn, number = impls[name], numbers[name]
            sync()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            timings[name].samples.append((time.perf_counter() - start) / number)
            time.sleep(pause_s)
    return timings


def copy_bandwidth(nbytes: int = 1 << 26, xp=None, sync: Callable[[], None] | None = None) -> float:
    """The device's measured copy bandwidth in GB/s (bytes read + bytes written per second)."""
    import numpy as np

    xp = xp or np
    src = xp.ones(nbytes // 4, dtype=xp.float32)
    dst = xp.empty_like(src)
    t = compare({"copy": lambda: xp.copyto(dst, src)}, samples=5, sync=sync)["copy"]
    return 2 * src.nbytes / t.median / 1e9


def format_table(timings: dict[str, Timing], reference: str, bytes_moved: int | None = None,
                 bandwidth: float | None = None) -> str:
    """A text table: median time, spread, ratio to `reference` (>1 means slower), and GB/s."""
    ref = timings[reference].median
    header = f"{'implementation':<28} {'median':>11} {'spread':>7} {'vs ' + reference:>14}"
    lines = [header + (f" {'GB/s':>8}" if bytes_moved is not None else "")]
    for name, t in timings.items():
        row = f"{name:<28} {_fmt_time(t.median):>11} {t.spread * 100:>6.1f}% {t.median / ref:>13.2f}x"
        if bytes_moved is not None:
            row += f" {bytes_moved / t.median / 1e9:>8.1f}"
        lines.append(row)
    if bandwidth is not None:
        lines.append(f"measured copy bandwidth: {bandwidth:.1f} GB/s")
    return "\n".join(lines)


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds / 1e-9:.1f} ns"


def machine_info() -> dict:
    """Machine, library versions and command, for recorded results."""
    import os
    import platform
    import sys

    import numpy as np

    info = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for mod in ("numba", "torch", "jax", "cupy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    return info
