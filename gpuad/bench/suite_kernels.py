"""Kernel suite: elementwise forward and forward+backward (gpuad op by op, @ga.elementwise fused,
NumPy/CuPy chains), reductions, softmax-cross-entropy, matmul vs BLAS, conv2d and optimizer updates,
over sizes from the launch-overhead to the bandwidth regime. Features that have not landed yet
(ga.elementwise, ga.nn, ga.optim) are detected at run time and their cases skipped with a note."""
from __future__ import annotations

import inspect
import math
from collections.abc import Iterator

import numpy as np

from .cases import Case, Env, feature

BETA = 1.5  # swish(x) = x * sigmoid(BETA * x): four NumPy passes, one fused kernel


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _swish_fused():
    """The @ga.elementwise swish kernel, or None while ga.elementwise does not exist."""
    elementwise = feature("elementwise")
    if elementwise is None or not callable(elementwise):
        return None

    def swish(x, beta):
        return x / (1.0 + math.exp(-beta * x))

    swish.__module__ = "bench_user_code"  # traced as user code: the tracer leaves gpuad's modules alone
    return elementwise(swish)


def elementwise_cases(env: Env, size: int) -> Iterator[Case]:
    """swish forward, and forward+backward, in every available implementation."""
    import gpuad as ga

    xp = env.xp
    host_x = _rng(1).standard_normal(size).astype(np.float32)
    host_g = _rng(2).standard_normal(size).astype(np.float32)
    x, g = env.array(host_x), env.array(host_g)
    gx = ga.tensor(x, device=env.device)
    gg = ga.tensor(g, device=env.device)
    fused = _swish_fused()
    if fused is None:
        env.note("ga.elementwise: not available yet, fused-kernel implementations skipped")

    def chain_fwd():
        return x / (1.0 + xp.exp(-BETA * x))

    fwd = {"numpy chain" if not env.gpu else "cupy chain": chain_fwd}

    def gpuad_fwd():
        with ga.no_grad():
            return gx / (1.0 + (-BETA * gx).exp())

    fwd["gpuad op-by-op"] = gpuad_fwd
    if fused is not None:
        def fused_fwd():
            with ga.no_grad():
                return fused(gx, BETA)

        fwd["gpuad @elementwise"] = fused_fwd
    if env.torch is not None:
        tx = env.torch_tensor(host_x)
        fwd["torch"] = lambda: tx / (1.0 + env.torch.exp(-BETA * tx))
    if env.jax is not None:
        jnp = env.jax.numpy
        jx = env.jax_array(host_x)
        jf = env.jax.jit(lambda v: v / (1.0 + jnp.exp(-BETA * v)))
        fwd["jax jit"] = lambda: jf(jx).block_until_ready()
    ref = next(iter(fwd))
    yield Case("kernels", "swish forward", fwd, ref, size=size, shape=f"({size},) float32",
               bytes=8 * size)

    def chain_bwd():
        s = 1.0 / (1.0 + xp.exp(-BETA * x))
        y = x * s
        return y, g * (s + BETA * y * (1.0 - s))

    bwd = {next(iter(fwd)): chain_bwd}

    def autograd_step(f):
        leaf = ga.tensor(x, device=env.device, requires_grad=True)

        def step():
            leaf.grad = None
            y = f(leaf)
            y.backward(gg)
            return y, leaf.grad

        return step

    bwd["gpuad op-by-op"] = autograd_step(lambda v: v / (1.0 + (-BETA * v).exp()))
    if fused is not None:
        bwd["gpuad @elementwise"] = autograd_step(lambda v: fused(v, BETA))
    if env.torch is not None:
        tleaf = env.torch_tensor(host_x, requires_grad=True)
        tg = env.torch_tensor(host_g)

        def torch_bwd():
            tleaf.grad = None
            y = tleaf / (1.0 + env.torch.exp(-BETA * tleaf))
            y.backward(tg)
            return y, tleaf.grad

        bwd["torch"] = torch_bwd
    if env.jax is not None:
        jg = env.jax_array(host_g)

        def jax_vjp(v, cot):
            y, pull = env.jax.vjp(lambda u: u / (1.0 + jnp.exp(-BETA * u)), v)
            return y, pull(cot)[0]

        jb = env.jax.jit(jax_vjp)
        bwd["jax jit"] = lambda: env.jax.block_until_ready(jb(jx, jg))
    yield Case("kernels", "swish forward+backward", bwd, ref, size=size, shape=f"({size},) float32",
               bytes=12 * size)


