"""LeNet training on the GPU: nncompile against PyTorch eager and torch.compile
(default and max-autotune), from the same initial weights over the same order
of examples, in the same process; and nncompile's compile time, cold and cached.

The network of issue 5 and bench_lenet_cpu.py: conv 5x5, 6 filters -> relu ->
maxpool 2 -> conv 5x5, 16 filters -> relu -> maxpool 2 -> dense 120 relu ->
dense 84 relu -> dense 10, softmax cross-entropy, 28x28x1 inputs, batch 64,
SGD lr 0.05 momentum 0.9. 60,000 random examples of MNIST's shape with
smoothed one-hot targets (0.91 / 0.01), so fit computes no accuracy pass and
every framework does exactly the training steps. Each epoch's permutation is
the one nncompile's loop draws (default_rng([seed, 1])); the first-epoch
losses must agree. Target (issue 5): at least 2x PyTorch eager.

    python3 -m bench.bench_cuda_lenet [--epochs 3] [--skip-compile]
    python3 -m bench.bench_cuda_lenet --device cpu --examples 640 --epochs 1 --modes eager
        (a check of the set-up on a machine without a GPU: same losses, no timing claim)
Results: bench/results/cuda_lenet.json. --torch-device (default: --device) puts
PyTorch elsewhere than nncompile; tests/test_bench_cuda.py runs nncompile on the
CPU emulator of the GPU and PyTorch on the CPU, with a smaller BATCH.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import nncompile  # noqa: E402
from bench.bench_cuda_mlp import compare, save_partial, train_torch, write_record  # noqa: E402

BATCH, LR, SEED = 64, 0.05, 0


def model_source() -> str:
    """The .nn text of the LeNet at the module's BATCH, LR and SEED."""
    return f"""model lenet_gpu
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
  optimizer = sgd(lr = {LR}, momentum = 0.9)
  batch     = {BATCH}
  epochs    = 1
  seed      = {SEED}
}}
"""


CONVS, DENSES = ("c1", "c2"), ("h1", "h2", "logits")


def data(n: int):
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (n, 1, 28, 28)).astype(np.float32)
    y = np.full((n, 10), 0.01, np.float32)
    y[np.arange(n), rng.integers(0, 10, n)] = 0.91
    return x, y


def permutations(n: int, epochs: int) -> list:
    rng = np.random.default_rng([SEED, 1])         # as train/loop.py draws them
    return [rng.permutation(n) for _ in range(epochs)]


def run_nncompile(x, y, epochs, device):
    m = nncompile.compile_source(model_source(), device=device, file="lenet_gpu.nn")
    init = m.params
    hist = m.fit(epochs=epochs, x=x, y=y)
    times = [h["time"] for h in hist]
    return init, {"samples_per_s": len(x) / min(times[1:] or times),
                  "epoch_times_s": times, "first_epoch_loss": hist[0]["loss"]}


def torch_lenet(init: dict, device: str):
    """PyTorch's LeNet holding nncompile's initial weights (dense weights are
    [in, out] in nncompile, [out, in] in torch; conv biases [F, 1, 1])."""
    import torch
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    layers = dict(zip(CONVS + DENSES, [model[i] for i in (0, 3, 7, 9, 11)]))
    with torch.no_grad():
        for name, layer in layers.items():
            w, b = init[f"{name}.weight"], init[f"{name}.bias"]
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(
                w if name in CONVS else w.T)))
            layer.bias.copy_(torch.from_numpy(b.reshape(-1)))
    return model.to(device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--examples", type=int, default=60_000)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--torch-device", default=None,
                    help="where PyTorch runs (default: --device)")
    ap.add_argument("--modes", default="eager,default,max-autotune",
                    help="PyTorch contenders: eager and/or torch.compile modes")
    ap.add_argument("--skip-compile", action="store_true", help="do not time compilation")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cuda_lenet.json"))
    args = ap.parse_args(argv)
    torch_device = args.torch_device or args.device
    try:
        import torch
    except ImportError:
        torch = None      # each contender then records the error
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.device == "cuda":
        from nncompile.backends.cuda.launch import default_device
        where = default_device().name
    else:
        where = platform.processor() or "cpu"
    x, y = data(args.examples)
    init, ours = run_nncompile(x, y, args.epochs, args.device)
    gc.collect()      # free the model's GPU buffers before torch captures graphs
    results = {"nncompile": ours}
    save_partial(args.out, {"device": where, "results": results})
    print(f"nncompile          {ours['samples_per_s']:>12,.0f} samples/s   first-epoch loss "
          f"{ours['first_epoch_loss']:.6f}", flush=True)
    for mode in args.modes.split(","):
        try:
            r = train_torch(torch_lenet(init, torch_device), x, y,
                            permutations(args.examples, args.epochs), BATCH, LR, mode,
                            torch_device)
        except Exception as e:   # torch missing, or a compile mode failing here
            r = {"error": f"{type(e).__name__}: {e}"}
        results[f"torch_{mode}"] = r
        print(f"torch {mode:<12} {r.get('samples_per_s', float('nan')):>12,.0f} samples/s   "
              f"first-epoch loss {r.get('first_epoch_loss', float('nan')):.6f}", flush=True)
        save_partial(args.out, {"device": where, "results": results})
    summary = compare(results)
    summary["target_2x_eager_met"] = bool(summary["vs_eager"] and summary["vs_eager"] >= 2)
    record = {"benchmark": f"LeNet 28x28x1, batch {BATCH}, SGD momentum", "device": where,
              "torch_device": torch_device, "python": platform.python_version(),
              "examples": args.examples, "epochs": args.epochs, "results": results,
              "summary": summary}
    if torch is not None:
        record["torch"] = torch.__version__
    write_record(record, summary, args.out,
                 model_source() if args.device == "cuda" and not args.skip_compile else None)
    return 1 if summary["first_epoch_losses_agree"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
