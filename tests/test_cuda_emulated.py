"""The CUDA C kernels of kernels/*.cu and their CuPy wrappers (gpuad/backends/cuda_kernels.py) run on
the CPU: the exact source that cupy.RawModule gets is compiled with g++ against a small emulation of
the CUDA features the kernels use (one host thread per CUDA thread, block barriers, warp shuffles,
__shared__ per block), and CUDAKernels drives it through a NumPy stand-in for CuPy. Launch
configurations, argument sizes (checked against the kernel's parameters), chunk tables, row
reductions and the float16/bfloat16 conversions are thereby checked against the NumPy reference
kernels without a GPU. (The Numba kernel is checked under Numba's simulator in
test_kernels_compile.py; here its launch is replaced by NumPy on the row statistics the CUDA kernel
wrote.) What this cannot show: timing, coalescing, and behaviour that differs on real hardware."""
from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

import gpuad as ga
from gpuad.backends import cpu_kernels
from gpuad.backends.cuda_kernels import CUDAKernels

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")

EMULATION = r"""
// Host emulation of the CUDA subset that kernels/*.cu use (see tests/test_cuda_emulated.py).
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <math.h>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#define GPUAD_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static  // blocks run one after another, so one static copy serves each block

struct dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;

class Barrier {
    std::mutex m;
    std::condition_variable cv;
    int n, count = 0;
    long generation = 0;
  public:
    explicit Barrier(int n) : n(n) {}
    void wait() {
        std::unique_lock<std::mutex> lock(m);
        long g = generation;
        if (++count == n) { count = 0; ++generation; cv.notify_all(); }
        else cv.wait(lock, [&] { return generation != g; });
    }
};
static Barrier* block_barrier;
static std::vector<std::unique_ptr<Barrier>> warp_barriers;
static unsigned char shuffle_slots[32][32][8];

inline void __syncthreads() { block_barrier->wait(); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int offset) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    std::memcpy(shuffle_slots[warp][lane], &v, sizeof(T));
    warp_barriers[warp]->wait();
    T r;
    std::memcpy(&r, shuffle_slots[warp][lane ^ offset], sizeof(T));
    warp_barriers[warp]->wait();
    return r;
}
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }
inline float gpuad_emu_h2f(unsigned short h) { _Float16 v; std::memcpy(&v, &h, 2); return (float)v; }
inline unsigned short gpuad_emu_f2h(float f) {
    _Float16 v = (_Float16)f;
    unsigned short h;
    std::memcpy(&h, &v, 2);
    return h;
}

template <typename... A, std::size_t... I>
void run_packed(void (*f)(A...), void** args, std::index_sequence<I...>) { f(*static_cast<A*>(args[I])...); }

// 0 on success; 1: wrong argument count; 2 + i: argument i has the wrong size; 100: bad block size
template <typename... A>
int launch(void (*f)(A...), unsigned gx, unsigned gy, unsigned bx, void** args, const long long* sizes,
           int nargs) {
    if (nargs != (int)sizeof...(A)) return 1;
    const std::size_t expected[] = {sizeof(A)...};
    for (int i = 0; i < nargs; ++i)
        if ((std::size_t)sizes[i] != expected[i]) return 2 + i;
    if (bx == 0 || bx % 32 || bx > 1024) return 100;
    blockDim = dim3{bx, 1, 1};
    gridDim = dim3{gx, gy, 1};
    Barrier block(bx);
    block_barrier = &block;
    warp_barriers.clear();
    for (unsigned w = 0; w < bx / 32; ++w) warp_barriers.emplace_back(new Barrier(32));
    for (unsigned y = 0; y < gy; ++y)
        for (unsigned x = 0; x < gx; ++x) {
            std::vector<std::thread> threads;
            for (unsigned t = 0; t < bx; ++t)
                threads.emplace_back([=] {
                    threadIdx = dim3{t, 0, 0};
                    blockIdx = dim3{x, y, 0};
                    run_packed(f, args, std::index_sequence_for<A...>{});
                });
            for (auto& th : threads) th.join();
        }
    return 0;
}
#define GPUAD_EMULATE(name)                                                                         \
    extern "C" int emu_##name(unsigned gx, unsigned gy, unsigned bx, void** args, const long long* s, \
                              int n) { return launch(name, gx, gy, bx, args, s, n); }
"""


