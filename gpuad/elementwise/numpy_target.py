"""The NumPy target (reference and fallback): a program becomes straight-line Python calling the
array namespace's ufuncs, generated once per program; broadcasting and dtypes are NumPy's own."""
from __future__ import annotations

import numpy as np

from .program import Program, result_dtypes

_ndarray = np.ndarray

_UFUNC = {
    "neg": "negative", "add": "add", "sub": "subtract", "mul": "multiply", "div": "true_divide",
    "pow": "power", "max": "maximum", "min": "minimum", "lt": "less", "le": "less_equal",
    "gt": "greater", "ge": "greater_equal", "eq": "equal", "ne": "not_equal", "and": "logical_and",
    "or": "logical_or", "not": "logical_not", "exp": "exp", "log": "log", "log1p": "log1p",
    "expm1": "expm1", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tan": "tan", "tanh": "tanh",
    "sinh": "sinh", "cosh": "cosh", "asin": "arcsin", "acos": "arccos", "atan": "arctan", "erf": "erf",
    "abs": "abs", "sign": "sign", "floor": "floor", "ceil": "ceil", "where": "where", "clip": "clip",
}


def python_source(program: Program, guarded: bool = False) -> str:
    """`def bind(xp, dt)` returning `run(a0, ...)`: one namespace call per node, the functions it calls
    bound once as closure variables; `dt` is the float dtype bools become. `guarded`: `bind(xp, dt,
    fallback, limit)`, whose `run` computes only when every input has dtype `dt` and fewer than `limit`
    elements, and calls `fallback` with the same arrays otherwise (see `guarded`). There numeric
    constants are 0-d arrays of `dt` made once: a ufunc takes them at an array's cost, where a Python
    float costs twice that (NumPy converts it per call); with every input of dtype `dt` the result is the same."""
    names = {}
    lines = []
    consts: dict[str, str] = {}  # guarded: literal -> the name of its 0-d array, bound once

    def constant(literal: str) -> str:
        if not guarded:
            return literal
        return consts.setdefault(literal, f"k{len(consts)}")

    used = {"ndarray", "asarray"}
    for k, node in enumerate(program.nodes):
        if node.op == "var":
            names[node.uid] = node.value
            continue
        if node.op == "const":
            v = node.value
            literal = f"float({repr(v)!r})" if isinstance(v, float) and not np.isfinite(v) else repr(v)
            names[node.uid] = literal if node.kind == "b" else constant(literal)
            continue
        args = [names[a.uid] for a in node.args]
        if node.op == "where" and not guarded:  # the guarded form's constants are arrays of dt already
            args[1:] = [f"dt.type({a})" if n.op == "const" else a for a, n in zip(args[1:], node.args[1:])]
        if node.op == "float":
            expr = f"asarray({args[0]}).astype(dt)"
        elif node.op == "erfc":
            expr = f"subtract({constant('1.0')}, erf({args[0]}))"
            used.update(("subtract", "erf"))
        else:
            expr = f"{_UFUNC[node.op]}({', '.join(args)})"
            used.add(_UFUNC[node.op])
        names[node.uid] = f"t{k}"
        lines.append(f"        t{k} = {expr}")
    outs = ", ".join(names[o.uid] for o in program.outputs)
    params = ", ".join(v.value for v in program.inputs)
    body = "\n".join(lines)
    ret = outs if program.n_outputs == 1 else f"({outs},)"
    if program.n_outputs == 1 and program.outputs[0].op not in ("var", "const"):  # a 0-d result is a scalar
        ret = f"{outs} if type({outs}) is ndarray else asarray({outs})"
    bound = "\n".join([f"    {name} = xp.{name}" for name in sorted(used)] +
                      [f"    {name} = asarray({literal}, dt)" for literal, name in consts.items()])
    head = "def bind(xp, dt):"
    if guarded:
        head = "def bind(xp, dt, fallback, limit):"
        test = " and ".join([f"{v.value}.dtype is dt" for v in program.inputs] +
                            [f"{v.value}.size < limit" for v in program.inputs])
        body = f"        if not ({test}):\n            return fallback({params})\n{body}"
    return f"{head}\n{bound}\n\n    def run({params}):\n{body}\n        return {ret}\n\n    return run\n"