def reduction_cases(env: Env, size: int) -> Iterator[Case]:
    """sum of all elements, and logsumexp over rows of 256."""
    import gpuad as ga

    xp = env.xp
    host = _rng(3).random(size, dtype=np.float32)  # positive: no cancellation, tolerances stay honest
    x = env.array(host)
    gx = ga.tensor(x, device=env.device)
    impls = {"numpy" if not env.gpu else "cupy": lambda: x.sum(), "gpuad": lambda: gx.sum()}
    if env.torch is not None:
        tx = env.torch_tensor(host)
        impls["torch"] = lambda: tx.sum()
    if env.jax is not None:
        jx = env.jax_array(host)
        js = env.jax.jit(lambda v: v.sum())
        impls["jax jit"] = lambda: js(jx).block_until_ready()
    ref = next(iter(impls))
    yield Case("kernels", "sum", impls, ref, size=size, shape=f"({size},) float32", bytes=4 * size,
               rtol=1e-4)

    cols = 256
    if size < cols:
        return
    rows = size // cols
    x2 = x[: rows * cols].reshape(rows, cols)
    gx2 = ga.tensor(x2, device=env.device)

    def lse():
        m = x2.max(axis=-1, keepdims=True)
        return (m + xp.log(xp.exp(x2 - m).sum(axis=-1, keepdims=True)))[:, 0]

    impls = {ref: lse, "gpuad": lambda: ga.logsumexp(gx2, axis=-1)}
    if env.torch is not None:
        tx2 = env.torch_tensor(host[: rows * cols].reshape(rows, cols))
        impls["torch"] = lambda: env.torch.logsumexp(tx2, dim=-1)
    if env.jax is not None:
        from jax.scipy.special import logsumexp as jlse

        jx2 = env.jax_array(host[: rows * cols].reshape(rows, cols))
        jl = env.jax.jit(lambda v: jlse(v, axis=-1))
        impls["jax jit"] = lambda: jl(jx2).block_until_ready()
    yield Case("kernels", "logsumexp rows", impls, ref, size=size, shape=f"({rows}, {cols}) float32",
               bytes=4 * size + 4 * rows)


