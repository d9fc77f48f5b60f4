"""Linear algebra: matmul (NumPy semantics: batched, broadcasting, 1-D operands) and einsum are
primitives; outer, dot and tensordot are composed from them."""
from __future__ import annotations

import string

from ..autograd.function import Op, apply
from ..errors import ShapeError
from .common import as_tensor, operands


def _matmul_grad_a(c, g):
    a_shape, b = c.shapes[0], c.b
    if len(a_shape) == 1 and b.ndim == 1:
        return g * b
    if b.ndim == 1:
        return g.unsqueeze(-1) @ b.reshape(1, -1)
    if len(a_shape) == 1:
        return _matmul(g.unsqueeze(-2), b, False, True).squeeze(-2)
    if c.ta:  # a was used transposed: d a = (g @ op(b).T).T = op(b) @ g.T
        return _matmul(b, g, c.tb, True)
    return _matmul(g, b, False, not c.tb)


def _matmul_grad_b(c, g):
    a, b_shape = c.a, c.shapes[1]
    if a.ndim == 1 and len(b_shape) == 1:
        return g * a
    if a.ndim == 1:
        return a.reshape(-1, 1) @ g.unsqueeze(-2)
    if len(b_shape) == 1:
        return _matmul(a, g.unsqueeze(-1), True, False).squeeze(-1)
    if c.tb:  # b was used transposed: d b = (op(a).T @ g).T = g.T @ op(a)
        return _matmul(g, a, True, c.ta)
    return _matmul(a, g, not c.ta, False)


def _matmul_forward(xp, a, b, ta, tb):
    return xp.matmul(a.swapaxes(-1, -2) if ta else a, b.swapaxes(-1, -2) if tb else b)


# ta / tb: the operand enters transposed (its last two axes swapped). Only the rules use them: a VJP
# such as g @ b.T then takes one op, the transpose being a strided view inside the forward
MATMUL = Op("matmul", _matmul_forward, args=("a", "b"), save=("b", "a"),
            vjp=(_matmul_grad_a, _matmul_grad_b),
            jvp=(lambda c, t: _matmul(t, c.b, c.ta, c.tb), lambda c, t: _matmul(c.a, t, c.ta, c.tb)))
_FLAGS = {(ta, tb): {"ta": ta, "tb": tb} for ta in (False, True) for tb in (False, True)}


def _matmul(a, b, ta: bool, tb: bool):
    """op(a) @ op(b), op transposing the last two axes where its flag is set (operands of the rules,
    whose shapes agree by construction)."""
    return apply(MATMUL, (a, b), _FLAGS[ta, tb])


def matmul(a, b):
    """Matrix product with NumPy's rules (batched and broadcast; 1-D operands are vectors)."""
    a, b = operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must not be scalars, got shapes {a.shape} and {b.shape}")
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != k_b:
        raise ShapeError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned: {a.shape[-1]} (last dim of a) != "
            f"{k_b} ({'dim 0' if b.ndim == 1 else 'second-to-last dim'} of b); dtypes {a.dtype}, {b.dtype}")
    return apply(MATMUL, (a, b), _FLAGS[False, False])


def rmatmul(b, a):
    return matmul(a, b)


# ---- einsum ---------------------------------------------------------------------------------------
def _einsum_vjp(c, g, wrt):
    return [_einsum_grad(c, g, i) for i in wrt]


def _einsum_grad(c, g, i):
    """Operand i's gradient: an einsum of g with the other operands onto i's subscripts."""
    ins, out = c.inputs, c.output
    target = ins[i]
    if len(set(target)) != len(target):
        raise NotImplementedError(
            f"einsum: the gradient of operand {i} with a repeated subscript ('{target}', a diagonal) "
            "is not supported")
    others = [s for j, s in enumerate(ins) if j != i]
    present = set(out).union(*others) if others else set(out)
    kept = "".join(ch for ch in target if ch in present)
    spec = ",".join([out, *others]) + "->" + kept
    grad = einsum(spec, g, *[x for j, x in enumerate(c.xs) if j != i])
    if kept != target:
        shape = c.shapes[i]
        grad = grad.reshape(tuple(n if ch in present else 1 for ch, n in zip(target, shape))).broadcast_to(shape)
    return grad


def _einsum_jvp(c, tangents):
    total = None
    for i, t in enumerate(tangents):
        if t is not None:
            part = einsum(c.spec, *[t if j == i else x for j, x in enumerate(c.xs)])
            total = part if total is None else total + part
    return total


EINSUM = Op("einsum", lambda xp, *xs, spec, inputs, output: xp.einsum(spec, *xs, optimize=len(xs) > 2),
            args="*xs", save="xs", vjp=_einsum_vjp, jvp=_einsum_jvp)


def _explicit(subscripts: str, shapes) -> tuple[list[str], str]:
    """Subscripts with '...' replaced by letters and the output made explicit (NumPy's implicit rule)."""
    subscripts = subscripts.replace(" ", "")
    lhs, arrow, rhs = subscripts.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ShapeError(f"einsum: '{subscripts}' names {len(ins)} operands, got {len(shapes)}")
    free = [ch for ch in string.ascii_letters if ch not in subscripts]
    ell_dims = max((len(shape) - (len(s) - 3) for s, shape in zip(ins, shapes) if "..." in s), default=0)
    ell = "".join(free[:ell_dims])
    out_ins = []
    for s, shape in zip(ins, shapes):
        if "..." in s:
            n = len(shape) - (len(s) - 3)
            s = s.replace("...", ell[ell_dims - n:] if n else "")
        if len(s) != len(shape):
            raise ShapeError(f"einsum: subscripts '{s}' do not match an operand of shape {shape}")
        out_ins.append(s)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        letters = "".join(out_ins)
        out = ell + "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1 and ch not in ell))
    return out_ins, out


def einsum(subscripts: str, *operands_):
    """Einstein summation as NumPy's (explicit or implicit output, '...'); differentiable."""
    xs = tuple(as_tensor(x) for x in operands_)
    ins, out = _explicit(subscripts, [x.shape for x in xs])
    spec = ",".join(ins) + "->" + out
    return apply(EINSUM, xs, {"spec": spec, "inputs": tuple(ins), "output": out})


def outer(a, b):
    """Outer product of the flattened operands."""
    a, b = operands(a, b)
    return a.reshape(-1, 1) * b.reshape(1, -1)


def tensordot(a, b, axes=2):
    """Sum products over the last `axes` dims of a and the first of b (or explicit axis lists)."""
    a, b = operands(a, b)
    if isinstance(axes, int):
        axes = (list(range(a.ndim - axes, a.ndim)), list(range(axes)))
    ax_a = [x % a.ndim for x in (axes[0] if isinstance(axes[0], (list, tuple)) else [axes[0]])]
    ax_b = [x % b.ndim for x in (axes[1] if isinstance(axes[1], (list, tuple)) else [axes[1]])]
    letters = iter(string.ascii_letters)
    sa = [next(letters) for _ in range(a.ndim)]
    sb = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    out = [s for i, s in enumerate(sa) if i not in ax_a] + [s for j, s in enumerate(sb) if j not in ax_b]
    return einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)


def dot(a, b):
    """NumPy's dot: scalars multiply, up to 2-D it is matmul, else a sum over a's last and b's
    second-to-last axis."""
    a, b = operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim <= 2 and b.ndim <= 2:
        return matmul(a, b)
    return tensordot(a, b, ([-1], [-2 if b.ndim > 1 else -1]))
