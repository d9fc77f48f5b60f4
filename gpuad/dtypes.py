"""Dtypes are NumPy dtype objects (CuPy uses the same ones); float32 is the default float."""
from __future__ import annotations

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")
try:  # bfloat16 exists where ml_dtypes is installed (it ships with JAX); CuPy has no bfloat16 arrays
    import ml_dtypes

    bfloat16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    bfloat16 = None

default_float = float32


def resolve(dtype) -> np.dtype | None:
    """Turn a dtype-like (ga.float32, np.float32, "float32", float) into a NumPy dtype; None stays None."""
    if dtype is None:
        return None
    if dtype is float:
        return default_float
    return np.dtype(dtype)


def is_floating(dtype: np.dtype) -> bool:
    """True for dtypes that can carry a gradient."""
    return dtype.kind == "f" or dtype == bfloat16
