"""ga.nn: Module, Parameter, layers, losses (ga.nn.functional), initializers and gradient clipping."""
from __future__ import annotations

from . import functional, init, utils
from .layers import (GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten, LayerNorm,
                     Linear, MaxPool2d, MultiheadAttention, ReLU, Sigmoid, Tanh)
from .module import Module, Parameter, Sequential

scaled_dot_product_attention = functional.scaled_dot_product_attention

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d",
           "BatchNorm2d", "LayerNorm", "Dropout", "Embedding", "Flatten", "ReLU", "GELU", "Tanh", "Sigmoid",
           "MultiheadAttention", "scaled_dot_product_attention", "functional", "init", "utils"]
