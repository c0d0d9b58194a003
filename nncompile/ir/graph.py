"""The IR: SSA nodes in topological order, shapes with a symbolic batch axis.

A Node is one value: `op` (a name in ops.registry), `inputs` (Nodes), `attrs`
(plain hashable values), `shape` (a tuple of ints and N, the batch axis) and
`span` (the .nn text that made it). A Graph holds the nodes in topological
order plus the named roles: inputs, targets, params, state (optimizer
buffers), outputs, loss, and after autodiff grads[param], updates[name] and
adjoints[node id] (d loss / d that forward node, what `nncompile trace` shows).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import Span

N = "N"   # the symbolic batch axis


class ShapeError(Exception):
    """Raised by an op's infer; the caller turns it into a Diagnostic."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def attrs_key(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))


@dataclass(eq=False)
class Node:
    op: str
    inputs: tuple
    attrs: dict
    shape: tuple
    span: Span | None = None
    name: str | None = None       # the user's name, or the role's name for leaves
    id: int = -1

    def __repr__(self) -> str:
        return f"%{self.name or self.id}"

    @property
    def batched(self) -> bool:
        return N in self.shape


@dataclass
class Graph:
    name: str = "model"
    file: str = "<string>"
    source: str | None = None    # the .nn text, to show its lines in errors found late
    nodes: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)     # name -> Node(op=input)
    targets: dict = field(default_factory=dict)    # name -> Node(op=target)
    params: dict = field(default_factory=dict)     # name -> Node(op=param); attrs['init']
    state: dict = field(default_factory=dict)      # name -> Node(op=state); attrs['value']
    outputs: dict = field(default_factory=dict)    # name -> Node
    loss: Node | None = None
    grads: dict = field(default_factory=dict)      # param name -> Node
    updates: dict = field(default_factory=dict)    # param/state name -> Node (its next value)
    values: dict = field(default_factory=dict)     # user's intermediate names -> Node
    adjoints: dict = field(default_factory=dict)   # forward node id -> d loss / d it (Node)
    warnings: list = field(default_factory=list)   # the front end's warning Diagnostics
    target_losses: dict = field(default_factory=dict)  # target name -> (loss, Span) taking it
    _next_id: int = 0

    # building -------------------------------------------------------------
    def add(self, op: str, inputs=(), attrs=None, span=None, name=None, shape=None) -> Node:
        """Append a node; its shape comes from the op's infer (ShapeError if it fails)."""
        from ..ops import REGISTRY
        attrs = dict(attrs or {})
        inputs = tuple(inputs)
        if shape is None:
            shape = tuple(REGISTRY[op].infer([i.shape for i in inputs], attrs))
        node = Node(op, inputs, attrs, tuple(shape), span, name, self._next_id)
        self._next_id += 1
        self.nodes.append(node)
        return node

    def const(self, value: float, span=None) -> Node:
        return self.add("const", (), {"value": float(value)}, span, shape=())

    def roots(self) -> list:
        """Every node the graph must compute: outputs, loss, grads, updates."""
        out = list(self.outputs.values())
        if self.loss is not None:
            out.append(self.loss)
        out += list(self.grads.values()) + list(self.updates.values())
        return out

    def users(self) -> dict:
        """node -> list of nodes that read it."""
        found = {n: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                found[i].append(n)
        return found

    # rewriting -------------------------------------------------------------
    def replace_all(self, mapping: dict) -> None:
        """Point every use of a key node (inputs and roles) at its value node."""
        if not mapping:
            return

        def m(n):
            while n in mapping:
                n = mapping[n]
            return n

        for n in self.nodes:
            n.inputs = tuple(m(i) for i in n.inputs)
        for role in (self.outputs, self.grads, self.updates, self.values, self.adjoints):
            for k in role:
                role[k] = m(role[k])
        if self.loss is not None:
            self.loss = m(self.loss)

    def copy(self) -> "Graph":
        """A deep copy: new Node objects, same ids, same roles."""
        new = {}
        g = Graph(self.name, self.file, self.source, _next_id=self._next_id)
        for n in self.nodes:
            c = Node(n.op, tuple(new[i] for i in n.inputs), dict(n.attrs), n.shape,
                     n.span, n.name, n.id)
            new[n] = c
            g.nodes.append(c)
        for role in ("inputs", "targets", "params", "state", "outputs", "grads",
                     "updates", "values"):
            setattr(g, role, {k: new[v] for k, v in getattr(self, role).items()})
        g.loss = new[self.loss] if self.loss is not None else None
        g.adjoints = {k: new[v] for k, v in self.adjoints.items()}
        return g

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)
