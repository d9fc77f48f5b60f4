"""The scalar expression graph: hash-consed nodes (so equal subexpressions are one node: CSE for free),
light algebraic simplification, and the table of primitives the language knows."""
from __future__ import annotations

import math

# primitive name -> number of arguments; the kind of result is "b" (bool) for PREDICATES, else "f"
UNARY = ("neg", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh",
         "asin", "acos", "atan", "erf", "erfc", "abs", "sign", "floor", "ceil", "not", "float")
BINARY = ("add", "sub", "mul", "div", "pow", "max", "min", "lt", "le", "gt", "ge", "eq", "ne", "and", "or")
TERNARY = ("where", "clip")
ARITY = {**{n: 1 for n in UNARY}, **{n: 2 for n in BINARY}, **{n: 3 for n in TERNARY}}
PREDICATES = frozenset(("lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not"))

_table: dict[tuple, Node] = {}


class Node:
    """One operation in an expression: `op` on `args` (Nodes); "var" and "const" carry `value`."""

    __slots__ = ("op", "args", "value", "kind", "uid")

    def __init__(self, op: str, args: tuple, value, kind: str):
        self.op = op
        self.args = args
        self.value = value
        self.kind = kind
        self.uid = len(_table)

    def __repr__(self) -> str:
        if self.op == "var":
            return str(self.value)
        if self.op == "const":
            return repr(self.value)
        return f"{self.op}({', '.join(map(repr, self.args))})"


def _intern(op: str, args: tuple, value=None, kind: str = "f") -> Node:
    key = (op, tuple(a.uid for a in args), type(value).__name__, repr(value))
    node = _table.get(key)
    if node is None:
        node = _table[key] = Node(op, args, value, kind)
    return node


def var(name: str, kind: str = "f") -> Node:
    """An input variable of a program."""
    return _intern("var", (), name, kind)


def const(value) -> Node:
    """A numeric constant; ints stay ints (so `x ** 2` on int arrays stays int, as in NumPy)."""
    if isinstance(value, bool):
        return _intern("const", (), value, "b")
    if isinstance(value, int):
        return _intern("const", (), value)
    return _intern("const", (), float(value))


def is_const(node: Node, value=None) -> bool:
    """True for a constant node (equal to `value` when given)."""
    return node.op == "const" and (value is None or node.value == value)


_FOLD = {
    "neg": lambda a: -a, "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh, "sin": math.sin,
    "cos": math.cos, "erf": math.erf, "abs": abs,
}


def op(name: str, *args: Node) -> Node:
    """The node for primitive `name` on `args`, simplified where that is exact."""
    if name not in ARITY:
        raise KeyError(name)
    if name in ("and", "or", "not"):
        args = tuple(to_bool(a) for a in args)
    elif name == "where":
        args = (to_bool(args[0]), to_float(args[1]), to_float(args[2]))
    elif name != "float":
        args = tuple(to_float(a) for a in args)
    folded = _simplify(name, args)
    if folded is not None:
        return folded
    return _intern(name, args, None, "b" if name in PREDICATES else "f")


def to_float(node: Node) -> Node:
    """A bool used in arithmetic counts as 0 or 1 (Python's rule)."""
    return _intern("float", (node,)) if node.kind == "b" else node


def to_bool(node: Node) -> Node:
    """A number used as a condition is true where it is non-zero (Python's rule)."""
    return node if node.kind == "b" else _intern("ne", (node, const(0)), None, "b")


def _simplify(name: str, args: tuple) -> Node | None:
    """Exact rewrites only: constant folding and identities that hold for every value incl. nan/inf."""
    if all(a.op == "const" for a in args) and name in _FOLD:
        try:
            return const(_FOLD[name](*(a.value for a in args)))
        except (ValueError, OverflowError, ZeroDivisionError):
            return None
    if len(args) == 2:
        a, b = args
        if name == "add" and is_const(b, 0):
            return a
        if name == "add" and is_const(a, 0):
            return b
        if name == "sub" and is_const(b, 0):
            return a
        if name == "sub" and is_const(a, 0):
            return op("neg", b)
        if name == "mul" and is_const(b, 1):
            return a
        if name == "mul" and is_const(a, 1):
            return b
        if name == "mul" and is_const(a, -1):
            return op("neg", b)
        if name == "mul" and is_const(b, -1):
            return op("neg", a)
        if name == "div" and is_const(b, 1):
            return a
        if name == "pow" and b.op == "const":
            if b.value == 1:
                return a
            if b.value == 2:
                return op("mul", a, a)
            if b.value == 3:
                return op("mul", op("mul", a, a), a)
    if name == "neg" and args[0].op == "neg":
        return args[0].args[0]
    return None


def topological(outputs) -> list[Node]:
    """Every node reachable from `outputs`, each after its arguments (iterative, no recursion)."""
    order: list[Node] = []
    seen: set[int] = set()
    stack = [(n, False) for n in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node.uid in seen:
            continue
        seen.add(node.uid)
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args) if a.uid not in seen)
    return order


def substitute(outputs, mapping: dict[int, Node]) -> list[Node]:
    """`outputs` with every node whose uid is in `mapping` replaced (and everything above rebuilt)."""
    new: dict[int, Node] = {}
    for node in topological(outputs):
        if node.uid in mapping:
            new[node.uid] = mapping[node.uid]
        elif node.args:
            args = tuple(new[a.uid] for a in node.args)
            new[node.uid] = node if all(x is y for x, y in zip(args, node.args)) else op(node.op, *args)
        else:
            new[node.uid] = node
    return [new[o.uid] for o in outputs]
