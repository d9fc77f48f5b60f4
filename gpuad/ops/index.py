"""Indexing: x[idx] (basic and advanced) and its scatter-add transpose; x[idx] = v out of place."""
from __future__ import annotations

from ..autograd.function import Op, apply
from ..autograd.mode import state
from ..errors import DeviceError, DtypeError, IndexOutOfRange, ShapeError
from ..tensor import Tensor
from .common import as_tensor


def _getitem(xp, x, index, advanced):
    return x[index]


def _index_grad(xp, g, index, advanced, shape):
    """Zeros of `shape` with g added at `index` (repeated indices accumulate)."""
    out = xp.zeros(shape, dtype=g.dtype)
    if advanced:
        xp.scatter_add(out, index, g)
    else:
        out[index] = g
    return out


def _index_put(xp, x, v, index, advanced):
    out = x.copy()
    out[index] = v
    return out


GETITEM = Op("getitem", _getitem,
             vjp=(lambda c, g: apply(INDEX_GRAD, (g,), _grad_params(c, c.shapes[0])),),
             jvp=(lambda c, t: apply(GETITEM, (t,), {"index": c.index, "advanced": c.advanced}),))
INDEX_GRAD = Op("index_grad", _index_grad,
                vjp=(lambda c, g: apply(GETITEM, (g,), {"index": c.index, "advanced": c.advanced}),),
                jvp=(lambda c, t: apply(INDEX_GRAD, (t,), _grad_params(c, c.shape)),))


def _index_put_jvp(c, tangents):
    from ..creation import zeros_like

    tx, tv = tangents
    return index_put(zeros_like(c.x) if tx is None else tx, c.index, 0.0 if tv is None else tv)


INDEX_PUT = Op("index_put", _index_put, args=("x", "v"),
               vjp=(lambda c, g: index_put(g, c.index, 0.0), lambda c, g: g[c.index]),
               jvp=_index_put_jvp)


def _grad_params(c, shape):
    return {"index": c.index, "advanced": c.advanced, "shape": shape}


def normalize_index(x: Tensor, index):
    """Turn an index into backend form; returns (index, is_advanced). Lists, NumPy arrays and tensors
    become integer or boolean arrays on x's device."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    advanced = False
    for item in items:
        if isinstance(item, Tensor):
            if item._backend is not x._backend:
                raise DeviceError(f"getitem: index tensor on {item.device}, indexed tensor on {x.device}")
            if item.dtype.kind not in "iub":
                raise DtypeError(f"getitem: index tensors must be integer or bool, got {item.dtype}")
            item = item._data
        elif isinstance(item, (list, tuple)) or hasattr(item, "__array__"):
            item = x._backend.asarray(item)
            if item.dtype.kind not in "iub":
                raise DtypeError(f"getitem: index arrays must be integer or bool, got {item.dtype}")
        elif item is not None and item is not Ellipsis and not isinstance(item, (int, slice)):
            raise DtypeError(f"getitem: unsupported index {item!r} of type {type(item).__name__}")
        if hasattr(item, "dtype"):
            advanced = True
        out.append(item)
    return (tuple(out) if isinstance(index, tuple) or len(out) != 1 else out[0]), advanced


def getitem(x, index):
    """x[index] with NumPy semantics; the gradient scatter-adds (repeated indices accumulate)."""
    index, advanced = normalize_index(x, index)
    out = apply(GETITEM, (x,), {"index": index, "advanced": advanced})
    if not advanced:
        out._version = x._version  # a basic index is a view of x's memory
    return out


def index_put(x, index, value):
    """A copy of x with x[index] = value; differentiable in x (zeroed there) and in value."""
    value = as_tensor(value, x)
    index, advanced = normalize_index(x, index)
    return apply(INDEX_PUT, (x, value), {"index": index, "advanced": advanced})


def setitem(x: Tensor, index, value) -> None:
    """x[index] = value in place; written directly when no gradient or tangent is involved."""
    value = as_tensor(value, x)
    tracked = state.grad_enabled and (x._requires_grad or value._requires_grad)
    if tracked or x._fw is not None or value._fw is not None:
        x._write(index_put(x, index, value), "setitem (x[idx] = v)")
        return
    if value._backend is not x._backend:
        raise DeviceError(f"setitem: value on {value.device}, tensor on {x.device}")
    x._writable("setitem (x[idx] = v)")
    raw, _ = normalize_index(x, index)
    try:
        x._data[raw] = value._data
    except IndexError as exc:
        raise IndexOutOfRange(f"setitem: {exc} (tensor shape {x.shape})") from None
    except ValueError as exc:
        raise ShapeError(f"setitem: {exc}; tensor {x.shape} {x.dtype}, value {value.shape} {value.dtype}") \
            from None
    x._version[0] += 1
