"""Command line: `gpuad train | bench | info` (also `python -m gpuad`)."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module providing add_arguments(parser) and run(args) -> int
_COMMANDS = {
    "train": ("gpuad.train", "train a network on the bundled digits or an .npz/MNIST file"),
    "bench": ("gpuad.bench", "kernel, training and memory benchmarks with ratios to references"),
    "info": ("gpuad.cli", "version, backends, devices and memory pools"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`gpuad info` takes no options."""


def run(args) -> int:
    """Print version, backends, devices and memory statistics."""
    import platform

    import numpy as np

    import gpuad as ga

    print(f"gpuad {ga.__version__} (Python {platform.python_version()}, NumPy {np.__version__})")
    try:
        import numba

        print(f"numba {numba.__version__}")
    except ImportError:
        print("numba: not installed (pointwise kernels run as NumPy)")
    print(f"backends: {', '.join(ga.backends.available())}")
    cuda = ga.cuda.is_available()
    print(f"cuda: {'available, ' + str(ga.cuda.device_count()) + ' device(s)' if cuda else 'not available'}")
    devices = ["cpu"] + [f"cuda:{i}" for i in range(ga.cuda.device_count())] if cuda else ["cpu"]
    for device in devices:
        s = ga.memory.stats(device)
        print(f"memory {device}: current {s['current_bytes']} B, peak {s['peak_bytes']} B, "
              f"pool {s['pool_bytes']} B")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpuad", description="gpuad: tensor autograd on GPUs and CPUs")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in _COMMANDS.items():
        module = sys.modules[__name__] if module_name == __name__ else importlib.import_module(module_name)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return modules[args.command].run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
