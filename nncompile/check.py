"""`nncompile check`: a summary of shapes and sizes, and a gradient check.

The gradient check runs the derived backward graph in float64 with the
reference interpreter and compares each param's gradient with central
finite differences of the loss, (L(p + h) - L(p - h)) / 2h, on a small
random batch, at up to SAMPLES entries of each param (seeded). The point
checked is the initial params plus N(0, JITTER) noise: zero-initialised
params would sit exactly on the kinks of step, relu and abs, where a
finite difference measures a jump rather than a derivative.
Relative error of a param: |analytic - numeric| / max(|analytic| + |numeric|, floor),
taken at its worst entry, where floor = 1e-3 * the param's largest gradient
entry (at least 1e-8): an entry a thousand times smaller than its neighbours
is compared at their scale, where the finite difference's rounding error
(about 1e-10 here) no longer looks like a wrong derivative.
"""
from __future__ import annotations

import numpy as np

from .diagnostics import size_text
from .ir.evaluate import evaluate
from .ir.graph import fmt_shape
from .passes import pipeline
from .passes.mode import training_mode

SAMPLES = 16
STEP = 1e-6
TOLERANCE = 1e-5
BATCH = 4
JITTER = 0.1


def summary(model) -> str:
    g = model.graph
    rows = [("value", "shape", "defined")]
    for role, nodes in (("input", g.inputs), ("target", g.targets)):
        for k, n in nodes.items():
            rows.append((k, fmt_shape(n.shape), f"{role}, line {n.span.line}"))
    for k, n in g.values.items():
        what = "output" if k in g.outputs else "value"
        rows.append((k, fmt_shape(n.shape), f"{what}, line {n.span.line}" if n.span else what))
    if g.loss is not None:
        rows.append(("loss", fmt_shape(g.loss.shape),
                     f"loss, line {g.loss.span.line}" if g.loss.span else "loss"))
    prow = [("param", "shape", "size", "init")]
    total = 0
    for k, n in g.params.items():
        size = int(np.prod(n.shape))
        total += size
        init = n.attrs["init"]
        prow.append((k, fmt_shape(n.shape), str(size),
                     init[0] + (f"({', '.join(f'{a:g}' for a in init[1:])})" if init[1:] else "")))
    out = [f"model {g.name} ({g.file})", ""]
    out += _table(rows) + [""] + _table(prow, right=(2,))
    out.append(f"total: {total} params ({size_text(total * 4)} as float32), "
               f"{len(g.nodes)} IR nodes")
    return "\n".join(out)


def _table(rows, right=()) -> list:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def random_batch(model, seed: int = 0) -> dict:
    """Inputs ~ N(0, 1); targets one-hot when wider than one entry, else 0/1."""
    rng = np.random.default_rng(seed)
    leaves = {}
    for k, shape in model.inputs.items():
        leaves[k] = rng.normal(size=(BATCH,) + shape)
    for k, shape in model.targets.items():
        size = int(np.prod(shape))
        if size > 1:
            t = np.eye(size)[rng.integers(0, size, BATCH)]
        else:
            t = rng.integers(0, 2, (BATCH, 1)).astype(np.float64)
        leaves[k] = t.reshape((BATCH,) + shape)
    return leaves


def fixed_masks(graph, seed: int = 0) -> dict:
    """A value for every dropout mask leaf: (u >= rate) / (1 - rate), seeded."""
    rng = np.random.default_rng([seed, 3])
    masks = {}
    for n in graph.nodes:
        if n.op == "random":
            shape = (BATCH,) + tuple(n.shape[1:])
            masks[n.attrs["name"]] = (rng.uniform(size=shape) >= n.attrs["rate"]) / \
                (1 - n.attrs["rate"])
    return masks


def gradient_check(model, seed: int = 0):
    """Returns (report lines, worst relative error, ok)."""
    # dropout is checked as in training, with one fixed mask
    forward = training_mode(model.graph, True, seed)
    g = pipeline.differentiate(forward, with_update=False)
    leaves = random_batch(model, seed)
    leaves.update(fixed_masks(forward, seed))
    jitter = np.random.default_rng(seed + 2)
    leaves.update({k: v.astype(np.float64) + jitter.normal(0, JITTER, v.shape)
                   for k, v in model.params.items()})
    values = evaluate(g, leaves, list(g.grads.values()) + [g.loss])

    def loss_at(name, flat_index, delta):
        p = leaves[name].copy()
        p.reshape(-1)[flat_index] += delta
        trial = dict(leaves)
        trial[name] = p
        return float(evaluate(forward, trial, [forward.loss])[forward.loss])

    rng = np.random.default_rng(seed + 1)
    lines, worst = [], 0.0
    width = max(len(k) for k in g.grads)
    for name, node in g.grads.items():
        analytic = values[node].reshape(-1)
        size = analytic.size
        picks = np.arange(size) if size <= SAMPLES else rng.choice(size, SAMPLES, replace=False)
        err = 0.0
        floor = max(1e-3 * float(np.max(np.abs(analytic))), 1e-8)
        for i in picks:
            numeric = (loss_at(name, i, STEP) - loss_at(name, i, -STEP)) / (2 * STEP)
            a = analytic[i]
            err = max(err, abs(a - numeric) / max(abs(a) + abs(numeric), floor))
        worst = max(worst, err)
        lines.append(f"  {name:<{width}}  {len(picks):>3} of {size:<6} entries  "
                     f"max rel error {err:.2e}")
    return lines, worst, worst <= TOLERANCE
