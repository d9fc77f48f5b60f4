"""Tape freeing, measured: ga.memory counts the bytes of live NumPy buffers on the CPU (allocation handler)."""
from __future__ import annotations

import gc
import threading

import numpy as np

import gpuad as ga

WIDTH, BATCH, DEPTH = 1024, 512, 32


def _mlp(width: int = WIDTH, batch: int = BATCH):
    ga.manual_seed(0)
    with ga.no_grad():
        weights = [(ga.randn(width, width) * (1.0 / width ** 0.5)).requires_grad_() for _ in range(DEPTH)]
    return weights, ga.randn(batch, width)


def _forward(weights, x):
    h = x
    for w in weights:
        h = ga.tanh(h @ w)
    return h.sum()


def _backward_peak(retain_graph: bool) -> tuple[int, int, int]:
    weights, x = _mlp()
    loss = _forward(weights, x)
    del x
    gc.collect()
    ga.memory.reset_peak()
    before = ga.memory.stats()["current_bytes"]
    loss.backward(retain_graph=retain_graph)
    peak = ga.memory.stats()["peak_bytes"]
    del loss
    gc.collect()
    after = ga.memory.stats()["current_bytes"]
    param_and_grad = sum(w.numpy().nbytes + w.grad.numpy().nbytes for w in weights)
    return before, peak, after - param_and_grad


def test_tape_freeing_lowers_backward_peak_and_returns_to_params_plus_grads():
    small, _ = _mlp(2)  # warm: a program's kernel binds its constants (0-d arrays, live) on first use
    _forward(small, ga.randn(2, 2)).backward()
    del small
    gc.collect()
    baseline = ga.memory.stats()["current_bytes"]
    before_free, peak_free, extra_free = _backward_peak(retain_graph=False)
    before_keep, peak_keep, _ = _backward_peak(retain_graph=True)
    activations = DEPTH * BATCH * WIDTH * 4
    assert before_free == before_keep  # same forward, same saved tensors
    # Freeing each node's saved activations as its VJP finishes saves nearly all of them at the peak.
    assert peak_keep - peak_free > 0.75 * activations, (peak_free, peak_keep)
    # After backward only parameters and their gradients stay alive.
    assert extra_free == baseline


def test_memory_stats_count_shared_buffers_once():
    gc.collect()
    start = ga.memory.stats()["current_bytes"]
    x = ga.zeros(1000, dtype=ga.float64)
    view = x[10:20]
    alias = x.detach()
    assert ga.memory.stats()["current_bytes"] - start == 8000
    del x, alias
    assert ga.memory.stats()["current_bytes"] - start == 8000  # the view keeps the buffer alive
    del view
    assert ga.memory.stats()["current_bytes"] == start


def test_counting_sees_temporaries_realloc_and_only_the_importing_thread():
    gc.collect()
    ga.memory.reset_peak()
    start = ga.memory.stats()["current_bytes"]
    x = ga.ones(1000, dtype=ga.float64)
    y = ga.exp(x * 2.0 + 1.0)  # x * 2.0 is a temporary: freed after the add, but in the peak
    assert ga.memory.stats()["current_bytes"] - start == 16000
    assert 24000 <= ga.memory.stats()["peak_bytes"] - start < 24100  # + the two 0-d scalars
    a = np.empty(10)
    a.resize(1000, refcheck=False)  # realloc: the block's old size is read back from its header
    assert ga.memory.stats()["current_bytes"] - start == 24000
    made = []
    worker = threading.Thread(target=lambda: made.append(np.ones(1000)))
    worker.start()
    worker.join()
    assert ga.memory.stats()["current_bytes"] - start == 24000  # another thread: NumPy's default handler
    del x, y, a
    made.clear()
    assert ga.memory.stats()["current_bytes"] == start
    assert ga.memory.stats()["counted"] is True


def test_large_freed_blocks_are_cached_not_live_and_reused():
    from gpuad.backends import host_memory

    ga.memory.empty_cache("cpu")
    gc.collect()
    start = ga.memory.stats()
    n = host_memory.CACHE_MIN // 8
    a = np.full(n, 3.0)
    address = a.ctypes.data
    del a
    s = ga.memory.stats()
    assert s["current_bytes"] == start["current_bytes"] and s["pool_bytes"] == 8 * n  # cached, not live
    b = np.empty(n)  # the same size: the cached block comes back
    assert b.ctypes.data == address and ga.memory.stats()["pool_bytes"] == 0
    assert ga.memory.stats()["current_bytes"] - start["current_bytes"] == 8 * n
    c = np.zeros(n)  # calloc: never a reused (dirty) block
    assert c.ctypes.data != address and not c.any()
    del b, c
    # more than the cache holds: it never exceeds its limits, and the blocks it hands back are sound
    blocks = [np.full(n + 512 * k, float(k)) for k in range(host_memory.CACHE_SLOTS + 4)]
    del blocks
    assert 0 < ga.memory.stats()["pool_bytes"] <= host_memory.CACHE_LIMIT
    again = [np.full(n + 512 * k, -1.0) for k in range(host_memory.CACHE_SLOTS + 4)]
    assert all((x == -1.0).all() for x in again)
    del again
    ga.memory.empty_cache("cpu")
    s = ga.memory.stats()
    assert s["pool_bytes"] == 0 and s["current_bytes"] == start["current_bytes"]


def test_training_loop_does_not_leak():
    weights, x = _mlp()
    weights, x = weights[:2], x[:8]
    with ga.no_grad():
        weights = [w.detach()[:, :64][:64].requires_grad_() for w in weights]
    x = x[:, :64]

    def step():
        loss = _forward(weights, x)
        loss.backward()
        with ga.no_grad():
            for w in weights:
                w -= 0.01 * w.grad
                w.grad = None

    step()
    gc.collect()
    after_one = ga.memory.stats()["current_bytes"]
    for _ in range(50):
        step()
    gc.collect()
    assert ga.memory.stats()["current_bytes"] == after_one
    assert np.isfinite(weights[0].numpy()).all()
