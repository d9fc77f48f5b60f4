"""Python overhead per op: a 200-op elementwise chain on 8-element tensors (forward + backward), and a
784-512-512-10 MLP training step written with gpuad ops, each beside PyTorch eager and hand-written
NumPy (forward and backward by hand) doing the same arithmetic from the same numbers."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .cases import Case, Env

CYCLES = 50  # each cycle is 4 ops (mul, add, tanh, sin): 200 ops, then a sum and backward
CHAIN_OPS = 4 * CYCLES
LAYERS = (784, 512, 512, 10)
BATCH = 256
LR = 0.01


def chain_inputs(size: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(size).astype(np.float32) for _ in range(3))


def chain_run(x, a, b, backward: bool = True) -> Callable[[], Any]:
    """The chain written once for gpuad and torch tensors (x requires grad); returns (sum, x.grad), or
    the sum alone when `backward` is off (the forward with its graph recorded, then dropped)."""

    def run():
        x.grad = None
        y = x
        for _ in range(CYCLES):
            y = (y * a + b).tanh().sin()
        s = y.sum()
        if not backward:
            return s
        s.backward()
        return s, x.grad

    return run


def gpuad_chain(env: Env, size: int = 8, backward: bool = True) -> Callable[[], Any]:
    """The chain with gpuad ops."""
    import gpuad as ga

    x_h, a_h, b_h = chain_inputs(size)
    x = ga.tensor(env.array(x_h), device=env.device, requires_grad=True)
    a, b = ga.tensor(env.array(a_h), device=env.device), ga.tensor(env.array(b_h), device=env.device)
    return chain_run(x, a, b, backward)


def torch_chain(env: Env, size: int = 8, backward: bool = True) -> Callable[[], Any]:
    """The same chain in PyTorch eager."""
    x_h, a_h, b_h = chain_inputs(size)
    return chain_run(env.torch_tensor(x_h, requires_grad=True), env.torch_tensor(a_h), env.torch_tensor(b_h),
                     backward)


def numpy_chain(env: Env, size: int = 8, backward: bool = True) -> Callable[[], Any]:
    """The chain with forward and backward written by hand on arrays (the floor for Python dispatch)."""
    xp = env.xp
    x, a, b = (env.array(v) for v in chain_inputs(size))

    def run():
        y = x
        saved = []
        for _ in range(CYCLES):
            t = xp.tanh(y * a + b)
            saved.append(t)
            y = xp.sin(t)
        if not backward:
            return y.sum()
        g = xp.ones_like(x)
        for t in reversed(saved):
            g = g * xp.cos(t) * (1.0 - t * t) * a
        return y.sum(), g

    return run


def by_hand(env: Env) -> str:
    """The name of the hand-written array reference on this device."""
    return "cupy by hand" if env.gpu else "numpy by hand"


def chain_case(env: Env, size: int = 8, backward: bool = True) -> Case:
    """Per-op overhead: the 200-op chain, timed per op (forward + backward, or the forward alone)."""
    impls = {by_hand(env): numpy_chain(env, size, backward), "gpuad": gpuad_chain(env, size, backward)}
    if env.torch is not None:
        impls["torch"] = torch_chain(env, size, backward)
    name = f"{CHAIN_OPS}-op elementwise chain {'fwd+bwd' if backward else 'fwd (graph recorded)'}"
    return Case("training", name, impls, by_hand(env), size=size, shape=f"({size},) float32, per item = one op",
                per=CHAIN_OPS)


def mlp_data() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Initial weights (in, out) and biases, a batch and its labels, identical for every implementation."""
    rng = np.random.default_rng(0)
    params = []
    for n_in, n_out in zip(LAYERS[:-1], LAYERS[1:]):
        params.append((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32))
        params.append(np.zeros(n_out, np.float32))
    x = rng.standard_normal((BATCH, LAYERS[0])).astype(np.float32)
    labels = rng.integers(0, LAYERS[-1], BATCH)
    return params, x, labels


def mlp_step(lib, params: list, x, onehot) -> Callable[[], Any]:
    """One SGD step written once for gpuad and torch (`lib`: both spell these ops alike), log-softmax
    cross-entropy composed from ops; returns (loss, first weight)."""

    def step():
        w1, b1, w2, b2, w3, b3 = params
        h = (x @ w1 + b1).relu()
        h = (h @ w2 + b2).relu()
        logits = h @ w3 + b3
        logp = logits - lib.logsumexp(logits, 1, True)
        loss = -(logp * onehot).sum() / BATCH
        loss.backward()
        with lib.no_grad():
            for p in params:
                p -= LR * p.grad
                p.grad = None
        return loss, params[0]

    return step


