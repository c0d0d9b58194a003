"""MNIST-shaped MLP training on the GPU: nncompile vs PyTorch eager and
torch.compile (default and max-autotune), same initial weights, same order of
examples, in the same process; and nncompile's compile time, cold and cached.

784-256-128-10, relu, cross-entropy, SGD with momentum 0.9 (lr 0.01), batch
128, 60,000 examples of MNIST's shape. The numbers are random: speed does not
depend on them, and the GPU machine has no network to fetch MNIST. The targets
are smoothed one-hot rows (0.91 / 0.01), so the training loop computes no
accuracy pass and every framework does exactly the training steps. Each epoch
draws its permutation as nncompile's CPU loop does (default_rng([seed, 1]))
and all frameworks use it, so their first-epoch losses must agree.

Throughput is training examples per second over whole epochs (the best of the
epochs after the first, which includes compilation and graph capture); the
GPU is synchronised before each clock read. Results: bench/results/cuda_mlp.json.

    python3 -m bench.bench_cuda_mlp [--epochs 4] [--skip-compile]

The sizes are the module's constants (WIDTHS, N_EXAMPLES, BATCH);
tests/test_bench_cuda.py shrinks them to run every path on the CPU emulator.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import nncompile  # noqa: E402

WIDTHS = (784, 256, 128, 10)      # input, h1, h2, classes
N_EXAMPLES, BATCH, SEED = 60_000, 128, 0


def model_source() -> str:
    """The .nn text of the MLP at the module's WIDTHS and BATCH."""
    n_in, n1, n2, classes = WIDTHS
    return f"""model mnist_mlp
input  x[{n_in}]
target y[{classes}]
h1 = dense(x, {n1}, relu)
h2 = dense(h1, {n2}, relu)
logits = dense(h2, {classes})
output p = softmax(logits)
loss cross_entropy(logits, y)
train {{
  optimizer = sgd(lr = 0.01, momentum = 0.9)
  batch     = {BATCH}
  epochs    = 1
  seed      = {SEED}
}}
"""


def data():
    rng = np.random.default_rng(7)
    n_in, classes = WIDTHS[0], WIDTHS[-1]
    x = rng.normal(0, 1, (N_EXAMPLES, n_in)).astype(np.float32)
    y = np.full((N_EXAMPLES, classes), 0.01, np.float32)
    y[np.arange(N_EXAMPLES), rng.integers(0, classes, N_EXAMPLES)] = 0.91
    return x, y


def permutations(epochs):
    rng = np.random.default_rng([SEED, 1])         # as train/loop.py draws them
    return [rng.permutation(N_EXAMPLES) for _ in range(epochs)]


def run_nncompile(x, y, epochs):
    m = nncompile.compile_source(model_source(), device="cuda", file="mnist_mlp.nn")
    init = m.params
    hist = m.fit(epochs=epochs, x=x, y=y)
    times = [h["time"] for h in hist]
    return init, {"samples_per_s": len(x) / min(times[1:] or times),
                  "epoch_times_s": times, "first_epoch_loss": hist[0]["loss"]}


def train_torch(model, x, y, perms, batch, lr, mode, device="cuda"):
    """Whole epochs of torch training (SGD momentum 0.9, soft-target cross
    entropy) over the given permutations: {samples_per_s (the best epoch after
    the first), epoch_times_s, first_epoch_loss}. mode: "eager" or a
    torch.compile mode. Shared with bench_cuda_lenet.py."""
    import torch
    import torch.nn.functional as F
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    fwd = model if mode == "eager" else torch.compile(model, mode=mode)

    def opt_step():
        opt.step()
    step = opt_step if mode == "eager" else torch.compile(opt_step, mode=mode)
    n = len(x)
    xd, yd = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    times, first_loss = [], None
    for perm in perms:
        p = torch.from_numpy(perm).to(dev)
        total = torch.zeros((), device=dev, dtype=torch.float64)
        sync()
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            idx = p[s:s + batch]
            xb, yb = xd[idx], yd[idx]
            loss = F.cross_entropy(fwd(xb), yb)
            loss.backward()
            step()
            opt.zero_grad(set_to_none=False)
            total += loss.detach().double() * len(idx)
        sync()
        times.append(time.perf_counter() - t0)
        if first_loss is None:
            first_loss = float(total) / n
    return {"samples_per_s": n / min(times[1:] or times), "epoch_times_s": times,
            "first_epoch_loss": first_loss}


def run_torch(x, y, epochs, init, mode, device="cuda"):
    import torch
    dev = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    n_in, n1, n2, classes = WIDTHS
    model = torch.nn.Sequential(torch.nn.Linear(n_in, n1), torch.nn.ReLU(),
                                torch.nn.Linear(n1, n2), torch.nn.ReLU(),
                                torch.nn.Linear(n2, classes)).to(dev)
    with torch.no_grad():
        for layer, name in zip((model[0], model[2], model[4]), ("h1", "h2", "logits")):
            layer.weight.copy_(torch.from_numpy(init[f"{name}.weight"].T.copy()))
            layer.bias.copy_(torch.from_numpy(init[f"{name}.bias"]))
    return train_torch(model, x, y, permutations(epochs), BATCH, 0.01, mode, device)


