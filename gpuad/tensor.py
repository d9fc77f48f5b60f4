"""Tensor: an array on a device plus autograd fields. Operators and methods are the ops themselves
(bound in gpuad/ops/__init__.py), so `x * y` goes straight to the op with no wrapper in between."""
from __future__ import annotations

import numpy as np

from . import dtypes as _dtypes
from .backends import for_device
from .errors import DtypeError, GradError, ReadOnlyError, ShapeError

_new = object.__new__


class Tensor:
    """A device array with autograd state.

    `grad_fn` is the Node that produced it (None for leaves); `_version` is a one-element list shared
    with every view of the same memory, bumped by in-place ops; `_fw` maps forward-mode levels to
    tangent tensors (None when there are none)."""

    __slots__ = ("_data", "_backend", "_requires_grad", "grad", "grad_fn", "_version", "_fw", "__weakref__")
    __array_priority__ = 1000  # numpy_array * tensor -> Tensor.__rmul__, not an object array

    def __init__(self, data, dtype=None, device=None, requires_grad: bool = False):
        t = tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        for name in ("_data", "_backend", "_requires_grad", "grad", "grad_fn", "_version", "_fw"):
            setattr(self, name, getattr(t, name))

    @staticmethod
    def _wrap(data, backend) -> Tensor:
        """A new leaf around a backend array (no copy); the one constructor every op output takes (a
        staticmethod: no bound method is made per call)."""
        self = _new(Tensor)
        self._data = data
        self._backend = backend
        self._requires_grad = False
        self.grad = None
        self.grad_fn = None
        self._version = [0]
        self._fw = None
        return self

    def _alias(self) -> Tensor:
        """Same memory, version counter and tangents; no grad_fn (a node saving its own output)."""
        t = Tensor._wrap(self._data, self._backend)
        t._version = self._version
        t._fw = self._fw
        return t

    def _with_grad_fn(self, node) -> Tensor:
        t = self._alias()
        t.grad_fn = node
        t._requires_grad = True
        return t

    def _ones_like(self) -> Tensor:
        return Tensor._wrap(self._backend.xp.ones(self._data.shape, self._data.dtype), self._backend)

    def _coerce(self, value) -> Tensor:
        """`value` as a tensor on this tensor's device (scalars take this tensor's dtype kind)."""
        if isinstance(value, Tensor):
            return value
        return _scalar_like(value, self)

    # ---- metadata -------------------------------------------------------
    @property
    def data(self):
        """The underlying backend array (NumPy or CuPy); no copy."""
        return self._data

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        """Number of elements (NumPy's meaning)."""
        return self._data.size

    def numel(self) -> int:
        return self._data.size

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def backend(self):
        return self._backend

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not _dtypes.is_floating(self._data.dtype):
            raise GradError(
                f"requires_grad: only floating-point tensors can require gradients, got dtype "
                f"{self._data.dtype} (shape {self.shape}); convert with .to(ga.float32) first")
        if not value and self.grad_fn is not None:
            raise GradError("requires_grad: cannot turn off requires_grad on a non-leaf; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, value: bool = True) -> Tensor:
        self.requires_grad = value
        return self

    def retain_grad(self) -> Tensor:
        """Keep .grad for this non-leaf after backward (leaves keep theirs anyway)."""
        if self.grad_fn is not None:
            self.grad_fn.retain(self)
        elif not self._requires_grad:
            raise GradError("retain_grad: the tensor does not require grad")
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def detach(self) -> Tensor:
        """Same memory and version counter, cut from the graph (and from forward-mode tangents)."""
        t = Tensor._wrap(self._data, self._backend)
        t._version = self._version
        return t

    def backward(self, grad=None, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's .grad; see API.md for the arguments."""
        from .autograd.engine import backward

        backward(self, grad, retain_graph, create_graph)

    # ---- host / device ----------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A host NumPy array (a copy from the GPU; the same memory on the CPU)."""
        return self._backend.to_host(self._data)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def item(self):
        if self._data.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python scalar, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, *args, dtype=None, device=None) -> Tensor:
        """x.to("cuda"), x.to(ga.float16), x.to("cpu", ga.float64): differentiable device/dtype moves."""
        for a in args:
            if isinstance(a, str) or (hasattr(a, "device") and not isinstance(a, Tensor)):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        out = self
        if device is not None:
            backend = for_device(device)
            if backend is not self._backend:
                from .ops.shape import to_device

                out = to_device(out, backend)
        if dtype is not None and _dtypes.resolve(dtype) != out.dtype:
            out = out.astype(dtype)
        return out

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def float(self) -> Tensor:
        return self.to(_dtypes.float32)

    def double(self) -> Tensor:
        return self.to(_dtypes.float64)

    def half(self) -> Tensor:
        return self.to(_dtypes.float16)

    # ---- python protocol ----------------------------------------------------
    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self.item())

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = [f"dtype={self.dtype}"]
        if self.device != "cpu":
            extra.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extra.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self._requires_grad:
            extra.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extra)})"

    # ---- in-place ops: bump the version; leaves that require grad only under no_grad ------------
    def _writable(self, opname: str) -> None:
        """Raise ReadOnlyError unless this tensor's memory takes an in-place write: not a broadcast view
        (stride 0 along a dimension longer than one: several elements are one memory location, which
        NumPy marks read-only and CuPy would write in a race) and not a read-only array."""
        data = self._data
        strides = data.strides
        if 0 in strides and any(s == 0 and n > 1 for s, n in zip(strides, data.shape)):
            why = "it is a broadcast view (several of its elements are one memory location)"
        elif not getattr(data.flags, "writeable", True):
            why = "its array is read-only"
        else:
            return
        raise ReadOnlyError(f"{opname}: cannot write in place into a {self.shape} {self.dtype} tensor on "
                            f"{self.device}: {why}; write into a copy (x * 1) instead")

    def _write(self, result: Tensor, opname: str) -> Tensor:
        self._writable(opname)
        if result.shape != self.shape:
            raise ShapeError(
                f"{opname}: in-place result has shape {result.shape}, the tensor has shape {self.shape}; "
                "in-place ops cannot change a tensor's shape")
        if state.grad_enabled and self.grad_fn is None and self._requires_grad:
            raise GradError(
                f"{opname}: a leaf tensor that requires grad (shape {self.shape}) is used in an in-place "
                "operation; wrap the update in `with ga.no_grad():`")
        if result._data.dtype != self._data.dtype and not np.can_cast(
                result._data.dtype, self._data.dtype, casting="same_kind"):
            raise DtypeError(
                f"{opname}: cannot write a {result.dtype} result into a {self.dtype} tensor in place")
        self._backend.xp.copyto(self._data, result._data, casting="unsafe")
        self._version[0] += 1
        if state.grad_enabled:  # the tensor now holds `result`: its graph, or none if it is a constant
            self.grad_fn = result.grad_fn
            self._requires_grad = result._requires_grad
        self._fw = result._fw
        return self

    def _update(self, other, ufunc: str, out_of_place, opname: str) -> Tensor:
        """`self <op>= other`: straight into the buffer when no graph or tangent is involved (the optimizer
        step: one pass, no temporary); otherwise out of place, recorded, and written back by _write."""
        value = self._coerce(other)
        if (self._fw is None and value._fw is None and value._backend is self._backend
                and not (state.grad_enabled and (self._requires_grad or value._requires_grad))):
            self._writable(opname)
            try:
                getattr(self._backend.xp, ufunc)(self._data, value._data, out=self._data, casting="same_kind")
            except TypeError:
                raise DtypeError(f"{opname}: cannot write a {out_of_place(self, other).dtype} result into a "
                                 f"{self.dtype} tensor in place") from None
            except ValueError:
                raise ShapeError(f"{opname}: in-place result of {self.shape} and {value.shape} does not have the "
                                 f"tensor's shape {self.shape}; in-place ops cannot change a tensor's shape") from None
            self._version[0] += 1
            return self
        return self._write(out_of_place(self, other), opname)

    def __iadd__(self, other):
        return self._update(other, "add", Tensor.__add__, "add_ (+=)")

    def __isub__(self, other):
        return self._update(other, "subtract", Tensor.__sub__, "sub_ (-=)")

    def __imul__(self, other):
        return self._update(other, "multiply", Tensor.__mul__, "mul_ (*=)")

    def __itruediv__(self, other):
        return self._update(other, "true_divide", Tensor.__truediv__, "div_ (/=)")

    def add_(self, other, alpha=1.0):
        return self._update(other * alpha if alpha != 1.0 else other, "add", Tensor.__add__, "add_")

    def mul_(self, other):
        return self._update(other, "multiply", Tensor.__mul__, "mul_")

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value) -> Tensor:
        from .creation import full_like

        return self._write(full_like(self, value), "fill_")

    def copy_(self, src) -> Tensor:
        src = self._coerce(src)
        if src._backend is not self._backend:
            src = src.to(self.device)
        return self._write(src.broadcast_to(self.shape).astype(self.dtype), "copy_")

    def __setitem__(self, index, value) -> None:
        from .ops.index import setitem

        setitem(self, index, value)


