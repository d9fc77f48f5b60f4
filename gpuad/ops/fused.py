"""Fused primitives: softmax cross-entropy and layer norm, whose forward and backward each run as one
kernel of the backend (`xp.kernels`: NumPy reference on the CPU, kernels/*.cu on the GPU), and the
multi-tensor optimizer updates.

Every backward kernel is itself an op (Chainer's SigmoidGrad idea) whose VJP and JVP are written
with gpuad ops, so gradients of any order and forward mode go through the fused kernels:
- softmax_xent_grad(x, labels, loss, g) = g * (softmax(x) - onehot(labels)); its derivative in x is
  the softmax Hessian g * (p * u - p * <p, u>), symmetric, so the VJP and JVP rules coincide.
- layer_norm_grad(x, w, g) = J(x) (g * w), with J = dxhat/dx = rstd (I - 1/D - xhat xhat^T / D)
  symmetric; its derivative in x (M below) is symmetric too, so again VJP and JVP coincide:
  M u = -(rstd / D) (xhat <u, dx> + dx <u, xhat>) - rstd * mean(g w xhat) * J u.
Without create_graph the layer-norm rules take one fused call for dx, dweight and dbias together."""
from __future__ import annotations

import math

from ..autograd.function import Op, apply
from ..autograd.mode import state
from ..errors import DeviceError, ShapeError
from ..tensor import Tensor, tensor
from .common import as_tensor
from .elementwise import exp, where
from .reduce import logsumexp


# ---- softmax cross-entropy -------------------------------------------------------------------------
def _softmax(x):
    return exp(x - logsumexp(x, axis=-1, keepdims=True))


def _valid_rows(c, g):
    """g with the ignored rows zeroed (their loss is a constant 0)."""
    return where(c.labels != c.ignore_index, g, 0.0)


def _xent_hessian(c, u):
    """Second derivative of the loss in x applied to u (VJP and JVP of softmax_xent_grad in x)."""
    p = _softmax(c.x)
    pu = p * u
    return _valid_rows(c, c.g).unsqueeze(-1) * (pu - p * pu.sum(axis=-1, keepdims=True))


def _xent_unit_grad(c, loss):
    """softmax(x) - onehot(labels) per row (0 on ignored rows): the fused backward with g = 1."""
    from ..creation import ones_like

    return softmax_xent_grad(c.x, c.labels, loss, ones_like(loss), c.ignore_index)


def _sum_present(a, b):
    """a + b where either may be None (no tangent)."""
    return b if a is None else a if b is None else a + b


def _no_grad_rule(c, g):
    """The saved loss is only a shortcut to logsumexp(x): no gradient flows through it."""
    return None


SOFTMAX_XENT_GRAD = Op(
    "softmax_xent_grad",
    lambda xp, x, labels, loss, g, ignore_index: xp.kernels.softmax_xent_backward(x, labels, loss, g, ignore_index),
    args=("x", "labels", "loss", "g"),
    vjp=(_xent_hessian, None, _no_grad_rule, lambda c, u: (_xent_unit_grad(c, c.loss) * u).sum(axis=-1)),
    jvp=lambda c, ts: _sum_present(_xent_hessian(c, ts[0]) if ts[0] is not None else None,
                                   softmax_xent_grad(c.x, c.labels, c.loss, ts[3], c.ignore_index)
                                   if ts[3] is not None else None),
    save=("x labels g", "", "", "x labels loss"))

SOFTMAX_XENT = Op(
    "softmax_cross_entropy",
    lambda xp, x, labels, ignore_index: xp.kernels.softmax_xent_forward(x, labels, ignore_index),
    args=("x", "labels"),
    vjp=(lambda c, g: softmax_xent_grad(c.x, c.labels, c.y, g, c.ignore_index), None),
    jvp=(lambda c, t: (_xent_unit_grad(c, c.y) * t).sum(axis=-1), None),
    save=("x labels y", ""))