class DeviceArray(np.ndarray):
    """A NumPy array posing as a CuPy array: .data.ptr and .get() as CuPy has them."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def get(self) -> np.ndarray:
        return np.array(self)


def _device(fn):
    return lambda *a, **k: np.asarray(fn(*a, **k)).view(DeviceArray)


class EmulatedFunction:
    """A kernel of an emulated module, called as CuPy calls a RawKernel: fn(grid, block, args)."""

    def __init__(self, lib, name):
        self.name = name
        self.fn = getattr(lib, f"emu_{name}")
        self.fn.restype = ctypes.c_int

    def __call__(self, grid, block, args):
        buffers = []
        for a in args:
            if isinstance(a, np.ndarray):
                buffers.append(ctypes.c_uint64(a.ctypes.data))  # a device pointer, as CuPy passes it
            elif isinstance(a, np.generic):
                buffers.append(ctypes.create_string_buffer(a.tobytes(), a.itemsize))
            else:
                raise TypeError(f"{self.name}: argument {a!r} is neither an array nor a NumPy scalar")
        pointers = (ctypes.c_void_p * len(args))(*[ctypes.addressof(b) for b in buffers])
        sizes = (ctypes.c_longlong * len(args))(*[ctypes.sizeof(b) if isinstance(b, ctypes.c_uint64) else
                                                  len(b.raw) for b in buffers])
        gx, gy = (tuple(grid) + (1,))[:2]
        status = self.fn(gx, gy, block[0], pointers, sizes, len(args))
        assert status == 0, f"{self.name}: launch rejected (status {status}: see launch() in EMULATION)"


class EmulatedModule:
    """cupy.RawModule stand-in: compiles `code` with g++ once, exposing every extern "C" kernel."""

    cache: dict = {}
    directory = ""  # set by the `kernels` fixture: where the shared libraries go

    def __init__(self, code: str, options=()):
        self.lib = self.cache.get(code)
        if self.lib is None:
            self.lib = self.cache[code] = self._build(code)

    @classmethod
    def _build(cls, code: str):
        src = EMULATION + code
        pre = subprocess.run(["g++", "-std=c++17", "-E", "-x", "c++", "-"], input=src, capture_output=True,
                             text=True, check=True).stdout
        names = sorted(set(re.findall(r'extern "C" void ([a-z]\w+)\(', pre)))  # the kernels, not libstdc++
        src += "\n" + "\n".join(f"GPUAD_EMULATE({n})" for n in names) + "\n"
        out = Path(cls.directory) / f"k{hashlib.sha1(src.encode()).hexdigest()[:12]}.so"
        built = subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-pthread", "-x", "c++", "-", "-o",
                                str(out)], input=src, capture_output=True, text=True)
        assert built.returncode == 0, built.stderr[-3000:]
        return ctypes.CDLL(str(out))

    def get_function(self, name: str) -> EmulatedFunction:
        return EmulatedFunction(self.lib, name)


def fake_cupy():
    """The slice of CuPy's API that CUDAKernels uses, on NumPy."""
    return types.SimpleNamespace(
        ndarray=type("NotACupyArray", (), {}),  # nothing is handed to Numba here
        empty=_device(np.empty), zeros=_device(np.zeros), empty_like=_device(np.empty_like),
        ascontiguousarray=_device(np.ascontiguousarray), broadcast_to=_device(np.broadcast_to),
        asarray=_device(np.asarray), RawModule=EmulatedModule,
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0),
                                   get_current_stream=lambda: types.SimpleNamespace(ptr=0)))


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    EmulatedModule.directory = str(tmp_path_factory.mktemp("cuda_emulation"))
    k = CUDAKernels(fake_cupy())

    def param_grads_in_numpy(name, grid, block, x, g, mean, rstd, zero, dweight, dbias, rows_per_block):
        xhat = (x.astype(zero.dtype) - mean[:, None]) * rstd[:, None]
        dweight += (g * xhat).sum(axis=0)
        dbias += g.astype(zero.dtype).sum(axis=0)

    k._numba_launch = param_grads_in_numpy
    return k


def dev(a):
    return None if a is None else np.ascontiguousarray(a).view(DeviceArray)


