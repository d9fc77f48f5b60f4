"""Checkpointing: run a segment without keeping its intermediates, and replay it during backward.

checkpoint(fn, *args) runs fn once, then keeps one node whose saved tensors are only the segment's
inputs (the tensor arguments and the leaf tensors fn closes over, such as parameters). Its VJP
replays fn on those inputs under enable_grad, with the random-number state of every backend set back
to what it was at the first run (so dropout draws the same mask), and backpropagates through the
replay; with create_graph the replay is recorded, so double backward and nested checkpoints work.
Forward mode needs no tape: with tangents present the segment simply runs as is.
"""
from __future__ import annotations

from collections.abc import Callable

from ..backends import registry
from ..tensor import Tensor
from . import engine
from .function import Op, _record
from .mode import enable_grad, is_grad_enabled
from .transforms import fresh_input, leaves_reached


def _rng_states() -> list:
    return [(backend, backend.rng_state()) for backend in registry.instances()]


def _set_rng_states(states: list) -> None:
    for backend, rng in states:
        backend.set_rng_state(rng)


def _replay_vjp(ctx, g, wrt):
    """Gradients for the inputs in `wrt`: one replay of the segment computes them all."""
    grads = _replay(ctx, g)
    return [grads[i] for i in wrt]


def _replay(ctx, g) -> list:
    """Run the segment again from its saved inputs (same random numbers) and backpropagate g."""
    create = is_grad_enabled()  # the engine turns grad mode on exactly when create_graph is set
    args, closed = ctx.xs[:ctx.n_args], ctx.xs[ctx.n_args:]
    after = _rng_states()
    _set_rng_states(ctx.rng)
    try:
        with enable_grad():
            inputs = [fresh_input(x, create) if x.dtype.kind == "f" else x for x in args]
            out = ctx.run(inputs)
    finally:
        _set_rng_states(after)
    wrt = [x for x in inputs if x._requires_grad] + list(closed)
    grads = dict(zip(map(id, wrt), engine.grad(out, wrt, g, create_graph=create)))
    return [grads.get(id(x)) for x in (*inputs, *closed)]


# Never applied: checkpoint() runs the segment itself, then records this node with _record.
CHECKPOINT = Op("checkpoint", forward=None, vjp=_replay_vjp, args="*xs", save="xs")


def checkpoint(fn: Callable, *args):
    """fn(*args), keeping only the inputs for backward and recomputing the rest there (less memory).

    fn returns one tensor; tensors it closes over that require grad must be leaves (parameters);
    pass computed tensors that require grad as arguments."""
    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    tensors = [args[i] for i in positions]

    def run(inputs):
        full = list(args)
        for i, t in zip(positions, inputs):
            full[i] = t
        return fn(*full)

    if not is_grad_enabled() or any(t._fw is not None for t in tensors):
        return fn(*args)
    rng = _rng_states()
    with enable_grad():
        inputs = [t.detach().requires_grad_() if t.dtype.kind == "f" else t for t in tensors]
        out = run(inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"checkpoint: fn must return one tensor, got {type(out).__name__}")
    if out._fw is not None:  # tangents from closed-over tensors: run it plainly, same random numbers
        _set_rng_states(rng)
        return fn(*args)
    closed = leaves_reached([out], inputs)
    saved = (*tensors, *closed)
    result = Tensor._wrap(out._data, out._backend)
    if out._requires_grad and any(t._requires_grad for t in saved):
        _record(CHECKPOINT, saved, {"run": run, "n_args": len(tensors), "rng": rng}, result)
    return result
