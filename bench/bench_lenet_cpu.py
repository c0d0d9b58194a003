#!/usr/bin/env python
"""LeNet-style CNN training throughput on the CPU: nncompile against PyTorch
eager, same network, same data, same initial weights, same batches, same run.

Network: conv 5x5, 6 filters -> relu -> maxpool 2 -> conv 5x5, 16 filters ->
relu -> maxpool 2 -> dense 120 relu -> dense 84 relu -> dense 10, softmax
cross-entropy, on 28x28x1 inputs, batch 64, SGD lr 0.05 momentum 0.9.

Data: ROWS synthetic MNIST-shaped examples (a class-dependent bright bar plus
noise, in [0, 1]), one-hot targets; every contender trains whole epochs over
the same permutations (np.random.default_rng([seed, 1]), as fit draws them),
the last partial batch kept, reading the loss back after every step:
  nncompile_steps  the compiled training step run by fit's own batch loop
                   (nncompile.train.loop.batch_runner); the program is built beforehand
  nncompile_fit    Model.fit(x=, y=, epochs=E): also builds the step program
                   and runs the per-epoch training-accuracy pass over all rows
  torch_eager      nn.Sequential(Conv2d, ReLU, MaxPool2d, ..., Linear),
                   nn.CrossEntropyLoss, torch.optim.SGD(momentum=0.9),
                   zero_grad/forward/backward/step and loss.item() each step
The initial weights are nncompile's (its `he`/`xavier` init from the seed),
copied into the PyTorch modules. Before timing, a few steps from the same
weights on the same batches must give the same losses and weights (within
float32 tolerance), or the script stops.

Timing: a warm-up run of each, then REPEATS rounds, the contenders interleaved
and their order rotated each round; samples/s from the median round. numpy's
BLAS and torch use the same number of threads (--threads, default: all CPUs).
On a shared machine (bench/README.md) each run first waits for the other work
to go quiet and is redone (up to 3 times) when other work used more than 0.2
core during it; the foreign load of every kept run is in the JSON.

Run from the repository root with the PyTorch venv:
    bench/.venv/bin/python bench/bench_lenet_cpu.py [--quick] [--repeats N] [--threads N]
Writes bench/results/lenet_cpu.json (or --out) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=6400, help="training examples (default 6400)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for numpy's BLAS and for torch (default: all CPUs)")
    p.add_argument("--quick", action="store_true", help="1280 rows, 3 repeats")
    p.add_argument("--out", default=os.path.join(HERE, "results", "lenet_cpu.json"))
    return p.parse_args()


ARGS = parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)     # before numpy and torch load their pools

sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import nncompile  # noqa: E402
from nncompile.train import loop as nnloop  # noqa: E402

from bench_compile import ForeignLoad, wait_quiet  # noqa: E402
from bench_mlp_cpu import nncompile_steps as mlp_steps  # noqa: E402

F32 = np.float32
BATCH, LR, MOMENTUM, SEED = 64, 0.05, 0.9, 0
SOURCE = f"""model lenet_bench
input  x[1, 28, 28]
target y[10]
c1 = conv2d(x, 6, 5, relu)
p1 = maxpool(c1, 2)
c2 = conv2d(p1, 16, 5, relu)
p2 = maxpool(c2, 2)
h1 = dense(flatten(p2), 120, relu)
h2 = dense(h1, 84, relu)
logits = dense(h2, 10)
output p = softmax(logits)
loss cross_entropy(logits, y)
train {{
  optimizer = sgd(lr = {LR}, momentum = {MOMENTUM})
  batch = {BATCH}
  seed = {SEED}
}}
"""
CONVS, DENSES = ("c1", "c2"), ("h1", "h2", "logits")


def synthetic(rows: int, seed: int = 1234):
    """MNIST-shaped examples: noise plus a bright bar whose row depends on the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, rows)
    x = rng.random((rows, 1, 28, 28), dtype=F32) * 0.3
    for c in range(10):
        x[labels == c, 0, 2 * c + 3:2 * c + 7, 4:24] += 0.7
    y = np.eye(10, dtype=F32)[labels]
    return x, y, labels


