"""`nncompile trace`: one training step, value by value (backpropagation made visible).

trace(model) takes the examples of the first update that `run` makes (the
first `batch * accumulate` rows of epoch 1's shuffled order, as fit draws
it: accumulated mini-batches update as one batch of all their examples) and
runs that one step with the reference interpreter in float32, the model's
own precision. It keeps:

- forward: every statement's value, and for a statement ending in an
  activation (dense(x, 4, tanh), relu(x @ w + b)) the value before it,
  the weighted sum z that the backward pass multiplies by the activation's
  derivative;
- backward: d loss / d each of those values (autodiff's adjoints), from
  the loss back, each with the statements it came back through: the chain
  rule's intermediate results;
- update: each param before, its gradient (after clipping, when the train
  block clips) and after the optimizer's first step.

Dropout masks are drawn from the stream fit draws them from, one mini-batch
at a time as fit does, so the step is exactly fit's first update, with
accumulate = k too. The params after the step agree with fit's to float32
rounding (tests/test_trace.py).
"""
from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass, field

import numpy as np

from .diagnostics import DataError, plural
from .ir.evaluate import evaluate
from .ir.graph import fmt_shape
from .ops.registry import REGISTRY
from .passes import pipeline
from .passes.mode import training_mode

SHOWN = 48        # arrays with at most this many entries are printed in full
ACTIVATIONS = ("relu", "sigmoid", "tanh", "step", "leaky_relu", "exp", "log", "abs",
               "sqrt", "square", "softmax", "log_softmax")
# d loss / d pred for `loss FUNC(pred, t)`: {n} counts what the loss averages over
LOSS_DERIVATIVE = {"mse": "2 * ({a} - {t}) / {n}", "mae": "sign({a} - {t}) / {n}",
                   "cross_entropy": "(softmax({a}) - {t}) / {n}",
                   "binary_cross_entropy": "(sigmoid({a}) - {t}) / {n}",
                   "perceptron": "(step({a}) - {t}) / {n}"}
LOSS_CALL = re.compile(r"loss\s+(\w+)\(\s*(\w+)\s*,\s*(\w+)\s*\)$")
NO_GRADIENT = ("step", "stop_gradient", "count")   # ops whose inputs get no gradient
# ACT'(z) written with y = ACT(z): the factor of the chain rule's step through ACT
DERIVATIVE = {"tanh": "(1 - {y}^2)", "sigmoid": "{y} * (1 - {y})", "relu": "({z} > 0)",
              "leaky_relu": "({z} > 0 ? 1 : {slope:g})", "exp": "{y}", "log": "1 / {z}",
              "square": "2 * {z}", "sqrt": "1 / (2 * {y})", "abs": "sign({z})"}


@dataclass
class Row:
    """One value of the forward pass and d loss / d it (None where the loss
    does not depend on it through a param: inputs, targets)."""
    name: str                 # a statement's name, or "NAME before ACT"
    line: int | None
    text: str                 # what defines it, from the source
    value: np.ndarray
    grad: np.ndarray | None = None
    via: list = field(default_factory=list)   # the statements its gradient came back from
    chain: str = ""           # the chain rule step that made grad, where it is a plain one


@dataclass
class Trace:
    model: str
    examples: str             # which examples, in words
    rows: list                # forward order; the loss is the last row when there is one
    loss: float | None
    before: dict              # param -> value before the step
    grads: dict               # param -> d loss / d param (clipped when the block clips)
    grad_rules: dict          # param -> how its gradient came, where it is a plain one
    after: dict               # param -> value after the step
    rule: str                 # the update in words
    notes: list = field(default_factory=list)
    full: bool = False        # print every array in full

    def __str__(self) -> str:
        return "\n".join(render(self)) + "\n"


