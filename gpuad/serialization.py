"""ga.save / ga.load: nested dicts, lists and tuples of tensors, arrays and plain values in one `.npz`.

The file is a NumPy zip archive: each array is an `.npy` entry written with allow_pickle=False, and the
structure (with numbers, strings, booleans and None) is a JSON document stored as a uint8 array. Loading
uses np.load(allow_pickle=False) and json, so it never executes code from the file: an object array
(a pickle) is refused, and a truncated or foreign file raises CheckpointError naming the path."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from . import dtypes
from .errors import GpuadError
from .tensor import Tensor, tensor

_FORMAT = "gpuad-checkpoint"
_VERSION = 1
_META = "__gpuad_meta__"


class CheckpointError(GpuadError, ValueError):
    """A file that is not a readable gpuad checkpoint (truncated, foreign, or holding pickled objects)."""


def _encode(obj, arrays: list, where: str):
    """The JSON form of `obj`; arrays are appended to `arrays` and referenced by index."""
    if isinstance(obj, (Tensor, np.ndarray)):
        arr = obj.numpy() if isinstance(obj, Tensor) else obj
        node = {"kind": "tensor" if isinstance(obj, Tensor) else "ndarray", "index": len(arrays),
                "dtype": str(arr.dtype)}
        if isinstance(obj, Tensor):
            node["requires_grad"] = obj.requires_grad
        if arr.dtype.kind not in "biuf":
            if dtypes.bfloat16 is not None and arr.dtype == dtypes.bfloat16:
                arr = arr.view(np.uint16)
            else:
                raise TypeError(f"ga.save: cannot store an array of dtype {arr.dtype} at {where}")
        arrays.append(arr if arr.flags.c_contiguous else arr.copy())  # (ascontiguousarray makes 0-d 1-d)
        return node
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"ga.save: dict keys must be str or int, got {type(k).__name__} at {where}")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"kind": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        return {"kind": type(obj).__name__,
                "items": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"kind": "float", "value": repr(obj)}
        return {"kind": "value", "value": obj}
    raise TypeError(f"ga.save: cannot store a {type(obj).__name__} at {where}; checkpoints hold tensors, "
                    "arrays, dicts, lists, tuples, str, int, float, bool and None")


def save(obj, path) -> None:
    """Write `obj` (e.g. {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}) to
    `path` as a safe .npz checkpoint (written to a temporary file, then renamed)."""
    arrays: list = []
    meta = {"format": _FORMAT, "version": _VERSION, "root": _encode(obj, arrays, "root")}
    entries = {f"a{i}": a for i, a in enumerate(arrays)}
    entries[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, allow_pickle=False, **entries)
    os.replace(tmp, path)


def _decode(node, arrays, device):
    kind = node["kind"]
    if kind in ("tensor", "ndarray"):
        arr = arrays[f"a{node['index']}"]
        dtype = node["dtype"]
        if dtypes.bfloat16 is not None and dtype == str(dtypes.bfloat16):
            arr = arr.view(dtypes.bfloat16)
        elif str(arr.dtype) != dtype:
            raise CheckpointError(f"entry a{node['index']} has dtype {arr.dtype}, the index says {dtype}")
        if kind == "ndarray":
            return arr
        return tensor(arr, device=device, requires_grad=bool(node.get("requires_grad", False)))
    if kind == "dict":
        return {k: _decode(v, arrays, device) for k, v in node["items"]}
    if kind in ("list", "tuple"):
        items = [_decode(v, arrays, device) for v in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "float":
        return float(node["value"])
    if kind == "value":
        return node["value"]
    raise CheckpointError(f"unknown entry kind {kind!r}")


def load(path, device="cpu"):
    """Read a checkpoint written by ga.save; tensors are placed on `device`. Never runs code."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ga.load: no such file: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise CheckpointError(f"ga.load: {path} is not a gpuad checkpoint (not an .npz zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile) or _META not in npz.files:
                raise CheckpointError("no gpuad metadata entry (not written by ga.save)")
            meta = json.loads(npz[_META].tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise CheckpointError("the metadata does not name the gpuad checkpoint format")
            if meta.get("version", 0) > _VERSION:
                raise CheckpointError(f"format version {meta['version']} is newer than this gpuad reads "
                                      f"({_VERSION})")
            arrays = {name: npz[name] for name in npz.files if name != _META}
            return _decode(meta["root"], arrays, device)
    except CheckpointError as exc:
        raise CheckpointError(f"ga.load: {path} is not a valid gpuad checkpoint: {exc}") from None
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise CheckpointError(f"ga.load: {path} contains pickled Python objects, which are refused "
                                  "(loading them could run arbitrary code)") from None
        raise CheckpointError(f"ga.load: {path} is not a valid gpuad checkpoint: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, UnicodeDecodeError, TypeError) as exc:
        raise CheckpointError(f"ga.load: {path} is truncated or not a gpuad checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
