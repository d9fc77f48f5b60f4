"""Programs as gpuad Ops. The forward runs the program's kernel for the backend (`Program.kernel_for`;
`xp.pointwise` when the forward is linearized); the VJP computes every needed input gradient with the
program's derived VJP program in one pass; the JVP is the derived JVP program applied as an Op.
Since derived programs are again programs, their Ops have the same rules: fused backward kernels are
differentiable (grad of grad, jvp of grad). When nothing records the backward, the engine takes the
Op's `fast_vjp` instead: the same VJP program on the node's saved arrays, without building a rule
context.

User functions whose derivative would evaluate transcendental functions again are linearized: the
forward kernel also writes the partial derivatives (sharing every subexpression with the value), and
a first-order backward multiplies them by g in place. They are dropped after use; a second backward through
a retained graph, create_graph and forward-over-reverse use the derived VJP program instead."""
from __future__ import annotations

from ..autograd.function import NO_PARAMS, Op, apply
from ..autograd.mode import state
from ..tensor import Tensor
from .program import Program


def _linearize_params(tensors) -> dict | None:
    """Params for a linearized forward: the inputs that need a gradient (`wrt`: the partials written are
    theirs); None when none does (or grad mode is off), so there is nothing to linearize."""
    if state.grad_enabled:
        wrt = tuple([i for i, t in enumerate(tensors) if t._requires_grad])
        if wrt:
            return {"partials": {"wrt": wrt}}
    return None


def program_op(program: Program, args: tuple[str, ...] | None = None) -> Op:
    """The Op running `program` (one output), built once per program; `args` names its inputs (what
    a node's `saved` shows), x0, x1, ... by default."""
    found = program.compiled.get("op")
    if found is not None:
        return found
    n = program.n_inputs
    args = args or tuple(f"x{i}" for i in range(n))
    floats = [v.kind == "f" for v in program.inputs]
    differentiable = program.outputs[0].kind == "f" and any(floats)
    save = tuple(" ".join(_name(r, args) for r in program.vjp((i,)).roles if r != "g")
                 if floats[i] and differentiable else "" for i in range(n))

    def forward(xp, *arrays, partials=None):
        if partials is None:
            return xp.pointwise(program, *arrays)
        outs = xp.pointwise(program.linearized(partials["wrt"]), *arrays)
        partials["arrays"] = outs[1:]
        return outs[0]

    plans: dict = {}  # wrt -> _vjp_plan

    def plan_for(wrt):
        plan = plans.get(wrt)
        if plan is None:
            plan = plans[wrt] = _vjp_plan(program, args, wrt)
        return plan

    def vjp(ctx, g, wrt):
        return _gradients(plans.get(wrt) or plan_for(wrt), ctx, g, wrt)

    def fast_vjp(node, g, wrt):
        """The derived VJP program on the saved arrays, without a ctx: for a node whose saved tensors are
        unchanged and carry no tangents, and that is not linearized; None otherwise."""
        saved = node.saved
        if saved is None or node.params is not NO_PARAMS or g._fw is not None:
            return None  # freed (the rules raise the error), linearized, or tangents: the rules handle it
        _, compute, names, routes = plans.get(wrt) or plan_for(wrt)
        if compute is None:  # linear (add): every gradient is g or zero
            return _routed(routes, g, ())
        arrays = []
        for name in names:
            if name is None:
                arrays.append(g._data)
                continue
            t, version = saved[name]
            if t._version[0] != version or t._fw is not None:
                return None
            arrays.append(t._data)
        grads = _computed(compute, g._backend, arrays)
        return grads if routes is None else _routed(routes, g, grads)

    jvp = (lambda ctx, tangents: _jvp(program, args, ctx, tangents)) if differentiable else None
    found = program.compiled["op"] = Op(program.name, forward, vjp=vjp if differentiable else None, jvp=jvp,
                                        args=args, save=save, fast_vjp=fast_vjp if differentiable else None,
                                        program=program)
    return found


def _name(role: str, args: tuple[str, ...]) -> str:
    """The ctx attribute of a derived program's input: forward input i ("x{i}") by its op arg name."""
    return args[int(role[1:])] if role[0] == "x" else role


