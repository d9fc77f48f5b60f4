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

# the words the handlers read and update: live bytes, peak live bytes, live blocks, huge-page advice on
# (1/0), cached bytes, then per cache slot a block's address (0: empty) and its size
CURRENT, PEAK, BLOCKS, HUGE, CACHED, SLOT0 = range(6)
counters = np.zeros(SLOT0 + 2 * CACHE_SLOTS, np.int64)

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


@njit(cache=True)
def _adopt(ctx, block, size):
    """Write the header of a fresh block of `size` bytes and count it; the address NumPy gets."""
    if block == 0:
        return block
    n = np.int64(size)  # the counters are int64 (int64 with uint64 would promote to float64)
    _words(block)[0] = n
    c = _words(ctx)
    current = c[CURRENT] + n
    c[CURRENT] = current
    c[BLOCKS] += 1
    if current > c[PEAK]:
        c[PEAK] = current
    data = block + HEADER
    if n >= HUGE_PAGE_MIN and c[HUGE]:
        offset = _PAGE - data % _PAGE
        _madvise(data + offset, size - offset, _MADV_HUGEPAGE)
    return data


@njit(cache=True)
def _release(c):
    """Free every cached block."""
    for k in range(SLOT0, SLOT0 + 2 * CACHE_SLOTS, 2):
        if c[k] != 0:
            _free(np.uint64(c[k]))
            c[k] = 0
    c[CACHED] = 0


@njit(cache=True)
def _new_block(ctx, size):
    """A block for `size` bytes plus the header: a cached one of exactly that size, else malloc's."""
    n = np.int64(size)
    if n >= CACHE_MIN:
        c = _words(ctx)
        for k in range(SLOT0, SLOT0 + 2 * CACHE_SLOTS, 2):
            if c[k] != 0 and c[k + 1] == n:
                block = np.uint64(c[k])
                c[k] = 0
                c[CACHED] -= n
                return block
    return _malloc(size + HEADER)


@cfunc(_u(_u, _u), cache=True)
def _handler_malloc(ctx, size):
    return _adopt(ctx, _new_block(ctx, size), size)


@cfunc(_u(_u, _u, _u), cache=True)
def _handler_calloc(ctx, count, itemsize):
    size = count * itemsize  # never from the cache: fresh pages are zero already, a reused block is not
    return _adopt(ctx, _calloc(1, size + HEADER), size)


@cfunc(_u(_u, _u, _u), cache=True)
def _handler_realloc(ctx, data, size):
    if data == 0:
        return _adopt(ctx, _new_block(ctx, size), size)
    block = _realloc(data - HEADER, size + HEADER)
    if block == 0:
        return block  # the old block is untouched and still counted
    c = _words(ctx)
    c[CURRENT] -= _words(block)[0]
    c[BLOCKS] -= 1
    return _adopt(ctx, block, size)


@cfunc(types.void(_u, _u, _u), cache=True)
def _handler_free(ctx, data, size):
    if data == 0:
        return
    block = data - HEADER
    n = _words(block)[0]  # the size counted at allocation (NumPy's `size` may differ for empty arrays)
    c = _words(ctx)
    c[CURRENT] -= n
    c[BLOCKS] -= 1
    if n >= CACHE_MIN and n <= CACHE_LIMIT:
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
    _release(_words(ctx))


def release() -> None:
    """Hand the cached blocks back to the C library (and so, for blocks this large, to the OS)."""
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