def compile_numpy(program: Program, guarded: bool = False):
    """The generated `bind`, built once per program (and form) and kept on it."""
    form = "numpy guarded" if guarded else "numpy"
    fn = program.compiled.get(form)
    if fn is None:
        scope: dict = {}
        exec(compile(python_source(program, guarded), f"<gpuad pointwise {program.name}>", "exec"), scope)
        fn = program.compiled[form] = scope["bind"]
    return fn


def guarded(program: Program, xp, dtype, limit: int, fallback):
    """`run(*arrays)` for the common case, one frame: the generated code when every input has `dtype` and
    fewer than `limit` elements, `fallback(*arrays)` otherwise. None where that dtype needs more than
    the generated code (promotion, several outputs, an output that is an input or a constant)."""
    compute, out_dtype = result_dtypes(program, (dtype,) * program.n_inputs)
    if (compute != dtype or out_dtype != dtype or program.n_outputs != 1
            or program.outputs[0].op in ("var", "const")):
        return None
    return compile_numpy(program, guarded=True)(xp, dtype, fallback, limit)


def evaluate(program: Program, xp, arrays: tuple):
    """Run `program` on `arrays` with NumPy semantics; float16 computes in float32. One array, or a
    tuple when the program has several outputs."""
    n = len(arrays)  # the key: the dtype, or a tuple of dtypes (built without a comprehension's call)
    key = arrays[0].dtype if n == 1 else (arrays[0].dtype, arrays[1].dtype) if n == 2 else tuple(
        [a.dtype for a in arrays])
    run = program.numpy_plans.get(key)
    if run is None:
        run = program.numpy_plans[key] = runner(program, xp, arrays)
    return run(*arrays)


def runner(program: Program, xp, arrays: tuple):
    """The callable evaluating `program` on arrays of these dtypes (kept in `program.numpy_plans`): the
    generated function itself, bound to the namespace and dtype, when NumPy's promotion already gives
    the output dtype."""
    compute, out_dtype = result_dtypes(program, tuple([a.dtype for a in arrays]))
    fn = compile_numpy(program)(xp, compute)
    if compute == out_dtype and all(o.op not in ("var", "const") for o in program.outputs):
        if program.n_outputs == 1:
            return fn
        return lambda *arrays: _distinct(xp, fn(*arrays))
    return lambda *arrays: _fixed(program, xp, fn, compute, out_dtype, arrays)


def _fixed(program: Program, xp, fn, compute, out_dtype, arrays: tuple):
    """Outputs of the right dtype and shape where promotion alone does not give them: float16 inputs
    compute in float32; an output that is an input or a constant is broadcast to the output's shape."""
    if compute != out_dtype:
        arrays = tuple(a.astype(compute) if a.dtype == out_dtype else a for a in arrays)
    results = fn(*arrays)
    results = (results,) if program.n_outputs == 1 else results
    shape = None
    fixed = []
    for node, r in zip(program.outputs, results):
        if node.op in ("var", "const") or not isinstance(r, xp.ndarray):
            if shape is None:
                shape = np.broadcast_shapes(*(a.shape for a in arrays))
            dtype = np.bool_ if node.kind == "b" else (compute if node.op == "const" else None)
            r = xp.array(xp.broadcast_to(xp.asarray(r, dtype=dtype), shape))
        if r.dtype != out_dtype and r.dtype.kind == "f" and compute != out_dtype:
            r = r.astype(out_dtype)
        fixed.append(r)
    return fixed[0] if len(fixed) == 1 else _distinct(xp, fixed)


def _distinct(xp, results) -> tuple:
    """Every output its own array (equal outputs are one node, so NumPy would return one object twice;
    callers may write into an output, as the linearized backward does)."""
    seen: set[int] = set()
    out = []
    for r in results:
        r = r if type(r) is _ndarray else xp.asarray(r)
        if id(r) in seen:
            r = r.copy()
        seen.add(id(r))
        out.append(r)
    return tuple(out)
