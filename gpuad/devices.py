"""Device strings: "cpu", "cuda", "cuda:N"; parsed once and normalized ("cuda" means "cuda:0")."""
from __future__ import annotations


def normalize(device) -> str:
    """Return the canonical device string for "cpu", "cuda", "cuda:N" or an object with a .device."""
    if device is None:
        return "cpu"
    device = getattr(device, "device", device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {device!r}")
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind in ("cuda", "gpu"):
        if not index:
            return "cuda:0"
        if index.isdigit():
            return f"cuda:{int(index)}"
    raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
