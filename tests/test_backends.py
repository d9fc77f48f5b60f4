"""The backend registry: names, device resolution, and a third party registering its own backend."""
from __future__ import annotations

import os

import numpy as np
import pytest

import gpuad as ga
from gpuad.backends import CPUBackend, registry


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registry tables copied for the test, restored afterwards."""
    for name in ("_factories", "_instances", "_by_device"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    monkeypatch.setattr(registry, "_device_kinds", {k: list(v) for k, v in registry._device_kinds.items()})


def test_builtin_backends():
    assert {"numpy", "numba"} <= set(ga.backends.available())
    cpu = ga.backends.get("numpy")
    assert ga.ones(2).backend is cpu and registry.for_device("cpu") is cpu
    with pytest.raises(KeyError, match="no backend named 'nope'"):
        ga.backends.get("nope")


def test_third_party_backend_serves_its_device_kind(isolated_registry):
    custom = CPUBackend()
    custom.name = "custom"
    ga.backends.register("custom", custom, device_kind="cpu")
    assert ga.backends.get("custom") is custom and "custom" in ga.backends.available()
    x = ga.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert x.backend is custom
    (x * x).sum().backward()  # ops and the engine run through the new backend's xp
    assert x.grad.backend is custom and x.grad.tolist() == [2.0, 4.0, 6.0]


def test_lazy_factory_is_built_once_on_first_use(isolated_registry):
    built = []

    def factory():
        built.append(1)
        return CPUBackend()

    ga.backends.register("lazy", factory)
    assert built == []
    first = ga.backends.get("lazy")
    assert ga.backends.get("lazy") is first and built == [1]


PAIR_FAULTS = """
import resource, numpy as np, gpuad as ga
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = (4 << 20) // 8
a, b = np.ones(n), np.ones(n)
del a, b
before = faults()
for _ in range(10):
    a, b = np.ones(n), np.ones(n)
    del a, b
print(ga.backends.for_device('cpu').allocator, ga.memory.stats()['allocator'], (faults() - before) // 10)
"""


def _pair_faults(allocator: str) -> tuple[str, str, int]:
    """In a fresh process with GPUAD_HOST_ALLOCATOR=allocator: the allocator gpuad reports (backend and
    memory stats) and the page faults per freed-and-reallocated pair of 4 MiB arrays."""
    import subprocess
    import sys

    env = {**os.environ, "GPUAD_HOST_ALLOCATOR": allocator}
    out = subprocess.run([sys.executable, "-c", PAIR_FAULTS], env=env, capture_output=True, text=True, check=True)
    label, stats_label, faults = out.stdout.split()
    return label, stats_label, int(faults)


@pytest.mark.skipif(ga.backends.for_device("cpu").allocator != "cached",
                    reason="the C library has no mallopt (not glibc)")
def test_freed_host_buffers_are_reused_without_page_faults():
    """A training step frees and reallocates its working set: with the cached host allocator the next
    pair of 4 MiB arrays reuses the last pair's pages (glibc's defaults fault ~1000 pages per pair)."""
    label, stats_label, faults = _pair_faults("cached")
    assert [label, stats_label] == ["cached", "cached"]
    assert faults < 200
    n = (4 << 20) // 8
    ga.memory.empty_cache("cpu")  # trims the heap; the next arrays fault in again, still correct
    np.testing.assert_array_equal(np.ones(n)[-3:], 1.0)


def test_system_host_allocator_is_left_alone_when_asked():
    """GPUAD_HOST_ALLOCATOR=system keeps glibc's defaults: then every pair of 4 MiB arrays faults its
    pages in again (the cost the cached allocator removes; README's "about 1,000 page faults")."""
    import platform

    label, stats_label, faults = _pair_faults("system")
    assert [label, stats_label] == ["system", "system"]
    if platform.libc_ver()[0] == "glibc":
        assert faults > 500
