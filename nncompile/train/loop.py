"""The training loop: epochs and mini-batches over the compiled step.

- Shuffling draws a permutation per epoch from default_rng([seed, 1]); init uses
  its own per-param streams, so the same file and seed give bit-identical runs.
- The last partial batch is kept. With accumulate = k the gradients of k
  consecutive mini-batches are summed, each weighted by its share of the
  examples, and one update follows: the update of one batch of batch*k examples.
- Each epoch reports the mean training loss (over the examples seen), and for
  one-hot or 0/1 targets the accuracy on the training and held-out data.
- Optimizer state (momentum, Adam moments) starts fresh at every fit().
- early_stop = k (Keras' EarlyStopping on val_loss with restore_best_weights):
  training stops once the held-out loss has not improved for k epochs, and
  the params go back to those of the epoch with the lowest held-out loss
  (marked "best" in its record; the last record says "stopped_early").
- grad_rms = True (fit's option, `run --grad-rms`): each record also gets
  every param's RMS gradient on one fixed probe batch (GradientWatch), so
  vanishing and exploding gradients can be watched through training.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..diagnostics import CompileError, DataError, Diagnostic
from . import data as datasets
from .metrics import accuracy, accuracy_kind, rows_per_call


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during fit: still a KeyboardInterrupt (so `except Exception`
    does not swallow it), carrying the history of the epochs that finished."""

    def __init__(self, history):
        super().__init__("interrupted")
        self.history = history


def load_data(model, cfg):
    """The train block's data, prepared: (x_train, y_train, x_test, y_test,
    stats), each x and y a dict keyed by the model's input or target name;
    stats None or {input name: (shift, scale)} of its normalisation."""
    g = model.graph
    if len(g.inputs) != 1 or len(g.targets) != 1:
        n, m = len(g.inputs), len(g.targets)
        raise DataError("a data set feeds models with one input and one target; this model "
                        f"has {n} input{'s' * (n != 1)} and {m} target{'s' * (m != 1)}",
                        hint="the command line runs models with one input and one target from "
                             "a data set; from Python, pass dicts keyed by input and target "
                             "name to fit(x=..., y=...)")
    if cfg.data is None:
        if not cfg.present:
            raise DataError("the model has no train block, so there is no data to train on",
                            file=model.file, hint="pass the examples: fit(x=..., y=...)")
        raise DataError("the train block names no data", span=cfg.span("train"),
                        source=model.source, hint="add e.g. data = xor to the train block")
    (xname, xnode), = g.inputs.items()
    (yname, ynode), = g.targets.items()
    in_shape, t_shape = tuple(xnode.shape[1:]), tuple(ynode.shape[1:])
    path = cfg.data
    if cfg.data_is_path and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(model.file), path) \
            if model.file != "<string>" else path
    ds = datasets.load(path, cfg.data_is_path, cfg.seed, int(np.prod(in_shape)),
                       int(np.prod(t_shape)))
    if not ds.labels or int(np.prod(t_shape)) == 1:       # one-hot labels fit any loss
        check_targets(model, yname, ds.y if not ds.labels else ds.y.reshape(-1, 1),
                      file=ds.source, lines=ds.lines)
    split = ds.default_split if cfg.split is None else cfg.split
    sp = datasets.prepare(ds, in_shape, t_shape, split, cfg.normalize, cfg.seed)
    return ({xname: sp.x_train}, {yname: sp.y_train}, {xname: sp.x_test}, {yname: sp.y_test},
            None if sp.stats is None else {xname: sp.stats})


def _as_feeds(model, x, y):
    xs = model._as_dict(x, "input")
    ys = model._as_dict(_class_labels(model, y, len(next(iter(xs.values())))), "target")
    for name, values in ys.items():
        check_targets(model, name, values)
    return xs, ys


