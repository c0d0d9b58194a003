#!/usr/bin/env python
"""Training throughput on the CPU: nncompile against a hand-written numpy loop
and PyTorch eager, same network, same data, same initial weights, same run.

Networks (softmax cross-entropy, relu hidden layers, SGD with momentum 0.9):
  digits: 64-32-10 at batch 32 on 1797 synthetic digits-shaped rows
  mnist:  784-256-128-10 at batch 128 on 60000 synthetic MNIST-shaped rows

Each contender trains whole epochs over the same data, shuffled each epoch by
the same permutations (np.random.default_rng([seed, 1]), as nncompile's fit
does), last partial batch kept, reading the loss back after every step:
  nncompile_fit    Model.fit(x=, y=, epochs=E): what users run. Includes what
                   fit does besides the steps: building the step program
                   (fit starts each call with fresh optimizer state) and, per
                   epoch, the training-accuracy pass over all rows.
  nncompile_steps  the compiled step program run by the same batch loop as
                   fit (nncompile.train.loop.batch_runner), program built beforehand.
  numpy_loop       a hand-written numpy forward/backward/update with
                   preallocated buffers, np.matmul(..., out=) and in-place ops.
  numpy_loop_acc   numpy_loop plus what fit reports besides the loss: after
                   each epoch, the accuracy on every training row (a
                   hand-written forward pass in chunks of 1024 rows, as fit's).
                   The like-for-like baseline of nncompile_fit.
  torch_eager      nn.Sequential(Linear, ReLU, ...), nn.CrossEntropyLoss,
                   torch.optim.SGD(momentum=0.9), loss.item() every step.

Before timing, the three are checked to compute the same thing: a few steps
from the same weights on the same batches give the same losses and weights
within float32 tolerance (relative 1e-4; the script exits 1 otherwise).

Timing: one warm-up run of each, then --repeats rounds with the contenders
interleaved and their order rotated each round; samples/s from the median
run, and from the best (least disturbed) run beside it.
numpy's BLAS threads are read with threadpoolctl and torch gets the same
number. This machine may be shared: before each timed run the script waits
for other work to stop (bench_compile.wait_quiet) and a run during which
other processes used more than FOREIGN_MAX cores is redone; each run's
foreign load is recorded in the JSON.

--profile times nncompile's step call by call (grouped by kind) against fit's
per-batch wrapper and the hand-written step; no torch needed for that.

Run from the repository root in the bench environment (bench/README.md):
    bench/.venv/bin/python bench/bench_mlp_cpu.py [--quick] [--repeats N]
    python bench/bench_mlp_cpu.py --profile
Writes bench/results/mlp_cpu.json (or --out; --profile: mlp_cpu_profile.json)
and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import nncompile  # noqa: E402
from nncompile.train import loop as nnloop  # noqa: E402

from bench_compile import ForeignLoad, machine_info, wait_quiet  # noqa: E402

F32 = np.float32
MOMENTUM = 0.9
SEED = 0                    # the model's seed: initial weights and shuffling

NETS = {
    "digits_64_32_10": dict(sizes=(64, 32, 10), batch=32, rows=1797, lr=0.05, epochs=20),
    "mnist_784_256_128_10": dict(sizes=(784, 256, 128, 10), batch=128, rows=60000, lr=0.01,
                                 epochs=1),
}
CONTENDERS = ("nncompile_fit", "nncompile_steps", "numpy_loop", "numpy_loop_acc", "torch_eager")
FOREIGN_MAX = 0.2       # cores of other work tolerated during a timed run
MAX_ATTEMPTS = 4


# ---------------------------------------------------------------- the model and data

def nn_source(name: str, sizes, batch: int, lr: float) -> str:
    lines = [f"model {name}", f"input x[{sizes[0]}]", f"target y[{sizes[-1]}]"]
    prev = "x"
    for k, width in enumerate(sizes[1:-1], 1):
        lines.append(f"h{k} = dense({prev}, {width}, relu)")
        prev = f"h{k}"
    lines += [f"logits = dense({prev}, {sizes[-1]})", "output p = softmax(logits)",
              "loss cross_entropy(logits, y)",
              "train {", f"  optimizer = sgd(lr = {lr}, momentum = {MOMENTUM})",
              f"  batch = {batch}", "  epochs = 1", f"  seed = {SEED}", "}"]
    return "\n".join(lines) + "\n"


def layer_names(sizes):
    return [f"h{k}" for k in range(1, len(sizes) - 1)] + ["logits"]


def synthetic(rows: int, n_in: int, n_out: int, seed: int = 1234):
    """Standardised-looking inputs and one-hot labels from a random linear
    teacher (so the loss goes down, as on real data)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n_in), dtype=F32)
    teacher = rng.standard_normal((n_in, n_out), dtype=F32)
    labels = np.argmax(x @ teacher, axis=1)
    y = np.zeros((rows, n_out), F32)
    y[np.arange(rows), labels] = 1.0
    return x, y, labels.astype(np.int64)


