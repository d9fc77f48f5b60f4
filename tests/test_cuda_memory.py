"""Memory-pool-aware backward: the out-of-memory retry of the engine (checked on the CPU with a rule
that fails on purpose) and, on a GPU, CuPy pool statistics and tape freeing measured in the pool."""
from __future__ import annotations

import numpy as np
import pytest

import gpuad as ga
from gpuad.autograd.function import Op, apply


class FailingRule:
    """A VJP rule that raises MemoryError the first `failures` times it runs, then returns 3 * g."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    def __call__(self, c, g):
        self.calls += 1
        if self.calls <= self.failures:
            raise MemoryError("simulated: out of memory allocating 1,024 bytes")
        return g * 3.0


def _op(rule_b) -> Op:
    """f(a, b) = 2a + 3b whose rule for b is `rule_b` (the rule for a runs first, and always works)."""
    return Op("oom_probe", lambda xp, a, b: 2 * a + 3 * b, args=("a", "b"), vjp=(lambda c, g: g * 2.0, rule_b))


@pytest.fixture
def emptied(monkeypatch) -> list:
    """Counts calls of the CPU backend's empty_cache."""
    calls = []
    monkeypatch.setattr(ga.backends.get("numpy"), "empty_cache", lambda: calls.append(1))
    return calls


def test_backward_retries_once_after_freeing_the_pool(emptied):
    rule = FailingRule(failures=1)
    a, b = ga.tensor(np.ones(3), requires_grad=True), ga.tensor(np.ones(3), requires_grad=True)
    apply(_op(rule), (a, b), {}).sum().backward()
    assert emptied == [1] and rule.calls == 2
    np.testing.assert_array_equal(a.grad.numpy(), 2.0)  # not 4: the first attempt routed nothing
    np.testing.assert_array_equal(b.grad.numpy(), 3.0)


def test_backward_out_of_memory_twice_raises_with_statistics(emptied):
    a, b = ga.tensor(np.ones(3), requires_grad=True), ga.tensor(np.ones(3), requires_grad=True)
    loss = apply(_op(FailingRule(failures=2)), (a, b), {}).sum()
    with pytest.raises(MemoryError, match=r"out of memory in oom_probeBackward on cpu .*current_bytes"):
        loss.backward()
    assert emptied == [1]


def test_cuda_device_context_names_a_missing_device():
    with pytest.raises(ga.DeviceError, match=r"ga.cuda.device: cuda:64 is not available"):
        ga.cuda.device(64)


def test_pool_peak_hook_counts_cupy_hook_calls():
    """The hook as CuPy calls it (keyword arguments): a failed allocation (null pointer) is not counted."""
    from gpuad.backends.cuda import PoolPeakHook

    hook = PoolPeakHook()
    hook.start(1, 1024)
    hook.malloc_preprocess(device_id=1, size=100, mem_size=512)
    hook.malloc_postprocess(device_id=1, size=100, mem_size=512, mem_ptr=0x7F00, pmem_id=1)
    hook.malloc_postprocess(device_id=1, size=10**12, mem_size=10**12, mem_ptr=0, pmem_id=0)
    assert (hook.current[1], hook.peak[1]) == (1536, 1536)
    hook.free_preprocess(device_id=1, mem_size=512, mem_ptr=0x7F00, pmem_id=1)
    hook.free_postprocess(device_id=1, mem_size=512, mem_ptr=0x7F00, pmem_id=1)
    assert (hook.current[1], hook.peak[1]) == (1024, 1536)
    assert 0 not in hook.current  # devices are counted apart


# ---- on a GPU -----------------------------------------------------------------------------------------
MB = 1 << 20


def _probe(record: list):
    """An identity op whose VJP appends the pool's live bytes when backward reaches it."""
    op = Op("probe", lambda xp, x: x + 0, vjp=(lambda c, g: record.append(
        ga.memory.stats("cuda")["current_bytes"]) or g,))
    return lambda x: apply(op, (x,), {})


def _chain(n: int, record: list, weights: bool):
    """n layers h = tanh(h) (or tanh(h * w_i) with 4 MiB weights that get gradients) on a 4 MiB float32
    tensor, with a probe after every fifth layer."""
    x = ga.randn(1 << 20, device="cuda", requires_grad=not weights)
    ws = [ga.randn(1 << 20, device="cuda", requires_grad=True) for _ in range(n if weights else 0)]
    h = x
    probe = _probe(record)
    for i in range(n):
        h = ga.tanh(h * ws[i] if weights else h)
        if i % 5 == 4:
            h = probe(h)
    return (x, ws), h.sum()


def _backward(weights: bool, retain: bool):
    """(live bytes at each probe, peak bytes during backward) of one chain."""
    ga.memory.empty_cache("cuda")
    record: list = []
    leaves, loss = _chain(20, record, weights)
    ga.memory.reset_peak("cuda")
    loss.backward(retain_graph=retain)
    ga.cuda.synchronize()
    return record, ga.memory.stats("cuda")["peak_bytes"]


@pytest.mark.gpu
def test_pool_statistics_follow_allocations():
    ga.memory.empty_cache("cuda")
    base = ga.memory.stats("cuda")
    ga.memory.reset_peak("cuda")
    x = ga.zeros(8 * MB // 4, device="cuda")
    s = ga.memory.stats("cuda")
    assert s["current_bytes"] - base["current_bytes"] == 8 * MB
    assert s["peak_bytes"] >= s["current_bytes"] and s["pool_bytes"] >= s["current_bytes"]
    del x
    s2 = ga.memory.stats("cuda")
    assert s2["current_bytes"] == base["current_bytes"]
    assert s2["peak_bytes"] == s["peak_bytes"]  # the hook kept the peak
    assert s2["pool_bytes"] >= s["pool_bytes"]  # the block stays cached ...
    ga.memory.empty_cache("cuda")
    assert ga.memory.stats("cuda")["pool_bytes"] == s2["current_bytes"]  # ... until emptied


@pytest.mark.gpu
def test_live_bytes_drop_during_backward_as_nodes_are_freed():
    freed, _ = _backward(weights=False, retain=False)
    kept, _ = _backward(weights=False, retain=True)
    # probes run last layer first; between the first and the last, 15 tanh nodes freed 4 MiB outputs
    assert freed[-1] < freed[0] - 15 * 4 * MB * 0.8, freed
    assert all(f < k for f, k in zip(freed[1:], kept[1:])), (freed, kept)


@pytest.mark.gpu
def test_backward_peak_is_below_the_retain_graph_peak():
    """Weight gradients accumulate during backward: freed saved outputs make room for them."""
    _, peak_freed = _backward(weights=True, retain=False)
    _, peak_kept = _backward(weights=True, retain=True)
    assert peak_freed < peak_kept - 10 * 4 * MB, (peak_freed, peak_kept)


@pytest.mark.gpu
def test_out_of_memory_in_backward_raises_a_clear_error():
    import cupy

    pool = cupy.get_default_memory_pool()
    ga.memory.empty_cache("cuda")
    x = ga.randn(MB, device="cuda", requires_grad=True)  # 4 MiB each
    y = ga.exp(x)
    pool.set_limit(size=pool.used_bytes() + 6 * MB)  # forward fits; backward's g and g*y do not
    try:
        with pytest.raises(MemoryError, match=r"out of memory in .*Backward on cuda:0.*current_bytes"):
            y.backward(ga.ones(MB, device="cuda"))
    finally:
        pool.set_limit(size=0)
