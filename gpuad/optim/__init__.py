"""ga.optim: SGD, Adam, AdamW, learning-rate schedulers and gradient clipping by global norm."""
from __future__ import annotations

from ..nn.utils import clip_grad_norm_
from . import lr_scheduler
from .lr_scheduler import CosineAnnealingLR, StepLR
from .optimizer import SGD, Adam, AdamW, Optimizer

clip_grad_norm = clip_grad_norm_

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler", "StepLR", "CosineAnnealingLR",
           "clip_grad_norm_", "clip_grad_norm"]