def epoch_orders(n: int, epochs: int, shuffle: bool = True):
    """The permutations nncompile's fit draws (train/loop.py)."""
    rng = np.random.default_rng([SEED, 1])
    return [rng.permutation(n) if shuffle else np.arange(n) for _ in range(epochs)]


# ---------------------------------------------------------------- hand-written numpy

class NumpyMLP:
    """The network written by hand: preallocated buffers per batch size,
    np.matmul(..., out=), in-place elementwise ops, ~2 numpy calls per
    elementwise step; the same loss (mean softmax cross-entropy) and the
    same momentum rule (v = 0.9 v + g; w -= lr v) as nncompile and PyTorch."""

    def __init__(self, params: dict, sizes, lr: float):
        self.names = layer_names(sizes)
        self.sizes = sizes
        self.lr = np.array(lr, F32)
        self.mom = np.array(MOMENTUM, F32)
        self.zero = np.array(0.0, F32)
        self.W = [np.array(params[f"{n}.weight"], F32) for n in self.names]
        self.b = [np.array(params[f"{n}.bias"], F32) for n in self.names]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.gW = [np.zeros_like(w) for w in self.W]
        self.gb = [np.zeros_like(b) for b in self.b]
        self.tW = [np.zeros_like(w) for w in self.W]
        self.tb = [np.zeros_like(b) for b in self.b]
        self._bufs = {}

    def reset(self, params: dict):
        for k, n in enumerate(self.names):
            np.copyto(self.W[k], params[f"{n}.weight"])
            np.copyto(self.b[k], params[f"{n}.bias"])
            self.vW[k].fill(0.0)
            self.vb[k].fill(0.0)

    def accuracy(self, X, labels, chunk: int = 1024) -> float:
        """The share of rows whose largest logit is the label's: a forward pass
        in chunks of 1024 rows (as fit's accuracy pass), preallocated buffers."""
        right = 0
        for s in range(0, len(X), chunk):
            x = X[s:s + chunk]
            a = self._buffers(len(x))["a"]
            h = x
            for k in range(len(self.W)):
                np.matmul(h, self.W[k], out=a[k])
                np.add(a[k], self.b[k], out=a[k])
                if k < len(self.W) - 1:
                    np.maximum(a[k], self.zero, out=a[k])
                h = a[k]
            right += int(np.count_nonzero(np.argmax(h, axis=1) == labels[s:s + chunk]))
        return right / len(X)

    def params(self) -> dict:
        out = {}
        for k, n in enumerate(self.names):
            out[f"{n}.weight"], out[f"{n}.bias"] = self.W[k].copy(), self.b[k].copy()
        return out

    def _buffers(self, B: int):
        bufs = self._bufs.get(B)
        if bufs is None:
            s = self.sizes
            bufs = self._bufs[B] = dict(
                x=np.zeros((B, s[0]), F32), y=np.zeros((B, s[-1]), F32),
                a=[np.zeros((B, w), F32) for w in s[1:]],       # layer outputs
                d=[np.zeros((B, w), F32) for w in s[1:]],       # their gradients
                mask=[np.zeros((B, w), F32) for w in s[1:-1]],
                m=np.zeros((B, 1), F32), s=np.zeros((B, 1), F32),
                ls=np.zeros((B, s[-1]), F32), p=np.zeros((B, s[-1]), F32),
                inv=np.array(1.0 / B, F32))
        return bufs

    def step(self, X, Y, idx) -> float:
        B = len(idx)
        f = self._buffers(B)
        np.take(X, idx, axis=0, out=f["x"])
        np.take(Y, idx, axis=0, out=f["y"])
        L = len(self.W)
        a, d = f["a"], f["d"]
        # forward
        h = f["x"]
        for k in range(L):
            np.matmul(h, self.W[k], out=a[k])
            np.add(a[k], self.b[k], out=a[k])
            if k < L - 1:
                np.maximum(a[k], self.zero, out=a[k])
            h = a[k]
        # log_softmax (max-shifted), softmax, loss
        z, ls, p, m, s = a[-1], f["ls"], f["p"], f["m"], f["s"]
        np.maximum.reduce(z, axis=1, keepdims=True, out=m)
        np.subtract(z, m, out=ls)
        np.exp(ls, out=p)
        np.add.reduce(p, axis=1, keepdims=True, out=s)
        np.divide(p, s, out=p)
        np.log(s, out=s)
        np.subtract(ls, s, out=ls)
        loss = -float(np.vdot(f["y"], ls)) / B
        # backward: d logits = (softmax - y) / B
        np.subtract(p, f["y"], out=d[-1])
        np.multiply(d[-1], f["inv"], out=d[-1])
        for k in range(L - 1, -1, -1):
            below = a[k - 1] if k > 0 else f["x"]
            np.matmul(below.T, d[k], out=self.gW[k])
            np.add.reduce(d[k], axis=0, out=self.gb[k])
            if k > 0:
                np.matmul(d[k], self.W[k].T, out=d[k - 1])
                np.greater(below, self.zero, out=f["mask"][k - 1])
                np.multiply(d[k - 1], f["mask"][k - 1], out=d[k - 1])
        # SGD with momentum
        for P, V, G, T in ((self.W, self.vW, self.gW, self.tW), (self.b, self.vb, self.gb, self.tb)):
            for k in range(L):
                np.multiply(V[k], self.mom, out=V[k])
                np.add(V[k], G[k], out=V[k])
                np.multiply(V[k], self.lr, out=T[k])
                np.subtract(P[k], T[k], out=P[k])
        return loss