def epoch_orders(n: int, epochs: int) -> list:
    rng = np.random.default_rng([SEED, 1])
    return [rng.permutation(n) for _ in range(epochs)]


# ---------------------------------------------------------------- the contenders

def nncompile_steps(model, x, y, orders) -> list:
    """fit's batch loop over the compiled step program (bench_mlp_cpu's)."""
    return mlp_steps(model, x, y, orders, BATCH)


class TorchLeNet:
    def __init__(self, params: dict):
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
        self.layers = dict(zip(CONVS + DENSES, [self.model[i] for i in (0, 3, 7, 9, 11)]))
        self.loss = nn.CrossEntropyLoss()
        self.reset(params)

    def reset(self, params: dict):
        with torch.no_grad():
            for name, layer in self.layers.items():
                w, b = params[f"{name}.weight"], params[f"{name}.bias"]
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(
                    w if name in CONVS else w.T)))
                layer.bias.copy_(torch.from_numpy(b.reshape(-1)))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)

    def params(self) -> dict:
        out = {}
        for name, layer in self.layers.items():
            w = layer.weight.detach().numpy()
            out[f"{name}.weight"] = w.copy() if name in CONVS else w.T.copy()
            b = layer.bias.detach().numpy()
            out[f"{name}.bias"] = b.reshape(-1, 1, 1).copy() if name in CONVS else b.copy()
        return out

    def epochs(self, xt, lt, orders) -> list:
        losses = []
        for order in orders:
            total = 0.0
            order_t = torch.from_numpy(order)
            for s in range(0, len(order), BATCH):
                idx = order_t[s:s + BATCH]
                self.opt.zero_grad()
                loss = self.loss(self.model(xt[idx]), lt[idx])
                loss.backward()
                self.opt.step()
                total += loss.item() * len(idx)
            losses.append(total / len(order))
        return losses


# ---------------------------------------------------------------- agreement

def agreement(model, init, net, x, y, labels, steps=8) -> dict:
    """A few steps of each from the same weights on the same batches."""
    n = steps * BATCH
    model.set_params(init)
    model._reset_optimizer()
    step = nnloop.batch_runner(model._program("step", model.train_config), {"x": x}, {"y": y})
    nn_losses = [step(np.arange(s, s + BATCH)) for s in range(0, n, BATCH)]
    net.reset(init)
    t_losses = []
    xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
    for s in range(0, n, BATCH):
        net.opt.zero_grad()
        loss = net.loss(net.model(xt[s:s + BATCH]), lt[s:s + BATCH])
        loss.backward()
        net.opt.step()
        t_losses.append(loss.item())
    loss_diff = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(nn_losses, t_losses))
    tp, mp = net.params(), model.params
    param_diff = max(float(np.max(np.abs(mp[k] - tp[k])) / (np.max(np.abs(tp[k])) + 1e-12))
                     for k in tp)
    return {"steps": steps, "losses_nncompile": nn_losses, "losses_torch": t_losses,
            "max_rel_loss_diff": loss_diff, "max_rel_param_diff": param_diff,
            "agree": loss_diff < 1e-4 and param_diff < 1e-4}


# ---------------------------------------------------------------- the run

def machine_info() -> dict:
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--", "nncompile"]).strip()
    return {"lscpu_head": run(["lscpu"]).splitlines()[:20], "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "threads": ARGS.threads,
            "torch_threads": torch.get_num_threads(),
            "nncompile_commit": commit + ("+local changes" if dirty else "")}


