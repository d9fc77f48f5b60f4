"""GPU tests only: tests marked `gpu` are skipped, with the reason, unless CuPy sees a CUDA device."""
from __future__ import annotations

import pytest


def _gpu_missing() -> str | None:
    """Why GPU tests cannot run here, or None when they can."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA libraries that fail to load
        return f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no CUDA driver or device ({type(exc).__name__}: {exc})"
    return None if count else "no CUDA device visible"


def pytest_collection_modifyitems(config, items) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    reason = _gpu_missing() if gpu_items else None
    if reason:
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
        for item in gpu_items:
            item.add_marker(skip)
