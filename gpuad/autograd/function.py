"""Op (a primitive with its rules) and apply(): run the forward, record a Node, propagate tangents.

An op is defined once: `forward(xp, *arrays, **params)` on the backend's array namespace, and per
input a VJP rule `(ctx, g) -> gradient` and a JVP rule `(ctx, t) -> output tangent contribution`,
both written with gpuad ops so that backward passes are themselves differentiable. Ops whose input
gradients share work (a fused pointwise backward, a replayed checkpoint) give one joint VJP instead.
Rules may return a gradient of any shape that broadcasts to the input: the engine sums it back in one
place.
"""
from __future__ import annotations

from ..errors import DeviceError, GpuadError, IndexOutOfRange, ShapeError
from .mode import state
from .node import Ctx, Node


class Op:
    """A primitive: forward on arrays; one VJP and one JVP rule per input (None: not differentiable).

    `args` names the inputs ("*xs" for a variadic op, whose VJP is then joint).
    A `vjp` given as one callable `(ctx, g, wrt) -> gradients` computes the inputs in `wrt` (a tuple
    of indices) in one call, a gradient or None for each.
    `save[i]` lists (space-separated) the names the VJP rule of input i reads: input names or "y".
    `view` marks ops whose output shares its first input's memory (and so its version counter).
    A `jvp` given as one callable `(ctx, tangents)` sees all tangents at once (None for zero).
    `fast_vjp(node, g, wrt)`, optional, computes the same gradients straight from the node's saved
    tensors when the backward is not recorded, skipping the ctx; it returns None where it does not apply
    (the rules then run). An op running a pointwise `program` gives it: apply calls the program's
    kernel for the backend (`Program.kernel_for`) itself when there are no params, instead of `forward`."""

    __slots__ = ("name", "forward", "vjp", "jvp", "args", "save", "view", "differentiable", "variadic",
                 "joint_vjp", "moves_device", "saves", "fast_vjp", "program")

    def __init__(self, name, forward, vjp=None, jvp=None, args=("x",), save=None, view=False,
                 moves_device=False, fast_vjp=None, program=None):
        self.name = name
        self.forward = forward
        self.variadic = isinstance(args, str)
        self.args = args.lstrip("*") if self.variadic else tuple(args)
        self.vjp = vjp
        self.jvp = jvp
        self.differentiable = vjp is not None
        self.joint_vjp = callable(vjp)
        self.fast_vjp = fast_vjp
        self.program = program  # a pointwise Program: without params apply runs its kernel directly
        n = 1 if self.variadic else len(self.args)
        save = save if save is not None else ("",) * n
        if isinstance(save, str):
            save = (save,)
        self.save = tuple(tuple(s.split()) for s in save)
        self.saves: dict = {}  # wrt -> what a node saves for those inputs (see saves_for)
        self.view = view
        self.moves_device = moves_device  # params["device"] is the output's backend (to_device)

    def __repr__(self) -> str:
        return f"<gpuad op {self.name}>"

    def saves_for(self, wrt: tuple) -> tuple:
        """What a node saves when the inputs in `wrt` need a gradient: (name, source) once per name that
        their rules read; source is the input's index, -1 for the output y, None for all inputs
        (variadic). Kept per `wrt` in `saves`."""
        found = {}
        for i in wrt:
            for name in self.save[0 if self.variadic else i]:
                found.setdefault(name, -1 if name == "y" else None if self.variadic else self.args.index(name))
        spec = self.saves[wrt] = tuple(found.items())
        return spec


_new = object.__new__
_WRT = ((), (0,), (1,), (0, 1))  # wrt of one or two inputs, by which need a gradient (bit i: input i)
NO_PARAMS: dict = {}  # the params of ops that take none (shared, never mutated)


def _describe(inputs) -> str:
    return ", ".join(f"{tuple(t.shape)} {t.dtype} on {t.device}" for t in inputs)


def _device_error(op: Op, inputs) -> DeviceError:
    return DeviceError(f"{op.name}: expected all tensors on the same device, got {_describe(inputs)}; "
                       "move them with .to(device) first")


