"""Exception types; every message names the op and the shapes, dtypes and devices involved."""
from __future__ import annotations


class GpuadError(Exception):
    """Base class for gpuad's errors."""


class ShapeError(GpuadError, ValueError):
    """Shapes that cannot be broadcast, multiplied or reshaped as asked."""


class DeviceError(GpuadError, RuntimeError):
    """Tensors on different devices were mixed, or a device is not available."""


class GraphFreedError(GpuadError, RuntimeError):
    """Backward through a graph whose saved tensors were already freed."""


class InplaceModifiedError(GpuadError, RuntimeError):
    """A tensor saved for backward was changed in place afterwards."""


class GradError(GpuadError, RuntimeError):
    """A gradient was asked of something that cannot have one (ints, non-scalar output without grad)."""


class DtypeError(GpuadError, TypeError):
    """A dtype that the op cannot take."""


class IndexOutOfRange(GpuadError, IndexError):
    """An index beyond a dimension's size."""


class ReadOnlyError(GpuadError, ValueError):
    """An in-place write into memory that cannot take it: a broadcast view or a read-only array."""
