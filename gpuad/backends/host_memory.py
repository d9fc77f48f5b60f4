"""Host memory accounting in native code: NumPy's data allocations counted as CuPy's pool counts the GPU's.

NumPy (>= 1.22, NEP 49) lets a program replace the functions that allocate array data. The CPU backend
installs handlers compiled by Numba (`cfunc`): they call the C library's malloc family and keep live and
peak bytes in a small counter array, so no Python runs when a tensor is made or freed, and a buffer
shared by views counts once. Every block carries a 16-byte header with its size, which free and
realloc read back. Blocks of 4 MiB and more are advised to use huge pages, as NumPy's own handler does.

Freed blocks of 32 MiB and more are cached for reuse, as CuPy's pool keeps freed device blocks: glibc
maps blocks that large afresh on every allocation even under the cached host allocator (its mmap
threshold cannot go higher), and the kernel faults in and zeroes them on first touch (a tanh writing a 32
MiB output took 1.3-1.6x as long into a fresh block as into a reused one, benchmarks/host_paths.py). At
most `CACHE_SLOTS` blocks and `CACHE_LIMIT` bytes are kept; a free that does not fit releases the cache
first. A malloc of exactly a cached block's size takes it back. Cached bytes are not live: they are
reported as the pool's, and `release()` (`ga.memory.empty_cache("cpu")`) hands them back.

Freed blocks below 1 KiB (`SMALL_LIMIT`) are cached too, as NumPy's default handler caches them (its
`npy_alloc_cache`: up to 7 blocks per byte size below 1024), a cache NumPy keeps to its own handler:
without this every small array cost a malloc and a free through the handler, and gpuad runs its 8-element
ops through NumPy. Per call on 8 float32 elements (benchmarks/host_paths.py case 7, recorded in
benchmarks/results/host-paths-cpu-2026-11-22-session5.txt), np.multiply took 274 ns without the cache,
239 ns with it and 218 ns through NumPy's default handler; np.empty 103, 98 and 96 ns. Small requests fall in size
classes of `SMALL_STEP` bytes, and every block of a class is allocated with the class's full capacity (by
malloc, calloc and realloc alike), so that any cached block of a class serves any request of it. Up to
`SMALL_SLOTS` freed blocks per class are kept, the last freed served first. calloc never takes a cached
block (it is not zero), but its blocks are cached when freed; a realloc within a class keeps its block.
Cached small blocks are not live, and not the pool's either (`CACHED`, reported as pool bytes): they are
at most 64 classes x 8 blocks of at most 1 KiB, they change with every temporary, and NumPy's own small
cache is counted nowhere. `counters[SMALL_CACHED]` holds their bytes, and `release()` frees them.
`counters[SMALL_KEEP]` (blocks kept per class) set to 0 turns the small cache off: freed small blocks go
back to free() (so host_paths.py case 7 measures the cache).

The handler keeps no lock: NumPy allocates and frees array data with the GIL held, which NumPy's own
small-block cache relies on too (NumPy turns that cache off where the GIL is disabled; this handler would
need atomics there, and so would its counters).

What is counted: every NumPy buffer allocated after `install()` in the thread that called it (NumPy keeps
the handler in a context variable: threads started later allocate with NumPy's default and are not
counted; buffers are always freed by the handler that allocated them). The backend installs it when it
starts, so the numbers cover tensors, the temporaries inside ops, and any NumPy array the program makes.
"""
from __future__ import annotations

import ctypes

import numpy as np
from numba import cfunc, njit, types
from numba.core.extending import intrinsic

from .host_allocator import MMAP_THRESHOLD

HEADER = 16  # bytes before each block: its size (keeps malloc's 16-byte alignment)
HUGE_PAGE_MIN = 4 << 20  # NumPy advises huge pages from this size on
_PAGE = 4096
_MADV_HUGEPAGE = 14
_SET_HANDLER_SLOT = 304  # PyDataMem_SetHandler in NumPy's C-API table (numpy/__multiarray_api.h)

CACHE_MIN = MMAP_THRESHOLD  # blocks cached for reuse from this size: glibc maps these afresh each time
CACHE_LIMIT = 256 << 20  # bytes cached at most
CACHE_SLOTS = 16  # blocks cached at most

SMALL_LIMIT = 1024  # requests below this many bytes are small: served from the small-block cache
SMALL_STEP = 16  # small size classes: blocks of 16, 32, ... SMALL_LIMIT bytes (plus the header)
SMALL_CLASSES = SMALL_LIMIT // SMALL_STEP
SMALL_SLOTS = 8  # blocks cached per class at most

