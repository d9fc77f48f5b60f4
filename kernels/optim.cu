// Multi-tensor optimizer updates: one launch for a whole list of parameters. The host passes a table
// of device pointers (param, grad, state1, state2 per tensor, as 64-bit integers) and, per block,
// which tensor it works on and where its chunk starts; each block updates one chunk of one tensor.
// Parameters and gradients share the storage type T; optimizer states use S (T, or float32 for
// float16/bfloat16 parameters). Arithmetic runs in the accumulation type of T.
#include "common.cuh"

#define CHUNK 4096

template <typename T, typename S>
__device__ void adam_multi(const long long* __restrict__ ptrs, const long long* __restrict__ sizes,
                           const long long* __restrict__ block_tensor, const long long* __restrict__ block_start,
                           double lr, double beta1, double beta2, double eps, double weight_decay,
                           double bias_c1, double bias_c2, int decoupled) {
    typedef typename Acc<T>::type A;
    const long long t = block_tensor[blockIdx.x];
    const long long start = block_start[blockIdx.x];
    const long long end = start + CHUNK < sizes[t] ? start + CHUNK : sizes[t];
    T* p = reinterpret_cast<T*>(ptrs[4 * t]);
    const T* g = reinterpret_cast<const T*>(ptrs[4 * t + 1]);
    S* m = reinterpret_cast<S*>(ptrs[4 * t + 2]);
    S* v = reinterpret_cast<S*>(ptrs[4 * t + 3]);
    const A b1 = A(beta1), b2 = A(beta2), wd = A(weight_decay), step = A(lr / bias_c1);
    const A inv_sqrt_c2 = A(1.0 / sqrt(bias_c2)), e = A(eps), shrink = A(1.0 - lr * weight_decay);
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
        A pi = load(p + i), gi = load(g + i);
        if (decoupled) {
            pi *= shrink;
        } else {
            gi += wd * pi;
        }
        const A mi = b1 * A(load(m + i)) + (A(1) - b1) * gi;
        const A vi = b2 * A(load(v + i)) + (A(1) - b2) * gi * gi;
        store(m + i, mi);
        store(v + i, vi);
        store(p + i, pi - step * mi / (sqrt_(vi) * inv_sqrt_c2 + e));
    }
}

template <typename T>
__device__ void sgd_multi(const long long* __restrict__ ptrs, const long long* __restrict__ sizes,
                          const long long* __restrict__ block_tensor, const long long* __restrict__ block_start,
                          double lr, double momentum, double weight_decay, int nesterov) {
    typedef typename Acc<T>::type A;
    const long long t = block_tensor[blockIdx.x];
    const long long start = block_start[blockIdx.x];
    const long long end = start + CHUNK < sizes[t] ? start + CHUNK : sizes[t];
    T* p = reinterpret_cast<T*>(ptrs[4 * t]);
    const T* g = reinterpret_cast<const T*>(ptrs[4 * t + 1]);
    T* buf = reinterpret_cast<T*>(ptrs[4 * t + 2]);  // null when momentum == 0
    const A mu = A(momentum), wd = A(weight_decay), step = A(lr);
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
        const A pi = load(p + i);
        A d = load(g + i) + wd * pi;
        if (buf) {
            const A b = mu * A(load(buf + i)) + d;
            store(buf + i, b);
            d = nesterov ? d + mu * b : b;
        }
        store(p + i, pi - step * d);
    }
}

#define ADAM(SUFFIX, T, S)                                                                              \
    extern "C" __global__ void adam_multi_##SUFFIX(const long long* ptrs, const long long* sizes,         \
                                                   const long long* block_tensor, const long long* block_start, \
                                                   double lr, double beta1, double beta2, double eps,     \
                                                   double weight_decay, double bias_c1, double bias_c2,   \
                                                   int decoupled) {                                       \
        adam_multi<T, S>(ptrs, sizes, block_tensor, block_start, lr, beta1, beta2, eps, weight_decay,     \
                         bias_c1, bias_c2, decoupled);                                                    \
    }
#define SGD(SUFFIX, T)                                                                                  \
    extern "C" __global__ void sgd_multi_##SUFFIX(const long long* ptrs, const long long* sizes,          \
                                                  const long long* block_tensor, const long long* block_start,  \
                                                  double lr, double momentum, double weight_decay,        \
                                                  int nesterov) {                                         \
        sgd_multi<T>(ptrs, sizes, block_tensor, block_start, lr, momentum, weight_decay, nesterov);      \
    }

ADAM(float32, float, float)
ADAM(float64, double, double)
ADAM(float16, f16_t, f16_t)
ADAM(float16_float32, f16_t, float)
ADAM(bfloat16, bf16_t, bf16_t)
ADAM(bfloat16_float32, bf16_t, float)
SGD(float32, float)
SGD(float64, double)
SGD(float16, f16_t)
SGD(bfloat16, bf16_t)
