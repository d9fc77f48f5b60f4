"""Reverse mode: walk the graph in reverse topological order without recursion, sum gradients per
node, and free each node's saved tensors and incoming gradient as soon as its VJP has run."""
from __future__ import annotations

from ..errors import GradError
from .mode import no_grad, set_grad_enabled
from .node import Node


def _sum_to(g, shape, dtype):
    """Undo broadcasting (and promotion): the one place a gradient is reduced to its input's shape."""
    if g.shape != shape:
        g = g.sum_to(shape)
    if g.dtype != dtype:
        g = g.astype(dtype)
    return g


def _topological_counts(root_nodes, stop_nodes):
    """For each reachable node, how many edges point at it (so it runs after all its consumers)."""
    deps: dict[Node, int] = {}
    stack = list(root_nodes)
    seen = set(stack)
    while stack:
        node = stack.pop()
        if node in stop_nodes:
            continue
        for edge in node.edges:
            if type(edge) is Node:
                deps[edge] = deps.get(edge, 0) + 1
                if edge not in seen:
                    seen.add(edge)
                    stack.append(edge)
    return deps


def run_backward(roots, grads, inputs=None, retain_graph=False, create_graph=False):
    """Backpropagate `grads` from `roots`.

    Without `inputs`, leaf gradients accumulate into `.grad`; with `inputs`, their gradients are
    returned (None where unreachable) and no `.grad` is touched, as torch.autograd.grad does."""
    targets = None
    if inputs is not None:
        targets = {id(t): i for i, t in enumerate(inputs)}
        results = [None] * len(inputs)
        stop_nodes = {t.grad_fn: i for i, t in enumerate(inputs) if t.grad_fn is not None}
    else:
        stop_nodes = {}

    def deliver_leaf(leaf, g):
        if targets is not None:
            i = targets.get(id(leaf))
            if i is not None:
                results[i] = g if results[i] is None else results[i] + g
        elif leaf.grad is None:
            leaf.grad = g if create_graph else g.detach()
        else:
            leaf.grad = leaf.grad + g if create_graph else (leaf.grad + g).detach()

    pending: dict[Node, object] = {}
    root_nodes = []
    for root, g in zip(roots, grads):
        node = root.grad_fn
        if node is None:
            if not root._requires_grad:
                raise GradError(
                    f"backward: tensor of shape {root.shape} does not require grad and has no grad_fn; "
                    "set requires_grad=True on an input it depends on")
            deliver_leaf(root, g)
            continue
        pending[node] = g if node not in pending else pending[node] + g
        root_nodes.append(node)

    deps = _topological_counts(root_nodes, stop_nodes)
    ready = [n for n in dict.fromkeys(root_nodes) if deps.get(n, 0) == 0]
    with set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            g = pending.pop(node, None)
            if node in stop_nodes:
                i = stop_nodes[node]
                results[i] = g if results[i] is None else results[i] + g
                continue
            if node.retained is not None and g is not None:
                kept = node.retained()
                if kept is not None:
                    kept.grad = g.detach() if kept.grad is None else (kept.grad + g).detach()
            if g is not None:
                _run_node(node, g, create_graph, pending, deliver_leaf)
            if not retain_graph:
                node.free()
            for edge in node.edges:
                if type(edge) is Node:
                    deps[edge] -= 1
                    if deps[edge] == 0:
                        ready.append(edge)
    return results if inputs is not None else None


def _run_node(node, g, create_graph, pending, deliver_leaf):
    """Run the VJP rules of the inputs that need a gradient and route the results along the edges."""
    op = node.op
    ctx = node.context(create_graph)
    for i, edge in enumerate(node.edges):
        if edge is None:
            continue
        gi = op.vjp(ctx, g, i) if op.variadic else op.vjp[i](ctx, g)
        if gi is None:
            continue
        gi = _sum_to(gi, node.shapes[i], node.dtypes[i])
        if type(edge) is Node:
            prev = pending.get(edge)
            pending[edge] = gi if prev is None else prev + gi
        else:
            deliver_leaf(edge, gi)


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
