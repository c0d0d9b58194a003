"""Common subexpression elimination."""
from __future__ import annotations

from ..ir.graph import Graph, attrs_key
from .simplify import dce, rewrite


def cse(graph: Graph) -> Graph:
    """After: no two nodes have the same op, inputs and attrs (leaves other
    than constants are distinct by name and never merged)."""
    g = graph.copy()
    seen = {}

    def rule(g, n):
        if n.op in ("input", "target", "param", "state"):
            return None
        key = (n.op, tuple(i.id for i in n.inputs), attrs_key(n.attrs))
        if key in seen:
            return seen[key]
        seen[key] = n
        return None

    rewrite(g, rule)
    return dce(g)