def softmax_xent_grad(x: Tensor, labels: Tensor, loss: Tensor, g: Tensor, ignore_index: int) -> Tensor:
    """g[r] * (softmax(x[r]) - onehot(labels[r])): the fused backward of softmax_cross_entropy, an op."""
    return apply(SOFTMAX_XENT_GRAD, (x, labels, loss, g), {"ignore_index": ignore_index})


def softmax_cross_entropy(logits, labels, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Cross-entropy of softmax(logits) (N, C) against integer labels (N,), fused in one kernel.

    reduction "none" gives the per-sample loss, "sum" its sum, "mean" its mean over the rows whose
    label is not `ignore_index` (as torch.nn.functional.cross_entropy). float16/bfloat16 logits give a
    float32 loss (accumulated in float32); their gradient has the logits' dtype."""
    logits = as_tensor(logits)
    labels = _labels(logits, labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ShapeError(
            f"softmax_cross_entropy: expected logits (N, C) and labels (N,), got logits {logits.shape} "
            f"{logits.dtype} and labels {labels.shape} {labels.dtype} on {logits.device}")
    loss = apply(SOFTMAX_XENT, (logits, labels), {"ignore_index": int(ignore_index)})
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / (labels != ignore_index).sum().astype(loss.dtype)
    raise ValueError(f"softmax_cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _labels(logits: Tensor, labels) -> Tensor:
    """Labels as an int64 tensor on the logits' device (NumPy arrays and lists are copied there)."""
    if isinstance(labels, Tensor):
        if labels._backend is not logits._backend:
            raise DeviceError(f"softmax_cross_entropy: logits are on {logits.device} but labels "
                              f"{labels.shape} are on {labels.device}")
    else:
        labels = tensor(labels, device=logits._backend)
    if labels.dtype.kind not in "iu":
        raise ShapeError(f"softmax_cross_entropy: labels must be integers, got {labels.dtype} {labels.shape}")
    return labels if labels.dtype == "int64" else labels.astype("int64")


# ---- layer norm --------------------------------------------------------------------------------------
def _rows2d(a):
    return a.reshape(-1, a.shape[-1])


def _ln_forward(xp, x, weight=None, bias=None, *, eps):
    return xp.kernels.layer_norm_forward(_rows2d(x), weight, bias, eps).reshape(x.shape)


def _ln_grad_forward(xp, x, weight=None, g=None, *, eps):
    return xp.kernels.layer_norm_backward(_rows2d(x), weight, _rows2d(g), eps, False)[0].reshape(x.shape)


def _weight(c):
    return getattr(c, "weight", None)


def _ln_fused_grads(c, g):
    """(dx, dweight, dbias) from one backward kernel call, shared by the rules of one node run."""
    grads = c.__dict__.get("_fused_grads")
    if grads is None:
        x, w = c.x, _weight(c)
        dx, dw, db = x._backend.xp.kernels.layer_norm_backward(
            _rows2d(x._data), None if w is None else w._data, _rows2d(g._data), c.eps, w is not None)
        grads = c._fused_grads = tuple(None if a is None else Tensor._wrap(a, x._backend)
                                       for a in (dx.reshape(x.shape), dw, db))
    return grads


def _fusable(c, g) -> bool:
    """One fused call serves the rules unless the backward is recorded (create_graph) or carries
    forward-mode tangents (forward-over-reverse): then the rules compose differentiable ops."""
    w = _weight(c)
    return not state.grad_enabled and c.x._fw is None and g._fw is None and (w is None or w._fw is None)


def _ln_vjp_x(c, g):
    if _fusable(c, g):
        return _ln_fused_grads(c, g)[0]
    return layer_norm_grad(c.x, _weight(c), g, c.eps)


def _ln_vjp_weight(c, g):
    if _fusable(c, g):
        return _ln_fused_grads(c, g)[1]
    return g * layer_norm(c.x, None, None, c.eps)


def _ln_vjp_bias(c, g):
    return _ln_fused_grads(c, g)[2] if _fusable(c, g) else g


def _ln_jvp_x(c, t):
    jt = layer_norm_grad(c.x, None, t, c.eps)
    w = _weight(c)
    return jt if w is None else jt * w


def _ln_grad_hessian(c, u):
    """M u: the derivative in x of layer_norm_grad(x, w, g) applied to u (VJP and JVP in x)."""
    x, dx, eps = c.x, c.y, c.eps
    w = _weight(c)
    r = (x.var(axis=-1, keepdims=True) + eps) ** -0.5
    xhat = layer_norm(x, None, None, eps)
    gw = c.g if w is None else c.g * w
    s2 = (gw * xhat).mean(axis=-1, keepdims=True)
    ju = layer_norm_grad(x, None, u, eps)
    inner = xhat * (u * dx).sum(axis=-1, keepdims=True) + dx * (u * xhat).sum(axis=-1, keepdims=True)
    return inner * (-r / x.shape[-1]) - r * s2 * ju


def _ln_grad_vjp_g(c, u):
    ju = layer_norm_grad(c.x, None, u, c.eps)
    w = _weight(c)
    return ju if w is None else ju * w


LAYER_NORM_GRAD = Op(
    "layer_norm_grad", lambda xp, x, g, eps: _ln_grad_forward(xp, x, None, g, eps=eps), args=("x", "g"),
    vjp=(_ln_grad_hessian, _ln_grad_vjp_g),
    jvp=(_ln_grad_hessian, lambda c, t: layer_norm_grad(c.x, None, t, c.eps)),
    save=("x g y", "x"))
LAYER_NORM_GRAD_W = Op(
    "layer_norm_grad", lambda xp, x, weight, g, eps: _ln_grad_forward(xp, x, weight, g, eps=eps),
    args=("x", "weight", "g"),
    vjp=(_ln_grad_hessian, lambda c, u: c.g * layer_norm_grad(c.x, None, u, c.eps), _ln_grad_vjp_g),
    jvp=(_ln_grad_hessian, lambda c, t: layer_norm_grad(c.x, None, c.g * t, c.eps),
         lambda c, t: layer_norm_grad(c.x, c.weight, t, c.eps)),
    save=("x weight g y", "x g", "x weight"))

_LN_JVP_W = lambda c, t: layer_norm(c.x, None, None, c.eps) * t
LAYER_NORM = {
    (False, False): Op("layer_norm", lambda xp, x, eps: _ln_forward(xp, x, eps=eps), args=("x",),
                       vjp=(_ln_vjp_x,), jvp=(_ln_jvp_x,), save=("x",)),
    (True, False): Op("layer_norm", lambda xp, x, weight, eps: _ln_forward(xp, x, weight, eps=eps),
                      args=("x", "weight"), vjp=(_ln_vjp_x, _ln_vjp_weight), jvp=(_ln_jvp_x, _LN_JVP_W),
                      save=("x weight", "x weight")),
    (True, True): Op("layer_norm", lambda xp, x, weight, bias, eps: _ln_forward(xp, x, weight, bias, eps=eps),
                     args=("x", "weight", "bias"), vjp=(_ln_vjp_x, _ln_vjp_weight, _ln_vjp_bias),
                     jvp=(_ln_jvp_x, _LN_JVP_W, lambda c, t: t), save=("x weight", "x weight", "x weight")),
}


def layer_norm_grad(x: Tensor, weight: Tensor | None, g: Tensor, eps: float) -> Tensor:
    """d layer_norm / d x applied to g (the fused backward kernel), an op of its own."""
    if weight is None:
        return apply(LAYER_NORM_GRAD, (x, g), {"eps": eps})
    return apply(LAYER_NORM_GRAD_W, (x, weight, g), {"eps": eps})


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5, normalized_shape=None) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (or the trailing
    `normalized_shape` axes), forward and backward each one fused kernel; weight/bias optional."""
    x = as_tensor(x)
    k = 1 if normalized_shape is None else len(tuple(normalized_shape))
    feature = x.shape[x.ndim - k:]
    if x.ndim < k or math.prod(feature) == 0:
        raise ShapeError(f"layer_norm: cannot normalize the last {k} axes of {x.shape} {x.dtype} on {x.device}")
    if normalized_shape is not None and tuple(normalized_shape) != feature:
        raise ShapeError(f"layer_norm: normalized_shape {tuple(normalized_shape)} does not match the "
                         f"trailing axes of {x.shape}")
    if weight is None and bias is not None:
        from ..creation import ones

        weight = ones(feature, dtype=x.dtype, device=x._backend)
    params = [as_tensor(p, x) for p in (weight, bias) if p is not None]
    for p in params:
        if p.shape != feature:
            raise ShapeError(f"layer_norm: weight/bias of shape {p.shape} {p.dtype} on {p.device} do not "
                             f"match the normalized shape {feature} of x {x.shape}")
    flat = x if k == 1 else x.reshape(x.shape[:x.ndim - k] + (math.prod(feature),))
    params = [p if k == 1 else p.reshape(-1) for p in params]
    op = LAYER_NORM[(weight is not None, bias is not None)]
    out = apply(op, (flat, *params), {"eps": float(eps)})
    return out if k == 1 else out.reshape(x.shape)


# ---- multi-tensor optimizer updates (not differentiable; in place) -------------------------------------
def _present(op: str, params, *lists):
    """The entries whose gradient is not None, after checking devices and shapes."""
    keep = [i for i, g in enumerate(lists[0]) if g is not None]
    if not keep:
        return None, []
    backend = params[keep[0]]._backend
    for i in keep:
        for t in (params[i], *(lst[i] for lst in lists if lst is not None)):
            if t._backend is not backend:
                raise DeviceError(f"{op}: all tensors must be on {backend.device}; parameter {i} "
                                  f"{params[i].shape} has a tensor on {t.device}")
            if t.shape != params[i].shape:
                raise ShapeError(f"{op}: parameter {i} has shape {params[i].shape} {params[i].dtype} but a "
                                 f"gradient or state has shape {t.shape} {t.dtype}")
    return backend, keep


def fused_adam_(params, grads, exp_avgs, exp_avg_sqs, *, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, step: int, decoupled: bool) -> None:
    """Adam (decoupled=False: L2 added to the gradient) or AdamW (True) on all parameters whose
    gradient is not None, in one kernel launch; `step` counts from 1. Bumps the versions written."""
    backend, keep = _present("fused_adam_", params, grads, exp_avgs, exp_avg_sqs)
    if not keep:
        return
    backend.xp.kernels.adam_update(
        [params[i]._data for i in keep], [grads[i]._data for i in keep], [exp_avgs[i]._data for i in keep],
        [exp_avg_sqs[i]._data for i in keep], lr=lr, beta1=beta1, beta2=beta2, eps=eps,
        weight_decay=weight_decay, step=step, decoupled=decoupled)
    for i in keep:
        for t in (params[i], exp_avgs[i], exp_avg_sqs[i]):
            t._version[0] += 1


def fused_sgd_(params, grads, momentum_buffers, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
               nesterov: bool = False) -> None:
    """SGD with momentum (buffers start at zero, as torch's first-step copy with dampening 0) and
    Nesterov on all parameters whose gradient is not None, in one launch; bumps versions."""
    bufs = momentum_buffers if momentum else None
    backend, keep = _present("fused_sgd_", params, grads, bufs)
    if not keep:
        return
    backend.xp.kernels.sgd_update(
        [params[i]._data for i in keep], [grads[i]._data for i in keep],
        [bufs[i]._data for i in keep] if bufs is not None else None,
        lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    for i in keep:
        params[i]._version[0] += 1
        if bufs is not None:
            bufs[i]._version[0] += 1
