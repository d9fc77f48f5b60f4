"""Derivatives on the expression graph: reverse accumulation from an output with a seed adjoint.

Each rule maps (node, adjoint a) to the contribution for each argument (None: zero). Rules are
written with expression nodes, so derivatives are expressions of the same language (hash-consing
shares their common subexpressions) and can be differentiated again."""
from __future__ import annotations

import math

from .expr import Node, const, op, topological

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _where_zero(cond: Node, a: Node, first: bool) -> Node:
    zero = const(0.0)
    return op("where", cond, a, zero) if first else op("where", cond, zero, a)


def _tie_weight(x: Node, y: Node, win: str) -> Node:
    """1 where x wins, 1/2 at a tie (the gradient is split, as PyTorch does), 0 where y wins."""
    return op("where", op(win, x, y), const(1.0), op("where", op("eq", x, y), const(0.5), const(0.0)))


def _erf_partial(x: Node) -> Node:
    return op("mul", const(_TWO_OVER_SQRT_PI), op("exp", op("neg", op("mul", x, x))))


def _pow(n: Node, a: Node):
    x, p = n.args
    dx = op("mul", a, op("mul", p, op("pow", x, op("sub", p, const(1)))))
    return dx, None if p.op == "const" else op("mul", a, op("mul", n, op("log", x)))


def _arg(n: Node) -> Node:
    return n.args[0]


_NONE1, _NONE2 = (None,), (None, None)
RULES = {
    "neg": lambda n, a: (op("neg", a),),
    "add": lambda n, a: (a, a),
    "sub": lambda n, a: (a, op("neg", a)),
    "mul": lambda n, a: (op("mul", a, n.args[1]), op("mul", a, n.args[0])),
    "div": lambda n, a: (op("div", a, n.args[1]), op("neg", op("div", op("mul", a, n), n.args[1]))),
    "pow": _pow,
    "exp": lambda n, a: (op("mul", a, n),),
    "log": lambda n, a: (op("div", a, _arg(n)),),
    "log1p": lambda n, a: (op("div", a, op("add", _arg(n), const(1.0))),),
    "expm1": lambda n, a: (op("mul", a, op("add", n, const(1.0))),),
    "sqrt": lambda n, a: (op("div", op("mul", a, const(0.5)), n),),
    "sin": lambda n, a: (op("mul", a, op("cos", _arg(n))),),
    "cos": lambda n, a: (op("neg", op("mul", a, op("sin", _arg(n)))),),
    "tan": lambda n, a: (op("mul", a, op("add", const(1.0), op("mul", n, n))),),
    "tanh": lambda n, a: (op("mul", a, op("sub", const(1.0), op("mul", n, n))),),
    "sinh": lambda n, a: (op("mul", a, op("cosh", _arg(n))),),
    "cosh": lambda n, a: (op("mul", a, op("sinh", _arg(n))),),
    "asin": lambda n, a: (op("div", a, op("sqrt", op("sub", const(1.0), op("mul", _arg(n), _arg(n))))),),
    "acos": lambda n, a: (op("neg", op("div", a, op("sqrt", op("sub", const(1.0),
                                                                   op("mul", _arg(n), _arg(n)))))),),
    "atan": lambda n, a: (op("div", a, op("add", const(1.0), op("mul", _arg(n), _arg(n)))),),
    "erf": lambda n, a: (op("mul", a, _erf_partial(_arg(n))),),
    "erfc": lambda n, a: (op("neg", op("mul", a, _erf_partial(_arg(n)))),),
    "abs": lambda n, a: (op("mul", a, op("sign", _arg(n))),),
    "max": lambda n, a: (op("mul", a, _tie_weight(*n.args, "gt")), op("mul", a, _tie_weight(*n.args[::-1], "gt"))),
    "min": lambda n, a: (op("mul", a, _tie_weight(*n.args, "lt")), op("mul", a, _tie_weight(*n.args[::-1], "lt"))),
    "where": lambda n, a: (None, _where_zero(n.args[0], a, True), _where_zero(n.args[0], a, False)),
    "clip": lambda n, a: (_where_zero(op("and", op("ge", n.args[0], n.args[1]), op("le", n.args[0], n.args[2])),
                                      a, True), None, None),
}
for _name in ("sign", "floor", "ceil", "float", "not"):
    RULES[_name] = lambda n, a: _NONE1
for _name in ("lt", "le", "gt", "ge", "eq", "ne", "and", "or"):
    RULES[_name] = lambda n, a: _NONE2


def reverse(output: Node, seed: Node, wrt: list[Node]) -> list[Node | None]:
    """d(output)/d(v) * seed for each variable v in `wrt`, by one reverse sweep (None: zero)."""
    adjoint: dict[int, Node] = {output.uid: seed}
    for node in reversed(topological([output])):
        a = adjoint.get(node.uid)
        if a is None or not node.args:
            continue
        for arg, part in zip(node.args, RULES[node.op](node, a)):
            if part is not None:
                prev = adjoint.get(arg.uid)
                adjoint[arg.uid] = part if prev is None else op("add", prev, part)
    return [adjoint.get(v.uid) for v in wrt]
