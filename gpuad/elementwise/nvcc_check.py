"""Compile the CUDA source generated for every built-in pointwise op (forward, VJP and JVP programs,
in float16, float32 and float64) with nvcc, without a GPU. Run by tests/test_elementwise_cuda.py
and from CI as `python -m gpuad.elementwise.nvcc_check [--nvcc PATH] [--arch sm_90]`."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .program import Program

DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def builtin_programs() -> dict[str, Program]:
    """Every built-in op's program and its derived VJP (all float inputs) and JVP (all tangents)."""
    from ..ops.elementwise import PROGRAMS

    out: dict[str, Program] = {}
    for name, prog in PROGRAMS.items():
        floats = tuple(i for i, v in enumerate(prog.inputs) if v.kind == "f")
        out[name] = prog
        out[f"{name} vjp"] = prog.vjp(floats)
        out[f"{name} jvp"] = prog.jvp(tuple(v.kind == "f" for v in prog.inputs))
    return out


def _spec_as_device_function(spec: dict) -> str:
    """cuda_spec's operation inside a __device__ function with CuPy's parameter names and types."""
    def params(text, ref):
        out = []
        for p in filter(None, (q.strip() for q in text.split(","))):
            dtype, name = p.split()
            ctype = "float16" if dtype == "float16" else {"bool": "bool", "float32": "float",
                                                          "float64": "double"}[dtype]
            out.append(f"{ctype}{' &' if ref else ' '}{name}")
        return out

    args = ", ".join(params(spec["in_params"], False) + params(spec["out_params"], True))
    return f"{spec['preamble']}\n__device__ void {spec['name']}_op({args}) {{\n{spec['operation']}\n}}\n"


def sources(dtype: np.dtype) -> dict[str, str]:
    """name -> standalone translation unit, every float input of `dtype` (bool inputs stay bool); each
    also holds the program's cupy.ElementwiseKernel operation in a __device__ function (CuPy's float16
    stands in as __half)."""
    result = {}
    for name, prog in builtin_programs().items():
        in_dtypes = tuple(np.dtype(np.bool_) if v.kind == "b" else dtype for v in prog.inputs)
        spec = _spec_as_device_function(prog.cuda_spec(in_dtypes))
        result[name] = prog.cuda_source(in_dtypes) + "typedef __half float16;\n" + spec
    return result


def compile_all(nvcc: str = "nvcc", arch: str = "sm_90") -> list[str]:
    """Compile every source (one nvcc call per dtype); returns one message per failed dtype."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in DTYPES:
            units = sources(dtype)
            path = Path(tmp) / f"builtins_{dtype.name}.cu"
            path.write_text("\n".join(units.values()))
            proc = subprocess.run([nvcc, f"-arch={arch}", "-c", str(path), "-o", str(path.with_suffix(".o"))],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append(f"{dtype.name} ({len(units)} kernels): {proc.stderr.strip()[-3000:]}")
    return failures


def main(argv: list[str] | None = None) -> int:
    """CLI entry: exit 0 when everything compiles, 1 on a compile error, 2 when nvcc is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvcc", default=shutil.which("nvcc") or "nvcc")
    parser.add_argument("--arch", default="sm_90")
    args = parser.parse_args(argv)
    if shutil.which(args.nvcc) is None:
        print(f"nvcc not found ({args.nvcc})", file=sys.stderr)
        return 2
    failures = compile_all(args.nvcc, args.arch)
    count = len(builtin_programs()) * len(DTYPES)
    for failure in failures:
        print(failure, file=sys.stderr)
    verdict = f"{len(failures)} of {len(DTYPES)} dtypes failed" if failures else "all compiled"
    print(f"{count} kernels ({len(DTYPES)} dtypes), {args.nvcc} -arch={args.arch}: {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
