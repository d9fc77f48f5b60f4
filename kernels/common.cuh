// Shared by every kernel in kernels/: storage types, conversions to the accumulation type, and block
// reductions. Self-contained (no CUDA headers), so NVRTC (cupy.RawModule) and nvcc compile it alike.
// float16 and bfloat16 are stored as 16-bit structs and accumulated in float32; double stays double.
#pragma once

struct f16_t {
    unsigned short bits;
};
struct bf16_t {
    unsigned short bits;
};

template <typename T>
struct Acc {
    typedef float type;
};
template <>
struct Acc<double> {
    typedef double type;
};

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ double load(const double* p) { return *p; }
__device__ __forceinline__ float load(const f16_t* p) {
#ifdef GPUAD_HOST_EMULATION  // tests/test_cuda_emulated.py runs these kernels on the CPU
    return gpuad_emu_h2f(p->bits);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p->bits));
    return f;
#endif
}
__device__ __forceinline__ float load(const bf16_t* p) {
    return __uint_as_float(((unsigned int)p->bits) << 16);
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(f16_t* p, float v) {
#ifdef GPUAD_HOST_EMULATION
    p->bits = gpuad_emu_f2h(v);
#else
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p->bits = h;
#endif
}
__device__ __forceinline__ void store(bf16_t* p, float v) {
    // round to nearest even; NaN stays a (quiet) NaN
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        p->bits = (unsigned short)((u >> 16) | 0x40u);
    } else {
        p->bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

__device__ __forceinline__ float neg_inf(float) { return __int_as_float(0xff800000); }
__device__ __forceinline__ double neg_inf(double) { return __longlong_as_double(0xfff0000000000000ULL); }
__device__ __forceinline__ float quiet_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double quiet_nan(double) { return __longlong_as_double(0x7ff8000000000000ULL); }
__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }
__device__ __forceinline__ float sqrt_(float v) { return sqrtf(v); }
__device__ __forceinline__ double sqrt_(double v) { return sqrt(v); }
__device__ __forceinline__ float cos_(float v) { return cosf(v); }
__device__ __forceinline__ double cos_(double v) { return cos(v); }
__device__ __forceinline__ float rsqrt_(float v) { return rsqrtf(v); }
__device__ __forceinline__ double rsqrt_(double v) { return rsqrt(v); }

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values in shared memory; the trailing barrier lets the caller reuse it at once.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A* scratch) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : A(0);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    return v;
}

// Merge two partial log-sum-exp states (running max m, sum of exp(x - m)).
template <typename A>
__device__ __forceinline__ void lse_merge(A& m, A& s, A m2, A s2) {
    const A hi = m > m2 ? m : m2;
    if (hi == neg_inf(hi)) return;  // both empty
    s = s * exp_(m - hi) + s2 * exp_(m2 - hi);
    m = hi;
}

// Block-wide log-sum-exp merge of per-thread states; every thread gets the merged (m, s).
template <typename A>
__device__ __forceinline__ void block_lse(A& m, A& s, A* scratch_m, A* scratch_s) {
    for (int o = 16; o > 0; o >>= 1) {
        A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) {
        scratch_m[warp] = m;
        scratch_s[warp] = s;
    }
    __syncthreads();
    m = lane < warps ? scratch_m[lane] : neg_inf(m);
    s = lane < warps ? scratch_s[lane] : A(0);
    for (int o = 16; o > 0; o >>= 1) {
        A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    __syncthreads();
}
