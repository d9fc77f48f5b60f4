"""Function transforms in JAX's style: grad, value_and_grad, vjp, jacrev, jacfwd, hessian, hvp.

Reverse-mode transforms run `f` on fresh graph entries for the differentiated arguments (an alias
connected to any enclosing graph when the argument already requires grad, else a new leaf) and pull
cotangents back with the engine; they never touch `.grad`. When an enclosing transform is recording
(grad mode on and the result depends on something else that requires grad) the backward pass itself
is recorded (create_graph), so transforms nest: grad(grad(f)), jacfwd(jacrev(f)), jvp(grad(f)).
Forward-mode transforms use ga.jvp's levels (forward.py). Arguments and results may be tensors or
(nested) tuples/lists of tensors; a Jacobian block has shape out.shape + in.shape, as in JAX.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..creation import zeros, zeros_like
from ..errors import GradError
from ..ops.common import as_tensor
from ..ops.shape import stack
from ..tensor import Tensor
from . import engine
from .forward import alias, jvp, make_dual, unpack_dual
from .mode import enable_grad, is_grad_enabled, new_level
from .node import Node

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "hvp"]


# ---- trees of tensors ------------------------------------------------------------------------------
def tree_flatten(tree) -> tuple[list, Any]:
    """(leaves, spec) of a tensor or nested tuple/list of them; non-tensor leaves become tensors."""
    if isinstance(tree, (tuple, list)):
        leaves, specs = [], []
        for item in tree:
            sub, spec = tree_flatten(item)
            leaves += sub
            specs.append((len(sub), spec))
        return leaves, (type(tree), specs)
    return [as_tensor(tree)], None


def tree_unflatten(spec, leaves: list):
    """The inverse of tree_flatten."""
    if spec is None:
        return leaves[0]
    kind, specs = spec
    out, start = [], 0
    for n, sub in specs:
        out.append(tree_unflatten(sub, leaves[start:start + n]))
        start += n
    return kind(out)


def _select(args: tuple, argnums):
    """The differentiated part of `args` (one argument for an int `argnums`, a tuple for a tuple)."""
    return args[argnums] if isinstance(argnums, int) else tuple(args[i] for i in argnums)


def _substitute(args: tuple, argnums, value) -> tuple:
    """`args` with the differentiated part replaced by `value` (shaped as _select returns it)."""
    args = list(args)
    if isinstance(argnums, int):
        args[argnums] = value
    else:
        for i, v in zip(argnums, value):
            args[i] = v
    return tuple(args)


# ---- reverse mode --------------------------------------------------------------------------------
def fresh_input(x: Tensor, outer: bool) -> Tensor:
    """`x` as a new graph entry for an inner reverse pass, keeping its forward-mode tangents.

    While an enclosing pass records (`outer`) and x requires grad, the entry is an alias node leading
    to x, so gradients of the inner results flow on to x; otherwise it is a new leaf on x's memory."""
    if outer and x._requires_grad:
        return alias(x)
    leaf = x._alias()
    leaf.requires_grad = True
    return leaf


def leaves_reached(outputs, exclude) -> list:
    """Leaf tensors requiring grad that `outputs` depend on, other than those in `exclude`."""
    own = {id(t) for t in exclude}
    found = {}
    stack_ = []
    for o in outputs:
        if o.grad_fn is not None:
            stack_.append(o.grad_fn)
        elif o._requires_grad and id(o) not in own:
            found[id(o)] = o
    seen = set(stack_)
    while stack_:
        for edge in stack_.pop().edges:
            if type(edge) is Node:
                if edge not in seen:
                    seen.add(edge)
                    stack_.append(edge)
            elif edge is not None and id(edge) not in own:
                found[id(edge)] = edge
    return list(found.values())


class _Linearized:
    """f run on fresh entries for its differentiated arguments; pulls cotangents back to them."""

    def __init__(self, f: Callable, args: tuple, argnums):
        self.outer = is_grad_enabled()
        in_tree = _select(args, argnums)
        leaves, self.in_spec = tree_flatten(in_tree)
        with enable_grad():
            self.inputs = [fresh_input(x, self.outer) for x in leaves]
            out = f(*_substitute(args, argnums, tree_unflatten(self.in_spec, self.inputs)))
        self.outputs, self.out_spec = tree_flatten(out)
        self._depends_on_outer = None

    def records(self, cotangents) -> bool:
        """Whether the backward must be recorded: an enclosing pass can differentiate through it."""
        if not is_grad_enabled():
            return False
        if any(c is not None and c._requires_grad for c in cotangents):
            return True
        if self._depends_on_outer is None:
            self._depends_on_outer = any(t.grad_fn is not None for t in self.inputs) or bool(
                leaves_reached(self.outputs, self.inputs))
        return self._depends_on_outer

    def pull(self, cotangents: list, retain: bool) -> list:
        """Gradients (one per input leaf, zeros where unused) of sum(cotangent * output)."""
        create = self.records(cotangents)
        pairs = [(o, c) for o, c in zip(self.outputs, cotangents) if c is not None and o._requires_grad]
        grads = [None] * len(self.inputs)
        if pairs:
            outs, cots = zip(*pairs)
            grads = engine.grad(outs, self.inputs, cots, retain_graph=retain or create, create_graph=create)
        return [zeros_like(x) if g is None else g for x, g in zip(self.inputs, grads)]

    def value(self):
        """f's result; cut from the inner graph unless an enclosing pass records through it."""
        if self.records(()):
            return tree_unflatten(self.out_spec, self.outputs)
        return tree_unflatten(self.out_spec, [o._alias() for o in self.outputs])


