"""Training suite: per-op overhead, an MLP step written with ops (vs NumPy by hand and PyTorch), and
MLP and CNN steps built from ga.nn / ga.optim when those exist (vs the same torch.nn model)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .cases import Case, Env, feature
from .overhead import chain_case, mlp_case, mlp_data

CNN_BATCH = 64


def _nn_available(env: Env, *names: str) -> bool:
    missing = [n for n in names if feature(n) is None]
    if missing:
        env.note(f"{', '.join('ga.' + n for n in missing)}: not available yet, nn training step skipped")
    return not missing


def _load(params, arrays, env: Env) -> None:
    """Copy host arrays into parameters (gpuad or torch), in order."""
    for p, a in zip(params, arrays):
        if type(p).__module__.startswith("torch"):
            with env.torch.no_grad():
                p.copy_(env.torch.from_numpy(a))
        else:
            p.data[...] = env.array(a)


def _nn_case(env: Env, name: str, shape: str, layers, arrays, x_h, labels_h, lr: float = 0.01) -> Case:
    """A training step of `layers(ga.nn)` with SGD, vs `layers(torch.nn)` with the same parameters
    (torch layouts) when torch is installed."""
    import gpuad as ga

    F = feature("nn.functional")
    model = layers(ga.nn).to(env.device)
    _load(list(model.parameters()), arrays, env)
    opt = ga.optim.SGD(model.parameters(), lr=lr)
    x, labels = ga.tensor(env.array(x_h), device=env.device), ga.tensor(env.array(labels_h), device=env.device)

    def ga_step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        return loss, next(iter(model.parameters()))

    impls = {"gpuad nn": ga_step}
    if env.torch is not None:
        torch = env.torch
        tmodel = layers(torch.nn).to(env.torch_device)
        _load(list(tmodel.parameters()), arrays, env)
        topt = torch.optim.SGD(tmodel.parameters(), lr=lr)
        tx, tl = env.torch_tensor(x_h), torch.tensor(labels_h, device=env.torch_device)

        def torch_step():
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tmodel(tx), tl)
            loss.backward()
            topt.step()
            return loss, next(iter(tmodel.parameters()))

        impls["torch"] = torch_step
    return Case("training", name, impls, "torch" if "torch" in impls else "gpuad nn", shape=shape, rtol=1e-3,
                atol=1e-5, pause_s=0.15)


def nn_mlp_case(env: Env) -> Iterator[Case]:
    """The MLP as ga.nn.Sequential with ga.optim.SGD and F.cross_entropy, vs the same torch.nn model."""
    if not _nn_available(env, "nn.Sequential", "nn.Linear", "nn.ReLU", "optim.SGD",
                         "nn.functional.cross_entropy"):
        return
    params, x_h, labels = mlp_data()
    arrays = [a.T.copy() if a.ndim == 2 else a for a in params]  # (out, in) as torch stores them

    def layers(nn):
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))

    yield _nn_case(env, "MLP step (nn + optim)", "784-512-512-10, batch 256, SGD", layers, arrays, x_h, labels)


def cnn_case(env: Env) -> Iterator[Case]:
    """A small CNN step on 1x28x28 inputs: conv-relu-pool twice, then a linear layer."""
    if not _nn_available(env, "nn.Sequential", "nn.Conv2d", "nn.MaxPool2d", "nn.Flatten", "nn.Linear",
                         "nn.ReLU", "optim.SGD", "nn.functional.cross_entropy"):
        return
    rng = np.random.default_rng(1)
    shapes = [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (10, 32 * 7 * 7), (10,)]
    arrays = [(rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 1.0)).astype(np.float32)
              for s in shapes]
    x_h = rng.standard_normal((CNN_BATCH, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, CNN_BATCH)

    def layers(nn):
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(32 * 7 * 7, 10))

    yield _nn_case(env, "CNN step (nn + optim)", f"1x28x28 batch {CNN_BATCH}: conv16-pool-conv32-pool-linear, SGD",
                   layers, arrays, x_h, labels)


def cases(env: Env) -> Iterator[Case]:
    """Every training case (nn cases only when ga.nn and ga.optim exist)."""
    yield chain_case(env)
    yield mlp_case(env)
    yield from nn_mlp_case(env)
    yield from cnn_case(env)
