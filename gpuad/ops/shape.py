"""Shape ops: reshape, transpose, broadcast_to, concatenate, pad and flip are primitives (their rules
move gradients around without arithmetic); the rest are composed from them."""
from __future__ import annotations

import math

import numpy as np

from ..autograd.function import Op, apply
from .common import as_tensor, normalize_axis, shape_arg

RESHAPE = Op("reshape", lambda xp, x, shape: xp.reshape(x, shape), view=True,
             vjp=(lambda c, g: g.reshape(c.shapes[0]),), jvp=(lambda c, t: t.reshape(c.shape),))
TRANSPOSE = Op("transpose", lambda xp, x, axes: xp.transpose(x, axes), view=True,
               vjp=(lambda c, g: g.transpose(_inverse(c.axes)),), jvp=(lambda c, t: t.transpose(c.axes),))
BROADCAST_TO = Op("broadcast_to", lambda xp, x, shape: xp.broadcast_to(x, shape), view=True,
                  vjp=(lambda c, g: g,), jvp=(lambda c, t: t.broadcast_to(c.shape),))
FLIP = Op("flip", lambda xp, x, axis: xp.flip(x, axis), view=True,
          vjp=(lambda c, g: flip(g, c.axis),), jvp=(lambda c, t: flip(t, c.axis),))


def _inverse(axes):
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


def _concat_vjp(c, g, wrt):
    """Each input's slice of g along the axis."""
    starts = [0]
    for s in c.shapes:
        starts.append(starts[-1] + s[c.axis])
    lead = (slice(None),) * c.axis
    return [g[lead + (slice(starts[i], starts[i + 1]),)] for i in wrt]


def _concat_jvp(c, tangents):
    from ..creation import zeros_like

    parts = [t if t is not None else zeros_like(x) for x, t in zip(c.xs, tangents)]
    return concatenate(parts, c.axis)


CONCATENATE = Op("concatenate", lambda xp, *xs, axis: xp.concatenate(xs, axis=axis), args="*xs",
                 vjp=_concat_vjp, jvp=_concat_jvp)


def _unpad(c, g):
    index = tuple(slice(lo, lo + n) for (lo, _), n in zip(c.pad_width, c.shapes[0]))
    return g[index]


PAD = Op("pad", lambda xp, x, pad_width, value: xp.pad(x, pad_width, mode="constant", constant_values=value),
         vjp=(_unpad,), jvp=(lambda c, t: pad(t, c.pad_width, value=0.0),))


def _to_device(xp, x, src, device):
    """Host round trip unless both ends are GPUs (then a direct device-to-device copy)."""
    return device.from_host(x if src.is_gpu and device.is_gpu else src.to_host(x))


TO_DEVICE = Op("to_device", _to_device, moves_device=True,
               vjp=(lambda c, g: to_device(g, c.src),), jvp=(lambda c, t: to_device(t, c.device),))


def to_device(x, backend):
    """Copy to another backend's device; differentiable (the gradient travels back)."""
    return apply(TO_DEVICE, (x,), {"src": x._backend, "device": backend})


def _resolve_shape(shape, size: int, op: str) -> tuple:
    shape = shape_arg(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"{op}: only one dimension can be -1, got {shape}")
    if -1 in shape:
        known = math.prod(n for n in shape if n != -1)
        if known == 0 or size % known:
            raise ValueError(f"{op}: cannot reshape {size} elements into {shape}")
        shape = tuple(size // known if n == -1 else n for n in shape)
    if math.prod(shape) != size:
        raise ValueError(f"{op}: cannot reshape a tensor of {size} elements into shape {shape}")
    return shape


def reshape(x, *shape):
    """Reshape (one -1 allowed); shares memory and version counter with x when NumPy can."""
    x = as_tensor(x)
    shape = _resolve_shape(shape, x.size, "reshape")
    if shape == x.shape:
        return x
    return apply(RESHAPE, (x,), {"shape": shape})


view = reshape


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    """Merge dims start_dim..end_dim into one (all by default, as NumPy's ravel)."""
    x = as_tensor(x)
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])


def transpose(x, *axes):
    """Permute axes like NumPy (reversed when none are given)."""
    x = as_tensor(x)
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    axes = tuple(range(x.ndim))[::-1] if not axes else tuple(a % x.ndim for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} dimensions")
    if axes == tuple(range(x.ndim)):
        return x
    return apply(TRANSPOSE, (x,), {"axes": axes})


permute = transpose


def swapaxes(x, a: int, b: int):
    """Swap two axes."""
    x = as_tensor(x)
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


def matrix_transpose(x):
    """Swap the last two axes (x.mT)."""
    return swapaxes(x, -1, -2)


def broadcast_to(x, *shape):
    """Broadcast to `shape` as NumPy does (a read-only view)."""
    x = as_tensor(x)
    shape = shape_arg(shape)
    if shape == x.shape:
        return x
    return apply(BROADCAST_TO, (x,), {"shape": shape})


