"""Accuracy, for targets where it means something.

one-hot targets (one 1 per row): argmax of the output equals argmax of the target;
0/1 targets of one entry: the output thresholded at 0.5 equals the target.
The output compared is the first declared output with the target's shape.
"""
from __future__ import annotations

import numpy as np


def accuracy_kind(model, ys: dict):
    if len(ys) != 1:
        return None
    (yname, y), = ys.items()
    per = y.shape[1:]
    out = next((k for k, s in model.outputs.items() if s == per), None)
    if out is None or y.size == 0:
        return None
    flat = y.reshape(len(y), -1)
    zero_one = bool(np.all((flat == 0) | (flat == 1)))
    if flat.shape[1] > 1 and zero_one and np.all(flat.sum(axis=1) == 1):
        return out, "onehot"
    if flat.shape[1] == 1 and zero_one:
        return out, "binary"
    return None


def accuracy(pred: np.ndarray, target: np.ndarray, kind: str) -> int:
    """How many rows are right."""
    p = pred.reshape(len(pred), -1)
    t = target.reshape(len(target), -1)
    if kind == "onehot":
        return int(np.sum(np.argmax(p, axis=1) == np.argmax(t, axis=1)))
    return int(np.sum((p[:, 0] > 0.5) == (t[:, 0] > 0.5)))


def rows_per_call(graph, n: int, chunk: int = 1024) -> int:
    """How many of n rows one evaluation call may take so that the calls'
    losses, weighted by their rows, average to the loss of all n rows: chunk
    when the loss is a mean over the batch, plus or times terms that do not
    depend on the batch (every built-in loss, `loss mean(...)`, weight
    decay); else n, one call (`loss sqrt(mse(p, y))` is no mean of chunks)."""
    free, affine = {}, {}
    for node in graph.nodes:         # in order: a node's inputs come before it
        ins = node.inputs
        free[node] = "N" not in node.shape and all(free[i] for i in ins)
        if free[node]:
            affine[node] = True
        elif node.op == "div" and ins[0].op == "sum" and ins[1].op == "count":
            affine[node] = ins[0].shape == () and 0 in ins[0].attrs["axes"] and \
                0 in ins[1].attrs["axes"] and ins[0].inputs[0].shape == ins[1].inputs[0].shape
        elif node.op in ("add", "sub", "neg"):
            affine[node] = all(affine[i] for i in ins)
        elif node.op == "mul":
            affine[node] = any(free[i] for i in ins) and all(affine[i] for i in ins)
        elif node.op == "div":
            affine[node] = free[ins[1]] and affine[ins[0]]
        else:
            affine[node] = False
    return chunk if graph.loss is None or affine[graph.loss] else max(n, 1)
