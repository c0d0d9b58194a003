"""`nncompile check`: a summary of shapes and sizes, and a gradient check.

The gradient check runs the derived backward graph in float64 with the
reference interpreter and compares each param's gradient with central
finite differences of the loss, (L(p + h) - L(p - h)) / 2h, on a small
random batch, at up to SAMPLES entries of each param (seeded). The point
checked is the initial params plus N(0, JITTER) noise: zero-initialised
params would sit exactly on the kinks of step, relu and abs, where a
finite difference measures a jump rather than a derivative.
Relative error of a param: |analytic - numeric| / max(|analytic| + |numeric|, floor),
taken at its worst entry. The floor keeps the finite difference's own rounding
error from reading as a wrong derivative on tiny entries: it is the larger of
1e-3 * the param's largest gradient entry (an entry a thousand times smaller
than its neighbours is compared at their scale) and ROUNDING / TOLERANCE, where
ROUNDING = 16 eps max(|L|, 1) / STEP bounds the rounding error of one central
difference (eps: float64's, about 1e-9 for a loss near 2). So an absolute
error at the rounding level reads as at most TOLERANCE, while anything above
it still fails: in a net whose gradients vanish (entries of 1e-6) a wrong
entry is caught, a right one is not flagged for the noise around it.

The gradient sizes (gradient_sizes) are taken where training starts: the
initial params, float32, on the examples of the first update that `run`
makes, and that real update, made on them, measures how far the first step
moves each param. They show vanishing gradients (weights near the input get
gradients orders of magnitude smaller than those near the loss) and steps
too large for the weights, before a single epoch runs.
"""
from __future__ import annotations

import numpy as np

from .diagnostics import DataError, plural, size_text
from .frontend.parse import parse
from .ir.evaluate import evaluate
from .ir.graph import fmt_shape
from .ops.registry import REGISTRY, flops
from .passes import pipeline
from .passes.mode import training_mode
from .train.loop import rms

SAMPLES = 16
STEP = 1e-6
TOLERANCE = 1e-5
BATCH = 4
JITTER = 0.1
VANISHING = 100.0     # weight gradients this many times apart along the net
STEP_TOO_BIG = 1.0    # a first update larger than the param itself


def summary(model) -> str:
    g = model.graph
    rows = [("value", "shape", "defined")]
    for role, nodes in (("input", g.inputs), ("target", g.targets)):
        for k, n in nodes.items():
            rows.append((k, fmt_shape(n.shape), f"{role}, line {n.span.line}"))
    # the line that names each value (`output p = h` names p on its own line)
    named = {s.name: s.span.line for s in parse(model.source, model.file).statements
             if s.name}
    for k, n in g.values.items():
        what = "output" if k in g.outputs else "value"
        line = named.get(k, n.span.line if n.span else None)
        rows.append((k, fmt_shape(n.shape), f"{what}, line {line}" if line else what))
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
    out.append(arithmetic(model))
    out.append(memory(model))
    return "\n".join(out)


def memory(model) -> str:
    """One line: what the values of the step step_flops counts take in the
    memory plan, at the same batch (passes/schedule.py: buffers reused)."""
    cfg = model.train_config
    trains = model.graph.loss is not None
    s = pipeline.program(model.graph, updates=trains, outputs=not trains, cfg=cfg)
    total, _ = s.value_bytes(cfg.batch)
    values = sum(1 for n in s.order if n in s.slot)
    return (f"memory for its values: {size_text(total)} (inputs and targets included), "
            f"{plural(len(s.slot_shapes), 'buffer')} for {plural(values, 'value')}")


def arithmetic(model) -> str:
    """One line: step_flops, said."""
    what, batch, total, gemm = step_flops(model)
    share = f"{100 * gemm / total:.0f}%" if total else "none"
    return (f"{what} on a batch of {batch}: {_flop_text(total)}, {share} of it in "
            "matrix products (dense, @, conv2d)")


def step_flops(model) -> tuple:
    """(what, batch, total, in GEMMs): the arithmetic of one training step
    (forward, backward and update; a forward pass for a model without a loss)
    on a batch of the train block's size, as simplified before fusion, and
    the part of it in matrix products: the GEMMs of dense, @ and conv2d
    (kinds matmul and conv; ops/registry.flops counts each op)."""
    cfg = model.train_config
    if model.graph.loss is not None:
        g = pipeline.differentiate(training_mode(model.graph, True, cfg.seed), cfg)
        what = "a training step"
    else:
        g, what = model.graph, "a forward pass"
    g = pipeline.optimize(g, fused=False)

    def concrete(shape):
        return tuple(cfg.batch if d == "N" else d for d in shape)

    total = gemm = 0
    for n in g.nodes:
        op = REGISTRY[n.op]
        f = flops(op, [concrete(i.shape) for i in n.inputs], concrete(n.shape))
        total += f
        gemm += f if op.kind in ("matmul", "conv") else 0
    return what, cfg.batch, total, gemm


def _flop_text(n: int) -> str:
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} FLOP"


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


