"""Reverse mode: walk the graph in reverse topological order without recursion, sum gradients per
node, and free each node's saved tensors and incoming gradient as soon as its VJP has run."""
from __future__ import annotations

from ..errors import GradError
from .mode import no_grad, set_grad_enabled
from .node import Node


def _sum_to(g, shape, dtype):
    """Undo broadcasting (and promotion): the one place a gradient is reduced to its input's shape."""
    if g._data.shape != shape:
        g = g.sum_to(shape)
    have = g._data.dtype
    if have is not dtype and have != dtype:  # identity first: NumPy's dtypes are mostly singletons
        g = g.astype(dtype)
    return g


def _off_graph(g):
    """g without a graph: g itself when it has none (most gradients: backward runs under no_grad)."""
    return g if g.grad_fn is None and not g._requires_grad else g.detach()


def _owned(g, given: set):
    """g as a `.grad` that nothing else writes or reads through: its own array when it is a view (a
    broadcast gradient is read-only; a view shares its buffer) or when this backward already gave that
    array to another tensor or took it from the caller (`given`: their ids), as PyTorch's AccumulateGrad
    copies a gradient that someone else holds. In-place updates of one `.grad` then touch no other."""
    data = g._data
    if data.base is not None or id(data) in given:
        return Tensor._wrap(data.copy(), g._backend)
    given.add(id(data))
    return g


def _plan(root_nodes, target_nodes, target_leaves):
    """The nodes backward must run (those with a path to a target; None when that is every node reached),
    and for each `[consumers, None]`: how many of those nodes point at it, so that it runs only after all
    of them, and the slot where their gradients for it add up. Post-order DFS, no recursion."""
    if target_leaves is None and not target_nodes:
        # .backward(): every recorded node has an edge to a node or a leaf that requires grad, so
        # every reachable node is needed (None: no lookup); one counting pass suffices
        slots: dict[Node, list] = {}
        stack = list(root_nodes)
        while stack:
            for e in stack.pop().edges:
                if type(e) is Node:
                    slot = slots.get(e)
                    if slot is None:
                        slots[e] = [1, None]
                        stack.append(e)
                    else:
                        slot[0] += 1
        return None, slots
    needed: dict[Node, bool] = {}
    stack = [(n, False) for n in root_nodes]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            needed[node] = node in target_nodes or any(
                needed.get(e, False) if type(e) is Node else (e is not None and
                                                              (target_leaves is None or id(e) in target_leaves))
                for e in node.edges)
        elif node not in needed:
            needed[node] = False
            stack.append((node, True))
            stack.extend((e, False) for e in node.edges if type(e) is Node and e not in needed)
    slots = {}
    for node, keep in needed.items():
        if keep:
            for e in node.edges:
                if type(e) is Node and needed[e]:
                    slot = slots.get(e)
                    if slot is None:
                        slots[e] = [1, None]
                    else:
                        slot[0] += 1
    return needed, slots


