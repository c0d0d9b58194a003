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

The sizes are the module's constants (WIDTH, BATCH, LARGE);
tests/test_bench_cuda.py shrinks them to run every path on the CPU emulator
(timed there by the wall clock, the cuBLAS side by torch on the CPU).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import nncompile  # noqa: E402
from nncompile.backends.cuda.codegen import Launch, gemm_parts, py_size, resolve  # noqa: E402
from bench.bench_cuda_mlp import save_partial, write_record  # noqa: E402

WIDTH, BATCH = 4096, 1024
LARGE = 1024          # the target's GEMMs: M, N and K all at least this


def model_source() -> str:
    """The .nn text of the MLP WIDTH-WIDTH-WIDTH-10 at batch BATCH."""
    return f"""model big_mlp
input  x[{WIDTH}]
target y[10]
h1 = dense(x, {WIDTH}, relu)
h2 = dense(h1, {WIDTH}, relu)
logits = dense(h2, 10)
loss cross_entropy(logits, y)
train {{
  optimizer = sgd(lr = 0.001, momentum = 0.9)
  batch     = {BATCH}
}}
"""


def time_calls(dev, call, reps):
    """Seconds per call, by CUDA events around reps calls (after a warm-up);
    on a device without events (the CPU emulator), by the clock around them."""
    call()
    if not hasattr(dev, "drv"):
        dev.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        dev.synchronize()
        return (time.perf_counter() - t0) / reps
    start, end = dev.drv.Event(), dev.drv.Event()
    start.record(dev.stream)
    for _ in range(reps):
        call()
    end.record(dev.stream)
    end.synchronize()
    return start.time_till(end) / 1e3 / reps


def cublas_seconds(torch, M, N, K, trans, reps, device="cuda"):
    """Seconds per torch.matmul of the same product (cuBLAS on a GPU); on
    the CPU (a check of the set-up), by the clock."""
    ta, tb = trans
    a = torch.randn((K, M) if ta else (M, K), device=device)
    b = torch.randn((N, K) if tb else (K, N), device=device)
    a, b = (a.t() if ta else a), (b.t() if tb else b)
    out = torch.empty((M, N), device=device)
    torch.matmul(a, b, out=out)
    if device != "cuda":
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b, out=out)
        return (time.perf_counter() - t0) / reps
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        torch.matmul(a, b, out=out)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def calls_by_step(step, b, sms):
    """[(plan step, its calls)] of a bound program: a GEMM launched in parts
    (more than 65535 blocks in y or z) has one call per part."""
    calls, out = iter(b.calls), []
    for s in step.plan.steps:
        n = len(gemm_parts(resolve(s, b.batch, sms)[1])) \
            if isinstance(s, Launch) and s.family == "gemm" else 1
        out.append((s, [next(calls) for _ in range(n)]))
    assert next(calls, None) is None, "the plan's steps and the bound calls differ"
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--torch-device", default="cuda",
                    help="where torch.matmul runs (cpu: a check of the set-up, no timing claim)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cuda_gemm.json"))
    args = ap.parse_args(argv)
    try:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch_error = None
    except ImportError as e:   # nncompile's kernels are still timed
        torch, torch_error = None, f"{type(e).__name__}: {e}"
    from nncompile.backends.cuda.launch import default_device
    dev = default_device()

    m = nncompile.compile_source(model_source(), device="cuda", file="big_mlp.nn")
    step = m._program("step", m.train_config)
    rng = np.random.default_rng(0)
    feeds = step.feeds(BATCH)
    feeds["x"][...] = rng.normal(0, 1, feeds["x"].shape)
    feeds["y"][...] = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    step.run(BATCH)
    b = step.bound(BATCH)
    dev.synchronize()

    record = {"benchmark": f"{WIDTH}-{WIDTH}-{WIDTH}-10 MLP, batch {BATCH}: GEMM FP32 "
                           "TFLOP/s vs cuBLAS",
              "gpu": dev.name, "torch_device": args.torch_device}
    if torch is not None:
        record["torch"] = torch.__version__
    else:
        record["torch_error"] = torch_error
    rows = record["gemms"] = []
    for s, calls in calls_by_step(step, b, dev.sms):
        if not isinstance(s, Launch) or s.family != "gemm":
            continue
        M, N, K, bat = (py_size(x, BATCH) for x in s.grid[1:])
        flops = 2.0 * M * N * K * bat
        ours = time_calls(dev, calls[0] if len(calls) == 1 else
                          lambda: [c() for c in calls], args.reps)
        theirs = cublas_seconds(torch, M, N, K, s.trans, args.reps, args.torch_device) \
            if bat == 1 and torch is not None else None
        row = {"kernel": s.name, "M": M, "N": N, "K": K, "trans": list(s.trans),
               "nncompile_tflops": flops / ours / 1e12,
               "cublas_tflops": flops / theirs / 1e12 if theirs else None}
        row["ratio"] = row["nncompile_tflops"] / row["cublas_tflops"] if theirs else None
        rows.append(row)
        print(f"{s.name:<10} M={M:<5} N={N:<5} K={K:<5} trans={s.trans}  "
              f"nncompile {row['nncompile_tflops']:6.2f} TFLOP/s  "
              f"cuBLAS {row['cublas_tflops'] or float('nan'):6.2f}  "
              f"ratio {row['ratio'] or float('nan'):.2f}", flush=True)
        save_partial(args.out, record)

    large = [r for r in rows if min(r["M"], r["N"], r["K"]) >= LARGE and r["cublas_tflops"]]
    ours_t = sum(2.0 * r["M"] * r["N"] * r["K"] / (r["nncompile_tflops"] * 1e12) for r in large)
    theirs_t = sum(2.0 * r["M"] * r["N"] * r["K"] / (r["cublas_tflops"] * 1e12) for r in large)
    step_s = time_calls(dev, lambda: [c() for c in b.calls], max(3, args.reps // 4))
    summary = {"large_gemm_fraction_of_cublas": theirs_t / ours_t if large else None,
               "step_samples_per_s": BATCH / step_s}
    summary["target_70pct_met"] = bool(summary["large_gemm_fraction_of_cublas"] and
                                       summary["large_gemm_fraction_of_cublas"] >= 0.7)
    record["summary"] = summary
    write_record(record, summary, args.out)


if __name__ == "__main__":
    main()
