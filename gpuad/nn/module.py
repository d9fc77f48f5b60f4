"""Module, Parameter and Sequential: PyTorch's container semantics (attributes register parameters,
buffers and submodules; state_dict names are dotted paths) on gpuad tensors."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from ..autograd.mode import no_grad
from ..dtypes import float32, float64
from ..errors import ShapeError
from ..tensor import Tensor, tensor


class Parameter(Tensor):
    """A tensor that a Module registers as trainable (requires_grad=True unless told otherwise)."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True):
        src = data if data is not None else tensor([])
        super().__init__(src.detach() if isinstance(src, Tensor) else src,
                         device=src.device if isinstance(src, Tensor) else None, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers: subclasses set parameters, buffers and submodules as attributes in
    __init__ and compute in forward(); calling the module calls forward."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ---------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()) and (value is None or isinstance(value, Tensor)):
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: Tensor | None) -> None:
        """A tensor that is state but not trained (running statistics); saved in state_dict."""
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        """Register `value` (None for an absent parameter, e.g. bias=False) under `name`."""
        if value is None:
            self._parameters[name] = None
            self.__dict__.pop(name, None)
        else:
            setattr(self, name, value)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register `module` (or None) as a submodule under `name`."""
        self._modules[name] = module

    # ---- calling ----------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """The computation; subclasses define it (calling the module calls this)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal --------------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, depth first."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) of the direct submodules."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        """The direct submodules."""
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter), each shared parameter once."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, m in mods:
            for name, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter (of submodules too, unless recurse=False), each shared one once."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer) for every buffer, e.g. batch-norm running statistics."""
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self) -> Iterator[Tensor]:
        """Every buffer (non-trained state saved in state_dict)."""
        for _, b in self.named_buffers():
            yield b

    def apply(self, fn) -> Module:
        """Call fn on every submodule and then on self (for custom initialization)."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes, gradients, devices ------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, batch norm uses and updates batch statistics)."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode: train(False)."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (set to None)."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Turn gradient tracking of every parameter on or off (freezing layers)."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def to(self, *args, device=None, dtype=None) -> Module:
        """Move/cast every parameter and buffer: m.to("cuda"), m.to(ga.float64), m.to("cpu", ga.float64).

        Floating-point tensors take the dtype, all take the device. Parameters are replaced by new
        Parameter objects: create the optimizer after moving."""
        for a in args:
            if isinstance(a, str) and a.partition(":")[0] in ("cpu", "cuda", "gpu"):
                device = a
            else:
                dtype = a
        for m in self.modules():
            for name, p in m._parameters.items():
                if p is not None:
                    moved = p.detach().to(device=device, dtype=dtype)
                    if moved.device != p.device or moved.dtype != p.dtype:
                        m._parameters[name] = Parameter(moved, requires_grad=p.requires_grad)
            for name, b in m._buffers.items():
                if b is not None:
                    m._buffers[name] = b.to(device=device, dtype=dtype if b.dtype.kind == "f" else None)
        return self

    def cpu(self) -> Module:
        """Move every parameter and buffer to the CPU."""
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Module:
        """Move every parameter and buffer to GPU `index`."""
        return self.to(f"cuda:{index}")

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64 (e.g. for gradcheck)."""
        return self.to(dtype=float64)

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32."""
        return self.to(dtype=float32)

    # ---- state --------------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Dotted name -> detached tensor for every parameter and buffer (shares memory)."""
        out = OrderedDict()
        for mod_name, m in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[pre + name] = p.detach()
            for name, b in m._buffers.items():
                if b is not None:
                    out[pre + name] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy tensors from `state_dict` in place; strict mode reports missing and unexpected keys.

        Shapes must match exactly; values are cast to each parameter's dtype and device. Returns
        (missing_keys, unexpected_keys) as torch does."""
        targets = {}
        for mod_name, m in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            targets.update({pre + n: p for n, p in m._parameters.items() if p is not None})
            targets.update({pre + n: b for n, b in m._buffers.items() if b is not None})
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        for key, value in state_dict.items():
            if key in targets:
                shape = tuple(getattr(value, "shape", ()))
                if shape != targets[key].shape:
                    problems.append(f"size mismatch for {key}: the checkpoint has shape {shape}, the model "
                                    f"has shape {targets[key].shape}")
        if problems:
            raise ShapeError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        with no_grad():
            for key, value in state_dict.items():
                if key in targets:
                    targets[key].copy_(value if isinstance(value, Tensor) else tensor(value))
        return missing, unexpected

    # ---- repr ---------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's configuration, shown inside its repr's parentheses."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        children = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; indexable, iterable, len()."""

    def __init__(self, *modules: Module):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        """Apply the modules in order."""
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, index):
        mods = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*mods[index])
        return mods[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        """Add a module at the end."""
        self.add_module(str(len(self._modules)), module)
        return self