def numpy_epochs(net: NumpyMLP, X, Y, orders, batch: int, labels=None) -> list:
    """Whole epochs of net.step; with labels, also what fit reports besides the
    loss: after each epoch, the accuracy on every training row."""
    losses = []
    for order in orders:
        total = 0.0
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            total += net.step(X, Y, idx) * len(idx)
        losses.append(total / len(order))
        if labels is not None:
            net.accuracy(X, labels)
    return losses


# ---------------------------------------------------------------- nncompile

def nncompile_steps(model, X, Y, orders, batch: int, per_step=None) -> list:
    """fit's batch loop over the step program (built by the caller)."""
    step = nnloop.batch_runner(model._program("step", model.train_config), {"x": X}, {"y": Y})
    losses = []
    for order in orders:
        total = 0.0
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for s in range(0, len(order), batch):
                idx = order[s:s + batch]
                loss = step(idx)
                if per_step is not None:
                    per_step.append(loss)
                total += loss * len(idx)
        losses.append(total / len(order))
    return losses


# ---------------------------------------------------------------- PyTorch

class TorchMLP:
    def __init__(self, torch, params: dict, sizes, lr: float):
        self.torch = torch
        nn = torch.nn
        self.names = layer_names(sizes)
        layers = []
        for k in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[k], sizes[k + 1]))
            if k < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.model = nn.Sequential(*layers)
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        self.lr = lr
        self.loss_fn = nn.CrossEntropyLoss()
        self.reset(params)

    def reset(self, params: dict):
        torch = self.torch
        with torch.no_grad():
            for lin, n in zip(self.linears, self.names):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(params[f"{n}.weight"].T)))
                lin.bias.copy_(torch.from_numpy(params[f"{n}.bias"]))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=MOMENTUM)

    def params(self) -> dict:
        out = {}
        for lin, n in zip(self.linears, self.names):
            out[f"{n}.weight"] = lin.weight.detach().numpy().T.copy()
            out[f"{n}.bias"] = lin.bias.detach().numpy().copy()
        return out

    def epochs(self, Xt, Lt, orders, batch: int, per_step=None) -> list:
        torch = self.torch
        model, opt, loss_fn = self.model, self.opt, self.loss_fn
        losses = []
        for order in orders:
            order_t = torch.from_numpy(order)
            total = 0.0
            for s in range(0, len(order), batch):
                idx = order_t[s:s + batch]
                xb, yb = Xt[idx], Lt[idx]
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                v = loss.item()
                if per_step is not None:
                    per_step.append(v)
                total += v * len(idx)
            losses.append(total / len(order))
        return losses


