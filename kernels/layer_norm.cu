// Layer normalization over the last axis of (rows, cols), one block per row (grid-strided).
// Statistics are recomputed in both kernels by the same code (two-pass mean and variance in the
// accumulation type), so backward sees exactly the forward's values and nothing is saved but x.
// forward:  y = (x - mean) * rstd * w + b            (w, b may be null: no affine transform)
// backward: dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w; the row statistics
//           are written to mean_out / rstd_out (when not null) for the weight/bias gradient kernel.
#include "common.cuh"

template <typename T, typename A>
__device__ __forceinline__ void row_stats(const T* row, int cols, A eps, A* scratch, A& mean, A& rstd) {
    A s = A(0);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += load(row + j);
    mean = block_sum(s, scratch) / A(cols);
    A q = A(0);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const A d = load(row + j) - mean;
        q += d * d;
    }
    rstd = rsqrt_(block_sum(q, scratch) / A(cols) + eps);
}

template <typename T, typename A>
__device__ void layer_norm_fwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                               T* __restrict__ y, int rows, int cols, A eps) {
    __shared__ A scratch[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + (long long)r * cols;
        T* out = y + (long long)r * cols;
        A mean, rstd;
        row_stats(row, cols, eps, scratch, mean, rstd);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            A v = (load(row + j) - mean) * rstd;
            if (w) v *= load(w + j);
            if (b) v += load(b + j);
            store(out + j, v);
        }
    }
}

template <typename T, typename A>
__device__ void layer_norm_bwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ g,
                               T* __restrict__ dx, A* __restrict__ mean_out, A* __restrict__ rstd_out,
                               int rows, int cols, A eps) {
    __shared__ A scratch[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + (long long)r * cols;
        const T* grow = g + (long long)r * cols;
        T* out = dx + (long long)r * cols;
        A mean, rstd;
        row_stats(row, cols, eps, scratch, mean, rstd);
        A sg = A(0), sgx = A(0);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const A gw = w ? load(grow + j) * load(w + j) : load(grow + j);
            sg += gw;
            sgx += gw * (load(row + j) - mean) * rstd;
        }
        sg = block_sum(sg, scratch) / A(cols);
        sgx = block_sum(sgx, scratch) / A(cols);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const A gw = w ? load(grow + j) * load(w + j) : load(grow + j);
            const A xhat = (load(row + j) - mean) * rstd;
            store(out + j, rstd * (gw - sg - xhat * sgx));
        }
        if (threadIdx.x == 0 && mean_out) {
            mean_out[r] = mean;
            rstd_out[r] = rstd;
        }
    }
}

#define LAYER_NORM(SUFFIX, T, A)                                                                       \
    extern "C" __global__ void layer_norm_fwd_##SUFFIX(const T* x, const T* w, const T* b, T* y,       \
                                                       int rows, int cols, A eps) {                    \
        layer_norm_fwd<T, A>(x, w, b, y, rows, cols, eps);                                             \
    }                                                                                                  \
    extern "C" __global__ void layer_norm_bwd_##SUFFIX(const T* x, const T* w, const T* g, T* dx,      \
                                                       A* mean_out, A* rstd_out, int rows, int cols,   \
                                                       A eps) {                                        \
        layer_norm_bwd<T, A>(x, w, g, dx, mean_out, rstd_out, rows, cols, eps);                        \
    }

LAYER_NORM(float32, float, float)
LAYER_NORM(float64, double, double)
LAYER_NORM(float16, f16_t, float)
LAYER_NORM(bfloat16, bf16_t, float)
