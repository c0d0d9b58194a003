"""Fusion: group primitives into the kernels that compute them.

A fused node (op "fused") has external inputs and a body: an SSA list of
entries (op, args, attrs) where an arg is ("in", k) an input, ("v", j) an
earlier body value or ("c", x) a constant; the last entry is the output.
Kinds:
  gemm         matmul (transposes folded into trans_a / trans_b) followed by
               an elementwise epilogue: bias, activation, or in the backward
               pass the activation's derivative, e.g. (G @ W^T) * step(H)
  conv         the same epilogue after a conv-kind op (conv2d, or its input or
               weight gradient): conv + bias + activation is one kernel
  elementwise  a chain of elementwise ops, one pass over memory
  reduce       an elementwise chain ending in sum or max (loss means, bias grads)
Only values used once, and by the group, are absorbed; every value a role
needs (output, loss, grad, update) stays materialised.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ops import REGISTRY


def _kind(n: Node) -> str:
    return REGISTRY[n.op].kind if n.op != "fused" else "fused"


def _make_body(members: list, sources: dict) -> tuple:
    """Members in topological order -> (inputs, body). sources: member -> the
    inputs to read instead of its own (a GEMM reads past folded transposes)."""
    index = {m: j for j, m in enumerate(members)}
    inputs, body = [], []
    for m in members:
        args = []
        src = sources.get(m, m.inputs)
        for i in src:
            if i in index:
                args.append(("v", index[i]))
            elif i.op == "const":
                args.append(("c", i.attrs["value"]))
            else:
                if i not in inputs:
                    inputs.append(i)
                args.append(("in", inputs.index(i)))
        attrs = tuple(sorted(m.attrs.items()))
        body.append((m.op, tuple(args), attrs))
    return inputs, tuple(body)


def fuse(graph: Graph) -> Graph:
    """After: see the module docstring. The graph computes the same values."""
    g = graph.copy()
    users = g.users()
    roles = set(g.roots())
    claimed = {}

    def single_use(n):
        return len(users[n]) == 1 and n not in roles and n not in claimed

    def absorb_producers(n, members):
        """Add to members the elementwise producers that only n reads, and theirs
        (a walk with a stack of its own: a chain may be thousands long)."""
        stack = [n]
        while stack:
            m = stack.pop()
            for i in m.inputs:
                if i in members or _kind(i) != "elementwise" or not single_use(i) \
                        or users[i][0] is not m:
                    continue
                members.add(i)
                stack.append(i)

    groups = []   # (root, members set, kind, extra attrs for the gemm head)

    # GEMM epilogues, forward from each matmul or conv
    for n in g.nodes:
        if (n.op != "matmul" and _kind(n) != "conv") or n in claimed:
            continue
        members, spine = {n}, n
        heads = {}
        for k, src in enumerate(n.inputs):
            if n.op == "matmul" and src.op == "transpose" and single_use(src):
                heads[k] = src
        while single_use(spine):
            u = users[spine][0]
            if _kind(u) != "elementwise" or u.shape != n.shape or u in claimed:
                break
            members.add(u)
            spine = u
            for i in u.inputs:
                if i not in members and _kind(i) == "elementwise" and single_use(i) \
                        and users[i][0] is u:
                    members.add(i)
                    absorb_producers(i, members)
        if len(members) == 1 and not heads:
            continue
        for m in members:
            claimed[m] = spine
        for t in heads.values():
            claimed[t] = spine
        groups.append((spine, members, "gemm" if n.op == "matmul" else "conv", heads))

    # elementwise chains and reductions, from consumers back to producers
    for n in reversed(g.nodes):
        if n in claimed:
            continue
        if n.op in ("sum", "max") and _kind(n.inputs[0]) == "elementwise" \
                and single_use(n.inputs[0]):
            members = {n, n.inputs[0]}
            absorb_producers(n.inputs[0], members)
            kind = "reduce"
        elif _kind(n) == "elementwise":
            members = {n}
            absorb_producers(n, members)
            kind = "elementwise"
            if len(members) < 2:
                continue
        else:
            continue
        for m in members:
            claimed[m] = n
        groups.append((n, members, kind, {}))

    # build the fused nodes, each at its root's position
    replace = {}
    position = {n: k for k, n in enumerate(g.nodes)}
    for root, members, kind, heads in groups:
        ordered = sorted(members, key=position.get)
        sources = {}
        if kind == "gemm":
            mm = next(m for m in ordered if m.op == "matmul")
            sources[mm] = tuple(heads[k].inputs[0] if k in heads else mm.inputs[k]
                                for k in (0, 1))
            mm.attrs = {"trans_a": 0 in heads, "trans_b": 1 in heads}
        inputs, body = _make_body(ordered, sources)
        fused = Node("fused", tuple(inputs), {"kind": kind, "body": body}, root.shape,
                     root.span, root.name, root.id)
        replace[root] = fused
    drop = set(claimed) - set(replace)
    g.nodes = [replace.get(n, n) for n in g.nodes if n not in drop]
    for n in g.nodes:
        n.inputs = tuple(replace.get(i, i) for i in n.inputs)
    g.replace_all(replace)
    return g


def body_lines(node: Node) -> list:
    """A fused body as text, one entry per line (for `emit --target fused`)."""
    out = []
    for j, (op, args, attrs) in enumerate(node.attrs["body"]):
        a = []
        for kind, x in args:
            a.append(f"%in{x}" if kind == "in" else f"%t{x}" if kind == "v" else f"{x:g}")
        flags = [k for k, v in attrs if v is True] + \
            [f"{k}={v}" for k, v in attrs if not isinstance(v, bool)]
        head = op + (f"[{', '.join(flags)}]" if flags else "")
        out.append(f"%t{j} = {head} {', '.join(a)}")
    return out


def eval_fused(node: Node, inputs: list) -> np.ndarray:
    """The reference value of a fused node: its body, op by op."""
    vals = []
    dtype = inputs[0].dtype if inputs else np.float64
    for op, args, attrs in node.attrs["body"]:
        attrs = dict(attrs)
        xs = [inputs[x] if k == "in" else vals[x] if k == "v" else np.asarray(x, dtype)
              for k, x in args]
        if op == "matmul":
            a = np.swapaxes(xs[0], -1, -2) if attrs.get("trans_a") else xs[0]
            b = np.swapaxes(xs[1], -1, -2) if attrs.get("trans_b") else xs[1]
            vals.append(np.matmul(a, b))
        else:
            vals.append(np.asarray(REGISTRY[op].eval(xs, attrs), dtype))
    return vals[-1]