COMPILE_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import nncompile
from nncompile.backends.cuda import nvcc
m = nncompile.compile_source({model!r}, device="cuda", file="bench.nn")
m._program("step", m.train_config)
m._program("evaluate")
m._program("predict")
print(json.dumps(dict(nvcc.STATS, wall=time.perf_counter() - t0)))
"""


def compile_times(model: str) -> dict:
    """Two fresh processes on an empty cache: the first compiles the training
    step, evaluation and prediction programs, the second finds them cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NNCOMPILE_CACHE=cache)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c",
                                  COMPILE_SCRIPT.format(root=ROOT, model=model)],
                                 env=env, capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    return {"cold": {"nvcc_seconds": cold["seconds"], "sources": cold["compiled"],
                     "wall_seconds": cold["wall"]},
            "cached": {"nvcc_seconds": warm["seconds"], "sources_compiled": warm["compiled"],
                       "from_cache": warm["cached"], "wall_seconds": warm["wall"]}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--modes", default="eager,default,max-autotune",
                    help="PyTorch contenders: eager and/or torch.compile modes")
    ap.add_argument("--torch-device", default="cuda",
                    help="where PyTorch runs (cpu: a check of the set-up, no timing claim)")
    ap.add_argument("--skip-compile", action="store_true", help="do not time compilation")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cuda_mlp.json"))
    args = ap.parse_args(argv)
    from nncompile.backends.cuda.launch import default_device
    gpu = default_device().name
    x, y = data()
    init, ours = run_nncompile(x, y, args.epochs)
    gc.collect()      # free the model's GPU buffers before torch captures graphs
    results = {"nncompile": ours}
    print(f"nncompile          {ours['samples_per_s']:>12,.0f} samples/s   first-epoch loss "
          f"{ours['first_epoch_loss']:.6f}", flush=True)
    save_partial(args.out, {"gpu": gpu, "results": results})
    for mode in args.modes.split(","):
        try:
            r = run_torch(x, y, args.epochs, init, mode, args.torch_device)
        except Exception as e:   # torch missing, or a compile mode failing here
            r = {"error": f"{type(e).__name__}: {e}"}
        results[f"torch_{mode}"] = r
        print(f"torch {mode:<12} {r.get('samples_per_s', float('nan')):>12,.0f} samples/s   "
              f"first-epoch loss {r.get('first_epoch_loss', float('nan')):.6f}", flush=True)
        save_partial(args.out, {"gpu": gpu, "results": results})
    summary = compare(results)
    summary["targets_met"] = {"3x_eager": bool(summary["vs_eager"] and summary["vs_eager"] >= 3),
                              "1.3x_best_compile": bool(summary["vs_best_compile"] and
                                                        summary["vs_best_compile"] >= 1.3)}
    n_in, n1, n2, classes = WIDTHS
    record = {"benchmark": f"mnist-shaped MLP {n_in}-{n1}-{n2}-{classes}, batch {BATCH}, "
                           "SGD momentum",
              "gpu": gpu, "python": platform.python_version(), "examples": N_EXAMPLES,
              "epochs": args.epochs, "results": results, "summary": summary}
    try:
        import torch
        record["torch"] = torch.__version__
    except ImportError:
        pass
    write_record(record, summary, args.out, None if args.skip_compile else model_source())
    return 1 if summary["first_epoch_losses_agree"] is False else 0


def compare(results: dict) -> dict:
    """nncompile's throughput over PyTorch eager's and over the best
    torch.compile mode's (None without that figure), and whether every
    first-epoch loss agrees with nncompile's (None with nothing to compare).
    Shared with bench_cuda_lenet.py."""
    ours = results["nncompile"]["samples_per_s"]
    eager = results.get("torch_eager", {}).get("samples_per_s")
    compiled = [r["samples_per_s"] for k, r in results.items()
                if k.startswith("torch_") and k != "torch_eager" and "samples_per_s" in r]
    losses = [r["first_epoch_loss"] for r in results.values() if "first_epoch_loss" in r]
    return {"vs_eager": ours / eager if eager else None,
            "vs_best_compile": ours / max(compiled) if compiled else None,
            "first_epoch_losses_agree": bool(np.allclose(losses, losses[0], rtol=1e-3))
            if len(losses) > 1 else None}


def save_partial(out: str, record: dict) -> None:
    """What is measured so far, in OUT.partial.json: a run cut off by a time
    limit still leaves its figures."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out.removesuffix(".json") + ".partial.json", "w") as f:
        json.dump(record, f, indent=2)


def write_record(record: dict, summary: dict, out: str, model=None) -> None:
    """Add the compile times of model (cold and cached; none without a model),
    write the record as JSON to out and print the summary."""
    if model is not None:
        try:
            record["compile_time"] = compile_times(model)
        except Exception as e:   # a compile failing: the figures measured are kept
            err = getattr(e, "stderr", None) or ""
            record["compile_time"] = {"error": f"{type(e).__name__}: {e}\n{err[-2000:]}".strip()}
        print("compile time:", json.dumps(record["compile_time"]))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
