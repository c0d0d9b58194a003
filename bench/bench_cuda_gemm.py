"""GEMM throughput of nncompile's generated kernels against cuBLAS FP32.

A large MLP, 4096-4096-4096-10 with relu, batch 1024, SGD with momentum: its
training step has eight GEMM kernels (forward with bias + relu fused, the
backward products with the relu derivative fused, the weight gradients with
the momentum and weight update fused). Each is launched on its own, many
times, from the step's own buffers and timed with CUDA events; its FLOPs are
2 M N K. cuBLAS does the same products through torch.matmul on operands of the
same layout (transposed views where the kernel reads a transpose), with TF32
off, so both are FP32. The whole step is timed too (samples/s).

The target is 70% of cuBLAS on the large GEMMs (M, N, K all at least 1024).
Results: bench/results/cuda_gemm.json.

    python3 -m bench.bench_cuda_gemm [--reps 20]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import nncompile  # noqa: E402
from nncompile.backends.cuda.codegen import Launch, py_size  # noqa: E402

MODEL = """model big_mlp
input  x[4096]
target y[10]
h1 = dense(x, 4096, relu)
h2 = dense(h1, 4096, relu)
logits = dense(h2, 10)
loss cross_entropy(logits, y)
train {
  optimizer = sgd(lr = 0.001, momentum = 0.9)
  batch     = 1024
}
"""
BATCH = 1024


def time_calls(drv, stream, call, reps):
    """Seconds per call, by CUDA events around reps calls (after a warm-up)."""
    call()
    start, end = drv.Event(), drv.Event()
    start.record(stream)
    for _ in range(reps):
        call()
    end.record(stream)
    end.synchronize()
    return start.time_till(end) / 1e3 / reps


def cublas_seconds(torch, M, N, K, trans, reps):
    ta, tb = trans
    a = torch.randn((K, M) if ta else (M, K), device="cuda")
    b = torch.randn((N, K) if tb else (K, N), device="cuda")
    a, b = (a.t() if ta else a), (b.t() if tb else b)
    out = torch.empty((M, N), device="cuda")
    torch.matmul(a, b, out=out)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        torch.matmul(a, b, out=out)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cuda_gemm.json"))
    args = ap.parse_args(argv)
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from nncompile.backends.cuda.launch import default_device
    dev = default_device()
    drv = dev.drv

    m = nncompile.compile_source(MODEL, device="cuda", file="big_mlp.nn")
    step = m._program("step", m.train_config)
    rng = np.random.default_rng(0)
    feeds = step.feeds(BATCH)
    feeds["x"][...] = rng.normal(0, 1, feeds["x"].shape)
    feeds["y"][...] = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    step.run(BATCH)
    b = step.bound(BATCH)
    dev.synchronize()

    rows = []
    for s, call in zip(step.plan.steps, b.calls):
        if not isinstance(s, Launch) or s.family != "gemm":
            continue
        M, N, K, bat = (py_size(x, BATCH) for x in s.grid[1:])
        flops = 2.0 * M * N * K * bat
        ours = time_calls(drv, dev.stream, call, args.reps)
        theirs = cublas_seconds(torch, M, N, K, s.trans, args.reps) if bat == 1 else None
        row = {"kernel": s.name, "M": M, "N": N, "K": K, "trans": list(s.trans),
               "nncompile_tflops": flops / ours / 1e12,
               "cublas_tflops": flops / theirs / 1e12 if theirs else None}
        row["ratio"] = row["nncompile_tflops"] / row["cublas_tflops"] if theirs else None
        rows.append(row)
        print(f"{s.name:<10} M={M:<5} N={N:<5} K={K:<5} trans={s.trans}  "
              f"nncompile {row['nncompile_tflops']:6.2f} TFLOP/s  "
              f"cuBLAS {row['cublas_tflops'] or float('nan'):6.2f}  "
              f"ratio {row['ratio'] or float('nan'):.2f}", flush=True)

    large = [r for r in rows if min(r["M"], r["N"], r["K"]) >= 1024 and r["cublas_tflops"]]
    ours_t = sum(2.0 * r["M"] * r["N"] * r["K"] / (r["nncompile_tflops"] * 1e12) for r in large)
    theirs_t = sum(2.0 * r["M"] * r["N"] * r["K"] / (r["cublas_tflops"] * 1e12) for r in large)
    step_s = time_calls(drv, dev.stream, lambda: [c() for c in b.calls], max(3, args.reps // 4))
    summary = {"large_gemm_fraction_of_cublas": theirs_t / ours_t if large else None,
               "step_samples_per_s": BATCH / step_s}
    summary["target_70pct_met"] = bool(summary["large_gemm_fraction_of_cublas"] and
                                       summary["large_gemm_fraction_of_cublas"] >= 0.7)
    record = {"benchmark": "4096-4096-4096-10 MLP, batch 1024: GEMM FP32 TFLOP/s vs cuBLAS",
              "gpu": dev.name, "torch": torch.__version__, "gemms": rows, "summary": summary}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(summary, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
