"""Node: one recorded op application; holds what its VJP rules need and nothing else, until freed."""
from __future__ import annotations

import weakref

from ..errors import GraphFreedError, InplaceModifiedError


class Ctx:
    """What a rule sees: saved tensors and the op's parameters as attributes, plus input shapes/dtypes."""

    def __init__(self, values: dict):
        self.__dict__ = values  # a fresh dict from the caller: adopted, not copied


class Node:
    """A recorded application of `op`; `edges[i]` leads to input i's Node, leaf Tensor, or None;
    `wrt` lists the inputs with an edge (those that need a gradient); `shapes` and `dtypes` are the
    inputs'; `saved` maps a name to (tensor, version when saved), or a tuple of those (variadic), until
    freed (None); `retained` is a weakref to a non-leaf output whose .grad the user asked to keep.
    Made field by field by autograd.function._attach, the one place nodes are made (no __init__ call
    per op)."""

    __slots__ = ("op", "params", "edges", "wrt", "shapes", "dtypes", "saved", "retained", "__weakref__")

    def __repr__(self) -> str:
        return f"<{self.op.name}Backward>"

    @property
    def freed(self) -> bool:
        """True once backward has run through this node without retain_graph."""
        return self.saved is None

    @property
    def name(self) -> str:
        return f"{self.op.name}Backward"

    def retain(self, tensor) -> None:
        self.retained = weakref.ref(tensor)

    def context(self, create_graph: bool) -> Ctx:
        """Unpack saved tensors, checking that none was modified in place since it was saved."""
        if self.saved is None:
            raise GraphFreedError(
                f"{self.op.name}: trying to run backward through the graph a second time (or directly "
                "access saved tensors after they have been freed). Saved intermediate values of the graph "
                "are freed when you call .backward() or ga.grad(); pass retain_graph=True to backward if "
                "you need to backward through the graph a second time.")
        values = dict(self.params)
        values["shapes"] = self.shapes
        values["dtypes"] = self.dtypes
        for name, entry in self.saved.items():
            if type(entry) is tuple and entry and type(entry[0]) is tuple:
                values[name] = tuple(self._unpack(name, e, create_graph) for e in entry)
            elif entry[0]._version[0] == entry[1] and (name != "y" or not create_graph):
                values[name] = entry[0]  # the common case, inlined: unchanged, nothing to reconnect
            else:
                values[name] = self._unpack(name, entry, create_graph)
        return Ctx(values)

    def _unpack(self, name, entry, create_graph):
        tensor, version = entry
        if tensor._version[0] != version:
            raise InplaceModifiedError(
                f"{self.op.name}: one of the tensors needed for gradient computation ('{name}', shape "
                f"{tensor.shape}, dtype {tensor.dtype}) has been modified by an in-place operation: it is at "
                f"version {tensor._version[0]}, expected version {version}. Use an out-of-place op instead.")
        if name == "y" and create_graph:
            return tensor._with_grad_fn(self)  # the saved output, reconnected to this node
        return tensor
