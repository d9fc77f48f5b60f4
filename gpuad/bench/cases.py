"""What a benchmark run is made of: the environment (device, clock, comparison libraries), cases
(implementations of one computation with a reference), and running a case: check, then time."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .harness import CudaEventClock, HostClock, check_same, compare, format_table


@dataclass
class Env:
    """One run's settings and resources: device and array namespace, clock, comparisons, notes."""

    device: str = "cpu"
    sizes: list[int] = field(default_factory=lambda: [2 ** k for k in range(10, 25, 2)])
    samples: int = 7
    min_sample_s: float = 0.02
    compare: tuple[str, ...] = ("torch", "jax")
    notes: list[str] = field(default_factory=list)
    xp: Any = None
    clock: Any = None
    torch: Any = None
    jax: Any = None
    bandwidth: float | None = None

    def __post_init__(self):
        import gpuad as ga

        self.gpu = self.device.startswith("cuda")
        self.backend = ga.backends.for_device(self.device)
        self.xp = self.backend.xp
        if self.gpu:
            import cupy

            self.xp = cupy
            self.clock = CudaEventClock(cupy)
        else:
            self.clock = HostClock()
        for name in self.compare:
            setattr(self, name, self._load(name))

    def _load(self, name: str):
        """The comparison library `name`, or None (with a note) when it is not installed or not usable."""
        if name not in ("torch", "jax"):
            self.note(f"--compare {name}: unknown comparison (torch and jax are known), skipped")
            return None
        try:
            module = importlib.import_module(name)
        except ImportError:
            self.note(f"{name}: not installed, comparison skipped")
            return None
        if name == "torch" and self.gpu and not module.cuda.is_available():
            self.note("torch: installed without CUDA, comparison skipped on the GPU")
            return None
        if name == "jax":
            module.config.update("jax_enable_x64", False)
            if self.gpu and not any(d.platform == "gpu" for d in module.devices()):
                self.note("jax: no GPU device, comparison skipped on the GPU")
                return None
        return module

    @property
    def torch_device(self) -> str:
        """torch's name for this run's device."""
        return "cuda" if self.gpu else "cpu"

    def note(self, text: str) -> None:
        """Record a note (a skipped comparison or case); printed at the end and kept in the JSON."""
        if text not in self.notes:
            self.notes.append(text)

    def array(self, host):
        """A host NumPy array on the run's device (a CuPy array on the GPU)."""
        return self.xp.asarray(host)

    def torch_tensor(self, host, requires_grad: bool = False):
        """A torch tensor on this run's device from a host array."""
        t = self.torch.tensor(host, device=self.torch_device)
        return t.requires_grad_(True) if requires_grad else t

    def jax_array(self, host):
        """A JAX array on JAX's default device from a host array."""
        return self.jax.device_put(host)


@dataclass
class Case:
    """One computation at one size: implementations (zero-argument callables returning their result,
    which is checked against the reference's before anything is timed) and what the numbers mean."""

    suite: str
    name: str
    impls: dict[str, Callable[[], Any]]
    reference: str
    size: int | None = None
    shape: str = ""
    bytes: int | None = None  # minimal bytes read + written per call (memory-bound kernels)
    flops: float | None = None
    per: int = 1  # items per call (ops of an overhead chain): the table also shows time per item
    rtol: float = 1e-4
    atol: float = 1e-5
    pause_s: float = 0.01  # longer after BLAS calls (OpenBLAS threads spin ~0.1 s after a matmul)

    @property
    def title(self) -> str:
        """How the case is named in tables, notes and errors."""
        size = f" n={self.size}" if self.size is not None else ""
        return f"[{self.suite}] {self.name}{size}" + (f" ({self.shape})" if self.shape else "")


def check_case(case: Case, env: Env | None = None) -> None:
    """Run every implementation once and raise ResultMismatch unless all agree with the reference.

    With `env`, an implementation that raises (a feature still being built) is dropped from the case
    with a note instead of ending the run; a wrong result always raises."""
    outputs = {}
    for name, fn in list(case.impls.items()):
        try:
            outputs[name] = fn()
        except Exception as exc:
            if env is None or name == case.reference:
                raise
            env.note(f"{case.title}: {name} raised {type(exc).__name__}: {exc}; left out")
            del case.impls[name]
    check_same(outputs, case.reference, rtol=case.rtol, atol=case.atol, label=case.title)


def run_case(case: Case, env: Env) -> dict:
    """Check, then time a case; returns its JSON record (with every sample) and prints its table."""
    check_case(case, env)
    timings = compare(case.impls, samples=env.samples, min_sample_s=env.min_sample_s,
                      pause_s=case.pause_s, clock=env.clock)
    references = [case.reference] + [name for name in timings if name != case.reference
                                      and name.split()[0] in ("torch", "jax")]
    print(case.title)
    print(format_table(timings, references, bytes_moved=case.bytes, flops=case.flops, per=case.per,
                       bandwidth=env.bandwidth))
    print()
    return {"kind": "time", "suite": case.suite, "case": case.name, "size": case.size, "shape": case.shape,
            "reference": case.reference, "bytes": case.bytes, "flops": case.flops, "per": case.per,
            "impls": {name: t.to_json() for name, t in timings.items()}}


def feature(path: str) -> Any:
    """`gpuad.<path>` (dotted) when that feature exists in this checkout, else None."""
    import gpuad

    obj: Any = gpuad
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            try:
                obj = importlib.import_module(f"{obj.__name__}.{part}")
            except (ImportError, AttributeError):
                return None
    return obj


def document(env: Env, info: dict, suites: list[str], records: list[dict]) -> dict:
    """The JSON document of a run: schema, machine and versions, settings, notes, every record."""
    import os

    info["loadavg_end"] = os.getloadavg()[0]
    return {"schema": "gpuad-bench/1", "machine": info, "device": env.device, "suites": suites,
            "compare": list(env.compare), "sizes": env.sizes, "repeat": env.samples,
            "min_sample_s": env.min_sample_s, "notes": env.notes, "results": records}
