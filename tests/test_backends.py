"""The backend registry: names, device resolution, and a third party registering its own backend."""
from __future__ import annotations

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