def _scalar_seed(lin: _Linearized, name: str) -> list:
    out = lin.outputs[0]
    if len(lin.outputs) != 1 or out.size != 1:
        shapes = [o.shape for o in lin.outputs]
        raise GradError(f"{name}: f must return one scalar tensor, got shapes {shapes}; use ga.jacrev or "
                        "ga.vjp for non-scalar outputs")
    return [out._ones_like()]


def value_and_grad(f: Callable, argnums: int | tuple = 0) -> Callable:
    """A function returning (f(*args), gradient of f w.r.t. args[argnums]); f returns a scalar."""
    def value_and_grad_f(*args):
        lin = _Linearized(f, args, argnums)
        grads = lin.pull(_scalar_seed(lin, "grad"), retain=False)
        return lin.value(), tree_unflatten(lin.in_spec, grads)

    return value_and_grad_f


def grad(f: Callable, argnums: int | tuple = 0) -> Callable:
    """A function returning the gradient of scalar f w.r.t. args[argnums] (a tuple for tuple argnums)."""
    vg = value_and_grad(f, argnums)

    def grad_f(*args):
        return vg(*args)[1]

    return grad_f


def vjp(f: Callable, *primals) -> tuple[Any, Callable]:
    """(f(*primals), vjp_fn) where vjp_fn(cotangent) -> tuple of gradients, one per primal.

    The graph is retained, so vjp_fn may be called with several cotangents."""
    lin = _Linearized(f, primals, tuple(range(len(primals))))

    def vjp_fn(cotangent):
        cots, spec = tree_flatten(cotangent)
        if spec != lin.out_spec or any(c.shape != o.shape for c, o in zip(cots, lin.outputs)):
            raise GradError(f"vjp: cotangent shapes {[c.shape for c in cots]} do not match the outputs' "
                            f"{[o.shape for o in lin.outputs]}")
        return tree_unflatten(lin.in_spec, lin.pull(cots, retain=True))

    return lin.value(), vjp_fn


def _one_hot(like: Tensor, k: int) -> Tensor:
    """A tensor shaped like `like`, zero except for a one at flat index k (a basis vector)."""
    e = zeros(like.shape, dtype=like.dtype, device=like._backend)
    e._data.reshape(-1)[k] = 1
    return e


def _block(columns: list, out_shape: tuple, in_shape: tuple, axis: int):
    """Jacobian block of shape out_shape + in_shape from per-element rows (axis 0) or columns (-1)."""
    return stack(columns, axis).reshape(out_shape + in_shape)


def _jacobian_tree(out_spec, in_spec, blocks: list):
    """Nest blocks[i][j] (output leaf i, input leaf j): outputs outside, inputs inside, as JAX."""
    return tree_unflatten(out_spec, [tree_unflatten(in_spec, row) for row in blocks])


def jacrev(f: Callable, argnums: int | tuple = 0) -> Callable:
    """Reverse-mode Jacobian: one VJP per output element (cheap when outputs are few)."""
    def jacrev_f(*args):
        lin = _Linearized(f, args, argnums)
        blocks = []
        for i, o in enumerate(lin.outputs):
            rows = [[] for _ in lin.inputs]
            for k in range(o.size):
                cots = [_one_hot(o, k) if m == i else None for m in range(len(lin.outputs))]
                for j, g in enumerate(lin.pull(cots, retain=True)):
                    rows[j].append(g)
            blocks.append([_block(r, o.shape, x.shape, 0) for r, x in zip(rows, lin.inputs)])
        return _jacobian_tree(lin.out_spec, lin.in_spec, blocks)

    return jacrev_f


def jacfwd(f: Callable, argnums: int | tuple = 0) -> Callable:
    """Forward-mode Jacobian: one JVP per input element (cheap when inputs are few)."""
    def jacfwd_f(*args):
        leaves, in_spec = tree_flatten(_select(args, argnums))
        columns = None  # columns[i][j]: tangents of output leaf i for the elements of input leaf j
        out_spec = out_shapes = None
        for j, x in enumerate(leaves):
            for k in range(x.size):
                level = new_level()
                dual = list(leaves)
                dual[j] = make_dual(x, _one_hot(x, k), level)
                out = f(*_substitute(args, argnums, tree_unflatten(in_spec, dual)))
                outs, out_spec = tree_flatten(out)
                if columns is None:
                    columns = [[[] for _ in leaves] for _ in outs]
                    out_shapes = [o.shape for o in outs]
                for i, o in enumerate(outs):
                    columns[i][j].append(unpack_dual(o, level)[1])
        blocks = [[_block(c, shape, x.shape, -1) for c, x in zip(row, leaves)]
                  for row, shape in zip(columns, out_shapes)]
        return _jacobian_tree(out_spec, in_spec, blocks)

    return jacfwd_f


def hessian(f: Callable, argnums: int | tuple = 0) -> Callable:
    """Hessian of scalar f as jacfwd(jacrev(f)): forward-over-reverse."""
    return jacfwd(jacrev(f, argnums), argnums)


def hvp(f: Callable, primals, tangents) -> tuple[Any, Any]:
    """(grad f(primals), H @ tangents) as the JVP of the gradient; the Hessian is never formed."""
    primals = tuple(primals) if isinstance(primals, (tuple, list)) else (primals,)
    tangents = tuple(tangents) if isinstance(tangents, (tuple, list)) else (tangents,)
    argnums = 0 if len(primals) == 1 else tuple(range(len(primals)))
    return jvp(grad(f, argnums), primals, tangents)
