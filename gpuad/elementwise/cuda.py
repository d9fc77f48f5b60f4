"""The CUDA target: a program as C statements, wrapped either as cupy.ElementwiseKernel arguments (the
CUDA backend builds and caches the kernel; CuPy does the broadcasting) or as a standalone
translation unit with a flat grid-stride __global__ loop (what the nvcc compile check builds)."""
from __future__ import annotations

import re

import numpy as np

from .program import Program, result_dtypes

_CTYPE = {"float16": "float", "float32": "float", "float64": "double", "bool": "bool", "int8": "signed char",
          "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
          "uint16": "unsigned short", "uint32": "unsigned int", "uint64": "unsigned long long"}
_FUNCS = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "sqrt": "sqrt", "sin": "sin",
          "cos": "cos", "tan": "tan", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh", "asin": "asin",
          "acos": "acos", "atan": "atan", "erf": "erf", "erfc": "erfc", "floor": "floor", "ceil": "ceil",
          "abs": "fabs", "pow": "pow"}
_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
          "eq": "==", "ne": "!=", "and": "&&", "or": "||"}


def _literal(value, ctype: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if ctype not in ("float", "double"):
        return f"(({ctype}){int(value)})"
    value = float(value)
    if value != value or value in (np.inf, -np.inf):  # bit patterns: NVRTC has no INFINITY/NAN macros
        bits = {"float": {"nan": "0x7fc00000", "inf": "0x7f800000"},
                "double": {"nan": "0x7ff8000000000000LL", "inf": "0x7ff0000000000000LL"}}[ctype]
        cast = "__int_as_float" if ctype == "float" else "__longlong_as_double"
        text = f"{cast}({bits['nan' if value != value else 'inf']})"
        return f"(-{text})" if value < 0 else text
    return f"(({ctype}){value!r})"


def _keep_first(a: str, b: str, cmp: str) -> str:
    """a where `a cmp b` or a is nan, else b: max (>=) and min (<=) that propagate a nan from either side."""
    return f"((({a} {cmp} {b}) || ({a} != {a})) ? {a} : {b})"


def statements(program: Program, ctype: str, loads: list[str], stores: list[str]) -> list[str]:
    """C statements computing every output: `loads[i]` reads input i, `stores[j]` % value writes output j."""
    names: dict[int, str] = {}
    lines = []
    fsuffix = "f" if ctype == "float" else ""
    for i, v in enumerate(program.inputs):
        names[v.uid] = f"v{i}"
        vtype = "bool" if v.kind == "b" else ctype
        lines.append(f"const {vtype} v{i} = ({vtype})({loads[i]});")
    for k, node in enumerate(program.nodes):
        if node.op == "var":
            continue
        if node.op == "const":
            names[node.uid] = _literal(node.value, ctype)
            continue
        a = [names[x.uid] for x in node.args]
        o = node.op
        if o in _INFIX:
            e = f"({a[0]} {_INFIX[o]} {a[1]})"
        elif o == "neg":
            e = f"(-{a[0]})"
        elif o == "not":
            e = f"(!{a[0]})"
        elif o == "where":
            e = f"({a[0]} ? {a[1]} : {a[2]})"
        elif o == "float":
            e = f"({a[0]} ? ({ctype})1 : ({ctype})0)"
        elif o in ("max", "min"):
            e = _keep_first(a[0], a[1], ">=" if o == "max" else "<=")
        elif o == "clip":
            e = _keep_first(_keep_first(a[0], a[1], ">="), a[2], "<=")
        elif o == "sign":
            e = f"({a[0]} > ({ctype})0 ? ({ctype})1 : ({a[0]} < ({ctype})0 ? ({ctype})-1 : {a[0]}))"
        elif o == "abs" and ctype not in ("float", "double"):  # integers: fabs would convert to double
            e = f"(({a[0]}) < 0 ? -({a[0]}) : ({a[0]}))"
        else:
            e = f"{_FUNCS[o]}{fsuffix}({', '.join(a)})"
        vtype = "bool" if node.kind == "b" else ctype
        names[node.uid] = f"t{k}"
        lines.append(f"const {vtype} t{k} = {e};")
    for j, out in enumerate(program.outputs):
        lines.append(stores[j] % names[out.uid])
    return lines


def _kernel_name(program: Program) -> str:
    return f"gpuad_{re.sub(r'[^0-9A-Za-z_]', '_', program.name)}_{program.digest}"


def _types(program: Program, in_dtypes: tuple) -> tuple[np.dtype, list[np.dtype]]:
    compute, out = result_dtypes(program, in_dtypes)
    return compute, [np.dtype(np.bool_) if o.kind == "b" else out for o in program.outputs]


def elementwise_kernel_spec(program: Program, in_dtypes: tuple) -> dict:
    """cupy.ElementwiseKernel(in_params, out_params, operation, name, preamble=...) arguments."""
    compute, outs = _types(program, in_dtypes)
    ctype = _CTYPE[compute.name]
    stores = [f"o{j} = ({'float16' if d.name == 'float16' else _CTYPE[d.name]})(%s);" for j, d in enumerate(outs)]
    body = statements(program, ctype, [f"a{i}" for i in range(program.n_inputs)], stores)
    return {"in_params": ", ".join(f"{d.name} a{i}" for i, d in enumerate(in_dtypes)),
            "out_params": ", ".join(f"{d.name} o{j}" for j, d in enumerate(outs)),
            "operation": "\n".join(body), "name": _kernel_name(program), "preamble": ""}


def _storage(dtype: np.dtype) -> str:
    return "__half" if dtype.name == "float16" else _CTYPE[dtype.name]


def standalone_source(program: Program, in_dtypes: tuple) -> str:
    """One `extern "C" __global__` kernel over flat arrays of n elements each (no broadcasting)."""
    compute, outs = _types(program, in_dtypes)
    ctype = _CTYPE[compute.name]
    loads = [f"__half2float(a{i}[k])" if d.name == "float16" else f"a{i}[k]" for i, d in enumerate(in_dtypes)]
    stores = [f"o{j}[k] = __float2half(%s);" if d.name == "float16" else f"o{j}[k] = ({_storage(d)})(%s);"
              for j, d in enumerate(outs)]
    params = [f"const {_storage(d)}* __restrict__ a{i}" for i, d in enumerate(in_dtypes)]
    params += [f"{_storage(d)}* __restrict__ o{j}" for j, d in enumerate(outs)]
    body = "\n".join("        " + s for s in statements(program, ctype, loads, stores))
    return (f"// generated by gpuad for {program.name}: {program.key}\n"
            "#include <cuda_fp16.h>\n\n"
            f"extern \"C\" __global__ void {_kernel_name(program)}(long long n, {', '.join(params)}) {{\n"
            "    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n;\n"
            "         k += (long long)blockDim.x * gridDim.x) {\n"
            f"{body}\n    }}\n}}\n")
