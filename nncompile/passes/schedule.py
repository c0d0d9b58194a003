"""Schedule: execution order, buffer liveness and the memory plan.

After: `order` lists every node that computes (not leaves, not constants) in
an order that respects dependencies; every such node has a buffer slot; two
nodes share a slot only when the first is dead before the second writes
(a lone elementwise op may write over an input it reads last: in place);
an update whose param or optimizer buffer nobody reads afterwards writes
straight into that storage (`writes`), so no step copies params back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..diagnostics import CompileError, Diagnostic, plural, size_text
from ..ir.graph import N, Graph, Node, fmt_shape
from ..ops import REGISTRY

LEAVES = ("input", "target", "param", "state", "const")


@dataclass
class Schedule:
    graph: Graph
    order: list = field(default_factory=list)       # Nodes that compute
    slot: dict = field(default_factory=dict)        # Node -> slot number
    slot_shapes: list = field(default_factory=list)  # slot -> symbolic shape
    writes: dict = field(default_factory=dict)      # Node -> leaf storage it writes (name)

    def value_bytes(self, batch: int) -> tuple:
        """(bytes, node) for one batch of `batch` examples: what the plan's
        buffers and the fed inputs and targets take, and the first value
        held in the largest buffer."""
        def size(shape):
            return 4 * math.prod(batch if d == N else d for d in shape)
        sizes = [size(sh) for sh in self.slot_shapes]
        fed = sum(size(n.shape) for n in (*self.graph.inputs.values(),
                                          *self.graph.targets.values()))
        first = {}
        for n in self.order:
            if n in self.slot:
                first.setdefault(self.slot[n], n)
        big = max(range(len(sizes)), key=sizes.__getitem__, default=None)
        return sum(sizes) + fed, first.get(big)

    def too_large(self, batch: int, where: str, room: float) -> CompileError:
        """The error for a batch whose values do not fit `where` ("in memory",
        "on the GPU"), at the statement of the largest value; `room` bytes (or
        inf, when unknown) give the batch that would fit."""
        total, node = self.value_bytes(batch)
        if node is None:      # nothing computed: the fed values alone are too large
            node = next(iter({**self.graph.inputs, **self.graph.targets}.values()))
        fixed = self.value_bytes(0)[0]
        each = (total - fixed) / max(batch, 1)
        concrete = tuple(batch if d == N else d for d in node.shape)
        what = value_label(node)
        hint = "use a smaller batch or make this layer smaller" if batch > 1 else \
            "make this layer smaller"
        if math.isfinite(room) and each > 0 and (room - fixed) // each >= 1:
            fits = int((room - fixed) // each)
            hint = f"a batch of at most about {plural(fits, 'example')} fits; use a smaller " \
                   "batch or make this layer smaller"
        return CompileError([Diagnostic(
            node.span, f"one batch of {plural(batch, 'example')} does not fit {where}: its "
            f"values take {size_text(total)}, {size_text(4 * math.prod(concrete))} of it for "
            f"{what} {fmt_shape(concrete)}", hint)], self.graph.source)

    def describe(self) -> str:
        lines = [f"schedule: {len(self.order)} steps, {len(self.slot_shapes)} buffers"]
        for n in self.order:
            where = f"-> {self.writes[n]}" if n in self.writes else f"-> buf{self.slot[n]}"
            lines.append(f"  {n!r:<28} {where}")
        return "\n".join(lines) + "\n"


def params_too_large(graph: Graph, where: str) -> CompileError:
    """The error for params (and optimizer state, where the graph has it)
    that do not fit `where`, at the statement of the largest param."""
    sizes = {name: 4 * math.prod(p.shape) for name, p in graph.params.items()}
    state = sum(4 * math.prod(n.shape) for n in graph.nodes if n.op == "state")
    name = max(sizes, key=sizes.get)
    p = graph.params[name]
    what = "params and optimizer state" if state else "params"
    return CompileError([Diagnostic(
        p.span, f"the model's {what} do not fit {where}: they take "
        f"{size_text(sum(sizes.values()) + state)}, {size_text(sizes[name])} of it for {name} "
        f"{fmt_shape(p.shape)}", "make this layer smaller")], graph.source)


def value_label(n: Node) -> str:
    """A value as an error names it: its name in the model, else its op."""
    return f"'{n.name}'" if n.name else f"a value ({n.op})"


def _in_place_ok(n: Node) -> bool:
    return n.op != "fused" and REGISTRY[n.op].kind == "elementwise"


def schedule(g: Graph) -> Schedule:
    """See the module docstring for what holds after."""
    s = Schedule(g)
    s.order = [n for n in g.nodes if n.op not in LEAVES]
    pos = {n: k for k, n in enumerate(s.order)}
    end = len(s.order)
    last_use = {}
    for k, n in enumerate(s.order):
        for i in n.inputs:
            last_use[i] = k
    for r in g.roots():
        last_use[r] = end
    # updates written straight into their leaf's storage
    leaves = {**g.params, **g.state}
    taken = set()
    for name, new in g.updates.items():
        old = leaves[name]
        if new not in pos or new in taken:
            continue
        if last_use.get(old, -1) <= pos[new] and _in_place_ok_or_fused(new):
            s.writes[new] = name
            taken.add(new)
    free = {}      # shape -> [slot]

    def release(k, n):
        for i in dict.fromkeys(n.inputs):    # ordered: the same plan every run
            if i in s.slot and last_use.get(i) == k and i not in s.writes:
                free.setdefault(i.shape, []).append(s.slot[i])

    for k, n in enumerate(s.order):
        if _in_place_ok(n):
            release(k, n)
        if n not in s.writes:
            pool = free.get(n.shape)
            if pool:
                s.slot[n] = pool.pop()
            else:
                s.slot[n] = len(s.slot_shapes)
                s.slot_shapes.append(n.shape)
        if not _in_place_ok(n):
            release(k, n)
    return s


def _in_place_ok_or_fused(n: Node) -> bool:
    """An update may overwrite its own param when it is elementwise: it reads
    each element before writing it. A fused body (elementwise, or a GEMM with
    an epilogue) ending in an elementwise op does the same: its backends keep
    the body's temporaries apart from an output that aliases an input."""
    if n.op == "fused":
        last = n.attrs["body"][-1][0]
        return n.attrs["kind"] != "reduce" and REGISTRY[last].kind == "elementwise"
    return _in_place_ok(n)
