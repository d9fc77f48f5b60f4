"""`gpuad bench`: kernel, training and memory benchmarks in one process, each implementation checked
against its reference before it is timed, with ratios to the comparisons measured in the same run.

    gpuad bench --suite kernels|training|memory|all --device cpu|cuda --compare torch,jax
                --json F --plot F.png [--sizes 1024 2**20 ...] [--repeat N]
"""
from __future__ import annotations

import argparse
import importlib
import json
import shlex

SUITES = ("kernels", "training", "memory")


def _size(text: str) -> int:
    """An element count: `65536` or `2**16`."""
    base, _, exp = text.partition("**")
    try:
        return int(base) ** int(exp) if exp else int(base)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (write 65536 or 2**16)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `gpuad bench`."""
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--compare", default="torch,jax",
                        help="comma-separated comparisons; those not installed are skipped with a note")
    parser.add_argument("--json", metavar="F", help="write every sample, machine, versions and command")
    parser.add_argument("--plot", metavar="F.png", help="throughput vs size (log-log) and ratio bars")
    parser.add_argument("--sizes", nargs="+", type=_size, metavar="N",
                        help="kernel sizes in elements (default 2**10 2**12 ... 2**24)")
    parser.add_argument("--repeat", type=int, default=7, help="timed samples per implementation (median)")
    parser.add_argument("--min-time", type=float, default=0.02,
                        help="seconds one sample lasts at least (calls are repeated until it does)")
    parser.add_argument("--threads", type=int,
                        help="run in a fresh process with every CPU thread pool (torch, BLAS, Numba, XLA) "
                             "at N threads (default: the libraries' own defaults)")


def _command(args) -> str:
    """The command line that reproduces this run (from the parsed options)."""
    parts = ["gpuad bench", f"--suite {args.suite}", f"--device {args.device}",
             f"--compare {shlex.quote(args.compare)}"]
    if args.sizes:
        parts.append("--sizes " + " ".join(map(str, args.sizes)))
    parts += [f"--repeat {args.repeat}", f"--min-time {args.min_time}"]
    if args.threads:
        parts.append(f"--threads {args.threads}")
    parts += [f"--{k} {shlex.quote(getattr(args, k))}" for k in ("json", "plot") if getattr(args, k)]
    return " ".join(parts)


def run(args) -> int:
    """Run the chosen suites, print their tables and write the JSON and plot if asked."""
    from ..errors import DeviceError
    from .cases import Env, document, run_case
    from .harness import copy_bandwidth, machine_info, pin_threads

    if args.threads:
        pin_threads(args.threads, ["-m", "gpuad", *shlex.split(_command(args))[1:]])
    compare = tuple(c.strip() for c in (args.compare or "").split(",") if c.strip())
    try:
        env = Env(device=args.device, samples=max(1, args.repeat), min_sample_s=args.min_time, compare=compare)
    except DeviceError as exc:
        raise SystemExit(f"gpuad bench: {exc}") from None
    if args.sizes:
        env.sizes = sorted(args.sizes)
    suites = SUITES if args.suite == "all" else (args.suite,)
    info = machine_info(env.device, command=_command(args))
    env.bandwidth = copy_bandwidth(xp=env.xp, clock=env.clock, samples=max(3, env.samples))
    info["copy_bandwidth_gbs"] = env.bandwidth
    print(f"gpuad bench on {env.device}: {info['processor']}, {info['cpus']} cpus"
          + (f", {info['gpu']}" if "gpu" in info else "") + f"; copy bandwidth {env.bandwidth:.1f} GB/s; "
          f"load average {info['loadavg_start']:.1f}; threads {info['threads']}")
    print(", ".join(f"{k} {info[k]}" for k in ("python", "numpy", "numba", "torch", "jax", "cupy") if info[k]))
    print()
    records = []
    for suite in suites:
        if suite == "memory":
            from .suite_memory import run as run_memory

            records.extend(run_memory(env))
            continue
        module = importlib.import_module(f"{__name__}.suite_{suite}")
        for case in module.cases(env):
            records.append(run_case(case, env))
    for text in env.notes:
        print(f"note: {text}")
    result = document(env, info, list(suites), records)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
        print(f"wrote {args.json}")
    if args.plot:
        from .plot import plot

        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
