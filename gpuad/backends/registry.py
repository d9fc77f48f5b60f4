"""The backend registry: names -> backend objects, and device strings -> backends, resolved once."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import devices
from ..errors import DeviceError

_factories: dict[str, Callable[[], Any]] = {}
_instances: dict[str, Any] = {}
_by_device: dict[str, Any] = {}
_device_kinds: dict[str, list[str]] = {"cpu": [], "cuda": []}


def register(name: str, backend: Any, device_kind: str | None = None) -> None:
    """Register a backend object (or a zero-argument factory) under `name`.

    `device_kind` ("cpu" or "cuda") makes it a candidate for that kind of device; the most recently
    registered available backend of a kind wins."""
    if callable(backend) and not hasattr(backend, "xp"):
        _factories[name] = backend
        _instances.pop(name, None)
    else:
        _instances[name] = backend
    kind = device_kind or getattr(backend, "device_kind", None)
    if kind:
        _device_kinds.setdefault(kind, [])
        if name in _device_kinds[kind]:
            _device_kinds[kind].remove(name)
        _device_kinds[kind].insert(0, name)
    _by_device.clear()


def get(name: str) -> Any:
    """The backend registered as `name`; raises if it cannot run on this machine."""
    if name not in _instances:
        if name not in _factories:
            raise KeyError(f"no backend named {name!r}; registered: {sorted(set(_factories) | set(_instances))}")
        _instances[name] = _factories[name]()
    return _instances[name]


def available() -> list[str]:
    """Names of the backends that can run here, e.g. ["numpy", "numba", "cupy"]."""
    names = []
    for name in list(dict.fromkeys([*_instances, *_factories])):
        try:
            backend = get(name)
        except Exception:
            continue
        if getattr(backend, "available", True):
            names.append(name)
    return names


def instances() -> list:
    """Every backend object constructed so far, one per device (for seeding and statistics)."""
    return list({id(b): b for b in [*_instances.values(), *_by_device.values()]}.values())


def for_device(device) -> Any:
    """The backend object for a device string; resolved once per distinct string and cached."""
    backend = _by_device.get(device)
    if backend is not None:
        return backend
    canonical = devices.normalize(device)
    kind, _, index = canonical.partition(":")
    errors = []
    for name in _device_kinds.get(kind, []):
        try:
            candidate = get(name)
        except Exception as exc:  # an optional backend whose library is missing
            errors.append(f"{name}: {exc}")
            continue
        if getattr(candidate, "available", True):
            backend = candidate.on_device(int(index)) if index else candidate
            break
    if backend is None:
        why = "; ".join(errors) or "no backend registered for it"
        raise DeviceError(
            f"device {canonical!r} is not available ({why}); available backends: {available()}")
    _by_device[device] = backend
    _by_device[canonical] = backend
    return backend