# ---------------------------------------------------------------- agreement check

def agreement(model, init, net_np, net_t, torch, X, Y, labels, batch, steps=5) -> dict:
    """`steps` steps from the same weights on the same (unshuffled) batches."""
    n = batch * steps
    Xs, Ys = X[:n], Y[:n]
    orders = epoch_orders(n, 1, shuffle=False)
    # nncompile: per-step losses from the step program, then fit on the same rows
    model.set_params(init)
    model._reset_optimizer()
    nn_losses = []
    nncompile_steps(model, Xs, Ys, orders, batch, per_step=nn_losses)
    nn_params = model.params
    model.set_params(init)
    hist = model.fit(x=Xs, y=Ys, epochs=1, shuffle=False)
    fit_params = model.params
    # hand-written numpy
    net_np.reset(init)
    np_losses = []
    for s in range(0, n, batch):
        np_losses.append(net_np.step(Xs, Ys, orders[0][s:s + batch]))
    np_params = net_np.params()
    # PyTorch
    net_t.reset(init)
    t_losses = []
    net_t.epochs(torch.from_numpy(Xs), torch.from_numpy(labels[:n]), orders, batch,
                 per_step=t_losses)
    t_params = net_t.params()

    def maxrel(a, b):
        return float(max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b)))

    def maxdiff(p, q):
        return float(max(np.max(np.abs(p[k] - q[k])) / max(float(np.max(np.abs(q[k]))), 1e-12)
                         for k in q))

    out = {
        "steps": steps, "batch": batch,
        "losses": {"nncompile": nn_losses, "numpy_loop": np_losses, "torch_eager": t_losses},
        "nncompile_fit_mean_loss": hist[0]["loss"],
        "max_rel_loss_diff_vs_numpy": {"nncompile": maxrel(nn_losses, np_losses),
                                       "torch_eager": maxrel(t_losses, np_losses),
                                       "nncompile_fit_mean": maxrel([hist[0]["loss"]],
                                                                    [float(np.mean(np_losses))])},
        # max |a - b| / max |b| per param, worst param
        "max_rel_param_diff_vs_numpy": {"nncompile": maxdiff(nn_params, np_params),
                                        "nncompile_fit": maxdiff(fit_params, np_params),
                                        "torch_eager": maxdiff(t_params, np_params)},
        "fit_equals_steps_bitwise": all(np.array_equal(fit_params[k], nn_params[k])
                                        for k in nn_params),
    }
    tol = 1e-4
    worst = max(list(out["max_rel_loss_diff_vs_numpy"].values()) +
                list(out["max_rel_param_diff_vs_numpy"].values()))
    out["tolerance"] = tol
    out["agree"] = bool(worst < tol)
    return out


# ---------------------------------------------------------------- timing

def blas_threads() -> dict:
    """Thread pools in this process (numpy's BLAS, torch's OpenMP/MKL)."""
    try:
        from threadpoolctl import threadpool_info
        return [{k: d.get(k) for k in ("user_api", "internal_api", "num_threads", "version",
                                         "filepath")} for d in threadpool_info()]
    except ImportError:
        return [{"note": "threadpoolctl not installed", "cpu_count": os.cpu_count()}]


def numpy_threads() -> int:
    try:
        from threadpoolctl import threadpool_info
        for d in threadpool_info():
            if d.get("user_api") == "blas" and "numpy" in (d.get("filepath") or "") + \
                    (d.get("prefix") or "") or "scipy_openblas" in (d.get("filepath") or ""):
                return int(d["num_threads"])
        for d in threadpool_info():
            if d.get("internal_api") == "openblas":
                return int(d["num_threads"])
    except ImportError:
        pass
    return int(os.environ.get("OPENBLAS_NUM_THREADS", os.cpu_count() or 1))