def call(program: Program, tensors, linearize: bool = False) -> Tensor:
    """Apply `program` to tensors: the one path user functions and built-in ops take. `linearize`:
    write the partial derivatives in the forward pass when that saves recomputation (see above)."""
    op_ = program.compiled.get("op") or program_op(program)
    params = _linearize_params(tensors) if linearize and program.recomputes_transcendentals else None
    if params is None:
        return apply(op_, tensors, NO_PARAMS)
    out = apply(op_, tensors, params)
    partials = params["partials"]
    partials["tensors"] = [Tensor._wrap(a, out._backend) for a in partials.pop("arrays")]
    return out


def _vjp_plan(program: Program, args: tuple[str, ...], wrt: tuple) -> tuple:
    """(derived VJP program; the program computing those of its outputs that are neither g nor zero, over
    the same inputs, or None; the ctx name of each input (None for g); and when some output is g or zero,
    where each gradient comes from: -1 for g, -2 for zero, k for computed output k; else None). Linear ops
    pass g on as it is: add's gradients are g twice, sub's g and -g (one kernel for -g). An output that
    is an input of the VJP program is g: every other gradient is a product with g."""
    vp = program.vjp(wrt)
    names = tuple(None if role == "g" else _name(role, args) for role in vp.roles)
    computed = [k for k, o in enumerate(vp.outputs) if o.op not in ("var", "const")]
    if len(computed) == vp.n_outputs:
        return vp, vp, names, None
    assert all(vp.roles[vp.inputs.index(o)] == "g" for o in vp.outputs if o.op == "var"), vp
    routes = tuple(-1 if o.op == "var" else -2 if o.op == "const" else computed.index(k)
                   for k, o in enumerate(vp.outputs))
    compute = None
    if computed:
        compute = Program(vp.inputs, tuple(vp.outputs[k] for k in computed), f"{vp.name}_part", vp.roles)
    return vp, compute, names, routes


def _computed(compute: Program, backend, arrays: list) -> list:
    """The outputs of `compute` on `arrays`, as tensors."""
    out = (compute.kernels.get(backend) or compute.kernel_for(backend))(*arrays)
    if compute.n_outputs == 1:
        return [Tensor._wrap(out, backend)]
    return [Tensor._wrap(a, backend) for a in out]


def _routed(routes: tuple, g, computed) -> list:
    """Gradients by `routes` (see _vjp_plan): g, zero (None) or a computed one."""
    return [g if r == -1 else None if r == -2 else computed[r] for r in routes]


def _gradients(plan: tuple, ctx, g, wrt: tuple) -> list:
    """The gradients of the inputs in `wrt` by their `_vjp_plan`: one fused pass, or one differentiable
    Op per gradient when the backward itself is being recorded (create_graph) or carries tangents."""
    values = ctx.__dict__
    vp, compute, names, routes = plan
    tensors = [g if name is None else values[name] for name in names]
    if compute is None:  # linear ops: every gradient is g (or zero)
        return _routed(routes, g, ())
    recorded = False
    for t in tensors:
        if t._fw is not None or (t._requires_grad and state.grad_enabled):
            recorded = True
            break
    partials = values.get("partials")
    if partials:
        saved = dict(zip(partials.pop("wrt"), partials.pop("tensors")))
        partials.clear()  # used once: their memory goes back now, as a node's saved tensors do
        if not recorded:  # g * partial, written over the partial (nobody else holds it)
            multiply, shape = g._backend.xp.multiply, g._data.shape
            return [Tensor._wrap(multiply(d, g._data, out=d if d.shape == shape else None), g._backend)
                    for d in (saved[j]._data for j in wrt)]
    if recorded:
        by_role = dict(zip(vp.roles, tensors))
        outs = []
        for k, node in enumerate(vp.outputs):
            if node.op == "var":
                outs.append(tensors[vp.inputs.index(node)])
            else:
                sub = vp.select(k)
                outs.append(call(sub, [by_role[r] for r in sub.roles]) if sub.n_inputs else None)
        return outs
    grads = _computed(compute, g._backend, [t._data for t in tensors])
    return grads if routes is None else _routed(routes, g, grads)


def _jvp(program: Program, args: tuple[str, ...], ctx, tangents):
    jp = program.jvp(tuple(t is not None for t in tangents))
    node = jp.outputs[0]
    if node.op == "const":
        return None
    tensors = [tangents[int(r[1:])] if r[0] == "t" else getattr(ctx, _name(r, args)) for r in jp.roles]
    if node.op == "var":
        return tensors[jp.inputs.index(node)]
    return call(jp, tensors)
