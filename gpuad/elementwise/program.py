"""Program: a canonical pointwise expression (inputs a0..a{n-1} -> one or more outputs), the unit that
backends compile and cache. Derived programs (VJP, JVP, one output of a VJP) are built and memoized
here, from the expression graph itself."""
from __future__ import annotations

import functools
import hashlib

import numpy as np

from . import ad
from .expr import Node, const, op, substitute, topological, var

_TRANSCENDENTAL = frozenset(("exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sinh", "cosh",
                            "asin", "acos", "atan", "erf", "erfc", "pow", "sqrt"))


class Program:
    """A pointwise program. `roles[i]` says where input i comes from in a derived program ("x0": the
    forward's input 0, "y": its output, "g": the cotangent, "t0": input 0's tangent)."""

    def __init__(self, inputs: tuple[Node, ...], outputs: tuple[Node, ...], name: str,
                 roles: tuple[str, ...] | None = None):
        canon = tuple(var(f"a{i}", v.kind) for i, v in enumerate(inputs))
        mapping = {v.uid: c for v, c in zip(inputs, canon) if v is not c}
        self.inputs = canon
        self.outputs = tuple(substitute(outputs, mapping)) if mapping else tuple(outputs)
        self.n_inputs, self.n_outputs = len(self.inputs), len(self.outputs)  # attributes: read per kernel call
        self.name = name
        self.roles = roles or tuple(f"x{i}" for i in range(len(inputs)))
        self.nodes = topological(self.outputs)
        self.key = _canonical_text(self.inputs, self.outputs, self.nodes)
        self.digest = hashlib.sha1(self.key.encode()).hexdigest()[:16]
        ops = [n.op for n in self.nodes if n.op not in ("var", "const")]
        # one add/sub/mul/div/neg: NumPy's SIMD loop is as fast as a compiled kernel and costs less to call
        self.single_arithmetic = len(ops) == 1 and ops[0] in ("add", "sub", "mul", "div", "neg")
        self._derived: dict = {}
        self.compiled: dict = {}  # target-specific compiled forms, filled by the code generators
        self.numpy_plans: dict = {}  # the NumPy target's runner per input dtypes (see numpy_target.runner)
        self.kernels: dict = {}  # backend -> the callable running this program on its arrays (kernel_for)

    def __repr__(self) -> str:
        return f"<pointwise program {self.name} {self.outputs}>"

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, Program) and other.key == self.key

    def kernel_for(self, backend):
        """The callable running this program on `backend`'s arrays, made once per backend and kept in
        `kernels`: the backend's own (`xp.pointwise_kernel`) where it has one, else `xp.pointwise` bound to
        this program."""
        make = getattr(backend.xp, "pointwise_kernel", None)
        run = self.kernels[backend] = make(self) if make is not None else functools.partial(
            backend.xp.pointwise, self)
        return run

    # ---- derived programs ---------------------------------------------------------------------
    def _derive(self, key, build):
        prog = self._derived.get(key)
        if prog is None:
            prog = self._derived[key] = build()
        return prog

    def _with_saved_output(self, exprs: list[Node]) -> list[Node]:
        """Read the forward's output as input "y" wherever a derivative recomputes it."""
        y = self.outputs[0]
        if y.op in ("var", "const"):
            return exprs
        return substitute(exprs, {y.uid: var("y")})

    def _build(self, exprs: list[Node], extra: list[tuple[str, Node]], name: str) -> Program:
        """A program over the variables `exprs` read: forward inputs first, then y, g or tangents."""
        used = {n.uid for n in topological(exprs) if n.op == "var"}
        candidates = [(f"x{i}", v) for i, v in enumerate(self.inputs)] + [("y", var("y"))] + extra
        chosen = [(role, v) for role, v in candidates if v.uid in used]
        return Program(tuple(v for _, v in chosen), tuple(exprs), name, tuple(r for r, _ in chosen))

    def vjp(self, wrt: tuple[int, ...]) -> Program:
        """Gradients for the inputs in `wrt`, all in one program reading (saved inputs, y, g)."""
        def build():
            g = var("g")
            grads = ad.reverse(self.outputs[0], g, list(self.inputs))
            exprs = [grads[i] if grads[i] is not None else const(0.0) for i in wrt]
            return self._build(self._with_saved_output(exprs), [("g", g)], f"{self.name}_vjp")

        return self._derive(("vjp", wrt), build)

    def jvp(self, mask: tuple[bool, ...]) -> Program:
        """The output tangent sum_i t_i * d(out)/d(x_i) over the inputs whose tangent is present."""
        def build():
            partials = ad.reverse(self.outputs[0], const(1.0), list(self.inputs))
            tangents = [var(f"t{i}") for i in range(self.n_inputs)]
            total = None
            for i, present in enumerate(mask):
                if present and partials[i] is not None:
                    term = op("mul", tangents[i], partials[i])
                    total = term if total is None else op("add", total, term)
            exprs = self._with_saved_output([total if total is not None else const(0.0)])
            return self._build(exprs, [(f"t{i}", t) for i, t in enumerate(tangents)], f"{self.name}_jvp")

        return self._derive(("jvp", mask), build)

    def linearized(self, wrt: tuple[int, ...]) -> Program:
        """The output and its partial derivatives for the inputs in `wrt`, in one program (one pass
        shares every subexpression between the value and its derivatives)."""
        def build():
            partials = ad.reverse(self.outputs[0], const(1.0), list(self.inputs))
            exprs = [self.outputs[0]] + [partials[i] if partials[i] is not None else const(0.0) for i in wrt]
            return Program(self.inputs, tuple(exprs), f"{self.name}_lin", self.roles)

        return self._derive(("lin", wrt), build)

    @property
    def recomputes_transcendentals(self) -> bool:
        """True when the VJP program would evaluate exp/log/tanh/... again: then computing partial
        derivatives during the forward (linearized) saves a second evaluation of them."""
        def build():
            floats = tuple(i for i, v in enumerate(self.inputs) if v.kind == "f")
            return any(n.op in _TRANSCENDENTAL for n in self.vjp(floats).nodes) if floats else False

        return self._derive("recomputes", build)

    def select(self, k: int) -> Program:
        """Output k alone, over only the inputs it reads."""
        def build():
            out = self.outputs[k]
            used = {n.uid for n in topological([out]) if n.op == "var"}
            chosen = [(r, v) for r, v in zip(self.roles, self.inputs) if v.uid in used]
            return Program(tuple(v for _, v in chosen), (out,), f"{self.name}{k}", tuple(r for r, _ in chosen))

        return self._derive(("select", k), build)

    # ---- code for other backends ----------------------------------------------------------------
    def cuda_spec(self, in_dtypes: tuple) -> dict:
        """cupy.ElementwiseKernel(**spec) arguments for inputs of `in_dtypes` (see the package doc)."""
        from .cuda import elementwise_kernel_spec

        return elementwise_kernel_spec(self, tuple(np.dtype(d) for d in in_dtypes))

    def cuda_source(self, in_dtypes: tuple) -> str:
        """A standalone CUDA C translation unit with a flat 1-D __global__ kernel (for nvcc checks)."""
        from .cuda import standalone_source

        return standalone_source(self, tuple(np.dtype(d) for d in in_dtypes))