def bench_net(key: str, spec: dict, torch, repeats: int, quick: bool) -> dict:
    sizes, batch, lr = spec["sizes"], spec["batch"], spec["lr"]
    rows = spec["rows"] if not quick else min(spec["rows"], 6000)
    epochs = spec["epochs"]
    X, Y, labels = synthetic(rows, sizes[0], sizes[-1])
    model = nncompile.compile_source(nn_source(key, sizes, batch, lr), device="cpu", quiet=True)
    init = model.params
    net_np = NumpyMLP(init, sizes, lr)
    net_t = TorchMLP(torch, init, sizes, lr)
    Xt, Lt = torch.from_numpy(X), torch.from_numpy(labels)

    check = agreement(model, init, net_np, net_t, torch, X, Y, labels, batch)
    print(f"  agreement over {check['steps']} steps: "
          f"{'OK' if check['agree'] else 'MISMATCH'} "
          f"(loss {check['max_rel_loss_diff_vs_numpy']}, "
          f"params {check['max_rel_param_diff_vs_numpy']})", flush=True)

    orders = epoch_orders(rows, epochs)

    def run_fit():
        model.set_params(init)
        t = time.perf_counter()
        h = model.fit(x=X, y=Y, epochs=epochs)
        return time.perf_counter() - t, [r["loss"] for r in h]

    def run_steps():
        model.set_params(init)
        model._reset_optimizer()
        prog = model._program("step", model.train_config)       # built before timing
        prog.bound(batch)
        if rows % batch:
            prog.bound(rows % batch)
        t = time.perf_counter()
        losses = nncompile_steps(model, X, Y, orders, batch)
        return time.perf_counter() - t, losses

    def run_numpy():
        net_np.reset(init)
        t = time.perf_counter()
        losses = numpy_epochs(net_np, X, Y, orders, batch)
        return time.perf_counter() - t, losses

    def run_numpy_acc():
        net_np.reset(init)
        t = time.perf_counter()
        losses = numpy_epochs(net_np, X, Y, orders, batch, labels)
        return time.perf_counter() - t, losses

    def run_torch():
        net_t.reset(init)
        t = time.perf_counter()
        losses = net_t.epochs(Xt, Lt, orders, batch)
        return time.perf_counter() - t, losses

    runs = {"nncompile_fit": run_fit, "nncompile_steps": run_steps,
            "numpy_loop": run_numpy, "numpy_loop_acc": run_numpy_acc, "torch_eager": run_torch}
    for name in CONTENDERS:      # warm-up: buffers, caches, thread pools
        runs[name]()
    times = {name: [] for name in CONTENDERS}
    loads = {name: [] for name in CONTENDERS}
    redone = 0
    final = {}
    for r in range(repeats):     # interleaved, rotating the order each repeat
        k = r % len(CONTENDERS)
        names = CONTENDERS[k:] + CONTENDERS[:k]
        for name in names:
            for attempt in range(MAX_ATTEMPTS):   # redo a run that overlapped other work
                wait_quiet(window=0.5)
                with ForeignLoad() as load:
                    dt, losses = runs[name]()
                if load.cores is None or load.cores < FOREIGN_MAX:
                    break
                redone += 1
            times[name].append(dt)
            loads[name].append(load.cores)
            final[name] = losses[-1]
    samples = rows * epochs
    med = {k: statistics.median(v) for k, v in times.items()}
    sps = {k: samples / v for k, v in med.items()}
    best = {k: samples / min(v) for k, v in times.items()}     # least disturbed run

    # what fit does besides the steps, timed on its own
    extra = {}
    t = time.perf_counter()
    for _ in range(3):
        model._reset_optimizer()
        model._program("step", model.train_config).bound(batch)
    extra["step_program_build_s"] = (time.perf_counter() - t) / 3
    kind = nnloop.accuracy_kind(model, {"y": Y})
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        nnloop._metrics(model, {}, "train", {"x": X}, {"y": Y}, kind, with_loss=False)
        ts.append(time.perf_counter() - t)
    extra["accuracy_pass_s_per_epoch"] = statistics.median(ts)
    extra["fit_minus_steps_s"] = med["nncompile_fit"] - med["nncompile_steps"]

    step = model._program("step", model.train_config)
    res = {
        "network": "-".join(map(str, sizes)), "batch": batch, "rows": rows,
        "epochs_per_repeat": epochs, "samples_per_repeat": samples, "repeats": repeats,
        "lr": lr, "momentum": MOMENTUM,
        "numpy_calls_per_step": {"nncompile": len(step.bound(batch).calls) + 2,
                                 "numpy_loop": count_numpy_calls(len(sizes) - 1)},
        "agreement": check,
        "median_s": med, "all_s": times,
        "foreign_load_cores": loads, "runs_redone_for_foreign_load": redone,
        "samples_per_s": sps,
        "ratio_vs_numpy_loop": {k: sps[k] / sps["numpy_loop"] for k in sps},
        "fit_vs_numpy_loop_acc": sps["nncompile_fit"] / sps["numpy_loop_acc"],
        "best_fit_vs_numpy_loop_acc": best["nncompile_fit"] / best["numpy_loop_acc"],
        "ratio_vs_torch_eager": {k: sps[k] / sps["torch_eager"] for k in sps},
        "best_samples_per_s": best,
        "best_ratio_vs_numpy_loop": {k: best[k] / best["numpy_loop"] for k in best},
        "best_ratio_vs_torch_eager": {k: best[k] / best["torch_eager"] for k in best},
        "final_epoch_loss": final,
        "fit_overheads": extra,
    }
    return res


