"""Learning-rate schedulers with torch's closed forms: call scheduler.step() once per epoch (or per
step) after optimizer.step()."""
from __future__ import annotations

import math


class LRScheduler:
    """Sets each group's lr from its initial lr and the number of step() calls so far."""

    def __init__(self, optimizer, last_epoch: int = -1):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """The lr of a group with initial lr `base_lr` at `epoch`."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (or step) and set each group's lr."""
        self.last_epoch += 1
        self._set_lrs()

    def _set_lrs(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base, self.last_epoch)

    def get_last_lr(self) -> list[float]:
        """The lr of each group, as set by the last step()."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """The schedule position and base lrs."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        """Resume a schedule saved by state_dict() (also sets the groups' lr)."""
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self._set_lrs()


class StepLR(LRScheduler):
    """lr = base * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """The lr of a group with initial lr `base_lr` at `epoch`."""
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):  # noqa: N803 (torch)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """The lr of a group with initial lr `base_lr` at `epoch`."""
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