def expand(x, *shape):
    """torch's expand: broadcast_to where -1 keeps a dimension."""
    x = as_tensor(x)
    shape = shape_arg(shape)
    lead = len(shape) - x.ndim
    return broadcast_to(x, tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(shape)))


def squeeze(x, axis=None, *, dim=None):
    """Drop size-1 axes (all, or the given ones, which must have size 1)."""
    x = as_tensor(x)
    axis = normalize_axis(dim if axis is None else axis, x.ndim, "squeeze")
    if axis is None:
        axis = tuple(i for i, n in enumerate(x.shape) if n == 1)
    for a in axis:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, not 1 (shape {x.shape})")
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axis))


def unsqueeze(x, axis: int):
    """Insert a size-1 axis at `axis` (NumPy's expand_dims)."""
    x = as_tensor(x)
    axis = axis % (x.ndim + 1)
    return x.reshape(x.shape[:axis] + (1,) + x.shape[axis:])


expand_dims = unsqueeze


def concatenate(tensors, axis: int = 0, *, dim=None):
    """Join tensors along an existing axis."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: need at least one tensor")
    if any(t.ndim == 0 for t in tensors):
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    axis = (dim if dim is not None else axis) % tensors[0].ndim
    dtype = np.result_type(*[t.dtype for t in tensors])
    tensors = [t.astype(dtype) for t in tensors]
    if len(tensors) == 1:
        return tensors[0]
    return apply(CONCATENATE, tuple(tensors), {"axis": axis})


cat = concatenate


def stack(tensors, axis: int = 0, *, dim=None):
    """Join tensors along a new axis."""
    tensors = [as_tensor(t) for t in tensors]
    axis = dim if dim is not None else axis
    return concatenate([t.unsqueeze(axis) for t in tensors], axis % (tensors[0].ndim + 1))


def split(x, indices_or_sections, axis: int = 0, *, dim=None):
    """NumPy's split: a number of equal sections, or the indices where to cut."""
    x = as_tensor(x)
    axis = (dim if dim is not None else axis) % x.ndim
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {indices_or_sections}")
        step = n // indices_or_sections
        cuts = list(range(step, n, step))[: indices_or_sections - 1]
    else:
        cuts = list(indices_or_sections)
    bounds = [0, *cuts, n]
    lead = (slice(None),) * axis
    return [x[lead + (slice(a, b),)] for a, b in zip(bounds[:-1], bounds[1:])]


def _pad_pairs(pad_width, ndim: int) -> tuple:
    if isinstance(pad_width, int):
        return ((pad_width, pad_width),) * ndim
    pairs = tuple(pad_width)
    if pairs and isinstance(pairs[0], int):
        pairs = (tuple(pairs),) * ndim if len(pairs) == 2 else None
    if pairs is None or len(pairs) != ndim:
        raise ValueError(f"pad: pad_width {pad_width} does not match {ndim} dimensions")
    return tuple((int(a), int(b)) for a, b in pairs)


def pad(x, pad_width, mode: str = "constant", value=0.0, *, constant_values=None):
    """Constant padding with NumPy's pad_width ((before, after) per axis, or one int)."""
    x = as_tensor(x)
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is differentiable here, got {mode!r}")
    value = constant_values if constant_values is not None else value
    return apply(PAD, (x,), {"pad_width": _pad_pairs(pad_width, x.ndim), "value": value})


def flip(x, axis=None, *, dims=None):
    """Reverse the order of elements along `axis` (all axes when None)."""
    x = as_tensor(x)
    axis = normalize_axis(dims if axis is None else axis, x.ndim, "flip")
    return apply(FLIP, (x,), {"axis": axis})


def repeat(x, repeats, axis=None):
    """NumPy's repeat: each element `repeats` times along `axis` (flattened when None)."""
    x = as_tensor(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis %= x.ndim
    if isinstance(repeats, int):
        expanded = x.unsqueeze(axis + 1).broadcast_to(
            x.shape[:axis + 1] + (repeats,) + x.shape[axis + 1:])
        return expanded.reshape(x.shape[:axis] + (x.shape[axis] * repeats,) + x.shape[axis + 1:])
    index = np.repeat(np.arange(x.shape[axis]), np.asarray(repeats))
    return x[(slice(None),) * axis + (index,)]


def tile(x, reps):
    """NumPy's tile: repeat the whole tensor `reps` times along each axis."""
    x = as_tensor(x)
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    ndim = max(x.ndim, len(reps))
    reps = (1,) * (ndim - len(reps)) + reps
    shape = (1,) * (ndim - x.ndim) + x.shape
    interleaved = x.reshape(tuple(v for n in shape for v in (1, n)))
    expanded = interleaved.broadcast_to(tuple(v for r, n in zip(reps, shape) for v in (r, n)))
    return expanded.reshape(tuple(r * n for r, n in zip(reps, shape)))