def _canonical_text(inputs, outputs, nodes) -> str:
    index = {}
    lines = []
    for n in nodes:
        index[n.uid] = len(index)
        if n.op == "var":
            lines.append(f"var {n.value}:{n.kind}")
        elif n.op == "const":
            lines.append(f"const {type(n.value).__name__} {n.value!r}")
        else:
            lines.append(f"{n.op} " + " ".join(str(index[a.uid]) for a in n.args))
    ins = ",".join(f"{v.value}:{v.kind}" for v in inputs)
    outs = ",".join(str(index[o.uid]) for o in outputs)
    return f"in {ins}; " + "; ".join(lines) + f"; out {outs}"


_INTEGER_CLOSED = frozenset(("var", "const", "neg", "add", "sub", "mul", "max", "min", "abs", "sign", "where",
                             "lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not", "float", "clip"))


def result_dtypes(program: Program, in_dtypes: tuple) -> tuple[np.dtype, np.dtype]:
    """(compute dtype, output dtype of non-bool outputs) as NumPy promotes; float16 computes in float32.

    Integer inputs stay integer through integer-closed programs (add, mul, max...), else become
    float64 as NumPy's true division and transcendental functions do."""
    values = [d for d in in_dtypes if d.kind != "b"]
    out = np.result_type(*values) if values else np.dtype(np.float32)
    if out.kind in "iu" and not all(n.op in _INTEGER_CLOSED and not (n.op == "const" and isinstance(n.value, float))
                                    for n in program.nodes):
        out = np.dtype(np.float64)
    compute = np.dtype(np.float32) if out.kind == "f" and out.itemsize < 4 else out
    return compute, out
