// Softmax cross-entropy over the last axis of (rows, cols) logits, one block per row (grid-strided).
// forward:  loss[r] = logsumexp(x[r]) - x[r, label[r]]   (one read of the logits, online max/sum)
// backward: dx[r, j] = g[r] * (exp(x[r, j] - lse[r]) - [j == label[r]]), with lse[r] = loss[r] + x[r,
//           label[r]] recovered from the forward's output: one read and one write of the logits.
// Rows whose label equals ignore_index get loss 0 and gradient 0; a label outside [0, cols) gives NaN
// (the GPU cannot raise without a host sync). The loss and g are in the accumulation type A.
#include "common.cuh"

template <typename T, typename A>
__device__ void softmax_xent_fwd(const T* __restrict__ x, const long long* __restrict__ labels,
                                 A* __restrict__ loss, int rows, int cols, long long ignore_index) {
    __shared__ A scratch_m[32], scratch_s[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + (long long)r * cols;
        A m = neg_inf(A(0)), s = A(0);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const A v = load(row + j);
            if (v > m) {
                s = s * exp_(m - v) + A(1);
                m = v;
            } else if (v != neg_inf(v)) {  // NaN still propagates; -inf adds nothing
                s += exp_(v - m);
            }
        }
        block_lse(m, s, scratch_m, scratch_s);
        if (threadIdx.x == 0) {
            const long long label = labels[r];
            if (label == ignore_index) {
                loss[r] = A(0);
            } else if (label < 0 || label >= cols) {
                loss[r] = quiet_nan(A(0));
            } else {
                loss[r] = m + log_(s) - load(row + label);
            }
        }
    }
}

template <typename T, typename A>
__device__ void softmax_xent_bwd(const T* __restrict__ x, const long long* __restrict__ labels,
                                 const A* __restrict__ loss, const A* __restrict__ g,
                                 T* __restrict__ dx, int rows, int cols, long long ignore_index) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + (long long)r * cols;
        T* out = dx + (long long)r * cols;
        const long long label = labels[r];
        if (label == ignore_index) {
            for (int j = threadIdx.x; j < cols; j += blockDim.x) store(out + j, A(0));
            continue;
        }
        const bool valid = label >= 0 && label < cols;
        const A lse = valid ? loss[r] + load(row + label) : quiet_nan(A(0));
        const A gr = g[r];
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const A p = exp_(load(row + j) - lse);
            store(out + j, gr * (j == label ? p - A(1) : p));
        }
    }
}

#define SOFTMAX_XENT(SUFFIX, T, A)                                                                     \
    extern "C" __global__ void softmax_xent_fwd_##SUFFIX(const T* x, const long long* labels, A* loss, \
                                                         int rows, int cols, long long ignore_index) { \
        softmax_xent_fwd<T, A>(x, labels, loss, rows, cols, ignore_index);                             \
    }                                                                                                  \
    extern "C" __global__ void softmax_xent_bwd_##SUFFIX(const T* x, const long long* labels,          \
                                                         const A* loss, const A* g, T* dx, int rows,   \
                                                         int cols, long long ignore_index) {           \
        softmax_xent_bwd<T, A>(x, labels, loss, g, dx, rows, cols, ignore_index);                      \
    }

SOFTMAX_XENT(float32, float, float)
SOFTMAX_XENT(float64, double, double)
SOFTMAX_XENT(float16, f16_t, float)
SOFTMAX_XENT(bfloat16, bf16_t, float)
