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