def random_batch(model, seed: int = 0, rows: int = BATCH) -> dict:
    """Inputs ~ N(0, 1); targets one-hot when wider than one entry, else 0/1."""
    rng = np.random.default_rng(seed)
    leaves = {}
    for k, shape in model.inputs.items():
        leaves[k] = rng.normal(size=(rows,) + shape)
    for k, shape in model.targets.items():
        size = int(np.prod(shape))
        if size > 1:
            t = np.eye(size)[rng.integers(0, size, rows)]
        else:
            t = rng.integers(0, 2, (rows, 1)).astype(np.float64)
        leaves[k] = t.reshape((rows,) + shape)
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
    with np.errstate(all="ignore"):       # a loss that is not finite is reported below
        values = evaluate(g, leaves, list(g.grads.values()) + [g.loss])

    def loss_at(name, flat_index, delta):
        p = leaves[name].copy()
        p.reshape(-1)[flat_index] += delta
        trial = dict(leaves)
        trial[name] = p
        with np.errstate(all="ignore"):
            return float(evaluate(forward, trial, [forward.loss])[forward.loss])

    rounding = 16 * np.finfo(np.float64).eps * max(abs(float(values[g.loss])), 1.0) / STEP
    rng = np.random.default_rng(seed + 1)
    lines, errs = [], [0.0]
    width = max(len(k) for k in g.grads)
    for name, node in g.grads.items():
        analytic = values[node].reshape(-1)
        size = analytic.size
        picks = np.arange(size) if size <= SAMPLES else rng.choice(size, SAMPLES, replace=False)
        floor = max(1e-3 * float(np.max(np.abs(analytic))), rounding / TOLERANCE)
        entry = [0.0]
        for i in picks:
            numeric = (loss_at(name, i, STEP) - loss_at(name, i, -STEP)) / (2 * STEP)
            a = analytic[i]
            with np.errstate(invalid="ignore"):
                entry.append(abs(a - numeric) / max(abs(a) + abs(numeric), floor))
        err = float(np.max(entry))            # nan when any entry is not finite
        errs.append(err)
        lines.append(f"  {name:<{width}}  {len(picks):>3} of {size:<6} entries  "
                     f"max rel error {err:.2e}")
    worst = float(np.max(errs))
    return lines, worst, worst <= TOLERANCE


def start_batch(model) -> tuple:
    """(inputs, targets, what): the examples of the first update fit makes on
    the train block's data (trace.first_update: epoch 1's order, batch *
    accumulate rows, which update as one batch); a random batch when the
    model has no usable data."""
    from .trace import first_update
    cfg = model.train_config
    try:
        return first_update(model, cfg)
    except DataError as e:
        return random_start(model, cfg, e)


def random_start(model, cfg, e: DataError, rows: int = BATCH) -> tuple:
    """(inputs, targets, what): a random float32 batch for a model whose data
    could not be loaded (e says why), with the reason in words."""
    leaves = {k: v.astype(np.float32) for k, v in random_batch(model, rows=rows).items()}
    where = "" if not e.file else f"{e.file}: " if e.row is None else f"{e.file}:{e.row}: "
    why = "the model has no train block" if not cfg.present else \
        "the train block names no data" if cfg.data is None else \
        f"the data did not load: {where}{e.message}"
    return ({k: leaves[k] for k in model.inputs}, {k: leaves[k] for k in model.targets},
            f"a random batch of {rows} example{'s' * (rows != 1)} ({why})")


def gradient_sizes(model) -> tuple:
    """(heading, table lines, notes): each param's RMS gradient, RMS value and
    how much the first update changes it (RMS of the change over RMS of the
    param), then (message, hint) notes on vanishing gradients and on steps
    too large for the weights. The model's params are left as they were."""
    x, y, what = start_batch(model)
    start, stats = model.params, model.normalization
    with np.errstate(all="ignore"):
        try:
            model.normalization = None      # x is normalised already
            loss = model.loss(x, y)
            grads = model.gradients(x, y)
            model.fit(x=x, y=y, epochs=1, batch=len(next(iter(x.values()))), accumulate=1,
                      shuffle=False, early_stop=None)
            moved = model.params
        finally:
            model.set_params(start)
            model.normalization = stats
    rows = [("param", "rms grad", "rms value", "first step")]
    step = {}
    for k in model.graph.params:
        value = rms(start[k])
        step[k] = rms(moved[k] - start[k]) / value if value > 0 else None
        rows.append((k, f"{rms(grads[k]):.1e}", f"{value:.1e}",
                     "-" if step[k] is None else f"{step[k]:.1e}"))
    notes = []
    if not np.isfinite(loss):
        notes.append((f"the loss at the start is {loss}, not a finite number",
                      "look for a log or sqrt of a value that can be negative or zero, "
                      "or inputs far from 0 (normalize = standardize)"))
    weights = [k for k, n in model.graph.params.items() if len(n.shape) >= 2]
    size = {k: rms(grads[k]) for k in weights}
    if len(weights) >= 2 and all(np.isfinite(list(size.values()))):
        small, big = min(weights, key=size.get), max(weights, key=size.get)
        # only the direction toward the input: with weights too large, the
        # activations grow forward as the gradients grow backward and the weight
        # gradients stay level, so an exploding net shows in its first step instead
        if size[small] > 0 and size[big] >= VANISHING * size[small] and \
                weights.index(small) < weights.index(big):
            notes.append((f"vanishing gradients: {small}'s gradient is "
                          f"{size[big] / size[small]:.0f}x smaller than {big}'s, so the "
                          "layers near the input barely learn",
                          "sigmoid and tanh shrink the gradient at every layer they pass "
                          "it through; relu layers (with their he init) keep it even"))
    big_steps = [k for k in step if step[k] is not None and not step[k] <= STEP_TOO_BIG]
    if big_steps and np.isfinite(loss):
        k = max(big_steps, key=lambda k: step[k] if np.isfinite(step[k]) else np.inf)
        notes.append((f"the first step changes {k} by {step[k]:.3g} times its size, so "
                      "training is likely to diverge",
                      "use a smaller lr, set clip = 1.0 in the train block, or start "
                      "from smaller weights"))
    return f"gradients at the start, on {what}:", _table(rows, right=(1, 2, 3)), notes
