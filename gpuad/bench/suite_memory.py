"""Memory suite: peak bytes of forward+backward of a deep tanh MLP with tape freeing, with
retain_graph=True, and with ga.checkpoint (when it exists), beside PyTorch's peak on the same model
(on the CPU read from the profiler's per-op allocation records, on the GPU from its allocator)."""
from __future__ import annotations

import gc
import math

import numpy as np

from .cases import Env, feature
from .harness import check_same

DEPTH = 16
SEGMENT = 4  # layers per checkpointed segment


def model_shape(env: Env) -> tuple[int, int]:
    """(width, batch): 256 x 4096 at the default sizes (activations outweigh the weights 16 to 1, so
    what the tape keeps shows), smaller when --sizes asks for small work."""
    width = max(32, min(256, 2 ** int(math.log2(math.isqrt(max(env.sizes)) // 16 or 1))))
    return width, 16 * width


def _weights(width: int, batch: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((width, width)) / math.sqrt(width)).astype(np.float32) for _ in range(DEPTH)]
    return ws, rng.standard_normal((batch, width)).astype(np.float32)


def _gpuad_peak(env: Env, ws, x_h, variant: str):
    """Peak live bytes above the starting point during one forward+backward, and (loss, grad of W0)."""
    import gpuad as ga

    params = [ga.tensor(env.array(w), device=env.device, requires_grad=True) for w in ws]
    x = ga.tensor(env.array(x_h), device=env.device)

    def block(h, *seg):
        for w in seg:
            h = (h @ w).tanh()
        return h

    gc.collect()
    ga.memory.reset_peak(env.device)
    start = ga.memory.stats(env.device)["current_bytes"]
    h = x
    if variant == "checkpoint":
        for i in range(0, DEPTH, SEGMENT):
            h = ga.checkpoint(block, h, *params[i:i + SEGMENT])
    else:
        h = block(h, *params)
    loss = h.sum()
    loss.backward(retain_graph=variant == "retain_graph")
    peak = ga.memory.stats(env.device)["peak_bytes"] - start
    return peak, (loss, params[0].grad)


def _torch_peak(env: Env, ws, x_h):
    torch = env.torch
    params = [env.torch_tensor(w, requires_grad=True) for w in ws]
    x = env.torch_tensor(x_h)

    def run():
        h = x
        for w in params:
            h = torch.tanh(h @ w)
        loss = h.sum()
        loss.backward()
        return loss

    if env.gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        loss = run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start, (loss, params[0].grad)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = run()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.end)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak, (loss, params[0].grad)


def run(env: Env) -> list[dict]:
    """Measure every variant, check they compute the same loss and gradient, print and return records."""
    width, batch = model_shape(env)
    ws, x_h = _weights(width, batch)
    variants = ["tape freeing", "retain_graph"]
    if feature("checkpoint") is not None:
        variants.append("checkpoint")
    else:
        env.note("ga.checkpoint: not available yet, checkpointed variant skipped")
    peaks, outputs = {}, {}
    for variant in variants:
        peaks[f"gpuad {variant}"], outputs[f"gpuad {variant}"] = _gpuad_peak(env, ws, x_h, variant.split()[0])
    torch_how = None
    if env.torch is not None:
        torch_how = "torch.cuda.max_memory_allocated" if env.gpu else (
            "torch.profiler profile_memory: op-level self allocations in time order (temporaries freed "
            "inside one op are not seen; gpuad's counts come from NumPy's allocator and do include them)")
        peaks["torch"], outputs["torch"] = _torch_peak(env, ws, x_h)
    else:
        env.note("torch peak memory: torch not installed, not measured")
    case = f"deep tanh MLP fwd+bwd ({DEPTH}x{width}x{width}, batch {batch}, float32)"
    check_same(outputs, "gpuad tape freeing", rtol=1e-3, atol=1e-5, label=f"[memory] {case}")
    activations = DEPTH * batch * width * 4
    ref = peaks["gpuad tape freeing"]
    print(f"[memory] {case}; one layer's activation {batch * width * 4 / 2**20:.2f} MiB, "
          f"weights {DEPTH * width * width * 4 / 2**20:.1f} MiB")
    print(f"{'implementation':<30} {'peak above start':>17} {'vs tape freeing':>16}")
    for name, peak in peaks.items():
        print(f"{name:<30} {peak / 2**20:>13.2f} MiB {peak / ref:>15.2f}x")
    if torch_how:
        print(f"(torch peak via {torch_how})")
    print()
    return [{"kind": "memory", "suite": "memory", "case": case, "reference": "gpuad tape freeing",
             "activation_bytes": activations, "torch_method": torch_how,
             "impls": {name: {"peak_bytes": int(peak)} for name, peak in peaks.items()}}]