def cross_entropy_cases(env: Env, size: int) -> Iterator[Case]:
    """Softmax-cross-entropy forward+backward (mean over rows of 256 classes)."""
    import gpuad as ga

    xp = env.xp
    classes = 256
    if size < classes:
        return
    rows = size // classes
    host = _rng(4).standard_normal((rows, classes)).astype(np.float32)
    labels_host = _rng(5).integers(0, classes, rows)
    x, labels = env.array(host), env.array(labels_host)
    index = xp.arange(rows)

    def hand():
        m = x.max(axis=1, keepdims=True)
        e = xp.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        loss = (m[:, 0] + xp.log(s[:, 0]) - x[index, labels]).mean()
        grad = e / s
        grad[index, labels] -= 1.0
        return loss, grad / rows

    ref = "numpy fused by hand" if not env.gpu else "cupy fused by hand"
    impls = {ref: hand}

    def autograd(loss_fn):
        leaf = ga.tensor(x, device=env.device, requires_grad=True)

        def step():
            leaf.grad = None
            loss = loss_fn(leaf)
            loss.backward()
            return loss, leaf.grad

        return step

    def composed(v):
        logp = v - ga.logsumexp(v, axis=1, keepdims=True)
        return -logp[index_t, labels_t].mean()

    index_t = ga.tensor(index, device=env.device)
    labels_t = ga.tensor(labels, device=env.device)
    impls["gpuad composed ops"] = autograd(composed)
    fused_xent = feature("ops.fused.softmax_cross_entropy")
    if fused_xent is not None:
        impls["gpuad fused softmax_cross_entropy"] = autograd(lambda v: fused_xent(v, labels_t))
    cross_entropy = feature("nn.functional.cross_entropy")
    if cross_entropy is not None:
        impls["gpuad F.cross_entropy"] = autograd(lambda v: cross_entropy(v, labels_t))
    else:
        env.note("ga.nn.functional.cross_entropy: not available yet, skipped")
    if env.torch is not None:
        torch = env.torch
        tleaf = env.torch_tensor(host, requires_grad=True)
        tlabels = torch.tensor(labels_host, device=env.torch_device)

        def torch_step():
            tleaf.grad = None
            loss = torch.nn.functional.cross_entropy(tleaf, tlabels)
            loss.backward()
            return loss, tleaf.grad

        impls["torch"] = torch_step
    if env.jax is not None:
        jax = env.jax
        jx, jl = env.jax_array(host), env.jax_array(labels_host)

        def jloss(v, lab):
            logp = jax.nn.log_softmax(v, axis=1)
            return -jax.numpy.take_along_axis(logp, lab[:, None], axis=1).mean()

        jvg = jax.jit(jax.value_and_grad(jloss))
        impls["jax jit"] = lambda: jax.block_until_ready(jvg(jx, jl))
    yield Case("kernels", "softmax-cross-entropy fwd+bwd", impls, ref, size=size,
               shape=f"({rows}, {classes}) float32", bytes=8 * size, rtol=1e-4)


def matmul_cases(env: Env, size: int) -> Iterator[Case]:
    """Square float32 matmul (n*n = size elements per operand) vs BLAS (NumPy) / cuBLAS (CuPy)."""
    import gpuad as ga

    n = int(round(math.sqrt(size)))
    limit = 8192 if env.gpu else 2048
    if n > limit:
        env.note(f"matmul: n > {limit} skipped on {env.device} (one call would take seconds)")
        return
    a_host = _rng(6).standard_normal((n, n)).astype(np.float32)
    b_host = _rng(7).standard_normal((n, n)).astype(np.float32)
    a, b = env.array(a_host), env.array(b_host)
    ga_a, ga_b = ga.tensor(a, device=env.device), ga.tensor(b, device=env.device)
    ref = "numpy (BLAS)" if not env.gpu else "cupy (cuBLAS)"
    impls = {ref: lambda: a @ b, "gpuad": lambda: ga_a @ ga_b}
    if env.torch is not None:
        ta, tb = env.torch_tensor(a_host), env.torch_tensor(b_host)
        impls["torch"] = lambda: ta @ tb
    if env.jax is not None:
        ja, jb = env.jax_array(a_host), env.jax_array(b_host)
        jm = env.jax.jit(lambda u, v: u @ v)
        impls["jax jit"] = lambda: jm(ja, jb).block_until_ready()
    yield Case("kernels", "matmul", impls, ref, size=n * n, shape=f"{n}x{n} @ {n}x{n} float32",
               flops=2.0 * n ** 3, rtol=1e-3, atol=1e-4, pause_s=0.15)


