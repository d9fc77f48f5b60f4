// Counter-based random numbers: element i of draw `key` is a pure function of (key, i), so a random
// state is just (seed, number of draws) and replays exactly (checkpointing), with no generator
// object, no device state and no host synchronization. The hash is SplitMix64's finalizer applied
// twice; gpuad/backends/cpu_kernels.py holds the same functions in NumPy (the tests compare bits).
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// The 64 random bits of stream position i of draw `key`.
__device__ __forceinline__ unsigned long long bits64(unsigned long long key, long long i) {
    return mix64(key ^ mix64((unsigned long long)i));
}

// Uniform in [0, 1) with 24 (float) or 53 (double) random mantissa bits.
__device__ __forceinline__ float unit(unsigned long long b, float) {
    return (float)(b >> 40) * 5.9604644775390625e-08f;
}
__device__ __forceinline__ double unit(unsigned long long b, double) {
    return (double)(b >> 11) * 1.1102230246251565e-16;
}

template <typename T>
__device__ void uniform(T* __restrict__ out, long long n, unsigned long long key) {
    GRID_STRIDE(i, n) out[i] = unit(bits64(key, i), T(0));
}

// Box-Muller on positions 2i and 2i + 1 (one normal per pair; the other is not used).
template <typename T>
__device__ void normal(T* __restrict__ out, long long n, unsigned long long key) {
    GRID_STRIDE(i, n) {
        const T u1 = T(1) - unit(bits64(key, 2 * i), T(0));  // (0, 1]: the log stays finite
        const T u2 = unit(bits64(key, 2 * i + 1), T(0));
        out[i] = sqrt_(T(-2) * log_(u1)) * cos_(T(6.283185307179586) * u2);
    }
}

// Integers in [low, low + span): the high 64 bits of bits * span (Lemire's multiply, no division).
__device__ void integers(long long* __restrict__ out, long long n, unsigned long long key, long long low,
                         unsigned long long span) {
    GRID_STRIDE(i, n) out[i] = low + (long long)__umul64hi(bits64(key, i), span);
}

#define DRAWS(SUFFIX, T)                                                                               \
    extern "C" __global__ void uniform_##SUFFIX(T* out, long long n, unsigned long long key) {         \
        uniform(out, n, key);                                                                          \
    }                                                                                                  \
    extern "C" __global__ void normal_##SUFFIX(T* out, long long n, unsigned long long key) {          \
        normal(out, n, key);                                                                           \
    }

DRAWS(float32, float)
DRAWS(float64, double)
extern "C" __global__ void integers_int64(long long* out, long long n, unsigned long long key, long long low,
                                          unsigned long long span) {
    integers(out, n, key, low, span);
}