def gpuad_mlp(env: Env) -> Callable[[], Any]:
    """The step with gpuad tensors."""
    import gpuad as ga

    params_h, x_h, labels = mlp_data()
    params = [ga.tensor(env.array(p.copy()), device=env.device, requires_grad=True) for p in params_h]
    x = ga.tensor(env.array(x_h), device=env.device)
    onehot = ga.tensor(env.array(np.eye(LAYERS[-1], dtype=np.float32)[labels]), device=env.device)
    return mlp_step(ga, params, x, onehot)


def torch_mlp(env: Env) -> Callable[[], Any]:
    """The same step in PyTorch eager, op for op."""
    params_h, x_h, labels = mlp_data()
    params = [env.torch_tensor(p.copy(), requires_grad=True) for p in params_h]
    x = env.torch_tensor(x_h)
    onehot = env.torch_tensor(np.eye(LAYERS[-1], dtype=np.float32)[labels])
    return mlp_step(env.torch, params, x, onehot)


def numpy_mlp(env: Env) -> Callable[[], Any]:
    """The same step with forward and backward written by hand on arrays."""
    xp = env.xp
    params_h, x_h, labels = mlp_data()
    params = [env.array(p.copy()) for p in params_h]
    x = env.array(x_h)
    onehot = env.array(np.eye(LAYERS[-1], dtype=np.float32)[labels])

    def step():
        w1, b1, w2, b2, w3, b3 = params
        h1 = xp.maximum(x @ w1 + b1, 0)
        h2 = xp.maximum(h1 @ w2 + b2, 0)
        logits = h2 @ w3 + b3
        m = logits.max(axis=1, keepdims=True)
        e = xp.exp(logits - m)
        s = e.sum(axis=1, keepdims=True)
        loss = -((logits - m - xp.log(s)) * onehot).sum() / BATCH
        d3 = (e / s - onehot) / BATCH
        d2 = (d3 @ w3.T) * (h2 > 0)
        d1 = (d2 @ w2.T) * (h1 > 0)
        grads = (x.T @ d1, d1.sum(0), h1.T @ d2, d2.sum(0), h2.T @ d3, d3.sum(0))
        for p, g in zip(params, grads):
            p -= LR * g
        return loss, params[0]

    return step


def mlp_case(env: Env) -> Case:
    """One 784-512-512-10 SGD step (batch 256) with gpuad ops, NumPy by hand and PyTorch."""
    impls = {by_hand(env): numpy_mlp(env), "gpuad ops": gpuad_mlp(env)}
    if env.torch is not None:
        impls["torch"] = torch_mlp(env)
    shape = "-".join(map(str, LAYERS)) + f", batch {BATCH}, SGD"
    return Case("training", "MLP step (ops)", impls, by_hand(env), shape=shape, rtol=1e-3, atol=1e-5,
                pause_s=0.15)


# (group, test on (file, function)) in order: the first match names where a function's self time goes
PROFILE_GROUPS = (
    ("autograd/function.py apply()", lambda f, n: f.endswith("autograd/function.py") and n == "apply"),
    ("autograd/function.py _attach() (makes the Node)",
     lambda f, n: f.endswith("autograd/function.py") and n in ("_attach", "_record")),
    ("Tensor._wrap, object.__new__ (tensors, nodes)", lambda f, n: f.endswith("gpuad/tensor.py") and n == "_wrap"
     or n.startswith("<built-in method __new__ of type object")),
    ("engine: run_backward/_vjps/_plan/_sum_to", lambda f, n: f.endswith("autograd/engine.py")),
    ("node.context (+ Ctx)", lambda f, n: f.endswith("autograd/node.py")),
    ("op wrappers, operands, scalars (ops/, tensor.py)",
     lambda f, n: "/gpuad/ops/" in f or f.endswith("gpuad/tensor.py")),
    ("pointwise programs: host.pointwise, fast_vjp (gpuad/elementwise/)",
     lambda f, n: "/gpuad/elementwise/" in f),
    ("other gpuad (mode, ...)", lambda f, n: "/gpuad/" in f),
    ("NumPy, builtins, generated NumPy-target code (the arithmetic itself)", lambda f, n: True),
)


def profile_chain(env: Env, per_op: float, calls: int = 200) -> list[tuple[str, float]]:
    """Where the chain's time goes: cProfile self time per group, scaled to `per_op` (the unprofiled
    cost per op, measured by the caller). Profiling inflates call-heavy code, so the shares are
    approximate; their sum is the measured cost."""
    import cProfile
    import pstats

    run = gpuad_chain(env)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        run()
    profiler.disable()
    groups = {name: 0.0 for name, _ in PROFILE_GROUPS}
    for (path, _, func), (_, _, self_time, _, _) in pstats.Stats(profiler).stats.items():
        for name, match in PROFILE_GROUPS:
            if match(path, func):
                groups[name] += self_time
                break
    total = sum(groups.values())
    return [(name, t / total * per_op) for name, t in groups.items()]
