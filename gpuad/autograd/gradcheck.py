"""gradcheck: compare reverse- and forward-mode Jacobians with float64 central differences.

The Jacobians come from the transforms (jacrev: one VJP per output element; jacfwd: one JVP per input
element), so the check covers every rule and the machinery around them. Second order checks the
gradient function g(x) = grad(sum(u * f(x))) for a fixed random u the same way: its reverse mode is
reverse-over-reverse (create_graph), its forward mode forward-over-reverse.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import dtypes
from ..errors import DtypeError, GradError
from ..ops.reduce import sum as sum_
from ..tensor import Tensor
from .transforms import grad, jacfwd, jacrev, tree_flatten


class GradcheckError(GradError):
    """An analytic derivative disagrees with finite differences."""


def _numeric_jacobian(f: Callable, args: list, argnums: tuple, eps: float) -> list:
    """blocks[i][j]: d out_i / d args[argnums[j]] by central differences, shape out_i.shape + x.shape."""
    def outputs(values):
        return [o.numpy().astype(np.float64) for o in f(*values)]

    base = outputs(args)
    blocks = [[np.zeros(o.shape + args[a].shape) for a in argnums] for o in base]
    for j, a in enumerate(argnums):
        x = args[a]
        flat = x.numpy().reshape(-1)
        for k in range(flat.size):
            sides = []
            for step in (eps, -eps):
                moved = flat.copy()
                moved[k] += step
                values = list(args)
                values[a] = Tensor._wrap(x._backend.asarray(moved.reshape(x.shape)), x._backend)
                sides.append(outputs(values))
            for i, (plus, minus) in enumerate(zip(*sides)):
                blocks[i][j].reshape(plus.shape + (-1,))[..., k] = (plus - minus) / (2 * eps)
    return blocks


def _compare(analytic: tuple, numeric: list, atol: float, rtol: float, mode: str) -> None:
    """Raise GradcheckError naming the worst element when any is outside atol + rtol * |numeric|."""
    for i, row in enumerate(numeric):
        for j, num in enumerate(row):
            ana = analytic[i][j].numpy().astype(np.float64)
            excess = np.abs(ana - num) - (atol + rtol * np.abs(num))
            if excess.size and not excess.max() <= 0:  # "not <=" also catches NaN
                worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess))),
                                         excess.shape)
                raise GradcheckError(
                    f"gradcheck: {mode} derivative of output {i} w.r.t. input {j} is wrong at Jacobian "
                    f"element {tuple(int(n) for n in worst)} (output index + input index): analytic "
                    f"{ana[worst]:.10g} vs numeric {num[worst]:.10g}, |diff| {abs(ana[worst] - num[worst]):.3g} > "
                    f"allowed {atol + rtol * abs(num[worst]):.3g}; {int((~(excess <= 0)).sum())} of "
                    f"{excess.size} elements are off")


def _first_order(f, args, argnums, eps, atol, rtol, check_forward, order: str) -> None:
    numeric = _numeric_jacobian(f, args, argnums, eps)
    second = order == "second"
    _compare(jacrev(f, argnums)(*args), numeric, atol, rtol,
             "second-order reverse-over-reverse" if second else "reverse-mode (VJP)")
    if check_forward:
        _compare(jacfwd(f, argnums)(*args), numeric, atol, rtol,
                 "second-order forward-over-reverse" if second else "forward-mode (JVP)")


def gradcheck(f: Callable, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              check_forward: bool = True, check_second_order: bool = False) -> bool:
    """True when f's derivatives (reverse, forward, second order on request) match finite differences.

    `inputs` is a tensor or a tuple of them; floating inputs must be float64 and are differentiated,
    others (integer labels) are passed through. Raises GradcheckError naming the worst element."""
    args = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    argnums = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor) and dtypes.is_floating(a.dtype))
    for i in argnums:
        if args[i].dtype != np.float64:
            raise DtypeError(
                f"gradcheck: input {i} is {args[i].dtype} (shape {args[i].shape}); use float64 (x.double()). "
                f"Central differences with eps={eps} lose about half of the significant digits, so in "
                "single or half precision they disagree with correct derivatives (false alarms)")
    if not argnums:
        raise GradError("gradcheck: no floating-point input to differentiate")
    args = [a.detach() if isinstance(a, Tensor) else a for a in args]

    def flat(*xs):
        return tuple(tree_flatten(f(*xs))[0])

    _first_order(flat, args, argnums, eps, atol, rtol, check_forward, "first")
    if check_second_order:
        rng = np.random.default_rng(0)
        weights = [Tensor._wrap(o._backend.asarray(rng.standard_normal(o.shape)), o._backend)
                   for o in flat(*args)]

        def weighted(*xs):
            return sum(sum_(w * o) for w, o in zip(weights, flat(*xs)))

        _first_order(grad(weighted, argnums), args, argnums, eps, atol, rtol, check_forward, "second")
    return True
