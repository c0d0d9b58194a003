"""The GPU benchmarks (bench/bench_cuda_mlp.py, bench_cuda_gemm.py,
bench_cuda_lenet.py) run end to end at tiny sizes, device="cuda" routed to the
CPU emulator of the GPU (cuda_emu.EmuDevice), so a slip in their Python (a
wrong key, a crash in the summary or while writing the JSON) shows here and
not after the measuring on a lent GPU. PyTorch runs eager on the CPU where it
is installed (bench/.venv); without it each contender must record its error.
Only the figures' shape is checked (positive, and the summary's arithmetic),
never their values: the emulator's timings mean nothing.

    python -m pytest -q tests/test_bench_cuda.py
    PYTHONPATH=DIR bench/.venv/bin/python -m pytest -q tests/test_bench_cuda.py
        (bench/.venv has a CPU torch but no pytest: DIR holds pytest and its
        dependencies, e.g. links to another interpreter's copies)
"""
import json
import math
import os
import sys

import pytest

import nncompile
from nncompile.backends.cuda import nvcc

import cuda_emu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import bench_cuda_gemm as gemm  # noqa: E402
from bench import bench_cuda_lenet as lenet  # noqa: E402
from bench import bench_cuda_mlp as mlp  # noqa: E402

pytestmark = pytest.mark.skipif(not cuda_emu.available(),
                                reason="g++ is not installed (the GPU emulator needs it)")


@pytest.fixture
def gpu(monkeypatch):
    """device="cuda" on the emulator: cuda_status says usable, and
    default_device() (what CudaStorage and the scripts ask for) is an EmuDevice."""
    from nncompile.backends import device
    from nncompile.backends.cuda import launch
    dev = cuda_emu.EmuDevice()
    monkeypatch.setattr(device, "cuda_status", lambda: (True, ""))
    monkeypatch.setattr(launch, "_DEVICE", dev)
    return dev


@pytest.fixture
def no_torch(monkeypatch):
    """`import torch` fails, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "torch", None)


@pytest.fixture
def small_mlp(monkeypatch):
    """50-40-24-10 at batch 16 over 40 examples: three steps an epoch, the
    last a partial batch, no width a multiple of the GEMM tiles."""
    monkeypatch.setattr(mlp, "WIDTHS", (50, 40, 24, 10))
    monkeypatch.setattr(mlp, "N_EXAMPLES", 40)
    monkeypatch.setattr(mlp, "BATCH", 16)


@pytest.fixture
def small_lenet(monkeypatch):
    monkeypatch.setattr(lenet, "BATCH", 16)


@pytest.fixture
def small_gemm(monkeypatch):
    """56-56-56-10 at batch 40; GEMMs with M, N and K all at least 32 count
    as the large ones (those of the 70% target)."""
    monkeypatch.setattr(gemm, "WIDTH", 56)
    monkeypatch.setattr(gemm, "BATCH", 40)
    monkeypatch.setattr(gemm, "LARGE", 32)


def every_mode_eager(monkeypatch, module):
    """torch.compile modes run as eager (compiling on the CPU takes minutes), so
    the summary's compile-mode ratios get real figures to divide."""
    real = module.train_torch

    def train_torch(model, x, y, perms, batch, lr, mode, device):
        return real(model, x, y, perms, batch, lr, "eager", device)
    monkeypatch.setattr(module, "train_torch", train_torch)


def load(path):
    with open(path) as f:
        return json.load(f)


