"""Training mode: what dropout means in the program being built."""
from __future__ import annotations

from ..ir.graph import Graph
from .simplify import rewrite


def training_mode(graph: Graph, training: bool, seed: int = 0) -> Graph:
    """After: no dropout node remains. In a training program (training True)
    each dropout[rate] of x with rate > 0 became mul(x, mask), mask a fresh
    leaf random[name=mask/ID, shape, rate, seed] that the executor refills
    before every run with (u >= rate) / (1 - rate), so the expected value of
    the product is x (inverted dropout); elsewhere each became x itself.
    Runs before autodiff, so the backward pass multiplies by the same mask."""
    g = graph.copy()

    def rule(g, n):
        if n.op != "dropout":
            return None
        x, rate = n.inputs[0], n.attrs["rate"]
        if not training or rate == 0:
            return x
        mask = g.add("random", [], {"name": f"mask/{n.id}", "shape": n.shape, "rate": rate,
                                    "seed": seed}, n.span)
        return g.add("mul", [x, mask], span=n.span, name=n.name)

    rewrite(g, rule)
    g.nodes = [n for n in g.nodes if n.op != "dropout"]
    return g
