"""The allocation handler's small-block cache (gpuad/backends/host_memory.py): freed blocks below
SMALL_LIMIT kept per size class and served again, each with its class's full capacity, never to calloc,
with live bytes exact."""
from __future__ import annotations

import ctypes
import gc

import numpy as np
import pytest

import gpuad as ga

hm = pytest.importorskip("gpuad.backends.host_memory")  # needs Numba
pytestmark = pytest.mark.skipif(not ga.memory.stats()["counted"], reason="the allocation handler is not installed")
c = hm.counters

try:  # glibc: the bytes a block really holds, to check that each holds its class's capacity
    _usable = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p)(("malloc_usable_size", ctypes.CDLL(None)))
except (AttributeError, OSError, TypeError):
    _usable = None


@pytest.fixture(autouse=True)
def _quiet():
    """No collection frees arrays into the cache mid-test; each test starts with the small cache empty."""
    gc.collect()
    gc.disable()
    hm.release()
    yield
    gc.enable()


def _address(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


def _class(nbytes: int) -> int:
    return (max(nbytes, 1) - 1) // hm.SMALL_STEP


def _capacity(nbytes: int) -> int:
    return (_class(nbytes) + 1) * hm.SMALL_STEP if nbytes < hm.SMALL_LIMIT else nbytes


def _in_cache(k: int) -> int:
    """Blocks cached in small class k."""
    return int(c[hm.SMALL0 + k * hm.SMALL_WORDS])


def _holds(arr: np.ndarray, nbytes: int) -> bool:
    """Whether the block under `arr` holds what a request of `nbytes` gets: the header and, if small, the
    class's capacity (any cached block of a class must fit any request of it)."""
    return _usable is None or _usable(_address(arr) - hm.HEADER) >= hm.HEADER + _capacity(nbytes)


def test_freed_small_block_is_served_again_in_its_class():
    k = _class(20)
    a = np.empty(5, np.float32)  # 20 bytes: the class of 17 to 32 bytes
    address = _address(a)
    assert _holds(a, 20) and _in_cache(k) == 0 and c[hm.SMALL_CACHED] == 0
    del a
    assert _in_cache(k) == 1 and c[hm.SMALL_CACHED] == 32  # its class's capacity, not the 20 bytes
    other = np.empty(12, np.float32)  # 48 bytes: another class does not take it
    assert _address(other) != address and _in_cache(k) == 1
    b = np.empty(4, np.float64)  # 32 bytes: the same class does
    assert _address(b) == address and _in_cache(k) == 0 and c[hm.SMALL_CACHED] == 0
    b[:] = 1.5  # the whole request fits the block
    assert _holds(b, 32) and (b == 1.5).all()


def test_calloc_never_takes_a_cached_block_and_its_blocks_are_cached_with_class_capacity():
    sizes = [1, 3, 5, 8, 17, 64, 100, 255]  # float32 elements: 4 to 1020 bytes
    dirty = [np.full(n, -1.0, np.float32) for n in sizes for _ in range(2)]
    addresses = {_address(x) for x in dirty}
    del dirty
    cached = int(c[hm.SMALL_CACHED])
    assert cached >= sum(2 * _capacity(4 * n) for n in sizes)
    zeros = [np.zeros(n, np.float32) for n in sizes]
    assert c[hm.SMALL_CACHED] == cached  # none was taken from the cache
    assert not {_address(z) for z in zeros} & addresses
    assert all(not z.any() and _holds(z, z.nbytes) for z in zeros)
    hm.release()
    z = np.zeros(5, np.float32)  # 20 bytes by calloc
    address = _address(z)
    del z
    assert _in_cache(_class(20)) == 1  # cached when freed
    e = np.empty(8, np.float32)  # 32 bytes, the same class: the calloc'd block must hold them
    assert _address(e) == address and _holds(e, 32)
    e[:] = 7.0
    assert (e == 7.0).all()


def test_realloc_keeps_the_data_within_and_across_classes_and_sizes():
    start = int(c[hm.CURRENT])
    a = np.arange(3, dtype=np.int64)  # 24 bytes
    address = _address(a)
    a.resize(4, refcheck=False)  # realloc to 32 bytes: the same class, the same block
    assert _address(a) == address and a.tolist() == [0, 1, 2, 0]
    assert c[hm.CURRENT] - start == 32
    previous = 4
    for n in (5, 100, 127, 128, 300, 129, 6, 2, 1):  # across classes, past SMALL_LIMIT and back
        a[:] = np.arange(previous)
        a.resize(n, refcheck=False)
        kept = min(n, previous)
        assert a[:kept].tolist() == list(range(kept)), n
        assert (a[kept:] == 0).all(), n
        assert _holds(a, 8 * n), n
        assert c[hm.CURRENT] - start == 8 * n, n
        previous = n
    del a
    assert c[hm.CURRENT] == start
    grown = np.fromiter(iter(range(200)), np.int64)  # fromiter grows its buffer by realloc, then trims it
    assert grown.tolist() == list(range(200)) and c[hm.CURRENT] - start == 1600
    del grown
    assert c[hm.CURRENT] == start


def test_live_bytes_return_when_small_arrays_are_freed_and_cached_ones_are_not_pool_bytes():
    start, blocks, pool = int(c[hm.CURRENT]), int(c[hm.BLOCKS]), ga.memory.stats()["pool_bytes"]
    arrays = [np.empty(n, np.uint8) for n in range(1, 1100, 7)] + [np.zeros(n) for n in range(1, 140, 3)]
    arrays += [np.ones(n, np.float32) for n in range(1, 300, 11)]
    assert c[hm.CURRENT] - start == sum(x.nbytes for x in arrays)
    assert c[hm.BLOCKS] - blocks == len(arrays)
    for x in arrays[::3]:
        x.resize(x.size + 5, refcheck=False)
    assert c[hm.CURRENT] - start == sum(x.nbytes for x in arrays)
    del arrays, x
    assert c[hm.CURRENT] == start and c[hm.BLOCKS] == blocks  # cached blocks are not live
    assert c[hm.SMALL_CACHED] > 0 and ga.memory.stats()["pool_bytes"] == pool
    again = [np.empty(n, np.uint8) for n in range(1, 1100, 7)]  # partly from the cache: counted again
    assert c[hm.CURRENT] - start == sum(x.nbytes for x in again)
    del again
    assert c[hm.CURRENT] == start and c[hm.BLOCKS] == blocks


def test_cache_keeps_at_most_small_slots_per_class_and_release_empties_it():
    arrays = [np.empty(n, np.uint8) for n in range(1, hm.SMALL_LIMIT, 5) for _ in range(hm.SMALL_SLOTS + 3)]
    del arrays
    counts = [_in_cache(k) for k in range(hm.SMALL_CLASSES)]
    assert max(counts) == hm.SMALL_SLOTS
    assert c[hm.SMALL_CACHED] == sum(n * (k + 1) * hm.SMALL_STEP for k, n in enumerate(counts))
    ga.memory.empty_cache("cpu")
    assert c[hm.SMALL_CACHED] == 0 and all(_in_cache(k) == 0 for k in range(hm.SMALL_CLASSES))
    fresh = np.full(8, 3.0, np.float32)  # served by malloc again, and sound
    assert _holds(fresh, 32) and (fresh == 3.0).all()


def test_small_keep_zero_turns_the_small_cache_off():
    keep = int(c[hm.SMALL_KEEP])
    try:
        c[hm.SMALL_KEEP] = 0
        a = np.empty(8, np.float32)
        del a
        assert c[hm.SMALL_CACHED] == 0 and _in_cache(_class(32)) == 0
    finally:
        c[hm.SMALL_KEEP] = keep
    a = np.empty(8, np.float32)
    del a
    assert _in_cache(_class(32)) == 1