def count_numpy_calls(L: int) -> int:
    """numpy calls per step of NumpyMLP.step (2 gathers + forward + loss +
    backward + update), for L dense layers."""
    forward = 3 * (L - 1) + 2
    loss = 7 + 1
    backward = 2 + 2 * L + 3 * (L - 1)
    update = 4 * 2 * L
    return 2 + forward + loss + backward + update


# ---------------------------------------------------------------- profile

def _call_kind(call) -> str:
    f = getattr(call, "func", call)
    name = getattr(f, "__name__", type(f).__name__)
    if name == "reduce":
        name = f"{f.__self__.__name__}.reduce" if hasattr(f, "__self__") else "reduce"
    arrays = [a for a in getattr(call, "args", ()) if isinstance(a, np.ndarray)]
    out = (getattr(call, "keywords", None) or {}).get("out")
    if name == "matmul":
        return "matmul"
    if out is not None and out.ndim == 0 or name == "fill":
        return "0-d scalar op"
    if "reduce" in name:
        return "reduction"
    if arrays or out is not None:
        return "elementwise"
    return "other"


def profile(key: str, spec: dict, steps: int) -> dict:
    """Where a step's time goes: each bound numpy call of nncompile's step timed
    in sequence over `steps` steps on real batches, grouped by kind, against
    fit's per-batch runner (train/loop.py batch_runner) and the hand-written step."""
    sizes, batch, lr = spec["sizes"], spec["batch"], spec["lr"]
    rows = batch * 50
    X, Y, _ = synthetic(rows, sizes[0], sizes[-1])
    model = nncompile.compile_source(nn_source(key, sizes, batch, lr), device="cpu", quiet=True)
    net = NumpyMLP(model.params, sizes, lr)
    step = model._program("step", model.train_config)
    bound = step.bound(batch)
    feeds = step.feeds(batch)
    batches = [np.arange(k * batch, (k + 1) * batch) for k in range(rows // batch)]
    per_call = np.zeros(len(bound.calls))
    pc = time.perf_counter
    wait_quiet(window=0.5)
    with ForeignLoad() as load:
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for it in range(steps):
                idx = batches[it % len(batches)]
                np.take(X, idx, axis=0, out=feeds["x"])
                np.take(Y, idx, axis=0, out=feeds["y"])
                for k, call in enumerate(bound.calls):
                    t = pc()
                    call()
                    per_call[k] += pc() - t
        per_call *= 1e6 / steps

        def per_step(fn):
            best = float("inf")
            for _ in range(5):
                t = pc()
                for it in range(steps // 5):
                    fn(batches[it % len(batches)])
                best = min(best, (pc() - t) / (steps // 5) * 1e6)
            return best
        run_us = per_step(lambda idx: step.run(batch))
        loop_us = per_step(nnloop.batch_runner(step, {"x": X}, {"y": Y}))
        hand_us = per_step(lambda idx: net.step(X, Y, idx))
    groups = {}
    for call, us in zip(bound.calls, per_call):
        k = _call_kind(call)
        n, t = groups.get(k, (0, 0.0))
        groups[k] = (n + 1, t + us)
    table = []
    for call, us in zip(bound.calls, per_call):
        f = getattr(call, "func", call)
        name = getattr(f, "__name__", type(f).__name__)
        shapes = [list(a.shape) for a in getattr(call, "args", ()) if isinstance(a, np.ndarray)]
        table.append({"us": round(float(us), 2), "call": name, "shapes": shapes,
                      "kind": _call_kind(call)})
    return {"network": "-".join(map(str, sizes)), "batch": batch, "steps": steps,
            "foreign_load_cores": load.cores,
            "nncompile_calls_per_step": len(bound.calls),
            "handwritten_calls_per_step": count_numpy_calls(len(sizes) - 1),
            "us_per_step": {"nncompile_sum_of_calls": float(per_call.sum()),
                            "nncompile_run": run_us, "nncompile_loop_run": loop_us,
                            "handwritten_step": hand_us},
            "by_kind": {k: {"calls": n, "us": round(t, 2)} for k, (n, t) in groups.items()},
            "calls": table}


def print_profile(p: dict) -> None:
    u = p["us_per_step"]
    print(f"  per step: hand-written {u['handwritten_step']:.1f} us "
          f"({p['handwritten_calls_per_step']} numpy calls); nncompile batch_runner "
          f"{u['nncompile_loop_run']:.1f} us = run() {u['nncompile_run']:.1f} us "
          f"({p['nncompile_calls_per_step']} calls, {u['nncompile_sum_of_calls']:.1f} us "
          f"timed one by one) + the runner's feeding {u['nncompile_loop_run'] - u['nncompile_run']:.1f} us"
          f"   [foreign load {p['foreign_load_cores'] or 0:.2f} cores]")
    for k, v in sorted(p["by_kind"].items(), key=lambda kv: -kv[1]["us"]):
        print(f"    {k:14s} {v['calls']:3d} calls {v['us']:9.1f} us")
    for c in p["calls"]:
        print(f"      {c['us']:9.2f} us  {c['call']:10s} {c['shapes']}")


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer rows and repeats (a smoke run)")
    ap.add_argument("--only", choices=list(NETS), action="append")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "mlp_cpu.json"))
    ap.add_argument("--profile", action="store_true",
                    help="only profile nncompile's step call by call (no torch needed); "
                         "writes bench/results/mlp_cpu_profile.json")
    args = ap.parse_args(argv)
    if args.profile:
        out = {"machine": machine_info(), "networks": {}}
        for key in args.only or NETS:
            steps = 3000 if NETS[key]["batch"] <= 32 else 200
            print(f"{key}:", flush=True)
            out["networks"][key] = p = profile(key, NETS[key], steps)
            print_profile(p)
        path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "mlp_cpu_profile.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"wrote {path}")
        return 0
    import torch
    repeats = 2 if args.quick else args.repeats
    threads = numpy_threads()
    torch.set_num_threads(threads)
    info = machine_info()
    info["torch"] = torch.__version__
    info["numpy_blas_threads"] = threads
    info["torch_threads"] = torch.get_num_threads()
    info["thread_pools"] = blas_threads()
    print(f"{info['cpu']} ({info['cpus']} CPUs), python {info['python']}, numpy "
          f"{info['numpy']}, torch {info['torch']}, threads numpy={threads} "
          f"torch={info['torch_threads']}", flush=True)
    results = {"machine": info, "quick": args.quick, "networks": {}}
    for key in args.only or NETS:
        print(f"{key}:", flush=True)
        r = bench_net(key, NETS[key], torch, repeats, args.quick)
        results["networks"][key] = r
        for name in CONTENDERS:
            print(f"  {name:16s} {r['samples_per_s'][name]:12,.0f} samples/s   "
                  f"x{r['ratio_vs_numpy_loop'][name]:.2f} numpy loop   "
                  f"x{r['ratio_vs_torch_eager'][name]:.2f} torch   (best run: "
                  f"{r['best_samples_per_s'][name]:,.0f}, x{r['best_ratio_vs_numpy_loop'][name]:.2f}"
                  f", x{r['best_ratio_vs_torch_eager'][name]:.2f})", flush=True)
        o = r["fit_overheads"]
        print(f"  fit vs numpy_loop_acc (the same work): x{r['fit_vs_numpy_loop_acc']:.2f} "
              f"(best runs x{r['best_fit_vs_numpy_loop_acc']:.2f})", flush=True)
        print(f"  fit - steps: {o['fit_minus_steps_s'] * 1e3:.1f} ms per repeat "
              f"(step program build {o['step_program_build_s'] * 1e3:.1f} ms, accuracy pass "
              f"{o['accuracy_pass_s_per_epoch'] * 1e3:.1f} ms per epoch)", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")
    ok = all(r["agreement"]["agree"] for r in results["networks"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
