"""Reverse-mode autodiff: append d loss / d param for every param.

Fan-out is summed and broadcasting is undone here, and only here; the ops'
vjp rules return cotangents in their own output's shape.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops import REGISTRY


def unbroadcast(g: Graph, ct, shape: tuple):
    """Sum a cotangent down to `shape`, undoing numpy broadcasting."""
    if ct.shape == shape:
        return ct
    lead = len(ct.shape) - len(shape)
    if lead > 0:
        ct = g.add("sum", [ct], {"axes": tuple(range(lead)), "keepdims": False})
    ones = tuple(i for i, (c, s) in enumerate(zip(ct.shape, shape)) if s == 1 and c != 1)
    if ones:
        ct = g.add("sum", [ct], {"axes": ones, "keepdims": True})
    assert ct.shape == shape, (ct.shape, shape)
    return ct


def autodiff(graph: Graph) -> Graph:
    """After: g.grads[name] is d loss / d param, with the param's shape, for every
    param, and g.adjoints[id] is d loss / d node for every forward node that
    depends on a param (its cotangent, fan-out summed)."""
    g = graph.copy()
    if g.loss is None:
        return g
    forward = list(g.nodes[:g.nodes.index(g.loss) + 1])
    # only values that depend on a param carry a cotangent
    needs = set()
    for n in forward:
        if n.op == "param" or any(i in needs for i in n.inputs):
            needs.add(n)
    cotangent = {g.loss: g.const(1.0)}
    for n in reversed(forward):
        ct = cotangent.get(n)
        if ct is None:
            continue
        g.adjoints[n.id] = ct
        if REGISTRY[n.op].kind == "leaf":
            continue
        for inp, c in zip(n.inputs, REGISTRY[n.op].vjp(g, n, ct)):
            if c is None or inp not in needs:
                continue
            c = unbroadcast(g, c, inp.shape)
            cotangent[inp] = g.add("add", [cotangent[inp], c]) if inp in cotangent else c
    for name, p in g.params.items():
        grad = cotangent.get(p)
        if grad is None:   # the loss does not depend on it
            axes = tuple(range(len(p.shape)))
            grad = g.add("expand", [g.const(0.0), p], {"axes": axes, "keepdims": False})
        g.grads[name] = grad
    return g
