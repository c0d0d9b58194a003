"""The canonical one-line-per-node text form of a Graph, like a jaxpr:

    %h1 = relu %5                        : f32[N, 64]   # digits_mlp.nn:6
"""
from __future__ import annotations

from .graph import fmt_shape


def _attr(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ",".join(_attr(x) for x in v) + ")"
    return str(v)


def node_label(n) -> str:
    return f"%{n.name}" if n.name else f"%{n.id}"


def format_node(n, label=node_label) -> str:
    attrs = {k: v for k, v in n.attrs.items() if k not in ("body",)}
    head = n.op
    if attrs:
        head += "[" + ", ".join(f"{k}={_attr(v)}" for k, v in attrs.items()) + "]"
    args = ", ".join(label(i) for i in n.inputs)
    left = f"{label(n)} = {head}" + (f" {args}" if args else "")
    text = f"{left:<44} : f32{fmt_shape(n.shape)}"
    if n.span is not None:
        text = f"{text:<64} # {n.span.file.rsplit('/', 1)[-1]}:{n.span.line}"
    lines = [text.rstrip()]
    if n.op == "fused":
        from ..passes.fuse import body_lines
        lines += ["      " + b for b in body_lines(n)]
    return "\n".join(lines)


def print_graph(g) -> str:
    lines = [f"graph {g.name}"]
    for n in g.nodes:
        lines.append(format_node(n))
    roles = []
    for title, role in (("output", g.outputs), ("grad", g.grads), ("update", g.updates)):
        for k, v in role.items():
            roles.append(f"{title} {k} = {node_label(v)}")
    if g.loss is not None:
        roles.append(f"loss = {node_label(g.loss)}")
    return "\n".join(lines + roles) + "\n"
