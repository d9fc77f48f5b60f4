"""`gpuad bench` (filled in by the benchmark issue)."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--suite", choices=["kernels", "training", "memory", "all"], default="all")


def run(args) -> int:
    raise SystemExit("gpuad bench: not implemented yet")
