"""Per-op overhead and MLP step (issue 2): gpuad vs PyTorch eager (CPU) and hand-written NumPy, measured
interleaved in one process.

    python benchmarks/overhead.py [--repeat 15] [--json benchmarks/results/overhead-cpu-DATE.json]

It also times the chain's forward alone (graph recorded, then dropped), to split the per-op cost.

Targets on the 2-core reference machine: per-op cost of the 200-op chain (forward + backward) no more
than PyTorch eager's; the MLP step within 10% of hand-written NumPy.
"""
from __future__ import annotations

import argparse
import json
import sys

from gpuad.bench.cases import Env, document, run_case
from gpuad.bench.harness import fmt_time, machine_info, pin_threads
from gpuad.bench.overhead import CHAIN_OPS, chain_case, mlp_case, profile_chain


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, print tables and the targets' verdicts, optionally write JSON."""
    parser = argparse.ArgumentParser(description="gpuad per-op overhead and MLP step vs PyTorch and NumPy")
    parser.add_argument("--repeat", type=int, default=15, help="timed samples per implementation")
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per sample at least")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="F", help="write every sample, machine and versions")
    parser.add_argument("--threads", type=int,
                        help="run in a fresh process with every thread pool (torch, BLAS, Numba) at N threads")
    parser.add_argument("--profile", action="store_true",
                        help="also break the chain's per-op cost down by layer (cProfile self time)")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.threads:
        pin_threads(args.threads, [__file__, *argv])
    env = Env(device=args.device, sizes=[8], samples=args.repeat, min_sample_s=args.min_time,
              compare=("torch",))
    info = machine_info(env.device, command="python benchmarks/overhead.py " + " ".join(argv))
    print(f"{info['processor']}, {info['cpus']} cpus; " +
          ", ".join(f"{k} {info[k]}" for k in ("python", "numpy", "torch") if info[k]) + "\n")
    records = [run_case(chain_case(env), env), run_case(mlp_case(env), env),
               run_case(chain_case(env, backward=False), env)]
    chain, mlp, forward = (r["impls"] for r in records)
    per_op = {name: t["median"] / records[0]["per"] for name, t in chain.items()}
    if "gpuad" in per_op:
        line = f"per-op cost (forward + backward): gpuad {fmt_time(per_op['gpuad'])}"
        if "torch" in per_op:
            verdict = "meets" if per_op["gpuad"] <= per_op["torch"] else "misses"
            line += (f", torch eager {fmt_time(per_op['torch'])}: {per_op['gpuad'] / per_op['torch']:.2f}x "
                     f"({verdict} the target <= 1.00x)")
        print(line)
        if "torch" in forward:
            print(f"  of which the forward (graph recorded): gpuad {fmt_time(forward['gpuad']['median'] / CHAIN_OPS)}, "
                  f"torch eager {fmt_time(forward['torch']['median'] / CHAIN_OPS)}: "
                  f"{forward['gpuad']['median'] / forward['torch']['median']:.2f}x")
    if "gpuad ops" in mlp:
        hand = mlp[records[1]["reference"]]["median"]
        ratio = mlp["gpuad ops"]["median"] / hand
        print(f"MLP step: gpuad {fmt_time(mlp['gpuad ops']['median'])}, {records[1]['reference']} "
              f"{fmt_time(hand)}: {ratio:.2f}x "
              f"({'meets' if ratio <= 1.10 else 'misses'} the target <= 1.10x)")
    if args.profile:
        print("\nwhere gpuad's per-op time goes (chain, forward + backward; cProfile self time scaled to "
              "the unprofiled cost):")
        groups = profile_chain(env, per_op["gpuad"])
        for name, seconds in groups:
            print(f"  {name:<52} {seconds * 1e6:6.2f} us")
        records.append({"kind": "profile", "suite": "training", "case": chain_case(env).name,
                        "groups": [{"name": name, "seconds_per_op": seconds} for name, seconds in groups]})
    for text in env.notes:
        print(f"note: {text}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(document(env, info, ["training"], records), f, indent=1, default=float)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
