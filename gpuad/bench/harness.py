"""Timing that survives noisy 2-core machines: warm up, calibrate a repeat count so one sample lasts
long enough, then take samples of all implementations round-robin (with a short pause) so drift
hits each alike, and report medians and ratios measured in the same run."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    """Per-call seconds of one implementation: every sample, and their median and spread."""

    name: str
    samples: list[float] = field(default_factory=list)
    number: int = 1

    @property
    def median(self) -> float:
        """Median seconds per call over the samples."""
        return statistics.median(self.samples)

    def to_json(self) -> dict:
        """Every sample (seconds per call), the repeat count per sample, median and spread."""
        return {"median": self.median, "spread": self.spread, "number": self.number, "samples": self.samples}

    @property
    def spread(self) -> float:
        """Half the interquartile range relative to the median (0.05 means +-5%)."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / (2 * self.median)
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / (2 * self.median)


class HostClock:
    """Wall-clock time of host-synchronous work; `sync` (if given) runs before each reading."""

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync or (lambda: None)
        self._t0 = 0.0

    def start(self) -> None:
        """Begin a sample (after waiting for queued work)."""
        self.sync()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        """End a sample: seconds since start(), after waiting for queued work."""
        self.sync()
        return time.perf_counter() - self._t0


class CudaEventClock:
    """GPU time between two CUDA events; the device is synchronized before the first is recorded."""

    def __init__(self, cupy):
        self.cp = cupy
        self._begin = cupy.cuda.Event()
        self._end = cupy.cuda.Event()

    def sync(self) -> None:
        """Wait for all work queued on the current device."""
        self.cp.cuda.Device().synchronize()

    def start(self) -> None:
        """Synchronize, then record the start event."""
        self.sync()
        self._begin.record()

    def stop(self) -> float:
        """Record the end event, wait for it, and return the GPU seconds between the two events."""
        self._end.record()
        self._end.synchronize()
        return self.cp.cuda.get_elapsed_time(self._begin, self._end) / 1e3


def _run(fn: Callable[[], Any], number: int, clock) -> float:
    clock.start()
    for _ in range(number):
        fn()
    return clock.stop()


def _calibrate(fn: Callable[[], Any], clock, min_sample_s: float) -> int:
    number = 1
    while True:
        elapsed = _run(fn, number, clock)
        if elapsed >= min_sample_s or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_sample_s / max(elapsed, 1e-9) * 1.2))


def compare(impls: dict[str, Callable[[], Any]], *, samples: int = 7, min_sample_s: float = 0.02,
            pause_s: float = 0.01, sync: Callable[[], None] | None = None, clock=None) -> dict[str, Timing]:
    """Time each zero-argument callable; returns name -> Timing (per-call seconds).

    `clock` (default: a HostClock around `sync`, which waits for asynchronous work) reads the time of
    one sample; round r starts at implementation r mod n, so no implementation always runs right after
    the same other one."""
    clock = clock or HostClock(sync)
    names = list(impls)
    numbers = {}
    for name in names:
        _run(impls[name], 1, clock)  # warm-up: compilation, caches, allocator
        numbers[name] = _calibrate(impls[name], clock, min_sample_s)
    timings = {name: Timing(name, number=numbers[name]) for name in names}
    for r in range(samples):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            elapsed = _run(impls[name], numbers[name], clock)
            timings[name].samples.append(elapsed / numbers[name])
            time.sleep(pause_s)
    return timings


