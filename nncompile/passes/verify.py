"""Verify: the IR is well formed. Raises AssertionError on a compiler bug
(user errors were all reported by the front end before this runs)."""
from __future__ import annotations

from ..ops import REGISTRY


def verify(g):
    """After: nodes are in topological order, every op is registered, every
    non-fused shape equals what its op infers, and the roles point into the graph."""
    seen = set()
    for n in g.nodes:
        assert n.op in REGISTRY or n.op == "fused", f"unknown op {n.op}"
        for i in n.inputs:
            assert i in seen, f"{n} uses {i} before it is defined"
        if n.op not in ("fused",) and REGISTRY[n.op].kind != "leaf":
            inferred = tuple(REGISTRY[n.op].infer([i.shape for i in n.inputs], n.attrs))
            assert inferred == n.shape, f"{n}: shape {n.shape} but {n.op} infers {inferred}"
        seen.add(n)
    for r in g.roots():
        assert r in seen, f"role points at {r}, which is not in the graph"
    if g.loss is not None:
        assert g.loss.shape == (), "the loss is a scalar"
    for name, grad in g.grads.items():
        assert grad.shape == g.params[name].shape, f"grad of {name} has shape {grad.shape}"
    return g