def apply(op: Op, inputs: tuple, params: dict):
    """Run `op` on tensors `inputs` with static `params`; the single path every op takes."""
    n = len(inputs)  # devices, tangents, grad, arrays: unrolled for one and two inputs (most ops; no lists)
    if n == 1:
        x = inputs[0]
        backend, arrays, dual, needs_grad = x._backend, (x._data,), x._fw is not None, x._requires_grad
    elif n == 2:
        x, y = inputs
        backend = x._backend
        if y._backend is not backend:
            raise _device_error(op, inputs)
        arrays = (x._data, y._data)
        dual = x._fw is not None or y._fw is not None
        gx, gy = x._requires_grad, y._requires_grad
        needs_grad = gx or gy
    else:
        backend = inputs[0]._backend
        dual = needs_grad = False
        arrays = []
        for t in inputs:
            if t._backend is not backend:
                raise _device_error(op, inputs)
            if t._fw is not None:
                dual = True
            if t._requires_grad:
                needs_grad = True
            arrays.append(t._data)
    program = op.program
    try:
        if params is NO_PARAMS and program is not None:  # pointwise: no view; differentiable means float out
            out = _wrap((program.kernels.get(backend) or program.kernel_for(backend))(*arrays), backend)
            record = needs_grad and op.differentiable
        else:
            data = op.forward(backend.xp, *arrays, **params)
            out = _wrap(data, params["device"] if op.moves_device else backend)
            if op.view:
                out._version = inputs[0]._version
            record = needs_grad and op.differentiable and data.dtype.kind == "f"
    except GpuadError:
        raise
    except IndexError as exc:
        raise IndexOutOfRange(f"{op.name}: {exc} (input: {_describe(inputs[:1])})") from None
    except (ValueError, TypeError) as exc:
        raise ShapeError(f"{op.name}: {exc}; inputs: {_describe(inputs)}") from None
    if dual:
        out._fw = {}  # filled below; a node saving "y" shares this dict, so y keeps its tangents
    if record and state.grad_enabled:
        if n == 1:  # edges, wrt, shapes, dtypes: unrolled for one and two inputs, as above
            a = arrays[0]
            _attach(op, params, out, inputs, (x.grad_fn or x,), _WRT[1], (a.shape,), (a.dtype,))
        elif n == 2:
            a, b = arrays
            _attach(op, params, out, inputs, ((x.grad_fn or x) if gx else None, (y.grad_fn or y) if gy else None),
                    _WRT[gx + 2 * gy], (a.shape, b.shape), (a.dtype, b.dtype))
        else:
            _record(op, inputs, params, out)
    if dual:  # after recording: JVP rules reading y then see it on the graph (grad of jvp)
        _propagate_tangents(op, inputs, params, out)
    return out


def _record(op, inputs, params, out) -> None:
    """Attach a Node to `out` for `op` applied to `inputs` (some of which need a gradient)."""
    edges = tuple([(t.grad_fn or t) if t._requires_grad else None for t in inputs])
    wrt = tuple([i for i, t in enumerate(inputs) if t._requires_grad])
    shapes, dtypes = tuple([t._data.shape for t in inputs]), tuple([t._data.dtype for t in inputs])
    _attach(op, params, out, inputs, edges, wrt, shapes, dtypes)


def _attach(op, params, out, inputs, edges, wrt, shapes, dtypes) -> None:
    """Make `out`'s Node, saving only what the VJP rules of the inputs in `wrt` read (see Node)."""
    saves = op.saves.get(wrt)
    if saves is None:
        saves = op.saves_for(wrt)
    saved = {}
    for name, j in saves:
        if j == -1:
            saved[name] = (out._alias(), out._version[0])
        elif j is None:
            saved[name] = tuple((u, u._version[0]) for u in inputs)
        else:
            u = inputs[j]
            saved[name] = (u, u._version[0])
    node = _new(Node)
    node.op = op
    node.params = params
    node.edges = edges
    node.wrt = wrt
    node.shapes = shapes
    node.dtypes = dtypes
    node.saved = saved
    node.retained = None
    out.grad_fn = node
    out._requires_grad = True


def rule_context(op, inputs, params, out) -> Ctx:
    """The ctx a rule sees when every input is at hand (forward mode)."""
    values = dict(params)
    if op.variadic:
        values[op.args] = tuple(inputs)
    else:
        values.update(zip(op.args, inputs))
    values["y"] = out
    values["shapes"] = tuple(t.shape for t in inputs)
    values["dtypes"] = tuple(t._data.dtype for t in inputs)
    return Ctx(values)


def _propagate_tangents(op, inputs, params, out) -> None:
    """Forward mode: compute out's tangent at every visible level from the inputs' tangents.

    Levels run outermost first; while level L's rule runs, L and every inner level are hidden, so the
    rule's own ops carry only outer tangents (that is what separates nested jvp calls)."""
    cap = state.fw_cap
    levels = sorted({lvl for t in inputs if t._fw for lvl in t._fw if lvl < cap})
    if not levels or op.jvp is None:
        out._fw = None
        return
    ctx = rule_context(op, inputs, params, out)
    for level in levels:
        tangents = [t._fw.get(level) if t._fw else None for t in inputs]
        state.fw_cap = level
        try:
            if callable(op.jvp):
                result = op.jvp(ctx, tangents)
            else:
                result = None
                for i, tan in enumerate(tangents):
                    if tan is not None:
                        part = op.jvp[i](ctx, tan)
                        result = part if result is None else result + part
        finally:
            state.fw_cap = cap
        if result is not None:
            if result.shape != out.shape:
                result = result.broadcast_to(out.shape)
            if result.dtype != out.dtype:
                result = result.astype(out.dtype)
            out._fw[level] = result
    if not out._fw:
        out._fw = None


from ..tensor import Tensor  # noqa: E402  (Tensor's methods call ops, which call apply)

_wrap = Tensor._wrap  # one global lookup per op instead of two