def first_update(model, cfg) -> tuple:
    """(inputs, targets, what): the examples of the first update fit makes on
    the train block's data, in fit's order."""
    from .train.loop import first_rows, load_data
    xs, ys, _, _, _ = load_data(model, cfg)
    n = len(next(iter(xs.values())))
    idx = first_rows(cfg, n)
    steps = f"{cfg.accumulate} accumulated mini-batches of {cfg.batch}, as one batch: " \
        if cfg.accumulate > 1 else ""
    what = (f"the first update of epoch 1 ({steps}{len(idx)} of the "
            f"{plural(n, 'training example')} of '{cfg.data}', seed {cfg.seed})")
    return ({k: v[idx] for k, v in xs.items()}, {k: v[idx] for k, v in ys.items()}, what)


def _masks(graph, rows: int, seed: int, chunk: int) -> dict:
    """Each dropout mask leaf's value, drawn as the numpy executor's first
    runs draw them: default_rng([seed, 2]), one run per chunk of rows (fit's
    mini-batches, which accumulate = k sums), each run in the graph's order."""
    from .backends.numpy.executor import fill_mask
    rng = np.random.default_rng([seed, 2])
    leaves = [n for n in graph.nodes if n.op == "random"]
    masks = {n.attrs["name"]: np.empty((rows,) + tuple(n.shape[1:]), np.float32)
             for n in leaves}
    for start in range(0, rows, chunk):
        for n in leaves:
            fill_mask(rng, masks[n.attrs["name"]][start:start + chunk], n.attrs["rate"])
    return masks


def _rule(cfg, clipped: str, perceptron: bool) -> str:
    lr = f"{cfg.lr:g}"
    if cfg.optimizer == "adam":
        text = (f"adam(lr = {lr}): its first step is param - {lr} * m / (sqrt(v) + eps) "
                f"with m = gradient and v = gradient^2 after bias correction, so each entry "
                f"moves by about {lr} against the sign of its gradient")
    elif cfg.momentum:
        text = (f"sgd(lr = {lr}, momentum = {cfg.momentum:g}): velocity = "
                f"{cfg.momentum:g} * velocity + gradient (it starts at 0, so the first "
                f"velocity is the gradient), param - {lr} * velocity")
    else:
        text = f"sgd(lr = {lr}): param - {lr} * gradient"
        if perceptron:
            text += (f"; with the perceptron criterion that is the perceptron rule "
                     f"w + {lr} * (t - y) * x, averaged over the batch")
    return text + clipped


def _weighted_sum(n) -> bool:
    """n is a layer's sum before its activation: x @ w (+ b), or a conv (+ b)."""
    if n.op == "add":
        n = n.inputs[0]
    return REGISTRY[n.op].kind in ("matmul", "conv")


def _loss_call(model, g) -> str | None:
    """FUNC when the loss statement is `loss FUNC(pred, t)` on one line."""
    call = LOSS_CALL.match(_source_line(model, g.loss.span.line)) \
        if g.loss is not None and g.loss.span else None
    return call[1] if call else None


def _source_line(model, line) -> str:
    lines = model.source.splitlines()
    if line is None or not 0 < line <= len(lines):
        return ""
    return lines[line - 1].split("#", 1)[0].strip()


def _examples(model, cfg, x, y, trains: bool) -> tuple:
    """(feeds, what): x and y when given, else the first update's examples,
    else (no usable data) a random batch of that size, saying why."""
    if trains and (x is None) != (y is None):
        raise DataError("trace needs both x and y",
                        hint="or neither: then it traces the first update of the train "
                             "block's data")
    if not model.graph.inputs:
        raise DataError("trace feeds examples through the model's inputs, and this model "
                        "declares none", file=model.file,
                        hint="declare one, e.g. input x[2], and compute from it")
    if x is not None:
        feeds = model._inputs(x)         # normalised as predict's
        if y is not None:
            feeds.update(model._as_dict(y, "target"))
        n = model._rows(feeds)
        return feeds, f"the {n} example{'s' * (n != 1)} given"
    try:
        xs, ys, what = first_update(model, cfg)
    except DataError as e:      # as check does: the model can still be traced
        from .check import random_start
        xs, ys, what = random_start(model, cfg, e, cfg.batch * cfg.accumulate)
    return {**xs, **ys}, what