def check_targets(model, name: str, y, file=None, lines=None) -> None:
    """A DataError at the first example whose target the loss that takes
    target `name` cannot take (data.TARGETS: -1 for the perceptron, 3 for
    binary_cross_entropy, a row summing to 2 for cross_entropy)."""
    rule = model.graph.target_losses.get(name)
    fault = rule and datasets.target_fault(y, rule[0])
    if not fault:
        return
    (loss, span), (i, why) = rule, fault
    need, hint = datasets.TARGETS[loss]
    which = "its target" if lines else f"'{name}' example {i} (counting from 0)" \
        if file is None else f"example {i} (counting from 0): its target"
    raise DataError(f"{which} {why}, but {loss} at {span} takes {need}",
                    file=file, row=lines[i] if lines else None, hint=hint)


def _class_labels(model, y, n: int):
    """y as fit takes it: a 1-D array of integers, one per example, for a
    model whose one target has K > 1 entries is class labels 0..K-1, made
    one-hot here, as a data file's 1-D labels are (and as PyTorch's
    CrossEntropyLoss takes class indices). Anything else is left as given."""
    if isinstance(y, dict) or len(model.graph.targets) != 1:
        return y
    node, = model.graph.targets.values()
    try:
        labels = np.asarray(y) if isinstance(y, (list, tuple, np.ndarray)) else None
    except ValueError:          # ragged: Model._check says so
        return y
    if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu" or \
            len(node.shape) != 2 or node.shape[1] < 2 or len(labels) != n:
        return y
    return datasets.one_hot(labels, node.shape[1:], None)


def fit(model, x=None, y=None, x_test=None, y_test=None, on_epoch=None, on_start=None,
        grad_rms=False, **overrides) -> list:
    cfg = model.config(**overrides)
    if model.graph.loss is None:
        raise DataError(f"model {model.name} has no loss, so it cannot train",
                        file=model.file, hint="add a 'loss' statement")
    if x is not None or y is not None:
        given = [k for k in ("split", "normalize") if k in overrides]
        if given:
            raise ValueError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to "
                             "the train block's data, not to "
                             "x and y given: pass x_test and y_test for held-out data, and "
                             "normalise the arrays as you need")
        if x is None or y is None:
            raise DataError("fit needs both x and y",
                            hint="or neither: then it trains on the train block's data")
        xs, ys = _as_feeds(model, x, y)
        if (x_test is None) != (y_test is None):
            raise DataError("fit needs both x_test and y_test, or neither",
                            hint="the held-out examples need their targets")
        xt, yt = _as_feeds(model, x_test, y_test) if x_test is not None else ({}, {})
        if xt:
            model._rows({**xt, **yt})
        stats = None            # arrays given are taken as they are
    elif x_test is not None or y_test is not None:
        raise DataError("fit got x_test and y_test but no x and y",
                        hint="give x and y too, or leave the held-out part to the train "
                             "block's split")
    else:
        xs, ys, xt, yt, stats = load_data(model, cfg)
    n = len(next(iter(xs.values())))
    if any(len(v) != n for v in list(xs.values()) + list(ys.values())):
        raise DataError("inputs and targets hold different numbers of examples",
                        hint="give one target row per input row")
    if n == 0:
        raise DataError("there are no training examples",
                        hint="x and y need at least one row")
    n_test = len(next(iter(xt.values()))) if xt else 0
    stopper = _early_stop(model, cfg, n_test, x is not None)
    model._reset_optimizer()
    model.normalization = stats     # what predict, loss and gradients apply from now on
    watch = GradientWatch(model, xs, ys, first_rows(cfg, n)) if grad_rms else None
    if on_start is not None:        # the data is loaded and fits the model
        start = {"train": n, "test": n_test}
        if watch is not None:
            start["grad_rms"] = watch.measure()
        on_start(start)
    if stopper is not None:
        on_epoch = stopper.watching(on_epoch)
    if watch is not None:
        on_epoch = watch.watching(on_epoch)
    if model.device == "cuda":
        from ..backends.cuda.launch import fit_on_gpu
        history = fit_on_gpu(model, cfg, xs, ys, xt, yt, on_epoch)
    else:
        history = _fit_on_cpu(model, cfg, xs, ys, xt, yt, n, n_test, on_epoch)
    if stopper is not None:
        stopper.restore(history)
    return history