def copy_bandwidth(nbytes: int = 1 << 26, xp=None, sync: Callable[[], None] | None = None,
                   clock=None, samples: int = 5) -> float:
    """The device's measured copy bandwidth in GB/s (bytes read + bytes written per second).

    On the host the faster of NumPy's copy (one thread) and a Numba parallel copy (every core), so
    multi-threaded kernels are measured against what all cores can move."""
    import numpy as np

    xp = xp or np
    src = xp.ones(nbytes // 4, dtype=xp.float32)
    dst = xp.empty_like(src)
    copies = {"copy": lambda: xp.copyto(dst, src)}
    if xp is np:
        try:
            import numba
        except ImportError:
            pass
        else:
            prange = numba.prange

            @numba.njit(parallel=True)
            def parallel_copy(dst, src):
                for i in prange(src.size):
                    dst[i] = src[i]

            copies["parallel copy"] = lambda: parallel_copy(dst, src)
    timings = compare(copies, samples=samples, sync=sync, clock=clock)
    return 2 * src.nbytes / min(t.median for t in timings.values()) / 1e9


class ResultMismatch(AssertionError):
    """An implementation under comparison computes something else than the reference."""


def to_numpy(value) -> Any:
    """A host NumPy array (or a list of them) from a gpuad tensor, torch/JAX/CuPy array or scalar."""
    import numpy as np

    if isinstance(value, (tuple, list)):
        return [to_numpy(v) for v in value]
    module = type(value).__module__
    if module.startswith("torch"):
        return value.detach().cpu().numpy()
    if module.startswith("gpuad"):
        return value.numpy()
    if module.startswith("cupy"):
        return value.get()
    return np.asarray(value)


def check_same(outputs: dict[str, Any], reference: str, *, rtol: float = 1e-4, atol: float = 1e-5,
               label: str = "") -> None:
    """Raise ResultMismatch unless every output equals the reference's (allclose, per part).

    `atol` is relative to the largest magnitude in the reference part, so one tolerance serves small
    and large values."""
    import numpy as np

    ref = to_numpy(outputs[reference])
    ref_parts = ref if isinstance(ref, list) else [ref]
    for name, value in outputs.items():
        got = to_numpy(value)
        got_parts = got if isinstance(got, list) else [got]
        if len(got_parts) != len(ref_parts):
            raise ResultMismatch(f"{label}: {name} returns {len(got_parts)} results, {reference} "
                                 f"{len(ref_parts)}")
        for i, (g, r) in enumerate(zip(got_parts, ref_parts)):
            g = np.asarray(g, dtype=np.float64)
            r = np.asarray(r, dtype=np.float64)
            scale = float(np.abs(r).max()) if r.size else 0.0
            if g.shape != r.shape or not np.allclose(g, r, rtol=rtol, atol=atol * max(scale, 1.0)):
                diff = float(np.abs(g - r).max()) if g.shape == r.shape and r.size else float("nan")
                raise ResultMismatch(
                    f"{label}: {name} differs from {reference} in result {i} (shapes {g.shape} vs "
                    f"{r.shape}, max abs difference {diff:.3g}, rtol {rtol}, atol {atol} x {max(scale, 1.0):.3g})")


def format_table(timings: dict[str, Timing], references: str | list[str], bytes_moved: int | None = None,
                 bandwidth: float | None = None, flops: float | None = None, per: int = 1) -> str:
    """A text table: median time (per one of `per` items when per > 1), spread, GB/s or GFLOP/s, and
    the ratio to each reference (>1 means slower)."""
    references = [references] if isinstance(references, str) else [r for r in references if r in timings]
    header = f"{'implementation':<30} {'median':>11} {'spread':>7}"
    if per > 1:
        header += f" {'per item':>10}"
    if bytes_moved is not None:
        header += f" {'GB/s':>8}" + (f" {'of copy':>8}" if bandwidth else "")
    if flops is not None:
        header += f" {'GFLOP/s':>8}"
    header += "".join(f" {'vs ' + r:>12}" for r in references)
    lines = [header]
    for name, t in timings.items():
        row = f"{name:<30} {fmt_time(t.median):>11} {t.spread * 100:>6.1f}%"
        if per > 1:
            row += f" {fmt_time(t.median / per):>10}"
        if bytes_moved is not None:
            row += f" {bytes_moved / t.median / 1e9:>8.2f}"
            if bandwidth:
                row += f" {bytes_moved / t.median / 1e9 / bandwidth * 100:>7.0f}%"
        if flops is not None:
            row += f" {flops / t.median / 1e9:>8.2f}"
        row += "".join(f" {t.median / timings[r].median:>11.2f}x" for r in references)
        lines.append(row)
    if bandwidth is not None and bytes_moved is not None:
        lines.append(f"(GB/s counts the minimal bytes read + written; measured copy bandwidth {bandwidth:.1f} GB/s)")
    return "\n".join(lines)


def fmt_time(seconds: float) -> str:
    """Seconds as a short human-readable string (s, ms, us or ns)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds / 1e-9:.1f} ns"


def machine_info(device: str = "cpu", command: str | None = None) -> dict:
    """Machine (CPU model, GPU name on a CUDA device), library versions and command, for recorded results."""
    import os
    import platform
    import sys

    import numpy as np

    import gpuad

    info = {"python": platform.python_version(), "numpy": np.__version__, "gpuad": gpuad.__version__,
            "machine": platform.machine(), "processor": _cpu_model() or platform.machine(),
            "cpus": os.cpu_count(), "device": device, "command": command or " ".join(sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for mod in ("numba", "torch", "jax", "cupy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                         "NUMBA_NUM_THREADS") if k in os.environ}
    if info["torch"]:
        threads["torch"] = __import__("torch").get_num_threads()
    if info["numba"]:
        threads["numba"] = __import__("numba").get_num_threads()
    info["threads"] = threads
    info["loadavg_start"] = os.getloadavg()[0]  # other work on the machine (noisy shared VMs)
    if device.startswith("cuda"):
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return info


def pin_threads(n: int, argv: list[str]) -> None:
    """Re-run `argv` (a command line for sys.executable) in a fresh process whose thread pools (OpenMP
    for torch, OpenBLAS, MKL, Numba, XLA) all have `n` threads, idle OpenMP threads sleeping; returns
    at once when this process already runs that way. The pools read these variables at import, so a
    fresh process is the only reliable way; on a loaded 2-core machine n=1 gives the steadier ratios."""
    import os
    import sys

    want = {"OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n),
            "NUMBA_NUM_THREADS": str(n), "OMP_WAIT_POLICY": "PASSIVE",
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'false' if n == 1 else 'true'} "
                         f"intra_op_parallelism_threads={n}"}
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **want})


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