def positive(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and v > 0


def check_run(r, n, epochs):
    """One contender's figures: positive times, throughput n / the best epoch
    after the first, a finite first-epoch loss."""
    assert set(r) == {"samples_per_s", "epoch_times_s", "first_epoch_loss"}
    assert len(r["epoch_times_s"]) == epochs and all(map(positive, r["epoch_times_s"]))
    assert r["samples_per_s"] == n / min(r["epoch_times_s"][1:] or r["epoch_times_s"])
    assert positive(r["samples_per_s"]) and math.isfinite(r["first_epoch_loss"])


def check_without_torch(results, n, epochs):
    """results of a run without torch: nncompile's figures, each torch mode's
    error; results itself."""
    assert list(results) == ["nncompile", "torch_eager", "torch_default"]
    check_run(results["nncompile"], n, epochs)
    for k in ("torch_eager", "torch_default"):
        assert set(results[k]) == {"error"}
        assert results[k]["error"].startswith("ModuleNotFoundError")
    return results


def check_ratios(summary, results):
    """vs_eager and vs_best_compile as nncompile's samples/s over theirs,
    None where that contender has no figure."""
    ours = results["nncompile"]["samples_per_s"]
    eager = results.get("torch_eager", {}).get("samples_per_s")
    compiled = [r["samples_per_s"] for k, r in results.items()
                if k not in ("nncompile", "torch_eager") and "samples_per_s" in r]
    assert summary["vs_eager"] == (ours / eager if eager else None)
    assert summary["vs_best_compile"] == (ours / max(compiled) if compiled else None)


def check_against_torch(rec, n, epochs) -> dict:
    """Every contender's figures; torch eager's first-epoch loss nncompile's,
    and the summary's ratios and agreement computed from them. Returns the
    summary."""
    res = rec["results"]
    for r in res.values():
        check_run(r, n, epochs)
    assert res["torch_eager"]["first_epoch_loss"] == pytest.approx(
        res["nncompile"]["first_epoch_loss"], rel=1e-5)
    check_ratios(rec["summary"], res)
    assert rec["summary"]["first_epoch_losses_agree"] is True
    return rec["summary"]


def cpu_first_loss(source, x, y):
    """The first-epoch loss of the numpy backend, from the same seed."""
    m = nncompile.compile_source(source, device="cpu", file="cpu.nn")
    return m.fit(epochs=1, x=x, y=y)[0]["loss"]


# the MLP -------------------------------------------------------------------------

def test_mlp_without_torch_writes_its_record_with_the_errors(gpu, small_mlp, no_torch,
                                                             tmp_path):
    out = tmp_path / "cuda_mlp.json"
    assert mlp.main(["--epochs", "2", "--modes", "eager,default", "--skip-compile",
                     "--out", str(out)]) == 0
    rec = load(out)
    assert set(rec) == {"benchmark", "gpu", "python", "examples", "epochs", "results",
                        "summary"}
    assert rec["benchmark"] == "mnist-shaped MLP 50-40-24-10, batch 16, SGD momentum"
    assert rec["gpu"] == gpu.name and rec["examples"] == 40 and rec["epochs"] == 2
    res = check_without_torch(rec["results"], 40, 2)
    assert rec["summary"] == {"vs_eager": None, "vs_best_compile": None,
                              "first_epoch_losses_agree": None,
                              "targets_met": {"3x_eager": False, "1.3x_best_compile": False}}
    assert load(tmp_path / "cuda_mlp.partial.json") == {"gpu": gpu.name, "results": res}
    # nncompile's side of the comparison: the numpy backend's loss, from the same seed
    x, y = mlp.data()
    assert res["nncompile"]["first_epoch_loss"] == pytest.approx(
        cpu_first_loss(mlp.model_source(), x, y), rel=1e-5)


def test_mlp_against_torch_eager_on_the_cpu(gpu, small_mlp, tmp_path, monkeypatch):
    """Same initial weights, same permutations: nncompile's and PyTorch's
    first-epoch losses agree to float32 rounding, as the GPU run requires."""
    torch = pytest.importorskip("torch")
    every_mode_eager(monkeypatch, mlp)
    out = tmp_path / "cuda_mlp.json"
    assert mlp.main(["--epochs", "2", "--modes", "eager,default", "--torch-device", "cpu",
                     "--skip-compile", "--out", str(out)]) == 0
    rec = load(out)
    assert rec["torch"] == torch.__version__
    res = rec["results"]
    assert list(res) == ["nncompile", "torch_eager", "torch_default"]
    summary = check_against_torch(rec, 40, 2)
    assert summary["targets_met"] == {"3x_eager": summary["vs_eager"] >= 3,
                                      "1.3x_best_compile": summary["vs_best_compile"] >= 1.3}
    assert load(tmp_path / "cuda_mlp.partial.json") == {"gpu": gpu.name, "results": res}


def test_a_failing_torch_compile_mode_is_recorded_and_the_rest_goes_on(gpu, small_mlp,
                                                                       tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "cuda_mlp.json"
    assert mlp.main(["--epochs", "1", "--modes", "no-such-mode,eager", "--torch-device",
                     "cpu", "--skip-compile", "--out", str(out)]) == 0
    rec = load(out)
    assert set(rec["results"]["torch_no-such-mode"]) == {"error"}
    check_run(rec["results"]["torch_eager"], 40, 1)
    assert rec["summary"]["vs_best_compile"] is None
    assert rec["summary"]["first_epoch_losses_agree"] is True


def test_compare_divides_by_the_best_compile_mode_and_checks_every_loss():
    results = {"nncompile": {"samples_per_s": 600.0, "first_epoch_loss": 2.0},
               "torch_eager": {"samples_per_s": 200.0, "first_epoch_loss": 2.0005},
               "torch_default": {"samples_per_s": 400.0, "first_epoch_loss": 2.001},
               "torch_max-autotune": {"samples_per_s": 500.0, "first_epoch_loss": 2.0},
               "torch_reduce-overhead": {"error": "RuntimeError: no"}}
    assert mlp.compare(results) == {"vs_eager": 3.0, "vs_best_compile": 1.2,
                                    "first_epoch_losses_agree": True}
    results["torch_default"]["first_epoch_loss"] = 2.01
    assert mlp.compare(results)["first_epoch_losses_agree"] is False
    assert mlp.compare({"nncompile": results["nncompile"]}) == {
        "vs_eager": None, "vs_best_compile": None, "first_epoch_losses_agree": None}


# compile times ---------------------------------------------------------------------

# Run before COMPILE_SCRIPT in its subprocesses: device="cuda" without a GPU,
# each program's source compiled by nvcc for sm_80 as PycudaDevice.module does,
# but not loaded. (No braces: the script is a str.format template.)
NVCC_ONLY = '''
import sys
sys.path.insert(0, {root!r})
from nncompile.backends import device as _device
from nncompile.backends.cuda import launch as _launch, nvcc as _nvcc
class _NvccOnly:
    name, arch, sms = "nvcc only", "sm_80", 4
    def module(self, source):
        return _nvcc.compile(source, self.arch, "cubin")
_device.cuda_status = lambda: (True, "")
_launch._DEVICE = _NvccOnly()
'''


@pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc is not installed")
def test_compile_times_cold_then_cached(monkeypatch):
    monkeypatch.setattr(mlp, "WIDTHS", (50, 40, 24, 10))
    monkeypatch.setattr(mlp, "COMPILE_SCRIPT", NVCC_ONLY + mlp.COMPILE_SCRIPT)
    t = mlp.compile_times(mlp.model_source())
    cold, cached = t["cold"], t["cached"]
    assert cold["sources"] == 3          # the step, evaluation and prediction programs
    assert positive(cold["nvcc_seconds"]) and positive(cold["wall_seconds"])
    assert cached["sources_compiled"] == 0 and cached["nvcc_seconds"] == 0
    assert cached["from_cache"] == 3 and positive(cached["wall_seconds"])


def test_a_failing_compile_still_writes_the_record(tmp_path, monkeypatch):
    """The compile times come after all the measuring: their failure is an
    entry of the record, not a lost record (nor a crash on an --out without
    a directory)."""
    monkeypatch.chdir(tmp_path)
    record = {"results": {"nncompile": {"samples_per_s": 1.0}}}
    mlp.write_record(record, {}, "out.json", "model broken\ninput x[\n")
    rec = load(tmp_path / "out.json")
    assert rec["results"] == record["results"]
    assert rec["compile_time"]["error"].startswith("CalledProcessError")
    assert "CompileError" in rec["compile_time"]["error"]      # the child's stderr


# LeNet -----------------------------------------------------------------------------

def test_lenet_without_torch_writes_its_record_with_the_errors(gpu, small_lenet, no_torch,
                                                               tmp_path):
    out = tmp_path / "cuda_lenet.json"
    assert lenet.main(["--examples", "24", "--epochs", "2", "--modes", "eager,default",
                       "--skip-compile", "--out", str(out)]) == 0
    rec = load(out)
    assert set(rec) == {"benchmark", "device", "torch_device", "python", "examples",
                        "epochs", "results", "summary"}
    assert rec["benchmark"] == "LeNet 28x28x1, batch 16, SGD momentum"
    assert rec["device"] == gpu.name and rec["torch_device"] == "cuda"
    res = check_without_torch(rec["results"], 24, 2)
    assert rec["summary"] == {"vs_eager": None, "vs_best_compile": None,
                              "first_epoch_losses_agree": None, "target_2x_eager_met": False}
    assert load(tmp_path / "cuda_lenet.partial.json") == {"device": gpu.name, "results": res}
    x, y = lenet.data(24)
    assert res["nncompile"]["first_epoch_loss"] == pytest.approx(
        cpu_first_loss(lenet.model_source(), x, y), rel=1e-5)


def test_lenet_against_torch_eager_on_the_cpu(gpu, small_lenet, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    every_mode_eager(monkeypatch, lenet)
    out = tmp_path / "cuda_lenet.json"
    assert lenet.main(["--examples", "24", "--epochs", "2", "--modes", "eager,default",
                       "--torch-device", "cpu", "--skip-compile", "--out", str(out)]) == 0
    rec = load(out)
    assert rec["torch"] == torch.__version__ and rec["torch_device"] == "cpu"
    summary = check_against_torch(rec, 24, 2)
    assert summary["target_2x_eager_met"] == (summary["vs_eager"] >= 2)
    assert load(tmp_path / "cuda_lenet.partial.json") == {"device": gpu.name,
                                                          "results": rec["results"]}


# the GEMMs -------------------------------------------------------------------------

def check_gemms(rec, with_cublas):
    rows = rec["gemms"]
    assert len(rows) == 8         # forward 3, backward products 2, weight gradients 3
    large = []
    for r in rows:
        assert set(r) == {"kernel", "M", "N", "K", "trans", "nncompile_tflops",
                          "cublas_tflops", "ratio"}
        assert positive(r["nncompile_tflops"]) and len(r["trans"]) == 2
        assert {r["M"], r["N"], r["K"]} <= {40, 56, 10}
        if with_cublas:
            assert positive(r["cublas_tflops"])
            assert r["ratio"] == r["nncompile_tflops"] / r["cublas_tflops"]
            if min(r["M"], r["N"], r["K"]) >= 32:
                large.append(r)
        else:
            assert r["cublas_tflops"] is None and r["ratio"] is None
    summary = rec["summary"]
    assert positive(summary["step_samples_per_s"])
    if not large:
        assert summary["large_gemm_fraction_of_cublas"] is None
        assert summary["target_70pct_met"] is False
        return
    ours = sum(2.0 * r["M"] * r["N"] * r["K"] / (r["nncompile_tflops"] * 1e12) for r in large)
    theirs = sum(2.0 * r["M"] * r["N"] * r["K"] / (r["cublas_tflops"] * 1e12) for r in large)
    assert summary["large_gemm_fraction_of_cublas"] == theirs / ours
    assert summary["target_70pct_met"] == (theirs / ours >= 0.7)


def test_gemm_without_torch_times_nncompile_alone(gpu, small_gemm, no_torch, tmp_path):
    out = tmp_path / "cuda_gemm.json"
    gemm.main(["--reps", "2", "--out", str(out)])
    rec = load(out)
    assert set(rec) == {"benchmark", "gpu", "torch_device", "torch_error", "gemms",
                        "summary"}
    assert rec["benchmark"] == "56-56-56-10 MLP, batch 40: GEMM FP32 TFLOP/s vs cuBLAS"
    assert rec["gpu"] == gpu.name and rec["torch_error"].startswith("ModuleNotFoundError")
    check_gemms(rec, with_cublas=False)
    partial = load(tmp_path / "cuda_gemm.partial.json")
    assert partial == {k: v for k, v in rec.items() if k != "summary"}


def test_gemm_against_torch_matmul_on_the_cpu(gpu, small_gemm, tmp_path):
    torch = pytest.importorskip("torch")
    out = tmp_path / "cuda_gemm.json"
    gemm.main(["--reps", "2", "--torch-device", "cpu", "--out", str(out)])
    rec = load(out)
    assert rec["torch"] == torch.__version__ and "torch_error" not in rec
    check_gemms(rec, with_cublas=True)
    assert rec["summary"]["large_gemm_fraction_of_cublas"] is not None


def test_each_gemm_step_gets_all_its_parts(gpu, small_gemm, monkeypatch):
    """calls_by_step pairs each plan step with its calls, a GEMM cut into
    parts (here at most 1 block in y: batch 130 has 3 row tiles) with one
    call per part."""
    from nncompile.backends.cuda import codegen
    monkeypatch.setattr(codegen, "MAX_GRID_YZ", 1)
    monkeypatch.setattr(gemm, "BATCH", 130)
    m = nncompile.compile_source(gemm.model_source(), device="cuda", file="big_mlp.nn")
    step = m._program("step", m.train_config)
    b = step.bound(gemm.BATCH)
    pairs = gemm.calls_by_step(step, b, gpu.sms)
    assert [s for s, _ in pairs] == step.plan.steps
    assert [c for _, calls in pairs for c in calls] == b.calls
    assert any(len(calls) > 1 for _, calls in pairs)