def trace(model, x=None, y=None, **overrides) -> Trace:
    """One training step of model, value by value: on x and y when given,
    else on the examples of the first update of the train block's data
    (keyword overrides as for fit: batch, lr, ...). A model without a loss
    gets its forward pass only."""
    cfg = model.config(**overrides)
    g0 = model.graph
    trains = g0.loss is not None
    feeds, what = _examples(model, cfg, x, y, trains)
    rows_n = len(next(iter(feeds.values())))
    g = training_mode(g0, trains, cfg.seed)
    if trains:
        g = pipeline.differentiate(g, cfg)
    before = model.params
    chunk = rows_n if x is not None else cfg.batch     # fit's mini-batches
    leaves = {**feeds, **before, **_masks(g, rows_n, cfg.seed, chunk)}
    unfed = [n for name, n in g.targets.items() if name not in leaves]
    for n in unfed:                       # forward only, no targets given: not shown
        leaves[n.attrs["name"]] = np.full((rows_n,) + tuple(n.shape[1:]), np.nan, np.float32)
    for name, n in g.state.items():
        leaves[name] = np.full(n.shape, n.attrs["value"], np.float32)
    with np.errstate(all="ignore"):      # a loss that is not finite is noted below
        values = evaluate(g, leaves, g.nodes[-1:], dtype=np.float32)
    for n in unfed:
        del values[n]

    walk = _Walk(model, g, values, trains, rows_n)
    rows = []
    for n in walk.shown:
        adj = g.adjoints.get(n.id) if trains and n.op not in ("input", "target") else None
        line = n.span.line if n.span else None
        rows.append(Row(walk.labels[n], line, _source_line(model, line), values[n],
                        None if adj is None else values[adj],
                        [walk.labels[u] for u in walk.via(n)] if adj is not None else [],
                        walk.chain(n) if adj is not None else ""))
    loss = float(values[g.loss]) if trains else None
    grads, after, clipped, notes = {}, {}, "", []
    rules = {k: walk.param_rule(p) for k, p in g.params.items()} if trains else {}
    if trains:
        raw = {k: values[n] for k, n in g.grads.items()}
        if cfg.clip:
            norm = float(np.sqrt(sum(np.sum(np.square(v, dtype=np.float64))
                                     for v in raw.values())))
            scale = cfg.clip / max(norm, cfg.clip)
            clipped = (f"; clip = {cfg.clip:g}: the gradients' global norm is {norm:.4g}, "
                       + (f"so every gradient was scaled by {scale:.4g}" if scale < 1
                          else "not above it, so they are unchanged"))
            grads = {k: (v * np.float32(scale)).astype(np.float32) for k, v in raw.items()}
        else:
            grads = raw
        after = {k: values[g.updates[k]] for k in g0.params}
        if not np.isfinite(loss):
            notes.append(f"the loss is {loss}, not a finite number")
    return Trace(model.name, what, rows, loss, before, grads, rules, after,
                 _rule(cfg, clipped, _loss_call(model, g0) == "perceptron") if trains else "",
                 notes)