def conv_cases(env: Env, size: int) -> Iterator[Case]:
    """conv2d forward, 3x3, 16 -> 16 channels, batch 8, padding 1 (input has `size` elements)."""
    import gpuad as ga

    conv2d = feature("nn.functional.conv2d")
    if conv2d is None:
        env.note("ga.nn.functional.conv2d: not available yet, conv2d skipped")
        return
    batch, channels = 8, 16
    side = int(round(math.sqrt(size / (batch * channels))))
    if side < 4 or (not env.gpu and size > 1 << 22):
        return
    xp = env.xp
    x_host = _rng(8).standard_normal((batch, channels, side, side)).astype(np.float32)
    w_host = (_rng(9).standard_normal((channels, channels, 3, 3)) / 12).astype(np.float32)
    x, w = env.array(x_host), env.array(w_host)

    def im2col():
        padded = xp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols = xp.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # N C H W kh kw
        return xp.einsum("nchwij,ocij->nohw", cols, w, optimize=True)

    ref = "numpy im2col+einsum" if not env.gpu else "cupy im2col+einsum"
    gx, gw = ga.tensor(x, device=env.device), ga.tensor(w, device=env.device)
    impls = {ref: im2col, "gpuad": lambda: conv2d(gx, gw, padding=1)}
    if env.torch is not None:
        tx, tw = env.torch_tensor(x_host), env.torch_tensor(w_host)
        impls["torch"] = lambda: env.torch.nn.functional.conv2d(tx, tw, padding=1)
    if env.jax is not None:
        jx, jw = env.jax_array(x_host), env.jax_array(w_host)
        jc = env.jax.jit(lambda u, v: env.jax.lax.conv_general_dilated(u, v, (1, 1), ((1, 1), (1, 1))))
        impls["jax jit"] = lambda: jc(jx, jw).block_until_ready()
    flops = 2.0 * batch * channels * channels * 9 * side * side
    yield Case("kernels", "conv2d 3x3", impls, ref, size=x_host.size,
               shape=f"({batch}, {channels}, {side}, {side}) * ({channels}, {channels}, 3, 3)",
               flops=flops, rtol=1e-3, atol=1e-4, pause_s=0.15)


def optimizer_cases(env: Env, size: int) -> Iterator[Case]:
    """One Adam update of a `size`-element parameter (reads p, g, m, v; writes p, m, v)."""
    import gpuad as ga

    adam = feature("optim.Adam")
    if adam is None:
        env.note("ga.optim.Adam: not available yet, optimizer update skipped")
        return
    xp = env.xp
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    p_host = _rng(10).standard_normal(size).astype(np.float32)
    g_host = _rng(11).standard_normal(size).astype(np.float32)

    def by_hand():
        p, g = env.array(p_host.copy()), env.array(g_host)
        m, v = xp.zeros_like(p), xp.zeros_like(p)
        t = [0]

        def step():
            t[0] += 1
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * (g * g)
            m_hat = m / (1 - b1 ** t[0])
            v_hat = v / (1 - b2 ** t[0])
            p[...] = p - lr * m_hat / (xp.sqrt(v_hat) + eps)
            return p

        return step

    def gpuad_adam(**kwargs):
        p = ga.tensor(env.array(p_host.copy()), device=env.device, requires_grad=True)
        p.grad = ga.tensor(env.array(g_host), device=env.device)
        opt = adam([p], lr=lr, betas=(b1, b2), eps=eps, **kwargs)

        def step():
            opt.step()
            return p

        return step

    ref = "numpy by hand" if not env.gpu else "cupy by hand"
    impls = {ref: by_hand(), "gpuad optim.Adam": gpuad_adam()}
    if "fused" in inspect.signature(adam).parameters:
        impls["gpuad optim.Adam fused"] = gpuad_adam(fused=True)
    if env.torch is not None:
        torch = env.torch
        for label, kwargs in (("torch foreach", {"foreach": True}), ("torch fused", {"fused": True})):
            tp = env.torch_tensor(p_host.copy(), requires_grad=True)
            tp.grad = env.torch_tensor(g_host)
            try:
                topt = torch.optim.Adam([tp], lr=lr, betas=(b1, b2), eps=eps, **kwargs)
            except (RuntimeError, TypeError) as exc:
                env.note(f"{label} Adam: unavailable here ({exc}), skipped")
                continue

            def torch_step(opt=topt, param=tp):
                opt.step()
                return param

            impls[label] = torch_step
    yield Case("kernels", "Adam update", impls, ref, size=size, shape=f"({size},) float32",
               bytes=28 * size, rtol=1e-4, atol=1e-6)


def cases(env: Env) -> Iterator[Case]:
    """Every kernel case, size by size (cases whose feature is missing are skipped with a note)."""
    builders = (elementwise_cases, reduction_cases, cross_entropy_cases, matmul_cases, conv_cases,
                optimizer_cases)
    for build in builders:
        for size in env.sizes:
            yield from build(env, size)