TOL = {"float16": 2e-3, "float32": 2e-5, "float64": 1e-12, "bfloat16": 2e-2}
DTYPES = ["float16", "float32", "float64"] + (["bfloat16"] if ga.bfloat16 is not None else [])  # ml_dtypes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 33), (3, 300)])
def test_softmax_xent_kernels(kernels, dtype, rows, cols):
    rng = np.random.default_rng(rows * cols)
    x = (rng.standard_normal((rows, cols)) * 3).astype(dtype)
    labels = rng.integers(0, cols, rows)
    labels[0] = -100
    if rows > 2:
        labels[1] = cols  # out of range: NaN
    loss = kernels.softmax_xent_forward(dev(x), dev(labels), -100)
    ref = cpu_kernels.softmax_xent_forward(x, labels, -100)
    assert loss.dtype == ref.dtype
    np.testing.assert_allclose(loss.get(), ref, rtol=TOL[dtype], atol=TOL[dtype])
    g = rng.standard_normal(rows).astype(ref.dtype)
    dx = kernels.softmax_xent_backward(dev(x), dev(labels), loss, dev(g), -100)
    dref = cpu_kernels.softmax_xent_backward(x, labels, ref, g, -100)
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(dx.get().astype(np.float64), dref.astype(np.float64), rtol=TOL[dtype],
                               atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("rows,cols", [(1, 3), (4, 100), (2, 300)])
def test_layer_norm_kernels(kernels, dtype, affine, rows, cols):
    rng = np.random.default_rng(rows + cols)
    x = (rng.standard_normal((rows, cols)) * 2 + 1).astype(dtype)
    w = rng.standard_normal(cols).astype(dtype) if affine else None
    b = rng.standard_normal(cols).astype(dtype) if affine else None
    y = kernels.layer_norm_forward(dev(x), dev(w), dev(b), 1e-5)
    np.testing.assert_allclose(y.get().astype(np.float64),
                               cpu_kernels.layer_norm_forward(x, w, b, 1e-5).astype(np.float64),
                               rtol=TOL[dtype], atol=TOL[dtype])
    g = rng.standard_normal((rows, cols)).astype(dtype)
    got = kernels.layer_norm_backward(dev(x), dev(w), dev(g), 1e-5, affine)
    ref = cpu_kernels.layer_norm_backward(x, w, g, 1e-5, affine)
    for a, r in zip(got, ref):
        if r is None:
            assert a is None
            continue
        assert a.dtype == r.dtype
        np.testing.assert_allclose(a.get().astype(np.float64), r.astype(np.float64), rtol=TOL[dtype] * 10,
                                   atol=TOL[dtype] * 10)


def _assert_lists_close(device: list, host: list, tol: float) -> None:
    """Every device array of each list equals the host array at the same place."""
    for got, ref in zip(device, host):
        for a, r in zip(got, ref):
            np.testing.assert_allclose(a.get().astype(np.float64), r.astype(np.float64), rtol=tol, atol=tol)


ADAM_DTYPES = [("float32", "float32"), ("float64", "float64"), ("float16", "float16"), ("float16", "float32")]


@pytest.mark.parametrize("dtype,state", ADAM_DTYPES + [(d, s) for d, s in (("bfloat16", "bfloat16"),
                                                                           ("bfloat16", "float32")) if d in DTYPES])
@pytest.mark.parametrize("decoupled", [False, True])
def test_multi_tensor_adam(kernels, dtype, state, decoupled):
    rng = np.random.default_rng(7)
    shapes = [(3,), (0,), (4097,), (2, 5), ()]  # a chunk boundary, an empty tensor, a scalar
    host = [[rng.standard_normal(s).astype(dt) for s in shapes] for dt in (dtype, dtype, state, state)]
    host[3] = [np.asarray(np.abs(v)) for v in host[3]]
    device = [[dev(a) for a in arrays] for arrays in host]
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1, step=3, decoupled=decoupled)
    kernels.adam_update(*device, **hyper)
    cpu_kernels.adam_update(*host, **hyper)
    _assert_lists_close(device, host, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_multi_tensor_sgd(kernels, dtype, momentum, nesterov):
    rng = np.random.default_rng(8)
    shapes = [(5,), (4100,), (2, 3)]
    host = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    device = [[dev(a) for a in arrays] for arrays in host]
    hyper = dict(lr=0.1, momentum=momentum, weight_decay=0.01, nesterov=nesterov)
    kernels.sgd_update(*device, **hyper)
    cpu_kernels.sgd_update(*host, **hyper)
    _assert_lists_close(device, host, TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_kernels_give_the_reference_bits(kernels, dtype):
    key = cpu_kernels.random_key(7, 3)
    shape = (3, 700)  # several blocks of 256, a ragged end
    np.testing.assert_array_equal(kernels.uniform(shape, dtype, key).get(), cpu_kernels.uniform(shape, dtype, key))
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(kernels.normal(shape, dtype, key).get(), cpu_kernels.normal(shape, dtype, key),
                               rtol=tol, atol=tol)
    np.testing.assert_array_equal(kernels.integers(-5, 1 << 40, shape, key).get(),
                                  cpu_kernels.integers(-5, 1 << 40, shape, key))


def test_emulated_launch_rejects_a_wrong_argument_size(kernels):
    """The argument check is real: an int64 where the kernel takes int (rows) is refused."""
    fn = kernels._function("softmax_xent", "softmax_xent_fwd_float32")
    x, labels, loss = dev(np.zeros((2, 3), np.float32)), dev(np.zeros(2, np.int64)), dev(np.zeros(2, np.float32))
    with pytest.raises(AssertionError, match="status 5"):
        fn((2,), (32,), (x, labels, loss, np.int64(2), np.int32(3), np.int64(-100)))