class GradientWatch:
    """Each param's RMS gradient on one probe batch, the examples of fit's
    first update (the batch `check` measures at the start), measured again
    with the params of each epoch's end: a weight whose gradient stays orders
    of magnitude below the others' is not learning (vanishing gradients); an
    RMS that grows epoch by epoch is exploding. The probe runs a program of
    its own and restarts its dropout stream every time, so it uses the same
    masks at every epoch and leaves training's stream as it was."""

    def __init__(self, model, xs: dict, ys: dict, rows):
        self.model = model
        self.x = {k: v[rows] for k, v in xs.items()}
        self.y = {k: v[rows] for k, v in ys.items()}

    def measure(self) -> dict:
        """param -> RMS of d loss / d param on the probe batch, now."""
        prog = self.model._program("probe")
        prog.restart()
        with np.errstate(all="ignore"):
            roots = prog({**self.x, **self.y})
            g = prog.schedule.graph
            return {k: rms(roots[g.grads[k]]) for k in self.model.graph.params}

    def watching(self, on_epoch):
        def report(record):
            record["grad_rms"] = self.measure()
            if on_epoch is not None:
                on_epoch(record)
        return report


def rms(a) -> float:
    """sqrt(mean(a^2)), summed in float64; 0 for an empty array."""
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if np.size(a) else 0.0


class EarlyStop:
    """Watches each epoch's held-out loss: keeps a copy of the params of the
    best epoch so far, and marks the record after which `patience` epochs
    have passed without a lower one (a loss that is not finite never counts
    as lower)."""

    def __init__(self, model, patience: int):
        self.model, self.patience = model, patience
        self.best, self.best_epoch, self.params = float("inf"), 0, None

    def watching(self, on_epoch):
        def report(record):
            self.update(record)
            if on_epoch is not None:
                on_epoch(record)
        return report

    def update(self, record: dict) -> None:
        loss = record.get("test_loss", float("nan"))
        if loss < self.best:
            self.best, self.best_epoch, self.params = loss, record["epoch"], self.model.params
        elif record["epoch"] - self.best_epoch >= self.patience:
            record["stopped_early"] = True

    def restore(self, history: list) -> None:
        """The best epoch's params back in the model, and its record marked."""
        if self.params is None:
            return
        self.model.set_params(self.params)
        for r in history:
            if r["epoch"] == self.best_epoch:
                r["best"] = True


def _early_stop(model, cfg, n_test: int, given: bool):
    """An EarlyStop when the train block (or fit) asks for one; a clear error
    when there is no held-out data to watch."""
    if not cfg.early_stop:
        return None
    if n_test:
        return EarlyStop(model, cfg.early_stop)
    span = cfg.spans.get("early_stop")
    what = f"early_stop = {cfg.early_stop} watches the held-out loss, but this run holds " \
        "out no data"
    if span is None or given:
        raise DataError(what, file=model.file, hint="pass x_test and y_test to fit, or leave "
                                                    "early_stop out")
    split = 0 if cfg.split is None else cfg.split
    raise CompileError([Diagnostic(span, f"{what} (split = {split:g})",
                                   "set split = 0.2 in the train block to hold out a fifth "
                                   "of the data, or remove early_stop")], model.source)