# the words the handlers read and update: live bytes, peak live bytes, live blocks, huge-page advice on
# (1/0), cached bytes (large blocks), bytes of the cached small blocks (their classes' capacity), small
# blocks kept per class (SMALL_SLOTS; 0: none), then per cache slot a block's address (0: empty) and its
# size, then per small class the number of blocks cached and SMALL_SLOTS addresses (the first `number`
# in use, the last the next served)
CURRENT, PEAK, BLOCKS, HUGE, CACHED, SMALL_CACHED, SMALL_KEEP, SLOT0 = range(8)
SMALL0 = SLOT0 + 2 * CACHE_SLOTS
SMALL_WORDS = 1 + SMALL_SLOTS  # per class
counters = np.zeros(SMALL0 + SMALL_CLASSES * SMALL_WORDS, np.int64)
counters[SMALL_KEEP] = SMALL_SLOTS

_installed = None  # the handler capsule (with what it points to) once installed


class _Allocator(ctypes.Structure):  # PyDataMemAllocator (numpy/ndarraytypes.h)
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", ctypes.c_void_p), ("calloc", ctypes.c_void_p),
                ("realloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]


class _Handler(ctypes.Structure):  # PyDataMem_Handler, version 1
    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", _Allocator)]


_u = types.uintp  # addresses travel as integers: the C ABI passes pointers and size_t alike
# the C library's functions, resolved by name when the code is linked (so the compiled code caches)
_malloc = types.ExternalFunction("malloc", _u(_u))
_calloc = types.ExternalFunction("calloc", _u(_u, _u))
_realloc = types.ExternalFunction("realloc", _u(_u, _u))
_free = types.ExternalFunction("free", types.void(_u))
_madvise = types.ExternalFunction("madvise", types.intc(_u, _u, types.intc))


@intrinsic
def _words(typingctx, address):
    """The int64 words at an integer address."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return types.CPointer(types.int64)(address), codegen


# addresses stay uint64 in the compiled code: uint64 with a Python int is int64 in Numba, and int64 with
# uint64 is float64
_HEADER = np.uint64(HEADER)


@njit(cache=True, inline="always")
def _adopt(ctx, block, size):
    """Write the header of a fresh block of `size` bytes and count it; the address NumPy gets."""
    if block == 0:
        return block
    n = np.int64(size)  # the counters are int64
    _words(block)[0] = n
    c = _words(ctx)
    current = c[CURRENT] + n
    c[CURRENT] = current
    c[BLOCKS] += 1
    if current > c[PEAK]:
        c[PEAK] = current
    data = block + _HEADER
    if n >= HUGE_PAGE_MIN and c[HUGE]:
        offset = _PAGE - data % _PAGE
        _madvise(data + offset, size - offset, _MADV_HUGEPAGE)
    return data


@njit(cache=True)
def _release(c):
    """Free every cached large block."""
    for k in range(SLOT0, SLOT0 + 2 * CACHE_SLOTS, 2):
        if c[k] != 0:
            _free(np.uint64(c[k]))
            c[k] = 0
    c[CACHED] = 0


@njit(cache=True)
def _release_small(c):
    """Free every cached small block."""
    for base in range(SMALL0, SMALL0 + SMALL_CLASSES * SMALL_WORDS, SMALL_WORDS):
        for j in range(base + 1, base + 1 + c[base]):
            _free(np.uint64(c[j]))
            c[j] = 0
        c[base] = 0
    c[SMALL_CACHED] = 0


@njit(cache=True, inline="always")
def _small_class(n):
    """The size class of a small request of `n` bytes (int64, below SMALL_LIMIT): its blocks hold
    (class + 1) * SMALL_STEP bytes."""
    return (max(n, 1) - 1) // SMALL_STEP


@njit(cache=True, inline="always")
def _capacity(size):
    """The bytes a block for a request of `size` bytes holds, the header aside: a small request's class
    capacity, else `size`."""
    n = np.int64(size)
    if n < SMALL_LIMIT:
        return np.uint64((_small_class(n) + 1) * SMALL_STEP)
    return size


@njit(cache=True, inline="always")
def _new_block(ctx, size):
    """A block for `size` bytes plus the header: a cached one of the same small class or of exactly that
    large size, else malloc's (a small request gets its class's capacity)."""
    n = np.int64(size)
    c = _words(ctx)
    if n < SMALL_LIMIT:
        k = _small_class(n)
        base = SMALL0 + k * SMALL_WORDS
        count = c[base]
        if count > 0:
            c[base] = count - 1
            c[SMALL_CACHED] -= (k + 1) * SMALL_STEP
            return np.uint64(c[base + count])
        return _malloc(np.uint64((k + 1) * SMALL_STEP) + _HEADER)
    if n >= CACHE_MIN:
        for k in range(SLOT0, SLOT0 + 2 * CACHE_SLOTS, 2):
            if c[k] != 0 and c[k + 1] == n:
                block = np.uint64(c[k])
                c[k] = 0
                c[CACHED] -= n
                return block
    return _malloc(size + _HEADER)


@cfunc(_u(_u, _u), cache=True)
def _handler_malloc(ctx, size):
    return _adopt(ctx, _new_block(ctx, size), size)


@cfunc(_u(_u, _u, _u), cache=True)
def _handler_calloc(ctx, count, itemsize):
    size = count * itemsize  # never from a cache: fresh pages are zero already, a reused block is not
    return _adopt(ctx, _calloc(1, _capacity(size) + _HEADER), size)


@cfunc(_u(_u, _u, _u), cache=True)
def _handler_realloc(ctx, data, size):
    if data == 0:
        return _adopt(ctx, _new_block(ctx, size), size)
    block = data - _HEADER
    old = _words(block)[0]
    n = np.int64(size)
    if not (n < SMALL_LIMIT and old < SMALL_LIMIT and _small_class(n) == _small_class(old)):
        block = _realloc(block, _capacity(size) + _HEADER)  # within a small class the block holds it
        if block == 0:
            return block  # the old block is untouched and still counted
    c = _words(ctx)
    c[CURRENT] -= old
    c[BLOCKS] -= 1
    return _adopt(ctx, block, size)


@cfunc(types.void(_u, _u, _u), cache=True)
def _handler_free(ctx, data, size):
    if data == 0:
        return
    block = data - _HEADER
    n = _words(block)[0]  # the size counted at allocation (NumPy's `size` may differ for empty arrays)
    c = _words(ctx)
    c[CURRENT] -= n
    c[BLOCKS] -= 1
    if n < SMALL_LIMIT:
        k = _small_class(n)
        base = SMALL0 + k * SMALL_WORDS
        count = c[base]
        if count < c[SMALL_KEEP] and count < SMALL_SLOTS:
            count += 1
            c[base + count] = np.int64(block)
            c[base] = count
            c[SMALL_CACHED] += (k + 1) * SMALL_STEP
            return
    elif n >= CACHE_MIN and n <= CACHE_LIMIT:
        for attempt in range(2):
            if c[CACHED] + n <= CACHE_LIMIT:
                for k in range(SLOT0, SLOT0 + 2 * CACHE_SLOTS, 2):
                    if c[k] == 0:
                        c[k] = np.int64(block)
                        c[k + 1] = n
                        c[CACHED] += n
                        return
            if attempt == 0:
                _release(c)  # full: make room for the block freed now (a training step's current shapes)
    _free(block)


@cfunc(types.void(_u), cache=True)
def _handler_release(ctx):
    c = _words(ctx)
    _release(c)
    _release_small(c)


def release() -> None:
    """Hand the cached blocks back to the C library (and so, for the large blocks, to the OS)."""
    if _installed is not None:
        _release_cached(counters.ctypes.data)


def install() -> bool:
    """Count NumPy's allocations in this thread from now on; False where this NumPy has no handler API or
    another handler is installed (it is left in place; memory statistics then read zero)."""
    global _installed
    if _installed is not None:
        return True
    core = getattr(np, "_core", None) or np.core  # NumPy 2 renamed numpy.core
    multiarray = core.multiarray
    if not hasattr(multiarray, "get_handler_name") or multiarray.get_handler_name() != "default_allocator":
        return False  # before NumPy 1.22 (NEP 49), or the program installed a handler of its own
    # own prototypes: setting argtypes on ctypes.pythonapi's shared functions would change them for others
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    new_capsule = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
        ("PyCapsule_New", ctypes.pythonapi))
    table = get_pointer(multiarray._ARRAY_API, None)
    counters[HUGE] = int(multiarray._get_madvise_hugepage())
    functions = _handler_malloc, _handler_calloc, _handler_realloc, _handler_free
    handler = _Handler(b"gpuad_counting", 1, _Allocator(counters.ctypes.data, *(f.address for f in functions)))
    capsule = new_capsule(ctypes.addressof(handler), b"mem_handler", None)
    slot = ctypes.c_void_p.from_address(table + _SET_HANDLER_SLOT * ctypes.sizeof(ctypes.c_void_p)).value
    ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(slot)(capsule)
    # the counters, the struct, its capsule and the compiled code must outlive every array allocated with
    # them, including arrays freed while the interpreter shuts down and clears module globals: one extra
    # reference each that is never dropped keeps them (a few KiB) for the life of the process
    _installed = (capsule, handler, functions, counters)
    for obj in (capsule, handler, counters, *functions):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    return True


_release_cached = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_handler_release.address)
