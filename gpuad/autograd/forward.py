"""Forward mode: ga.jvp attaches tangents at a fresh level and reads them off the outputs.

Each op computes its output tangent from its inputs' tangents with its JVP rule, in the same pass as
the forward (see function.apply); there is no backward pass. Distinct levels keep nested jvp calls
apart, so d/dx [x * d/dy (x + y)] is 1, not 2 (no perturbation confusion)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ShapeError
from .function import Op, apply
from .mode import new_level

if TYPE_CHECKING:
    from ..tensor import Tensor

# The identity as an op: a new tensor on the same memory whose graph edge leads to its input, so a
# dual (or an unpacked primal) of a leaf that requires grad still passes gradients to that leaf.
ALIAS = Op("alias", lambda xp, x: x, vjp=(lambda c, g: g,), jvp=(lambda c, t: t,), view=True)


def alias(t: Tensor) -> Tensor:
    """`t` under a new name, connected to its graph and carrying its tangents."""
    return apply(ALIAS, (t,), {})


def make_dual(primal, tangent, level: int):
    """An alias of `primal` (same memory and graph) that carries `tangent` at `level`."""
    from ..ops.common import as_tensor

    tangent = as_tensor(tangent, primal)
    if tangent.shape != primal.shape:
        raise ShapeError(f"jvp: tangent shape {tangent.shape} does not match primal shape {primal.shape}")
    if tangent.dtype != primal.dtype:
        tangent = tangent.astype(primal.dtype)
    dual = alias(primal)
    dual._fw = {**(primal._fw or {}), level: tangent}
    return dual


def unpack_dual(out, level: int):
    """(primal without `level`'s tangent, that tangent or zeros)."""
    from ..creation import zeros_like

    fw = out._fw or {}
    tangent = fw.get(level)
    if tangent is None:
        tangent = zeros_like(out)
    primal = alias(out)
    rest = {k: v for k, v in fw.items() if k != level}
    primal._fw = rest or None
    return primal, tangent


def _unpack_tree(tree, level: int) -> tuple:
    """(primals, tangents): `tree` of outputs unpacked at `level` into two trees of its shape."""
    from ..ops.common import as_tensor

    if isinstance(tree, (tuple, list)):
        parts = [_unpack_tree(t, level) for t in tree]
        return type(tree)(p for p, _ in parts), type(tree)(t for _, t in parts)
    return unpack_dual(as_tensor(tree), level)


def jvp(f, primals, tangents):
    """(f(*primals), J_f(primals) @ tangents) in one forward pass; primals/tangents are tuples, f's
    result a tensor or (nested) tuples of them."""
    from ..ops.common import as_tensor

    primals = tuple(primals) if isinstance(primals, (tuple, list)) else (primals,)
    tangents = tuple(tangents) if isinstance(tangents, (tuple, list)) else (tangents,)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    level = new_level()
    duals = [make_dual(as_tensor(p), t, level) for p, t in zip(primals, tangents)]
    return _unpack_tree(f(*duals), level)
