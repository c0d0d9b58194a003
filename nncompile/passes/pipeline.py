"""The pipeline, in processing order, as a list of calls."""
from __future__ import annotations

import contextlib
import sys

from ..frontend.lower import lower
from ..frontend.parse import MAX_NESTING, parse
from ..ir.graph import Graph
from .autodiff import autodiff
from .cse import cse
from .fuse import fuse
from .mode import training_mode
from .optimizer import optimizer
from .schedule import schedule
from .simplify import dce, simplify
from .verify import verify


def front_end(source: str, file: str):
    """.nn text -> (forward Graph, TrainConfig); CompileError on any user fault."""
    program = parse(source, file)
    with _stack_room(5 * MAX_NESTING + 100):   # lowering recurses at most 4 deep per level
        graph, train = lower(program)
    return verify(graph), train


@contextlib.contextmanager
def _stack_room(frames: int):
    """Python's recursion limit at least `frames` above the caller's depth,
    however deep the caller (a notebook, a test runner) already is."""
    depth, f = 0, sys._getframe()
    while f is not None:
        depth, f = depth + 1, f.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, depth + frames))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def differentiate(graph: Graph, cfg=None, with_update=True) -> Graph:
    """Forward graph -> forward + backward (+ the optimizer's update)."""
    g = autodiff(graph)
    if with_update and cfg is not None:
        g = optimizer(g, cfg)
    return g


def optimize(graph: Graph, fused=True) -> Graph:
    g = cse(simplify(graph))
    if fused:
        g = fuse(g)
    return verify(dce(g))


def select(graph: Graph, *, outputs=False, loss=False, grads=False, updates=False,
           cfg=None) -> Graph:
    """The graph computing just the chosen roles (a step that trains also
    computes its loss, which each step reports). Dropout is active exactly
    when gradients or updates are asked for."""
    training = grads or updates
    g = training_mode(graph, training, cfg.seed if cfg is not None else 0)
    g = differentiate(g, cfg, with_update=updates) if training else g
    if not outputs:
        g.outputs = {}
    if not (loss or grads or updates):
        g.loss = None
    if not grads:
        g.grads = {}
    if not updates:
        g.updates, g.state = {}, {}
    return g


def program(graph: Graph, *, fused=True, **roles):
    """The schedule a backend runs: select the roles, optimize, schedule."""
    return schedule(optimize(select(graph, **roles), fused))


def update_graph(graph: Graph, cfg) -> Graph:
    """The optimizer alone, reading accumulated gradients from state leaves
    named grad/PARAM (gradient accumulation applies it every k batches)."""
    g = Graph(graph.name, graph.file, graph.source)
    for name, p in graph.params.items():
        g.params[name] = g.add("param", [], dict(p.attrs), p.span, name)
        g.grads[name] = g.add("state", [], {"name": f"grad/{name}", "shape": p.shape,
                                            "value": 0.0}, name=f"grad/{name}")
    g = optimizer(g, cfg)
    g.grads = {}
    return g
