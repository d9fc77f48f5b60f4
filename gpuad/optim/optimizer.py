"""Optimizers with PyTorch's update rules. A step updates each parameter in place on its backend
arrays (a few in-place array operations per parameter, no autograd ops, no graph), bumps the
parameter's version counter as any in-place op does, and runs under no_grad. With `fused=True` (the
default on the GPU, as torch's `fused=None`) a group is updated by one multi-tensor kernel launch
(gpuad/ops/fused.py) instead."""
from __future__ import annotations

import math

from ..autograd.mode import no_grad
from ..errors import GpuadError
from ..ops import fused
from ..tensor import Tensor


class Optimizer:
    """Base class: parameter groups (lists of dicts with per-group hyperparameters) and per-parameter
    state; state_dict() refers to parameters by their index in group order, as torch does."""

    def __init__(self, params, defaults: dict, fused: bool | None = None):
        self.fused = fused  # None: one multi-tensor kernel per group on the GPU, per-parameter updates on the CPU
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict] = []
        self.state: dict = {}
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones take the defaults)."""
        group = {**self.defaults, **group}
        group["params"] = list(group["params"])
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can only optimize leaf tensors that require grad, "
                                 f"got {type(p).__name__} of shape {getattr(p, 'shape', None)}")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients (set to None, so the next backward allocates fresh ones)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; `closure` re-evaluates the loss."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad.shape != p.shape:
                    raise GpuadError(f"{type(self).__name__}: gradient of shape {p.grad.shape} for a parameter "
                                     f"of shape {p.shape}")
            if params and self._fused_wanted(params) and self._fused_step(params, group):
                continue
            for p in params:
                state = self.state.setdefault(p, {})
                xp, g = p._backend.xp, p.grad._data
                if g.strides != p._data.strides:  # e.g. a transposed weight gradient: mixed layouts are slow
                    g = xp.ascontiguousarray(g)
                self._update(xp, p._data, g, state, group)
                p._version[0] += 1
        return loss

    def _fused_wanted(self, params) -> bool:
        backend = params[0]._backend
        if any(p._backend is not backend for p in params):
            return False
        return backend.is_gpu if self.fused is None else self.fused

    def _fused_step(self, params, group: dict) -> bool:
        """Update `params` with one multi-tensor kernel; False where the options need the plain path."""
        return False

    def _state_tensors(self, params, names) -> list[list[Tensor]]:
        """Per-parameter state arrays (zeros at first) as tensors, one list per name."""
        lists = []
        for name in names:
            arrays = [self.state.setdefault(p, {}).setdefault(name, p._backend.xp.zeros_like(p._data))
                      for p in params]
            lists.append([Tensor._wrap(a, p._backend) for a, p in zip(arrays, params)])
        return lists

    def _update(self, xp, p, g, state: dict, group: dict) -> None:
        raise NotImplementedError

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{"state": {index: {name: tensor or number}}, "param_groups": [{hyperparameters, "params": [index]}]}."""
        index, groups, state = {}, [], {}
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                i = index.setdefault(id(p), len(index))
                ids.append(i)
                if p in self.state:
                    state[i] = {k: (Tensor._wrap(v, p._backend) if hasattr(v, "shape") else v)
                                for k, v in self.state[p].items()}
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and per-parameter state saved by state_dict() (copied)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved groups have sizes "
                             f"{[len(g['params']) for g in groups]}, this optimizer's "
                             f"{[len(g['params']) for g in self.param_groups]}")
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        self.state = {}
        for saved, own in zip(groups, self.param_groups):
            own.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k != "params"})
            for i, p in zip(saved["params"], own["params"]):
                if i in saved_state:
                    self.state[p] = {k: _state_array(v, p, k, type(self).__name__)
                                     for k, v in saved_state[i].items()}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


def _state_array(value, p: Tensor, name: str, owner: str):
    """A saved state entry as a fresh array on p's device (numbers stay numbers)."""
    if not hasattr(value, "shape"):
        return value
    t = value if isinstance(value, Tensor) else Tensor._wrap(p._backend.asarray(value), p._backend)
    if t.shape != p.shape:
        raise ValueError(f"{owner}.load_state_dict: state '{name}' has shape {t.shape}, the parameter {p.shape}")
    return t.to(p.device)._data.astype(p.dtype, copy=True)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch's form: buf = m*buf + (1-dampening)*g),
    Nesterov momentum and L2 weight decay."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
                 fused: bool | None = None):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr ({lr}), momentum ({momentum}) and weight_decay ({weight_decay}) must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize},
                         fused)

    def _fused_step(self, params, group):
        if group["dampening"] or group["maximize"]:
            return False
        momentum = group["momentum"]
        if momentum and any("momentum_buffer" not in self.state.get(p, {}) for p in params) and \
                any(self.state.get(p) for p in params):
            return False  # a mix of started and fresh buffers: the plain path handles the first step
        (bufs,) = self._state_tensors(params, ["momentum_buffer"]) if momentum else ([None] * len(params),)
        fused.fused_sgd_(params, [p.grad for p in params], bufs, lr=group["lr"], momentum=momentum,
                         weight_decay=group["weight_decay"], nesterov=group["nesterov"])
        return True

    def _update(self, xp, p, g, state, group):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if group["maximize"]:
            g = -g
        if wd:
            g = g + wd * p
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= momentum
                buf += (1.0 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p -= lr * g


class Adam(Optimizer):
    """Adam (Kingma and Ba) with bias correction; weight_decay is L2 (added to the gradient), as in
    torch.optim.Adam. AdamW applies decoupled weight decay instead."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
                 fused: bool | None = None):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: invalid lr {lr}, betas {betas}, eps {eps} or "
                             f"weight_decay {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": amsgrad, "maximize": maximize}, fused)

    def _fused_step(self, params, group):
        steps = {self.state.get(p, {}).get("step", 0) for p in params}
        if group["amsgrad"] or group["maximize"] or len(steps) != 1:
            return False
        step = steps.pop() + 1
        exp_avgs, exp_avg_sqs = self._state_tensors(params, ["exp_avg", "exp_avg_sq"])
        beta1, beta2 = group["betas"]
        fused.fused_adam_(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, lr=group["lr"], beta1=beta1,
                          beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"], step=step,
                          decoupled=self.decoupled)
        for p in params:
            self.state[p]["step"] = step
        return True

    def _update(self, xp, p, g, state, group):
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if group["maximize"]:
            g = -g
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p)
        state["step"] += 1
        step = state["step"]
        if wd:
            if self.decoupled:
                p *= 1.0 - lr * wd
            else:
                g = g + wd * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        tmp = g * (1.0 - beta1)  # the one scratch buffer; every other pass is in place
        m *= beta1
        m += tmp
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v *= beta2
        v += tmp
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        xp.sqrt(v, out=tmp)
        tmp *= 1.0 / math.sqrt(1.0 - beta2 ** step)
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= lr / (1.0 - beta1 ** step)
        p -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): p *= 1 - lr*weight_decay each step;
    weight_decay defaults to 0.01 as in torch."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False,
                 fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize, fused)