def run_backward(roots, grads, inputs=None, retain_graph=False, create_graph=False):
    """Backpropagate `grads` from `roots`.

    Without `inputs`, leaf gradients accumulate into `.grad`; with `inputs`, their gradients are
    returned (None where unreachable) and no `.grad` is touched, as torch.autograd.grad does; only
    nodes on a path to an input run (an enclosing graph stays untouched)."""
    targets = target_nodes = None
    if inputs is not None:
        targets = {id(t): i for i, t in enumerate(inputs)}
        results = [None] * len(inputs)
        target_nodes = {t.grad_fn: i for i, t in enumerate(inputs) if t.grad_fn is not None}

    given = {id(g._data) for g in grads}  # arrays a .grad must not share (see _owned)

    def deliver_leaf(leaf, g):
        if targets is not None:
            i = targets.get(id(leaf))
            if i is not None:
                results[i] = g if results[i] is None else results[i] + g
        elif leaf.grad is None:
            leaf.grad = g if create_graph else _owned(_off_graph(g), given)
        else:
            leaf.grad = leaf.grad + g if create_graph else _off_graph(leaf.grad + g)

    root_nodes = []
    seeds = []
    for root, g in zip(roots, grads):
        node = root.grad_fn
        if node is None:
            if not root._requires_grad:
                raise GradError(
                    f"backward: tensor of shape {root.shape} does not require grad and has no grad_fn; "
                    "set requires_grad=True on an input it depends on")
            deliver_leaf(root, g)
            continue
        root_nodes.append(node)
        seeds.append(g)

    needed, slots = _plan(root_nodes, target_nodes or {}, targets)
    every = needed is None  # backward(): every node reached is needed (see _plan)
    for node, g in zip(root_nodes, seeds):  # a root's slot: no consumers, unless another root reaches it
        slot = slots.get(node)
        if slot is None:
            slot = slots[node] = [0, None]
        slot[1] = g if slot[1] is None else slot[1] + g
    ready = [n for n in dict.fromkeys(root_nodes) if (every or needed[n]) and slots[n][0] == 0]
    with set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            g = slots.pop(node)[1]  # the gradients summed; the slot goes, so g is freed after this node
            if target_nodes and node in target_nodes and g is not None:
                i = target_nodes[node]
                results[i] = g if results[i] is None else results[i] + g
            if node.retained is not None and g is not None:
                kept = node.retained()
                if kept is not None:
                    kept.grad = _owned(g.detach(), given) if kept.grad is None else (kept.grad + g).detach()
            edges = node.edges
            wrt = None
            if g is not None:
                wrt = node.wrt  # backward(): every edge is needed (see _plan)
                if targets is not None:
                    wrt = tuple([i for i in wrt if (needed[edges[i]] if type(edges[i]) is Node
                                                     else id(edges[i]) in targets)])
                if wrt:
                    fast = None if create_graph else node.op.fast_vjp  # see Op.fast_vjp
                    try:
                        grads = fast(node, g, wrt) if fast is not None else None
                        if grads is None:
                            grads = _vjps(node, g, create_graph, wrt)
                    except MemoryError as exc:
                        grads = _vjps_after_emptying(node, g, create_graph, wrt, exc)
                    shapes, dtypes = node.shapes, node.dtypes
                    for i, gi in zip(wrt, grads):  # route each gradient; its node has one consumer less
                        edge = edges[i]
                        if gi is not None:
                            data = gi._data
                            if data.shape != shapes[i] or data.dtype is not dtypes[i]:
                                gi = _sum_to(gi, shapes[i], dtypes[i])
                        if type(edge) is not Node:
                            if gi is not None:
                                deliver_leaf(edge, gi)
                            continue
                        slot = slots[edge]  # every needed node edge is in wrt
                        if gi is not None:
                            slot[1] = gi if slot[1] is None else slot[1] + gi
                        slot[0] -= 1
                        if slot[0] == 0:
                            ready.append(edge)
            if not retain_graph:
                node.saved = None  # freed: the saved tensors' buffers go back to the allocator now
            if not wrt:  # no gradient went out: the needed nodes behind this one still lose a consumer
                for edge in edges:
                    if type(edge) is Node and (every or needed[edge]):
                        slot = slots[edge]
                        slot[0] -= 1
                        if slot[0] == 0:
                            ready.append(edge)
    return results if inputs is not None else None


def _vjps(node, g, create_graph, wrt) -> list:
    """The gradients (or None) of the inputs in `wrt` by the op's rules on the node's context (the
    engine tries the op's fast VJP first when nothing is recorded)."""
    op = node.op
    ctx = node.context(create_graph)
    if op.joint_vjp:
        return op.vjp(ctx, g, wrt)
    rules = op.vjp
    return [rules[i](ctx, g) for i in wrt]


def _vjps_after_emptying(node, g, create_graph, wrt, exc) -> list:
    """Out of memory in a VJP (CuPy's OutOfMemoryError is a MemoryError): return the device pool's cached
    blocks to the driver and retry once, then raise with the device's memory statistics."""
    backend = g._backend
    backend.empty_cache()
    try:
        return _vjps(node, g, create_graph, wrt)
    except MemoryError as again:
        raise MemoryError(
            f"backward: out of memory in {node.name} on {backend.device} (gradient {g.shape} {g.dtype}) "
            f"even after freeing the pool's cached blocks ({exc}); memory: {backend.memory_stats()}. "
            "Free tensors, use a smaller batch, or ga.checkpoint segments of the model") from again


def backward(tensor, grad=None, retain_graph=None, create_graph=False) -> None:
    """Tensor.backward: seed with ones for a scalar, require `grad` otherwise."""
    if grad is None:
        if tensor.size != 1:
            raise GradError(
                f"backward: grad can be implicitly created only for scalar outputs, but the output has "
                f"shape {tensor.shape}; pass grad= (a tensor of that shape)")
        with no_grad():
            grad = tensor._ones_like()
    else:
        grad = tensor._coerce(grad)
        if grad.shape != tensor.shape:
            raise GradError(f"backward: grad has shape {grad.shape} but the output has shape {tensor.shape}")
    if retain_graph is None:
        retain_graph = create_graph
    run_backward([tensor], [grad], retain_graph=retain_graph, create_graph=create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=True):
    """Gradients of `outputs` with respect to `inputs` (tuples), as torch.autograd.grad."""
    outputs = tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)
    inputs = tuple(inputs) if isinstance(inputs, (list, tuple)) else (inputs,)
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = (grad_outputs,)
    seeds = []
    for out, g in zip(outputs, grad_outputs):
        if g is None:
            if out.size != 1:
                raise GradError(
                    f"grad: output of shape {out.shape} is not a scalar; pass grad_outputs of that shape")
            with no_grad():
                g = out._ones_like()
        seeds.append(g)
    for t in inputs:
        if not t._requires_grad:
            raise GradError(f"grad: an input of shape {t.shape} does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    return tuple(run_backward(list(outputs), seeds, inputs, retain_graph, create_graph))


from ..tensor import Tensor  # noqa: E402  (the tensor module imports this one's callers)