def main():
    rows, repeats = (1280, 3) if ARGS.quick else (ARGS.rows, ARGS.repeats)
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(SEED)
    info = machine_info()
    print(f"python {info['python']}, numpy {info['numpy']}, torch {info['torch']}, "
          f"threads {ARGS.threads}, {rows} rows x {ARGS.epochs} epoch(s), batch {BATCH}",
          flush=True)
    x, y, labels = synthetic(rows)
    model = nncompile.compile_source(SOURCE, device="cpu", file="lenet_bench.nn", quiet=True)
    init = model.params
    net = TorchLeNet(init)
    check = agreement(model, init, net, x, y, labels)
    print(f"agreement over {check['steps']} steps: {'OK' if check['agree'] else 'MISMATCH'} "
          f"(loss {check['max_rel_loss_diff']:.1e}, params {check['max_rel_param_diff']:.1e})",
          flush=True)
    if not check["agree"]:
        sys.exit("nncompile and PyTorch disagree; not timing")

    orders = epoch_orders(rows, ARGS.epochs)
    xt, lt = torch.from_numpy(x), torch.from_numpy(labels)

    def run_steps():
        model.set_params(init)
        model._reset_optimizer()
        model._program("step", model.train_config).bound(BATCH)    # built before timing
        t = time.perf_counter()
        losses = nncompile_steps(model, x, y, orders)
        return time.perf_counter() - t, losses

    def run_fit():
        model.set_params(init)
        t = time.perf_counter()
        history = model.fit(x=x, y=y, epochs=ARGS.epochs)
        return time.perf_counter() - t, [r["loss"] for r in history]

    def run_torch():
        net.reset(init)
        t = time.perf_counter()
        losses = net.epochs(xt, lt, orders)
        return time.perf_counter() - t, losses

    runs = {"nncompile_steps": run_steps, "nncompile_fit": run_fit, "torch_eager": run_torch}
    names = list(runs)
    for name in names:           # warm-up: buffers, caches, thread pools
        runs[name]()
    times = {name: [] for name in names}
    foreign = {name: [] for name in names}
    losses = {}
    redone = 0
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            for attempt in range(4):
                wait_quiet()
                with ForeignLoad() as f:
                    dt, ls = runs[name]()
                if f.cores is None or f.cores <= 0.2 or attempt == 3:
                    break
                redone += 1
            times[name].append(dt)
            foreign[name].append(None if f.cores is None else round(f.cores, 3))
            losses[name] = ls
    samples = rows * ARGS.epochs
    result = {name: {"seconds": [round(t, 4) for t in ts],
                     "median_s": round(statistics.median(ts), 4),
                     "samples_per_s": round(samples / statistics.median(ts), 1),
                     "best_samples_per_s": round(samples / min(ts), 1),
                     "foreign_load_cores": foreign[name],
                     "epoch_losses": [round(v, 6) for v in losses[name]]}
              for name, ts in times.items()}
    torch_sps = result["torch_eager"]["samples_per_s"]
    for name in ("nncompile_steps", "nncompile_fit"):
        result[name]["vs_torch_eager"] = round(result[name]["samples_per_s"] / torch_sps, 3)
    out = {"benchmark": "lenet_cpu", "network": "conv5x5x6-relu-maxpool2-conv5x5x16-relu-"
           "maxpool2-dense120-relu-dense84-relu-dense10, 28x28x1, batch 64, sgd momentum 0.9",
           "rows": rows, "epochs": ARGS.epochs, "repeats": repeats, "machine": info,
           "runs_redone_for_foreign_load": redone, "agreement": check,
           "results": result}
    os.makedirs(os.path.dirname(ARGS.out), exist_ok=True)
    with open(ARGS.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"\n{'contender':<17}{'samples/s':>11}{'best':>11}{'vs torch':>10}   epoch loss")
    for name, r in result.items():
        ratio = r.get("vs_torch_eager")
        print(f"{name:<17}{r['samples_per_s']:>11.0f}{r['best_samples_per_s']:>11.0f}"
              f"{(f'{ratio:.2f}x' if ratio else ''):>10}   {r['epoch_losses'][-1]:.4f}")
    worst = max((v for vs in foreign.values() for v in vs if v is not None), default=None)
    print(f"other work during the kept runs: at most {worst} cores; runs redone: {redone}")
    print(f"wrote {os.path.relpath(ARGS.out, ROOT)}")


if __name__ == "__main__":
    main()