def _scalar_like(value, like: Tensor) -> Tensor:
    """A Python scalar or array as a tensor beside `like`: Python scalars are weakly typed (NumPy 2)."""
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        kind = like._data.dtype.kind
        if isinstance(value, bool):
            dtype = like._data.dtype
        elif isinstance(value, int):
            dtype = like._data.dtype if kind in "fiuc" else np.dtype(np.int64)
        else:
            dtype = like._data.dtype if kind in "fc" else _dtypes.default_float
        data = like._backend.xp.asarray(value, dtype=dtype)
        return Tensor._wrap(data, like._backend)
    return tensor(value, device=like._backend)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor from a list, scalar, NumPy/CuPy array or tensor.

    With dtype=None an array keeps its dtype; Python floats (and lists of them) become float32 and
    Python ints int64. A NumPy array on the CPU is used without a copy."""
    dtype = _dtypes.resolve(dtype)
    if isinstance(data, Tensor):
        backend = data._backend if device is None else _backend_of(device)
        arr = data._data if backend is data._backend else backend.from_host(data.numpy())
        if dtype is not None and arr.dtype != dtype:
            arr = arr.astype(dtype)
        elif backend is data._backend:
            arr = arr.copy()
    else:
        backend = _backend_of(device)
        if dtype is None and not hasattr(data, "dtype"):
            probe = np.asarray(data)
            if probe.dtype == np.float64:
                dtype = _dtypes.default_float
            elif probe.dtype.kind == "O":
                raise DtypeError(f"tensor: cannot make a tensor from {type(data).__name__} data")
            data = probe
        arr = backend.asarray(data, dtype=dtype)
    t = Tensor._wrap(arr, backend)
    if requires_grad:
        t.requires_grad = True
    return t


def _backend_of(device):
    if device is None:
        return for_device("cpu")
    if hasattr(device, "xp"):
        return device
    return for_device(device)


from .autograd.mode import state  # noqa: E402  (the autograd package imports this module)