def _fit_on_cpu(model, cfg, xs, ys, xt, yt, n, n_test, on_epoch) -> list:
    accumulate = cfg.accumulate
    if accumulate == 1:
        step = batch_runner(model._program("step", cfg), xs, ys)
    else:
        grads_prog = model._program("gradients")
        grads = batch_runner(grads_prog, xs, ys)
        update = model._program("update", cfg)
        acc = {k: model._storage[f"grad/{k}"] for k in model.graph.params}
        scaled = {k: np.empty_like(a) for k, a in acc.items()}   # w * grad, reused
    orders = epoch_orders(cfg, n)
    kind = accuracy_kind(model, ys)
    history = []
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            order = next(orders)
            total, seen = 0.0, 0
            batches = [order[s:s + cfg.batch] for s in range(0, n, cfg.batch)]
            with np.errstate(over="ignore", under="ignore", invalid="ignore",
                             divide="ignore"):     # as prog.run() does, once per epoch
                for group in range(0, len(batches), accumulate):
                    chunk = batches[group:group + accumulate]
                    if accumulate == 1:
                        total += step(chunk[0]) * len(chunk[0])
                    else:
                        weight_total = sum(len(b) for b in chunk)
                        for a in acc.values():
                            a.fill(0.0)
                        for b in chunk:
                            total += grads(b) * len(b)
                            roots = grads_prog.bound(len(b)).roots
                            g = grads_prog.schedule.graph
                            w = np.float32(len(b) / weight_total)
                            for k, a in acc.items():
                                np.multiply(roots[g.grads[k]], w, out=scaled[k])
                                a += scaled[k]
                        update.run(1)
                    seen += sum(len(b) for b in chunk)
            record = {"epoch": epoch, "loss": total / seen}
            _metrics(model, record, "train", xs, ys, kind, with_loss=False)
            if n_test:
                _metrics(model, record, "test", xt, yt, kind, with_loss=True)
            if close_epoch(record, t0, history, on_epoch):
                break
    except KeyboardInterrupt:
        raise Interrupted(history) from None
    return history


def first_rows(cfg, n: int) -> np.ndarray:
    """The rows of fit's first update: the first batch * accumulate of epoch
    1's order (accumulated mini-batches update as one batch of them all)."""
    return next(epoch_orders(cfg, n))[:cfg.batch * cfg.accumulate]


def epoch_orders(cfg, n: int):
    """Each epoch's order of the n training rows, one per next(): a fresh
    permutation from default_rng([seed, 1]), or 0..n-1 when shuffle is off.
    The CPU loop, the GPU loop and trace all draw from here."""
    rng = np.random.default_rng([cfg.seed, 1])
    while True:
        yield rng.permutation(n) if cfg.shuffle else np.arange(n)


def close_epoch(record: dict, t0: float, history: list, on_epoch) -> bool:
    """Flag a loss that is no longer finite, time the epoch, record and report
    it. True when training stops here (early stopping)."""
    if not np.isfinite(record["loss"]):
        record["diverged"] = True
    record["time"] = time.perf_counter() - t0
    history.append(record)
    if on_epoch is not None:
        on_epoch(record)
    return bool(record.get("stopped_early"))


def batch_runner(prog, xs, ys):
    """run(idx) -> the loss of one run of prog on rows idx of xs and ys, with
    each batch size's gathers and calls bound once. Floating-point warnings
    are the caller's to silence (fit does it around its loop)."""
    sources = {**xs, **ys}
    runners = {}

    def run(idx) -> float:
        r = runners.get(len(idx))
        if r is None:
            r = runners[len(idx)] = prog.rows_runner(len(idx), sources)
        return r(idx)
    return run


def _metrics(model, record, part, xs, ys, kind, with_loss):
    if kind is None and not with_loss:
        return
    feeds = dict(xs)
    if with_loss:
        feeds.update(ys)
    prog = model._program("evaluate" if with_loss else "predict")
    g = prog.schedule.graph
    n = len(next(iter(xs.values())))
    loss_sum, right = 0.0, 0
    out_name = kind[0] if kind else None
    chunk = rows_per_call(model.graph, n) if with_loss else 1024
    for s in range(0, n, chunk):
        roots = prog({k: v[s:s + chunk] for k, v in feeds.items()})
        m = min(chunk, n - s)
        if with_loss:
            loss_sum += float(roots[g.loss]) * m
        if kind:
            right += accuracy(roots[g.outputs[out_name]], next(iter(ys.values()))[s:s + m],
                              kind[1])
    if with_loss:
        record[f"{part}_loss"] = loss_sum / n
    if kind:
        record[f"{part}_accuracy"] = right / n
