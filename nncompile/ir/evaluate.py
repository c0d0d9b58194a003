"""The reference interpreter: runs a Graph node by node with each op's eval.

Slow and simple, dtype-preserving (float64 for gradient checks). Used for
constant folding, `nncompile check`, and as the oracle the tests compare with.
"""
from __future__ import annotations

import numpy as np

from ..ops import REGISTRY


def evaluate(g, leaves: dict, roots, dtype=np.float64) -> dict:
    """leaves: name -> array for inputs, targets, params, state and dropout masks.
    Returns node -> value for every node up to the last root."""
    values = {}
    last = max(g.nodes.index(r) for r in roots) if roots else -1
    fused_eval = None
    for n in g.nodes[:last + 1]:
        if n.op in ("input", "target", "param", "state", "random"):
            values[n] = np.asarray(leaves[n.attrs["name"]], dtype=dtype)
        elif n.op == "const":
            values[n] = np.asarray(n.attrs["value"], dtype=dtype)
        elif n.op == "fused":
            if fused_eval is None:
                from ..passes.fuse import eval_fused as fused_eval
            values[n] = fused_eval(n, [values[i] for i in n.inputs])
        else:
            values[n] = np.asarray(REGISTRY[n.op].eval([values[i] for i in n.inputs], n.attrs),
                                   dtype=dtype)
    return values