class _Walk:
    """The values a trace shows, and how each one's gradient came back to it.

    shown: the statements' values in graph order, and before a statement that
    ends in an activation of an unnamed weighted sum (a layer), that sum,
    labelled "NAME before ACT"; the loss last. chain and param_rule describe
    the chain rule's step for the patterns a course teaches (a loss on its
    prediction, an activation, a dense or conv layer, pooling, dropout) and
    return "" for anything else, which then reads "from READER"."""

    def __init__(self, model, g, values, trains: bool, rows: int):
        self.model, self.g, self.trains, self.rows = model, g, trains, rows
        self.labels = {}
        named = {**g.inputs, **g.targets, **g.values}
        for name, n in named.items():
            if n not in values or n in self.labels:   # `output o = h`: shown once, as h
                continue
            if n.op in ACTIVATIONS and len(n.inputs) == 1 and n.inputs[0].name is None \
                    and _weighted_sum(n.inputs[0]):
                self.labels[n.inputs[0]] = f"{name} before {n.op}"
            self.labels[n] = name
        if trains:
            self.labels[g.loss] = "loss"
        self.shown = sorted(self.labels, key=g.nodes.index)
        self.users = g.users()

    def carries(self, u) -> bool:
        """u passes the loss's gradient on to its inputs."""
        return self.trains and u.id in self.g.adjoints and u.op not in NO_GRADIENT

    def via(self, n) -> list:
        """The shown values that read n and pass the loss's gradient back to it,
        directly or through unshown nodes."""
        found, stack, seen = set(), list(self.users[n]), set()
        while stack:
            u = stack.pop()
            if u in seen or not self.carries(u):
                continue
            seen.add(u)
            if u in self.labels:
                found.add(u)
            else:
                stack.extend(self.users[u])
        return sorted(found, key=self.g.nodes.index)

    def term(self, n) -> str:
        label = self.labels[n]
        return f"({label})" if " " in label else label

    def chain(self, n) -> str:
        """d loss / d n from its one shown reader s, as a formula."""
        readers = self.via(n)
        if len(readers) != 1:
            return ""
        s = readers[0]
        ds = f"d loss/d {self.term(s)}"
        if s is self.g.loss:
            return self._loss_step(n)
        if s.op in DERIVATIVE and s.inputs[0] is n:
            factor = DERIVATIVE[s.op].format(y=self.term(s), z=self.term(n),
                                             slope=s.attrs.get("slope", 0.0))
            return f"{ds} * {factor}   ({s.op}')"
        if s.op in ("maxpool", "avgpool") and s.inputs[0] is n:
            k = s.attrs["size"]
            return f"{ds}, sent back to the largest entry of each {k}x{k} window (maxpool')" \
                if s.op == "maxpool" else \
                f"{ds} / {k * k}, spread over each {k}x{k} window (avgpool')"
        if s.op == "mul" and s.inputs[0] is n and s.inputs[1].op == "random":
            rate = s.inputs[1].attrs["rate"]
            return f"{ds} * the same dropout mask (0, or 1 / (1 - {rate:g}) " \
                   f"= {1 / (1 - rate):.4g})"
        inner = s.inputs[0] if s.op == "add" else s
        x, w = (inner.inputs + (None, None))[:2]
        flat = x is not None and x.op == "reshape" and x.inputs[0] is n
        if w is None or w.op != "param" or not (x is n or flat):
            return ""
        if inner.op == "matmul":
            text = f"{ds} @ transpose({w.name})"
            return f"{text}, reshaped back to {fmt_shape(n.shape[1:])}" if flat else text
        if inner.op == "conv2d" and x is n:
            return f"{ds} run back through {w.name} (conv2d's input gradient: the " \
                   "transposed convolution)"
        return ""

    def _loss_step(self, n) -> str:
        """d loss / d pred for `loss FUNC(pred, t)`."""
        call = LOSS_CALL.match(_source_line(self.model, self.g.loss.span.line)) \
            if self.g.loss.span else None
        if not call or call[1] not in LOSS_DERIVATIVE or call[2] != self.labels[n]:
            return ""
        per = int(np.prod(n.shape[1:])) \
            if call[1] in ("mse", "mae", "binary_cross_entropy") else 1
        count = f"{self.rows}" if per == 1 else f"({self.rows} * {per})"
        return LOSS_DERIVATIVE[call[1]].format(a=self.labels[n], t=call[3], n=count) + \
            f"   ({call[1]}')"

    def param_rule(self, p) -> str:
        """A layer's weight or bias gradient, in terms of the shown values."""
        readers = [u for u in self.users[p] if self.carries(u)]
        if len(readers) != 1:
            return ""
        u = readers[0]
        out = u if u in self.labels else \
            next((v for v in self.users[u] if v in self.labels), None)
        if out is None:
            return ""
        dout = f"d loss/d {self.term(out)}"
        x = u.inputs[0]
        x = x.inputs[0] if x.op == "reshape" else x
        if u.op == "matmul" and u.inputs[1] is p and x in self.labels:
            x = self.labels[x] if x is u.inputs[0] else f"flatten({self.labels[x]})"
            return f"transpose({x}) @ {dout}"
        if u.op == "conv2d" and u.inputs[1] is p and x in self.labels:
            return f"{dout} correlated with {self.labels[x]} over every position (conv2d's " \
                   "weight gradient)"
        if u.op == "add" and u.inputs[1] is p and out is u:
            over = "the batch's examples" if len(p.shape) == 1 else \
                "the batch's examples and every position"
            return f"{dout}, summed over {over}"
        return ""


