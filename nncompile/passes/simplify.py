"""Simplify: algebraic identities and constant folding.

After: no elementwise node has only constant inputs; no elementwise op reads
a scalar broadcast (it broadcasts the scalar itself); a count reads a leaf
or a value before any reduction; x+0, x-0, x*1, x/1,
--x, transpose(transpose(x)), sums over no axis and no-op broadcasts are gone;
x/c is x*(1/c); -(x/count) is x/-count; a count over axes without the batch axis is a constant.
Replaced nodes stay in the list, unused, for dce to drop.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import N, Graph
from ..ops import REGISTRY


def rewrite(g: Graph, rule) -> int:
    """Apply rule(g, node) -> replacement | None to every node, in order;
    return how many were replaced. New nodes a rule adds land right after
    the node being rewritten."""
    old, g.nodes = g.nodes, []
    mapping = {}
    for n in old:
        n.inputs = tuple(mapping.get(i, i) for i in n.inputs)
        g.nodes.append(n)
        r = rule(g, n)
        if r is not None and r is not n:
            mapping[n] = r
    g.replace_all(mapping)
    return len(mapping)


def _c(n):
    return n.attrs["value"] if n.op == "const" else None


def _rule(g: Graph, n):
    ins = n.inputs
    kind = REGISTRY[n.op].kind
    if kind == "elementwise" and ins and all(i.op == "const" for i in ins):
        value = REGISTRY[n.op].eval([np.asarray(_c(i), np.float64) for i in ins], n.attrs)
        return g.const(float(value), n.span)
    if n.op == "count" and N not in [ins[0].shape[a] for a in n.attrs["axes"]]:
        return g.const(float(np.prod([ins[0].shape[a] for a in n.attrs["axes"]])), n.span)
    if n.op == "count" and ins[0].op in ("sum", "max") and not ins[0].attrs["keepdims"] \
            and ins[0].attrs["axes"] and min(ins[0].attrs["axes"]) > max(n.attrs["axes"]):
        # the axes counted come before every reduced axis, so they are the same axes
        return g.add("count", [ins[0].inputs[0]], n.attrs, n.span)
    if n.op == "count" and REGISTRY[ins[0].op].kind == "elementwise":
        same = sorted((i for i in ins[0].inputs if i.shape == ins[0].shape),
                      key=lambda i: REGISTRY[i.op].kind != "leaf")
        if same:    # a count needs only a shape: read it from the earliest value
            return g.add("count", [same[0]], n.attrs, n.span)
    if n.op == "expand" and ins[0].op == "expand" and ins[0].inputs[0].shape == ():
        like = ins[1]       # a broadcast of a broadcast scalar is one broadcast
        return g.add("expand", [ins[0].inputs[0], like],
                     {"axes": tuple(range(len(like.shape))), "keepdims": False}, n.span)
    if kind == "elementwise" and len(ins) == 2:
        for k in (0, 1):   # a scalar broadcast into an elementwise op broadcasts by itself
            e = ins[k]
            if e.op == "expand" and e.inputs[0].shape == () and ins[1 - k].shape == n.shape:
                new = list(ins)
                new[k] = e.inputs[0]
                return g.add(n.op, new, n.attrs, n.span)
    if n.op in ("add", "sub") and _c(ins[1]) == 0 and ins[0].shape == n.shape:
        return ins[0]
    if n.op == "add" and _c(ins[0]) == 0 and ins[1].shape == n.shape:
        return ins[1]
    if n.op in ("mul", "div") and _c(ins[1]) == 1 and ins[0].shape == n.shape:
        return ins[0]
    if n.op == "mul" and _c(ins[0]) == 1 and ins[1].shape == n.shape:
        return ins[1]
    if n.op == "mul" and ins[0].op == "const":          # constants to the right
        return g.add("mul", [ins[1], ins[0]], span=n.span)
    if n.op == "div" and ins[1].op == "const" and _c(ins[1]) != 0:
        return g.add("mul", [ins[0], g.const(1.0 / _c(ins[1]))], span=n.span)
    if n.op == "mul" and ins[1].op == "const" and ins[0].op == "mul" and \
            ins[0].inputs[1].op == "const":             # (x * a) * b = x * ab
        return g.add("mul", [ins[0].inputs[0], g.const(_c(ins[1]) * _c(ins[0].inputs[1]))],
                     span=n.span)
    if n.op == "neg" and ins[0].op == "neg":
        return ins[0].inputs[0]
    if n.op == "neg" and ins[0].op == "div" and ins[0].inputs[1].op == "count":
        # -(x / count) = x / -count, exactly: a backend can fix -count per batch size
        x, c = ins[0].inputs
        return g.add("div", [x, g.add("neg", [c], span=n.span)], span=n.span, name=n.name)
    if n.op == "transpose" and ins[0].op == "transpose":
        return ins[0].inputs[0]
    if n.op == "sum" and not n.attrs["axes"]:
        return ins[0]
    if n.op in ("expand", "reshape", "stop_gradient") and ins[0].shape == n.shape \
            and n.op != "stop_gradient":
        return ins[0]
    return None


def simplify(graph: Graph) -> Graph:
    """See the module docstring for what holds after."""
    g = graph.copy()
    for _ in range(10):          # rules expose each other; a few rounds reach the fixpoint
        changed = rewrite(g, _rule)
        g = dce(g)
        if not changed:
            break
    return g


def dce(graph: Graph) -> Graph:
    """After: every node is a role leaf or is needed by a root."""
    g = graph
    live = set()
    for r in g.roots():
        live.add(r)
    for n in reversed(g.nodes):
        if n in live:
            live.update(n.inputs)
    keep = set(g.inputs.values()) | set(g.targets.values()) | set(g.params.values()) | \
        set(g.state.values())
    g.nodes = [n for n in g.nodes if n in live or n in keep]
    kept = set(g.nodes)
    g.values = {k: v for k, v in g.values.items() if v in kept}
    g.adjoints = {k: v for k, v in g.adjoints.items() if v in kept}
    return g
