"""`gpuad train` (filled in by the training issue)."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--model", choices=["mlp", "cnn"], default="cnn")


def run(args) -> int:
    raise SystemExit("gpuad train: not implemented yet")