# rendering -------------------------------------------------------------------

def _array(a: np.ndarray, full: bool, indent: str) -> list:
    """An array's lines: in full when small (or full), else a one-line summary."""
    a = np.asarray(a)
    if a.ndim == 0:
        return [f"{indent}{float(a):.6g}"]
    if full or a.size <= SHOWN:
        text = np.array2string(a, precision=4, suppress_small=True, max_line_width=100,
                               threshold=sys.maxsize, floatmode="maxprec")
        return [indent + t for t in text.splitlines()]
    with np.errstate(all="ignore"):
        d = a.astype(np.float64)
        return [f"{indent}mean {d.mean():.4g}  rms {np.sqrt(np.mean(d * d)):.4g}  "
                f"min {d.min():.4g}  max {d.max():.4g}  ({a.size} entries; --full "
                "prints them)"]


def render(t: Trace) -> list:
    out = [f"trace of {t.model}: one training step on {t.examples}" if t.loss is not None
           else f"trace of {t.model} (no loss): the forward pass on {t.examples}", ""]
    width = max((len(r.name) for r in t.rows), default=4)
    out.append("forward: each value on this batch (one row per example)")
    for r in t.rows:
        where = f"line {r.line}: {r.text}" if r.line else r.text
        if r.name == "loss":
            out.append(f"  {'loss':<{width}}  = {t.loss:.6g}   {where}")
            continue
        out.append(f"  {r.name:<{width}}  {fmt_shape(r.value.shape):<12}  {where}")
        out += _array(r.value, t.full, "      ")
    back = [r for r in reversed(t.rows) if r.grad is not None and r.name != "loss"]
    if t.loss is not None:
        out += ["", "backward: d loss / d value, from the loss back to the params (the "
                    "chain rule)"]
        for r in back:
            came = ", ".join("the loss" if v == "loss" else v for v in r.via)
            how = f"= {r.chain}" if r.chain else f"from {came}"
            out.append(f"  d loss/d {r.name:<{width}}  {fmt_shape(r.grad.shape):<12}  {how}")
            out += _array(r.grad, t.full, "      ")
        out += [""] + textwrap.wrap(f"update: {t.rule}", 100, subsequent_indent=" " * 8)
        for k in t.before:
            how = f"   gradient = {t.grad_rules[k]}" if t.grad_rules.get(k) else ""
            out.append(f"  {k}  {fmt_shape(t.before[k].shape)}{how}")
            for label, a in (("before", t.before[k]), ("gradient", t.grads[k]),
                             ("after", t.after[k])):
                lines = _array(a, t.full, "")
                out.append(f"    {label:<8}  {lines[0]}")
                out += [f"    {'':<8}  {x}" for x in lines[1:]]
    for note in t.notes:
        out.append(f"note: {note}")
    return out
