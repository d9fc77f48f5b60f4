"""Where compiled CPU kernels live: in memory on the Program, and on disk as generated modules whose
Numba machine code is cached beside them (a second process loads instead of compiling). `stats`
counts what happened, so tests and users can tell a cache hit from a compile."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

stats = {"memory_hits": 0, "disk_hits": 0, "compiles": 0}


def cache_dir() -> Path:
    """$GPUAD_CACHE_DIR, else ~/.cache/gpuad; created on first use."""
    root = Path(os.environ.get("GPUAD_CACHE_DIR") or Path.home() / ".cache" / "gpuad") / "elementwise"
    root.mkdir(parents=True, exist_ok=True)
    return root


def load_module(source: str, tag: str):
    """Import generated `source` from a file named by its hash (written once; reused by every process)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:20]
    name = f"gpuad_kernel_{tag}_{digest}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    path = cache_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def record_compile(dispatcher, signature) -> None:
    """Compile (or load from Numba's disk cache) `dispatcher` for `signature`, counting which."""
    hits_before = sum(dispatcher.stats.cache_hits.values())
    dispatcher.compile(signature)
    if sum(dispatcher.stats.cache_hits.values()) > hits_before:
        stats["disk_hits"] += 1
    else:
        stats["compiles"] += 1
