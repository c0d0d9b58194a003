"""The CUDA backend on a real GPU (marker gpu; the whole module is skipped
cleanly where pycuda or a GPU is missing). The numerical checks of
test_cuda_codegen.py's emulator tests, on the device, plus what only a GPU
shows: whole training runs against the CPU backend, CUDA graph capture, the
compile cache across processes, and sharing the context with PyTorch.

Run on a lent GPU machine (../shared/gpu/README.md):
    source .whl/prelude.sh && python3 -m pytest -m gpu -q
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nncompile
from nncompile.backends.device import cuda_status
from nncompile.diagnostics import DataError

import cuda_cases as cases

OK, WHY = cuda_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not OK, reason=f"no usable GPU: {WHY}")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = sorted(glob.glob(os.path.join(ROOT, "samples", "*.nn")))


def device():
    from nncompile.backends.cuda.launch import default_device
    return default_device()


def compiled(path, dev):
    try:
        return nncompile.compile(path, device=dev, quiet=True)
    except nncompile.CompileError as e:
        pytest.skip(f"{os.path.basename(path)} does not compile in this build: {e}")


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_every_op_forward_and_backward_on_the_gpu(fused):
    g, sched = cases.ops_programs(fused)
    bad = cases.compare(sched, device(), cases.BATCHES, cases.params_of(g),
                        lambda b: cases.feeds_of(g, b))
    assert not bad, "\n".join(bad)


def test_every_op_with_gemms_launched_in_parts_on_the_gpu(monkeypatch):
    """As past 65535 blocks in y or z: the grid limited to 1 block there."""
    from nncompile.backends.cuda import codegen
    monkeypatch.setattr(codegen, "MAX_GRID_YZ", 1)
    g, sched = cases.ops_programs(True)
    bad = cases.compare(sched, device(), (129,), cases.params_of(g),
                        lambda b: cases.feeds_of(g, b))
    assert not bad, "\n".join(bad)


def test_a_conv_batch_past_65535_examples_on_the_gpu():
    """A conv GEMM per example: 70 000 of them pass CUDA's 65535 blocks in z."""
    m = nncompile.compile_source(
        "input x[1, 4, 4]\ntarget y[2]\nh = conv2d(x, 2, 3, relu)\n"
        "p = dense(flatten(h), 2)\nloss mse(p, y)\n", device="cpu")
    sched, params = cases.step_programs(m)
    bad = cases.compare_step(sched, device(), params, batch=70000, steps=1)
    assert not bad, "\n".join(bad)


def test_split_k_with_a_column_sum_on_the_gpu():
    from test_cuda_codegen import SPLIT_COLSUM
    m = nncompile.compile_source(SPLIT_COLSUM, device="cpu")
    sched, params = cases.step_programs(m)
    bad = cases.compare_step(sched, device(), params, batch=129)
    assert not bad, "\n".join(bad)


def test_a_batch_the_gpu_cannot_hold_is_an_error_at_a_statement():
    """20 relu layers of 1000 at 2 million rows: 157 GiB of values, more than
    an H100 or H200 holds. pycuda's refusal becomes the error at h1's line,
    and the GPU is usable afterwards."""
    src = "input x[1]\ntarget y[1]\nh0 = x\n" + "".join(
        f"h{i + 1} = dense(h{i}, 1000, relu)\n" for i in range(20)) + \
        "p = dense(h20, 1)\nloss mse(p, y)\n"
    m = nncompile.compile_source(src, device="cuda", file="big.nn")
    x = np.zeros((2_000_000, 1), np.float32)
    with pytest.raises(nncompile.CompileError) as info:
        m.gradients({"x": x}, {"y": x})
    assert str(info.value).startswith("big.nn:4:6: error: one batch of 2000000 examples does "
                                      "not fit on the GPU: its values take 156.6 GiB, ")
    g = m.gradients({"x": x[:10]}, {"y": x[:10]})
    assert g["h1.weight"].shape == (1, 1000)


@pytest.mark.parametrize("batch", [1, 33, 129])
@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_every_sample_training_step_on_the_gpu(path, batch):
    m = compiled(path, "cpu")
    if m.graph.loss is None:
        pytest.skip("the model does not train")
    sched, params = cases.step_programs(m)
    bad = cases.compare_step(sched, device(), params, batch=batch, steps=3)
    assert not bad, "\n".join(bad)


def _history(path, dev, **kw):
    m = compiled(path, dev)
    if m.graph.loss is None or not m.train_config.present:
        pytest.skip("the model does not train")
    try:
        return m, m.fit(**kw)
    except DataError as e:
        pytest.skip(f"its data is not here: {e}")


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_every_sample_loss_history_matches_the_cpu(path):
    _, cpu = _history(path, "cpu", epochs=3)
    _, gpu = _history(path, "cuda", epochs=3)
    assert len(cpu) == len(gpu)
    for a, b in zip(cpu, gpu):
        assert set(a) == set(b)
        for k in a:
            if k.endswith("loss"):
                assert b[k] == pytest.approx(a[k], rel=5e-4, abs=1e-6), (a["epoch"], k)
            elif k.endswith("accuracy"):
                assert abs(b[k] - a[k]) <= 0.01, (a["epoch"], k)


def test_digits_mlp_reaches_the_cpu_held_out_accuracy(sample):
    _, cpu = _history(sample("digits_mlp"), "cpu")
    _, gpu = _history(sample("digits_mlp"), "cuda")
    assert gpu[-1]["test_accuracy"] >= 0.95
    assert gpu[-1]["test_accuracy"] >= cpu[-1]["test_accuracy"] - 0.01


def test_grad_rms_on_the_gpu_is_the_cpus(sample):
    """digits_dropout (dropout, adam), 2 epochs: each record's RMS gradients
    on the probe batch, and the start's, agree with the CPU's."""
    cpu = nncompile.compile(sample("digits_dropout"), device="cpu")
    gpu = nncompile.compile(sample("digits_dropout"), device="cuda", quiet=True)
    starts = []
    h_cpu = cpu.fit(epochs=2, grad_rms=True, on_start=starts.append)
    h_gpu = gpu.fit(epochs=2, grad_rms=True, on_start=starts.append)
    assert starts[1]["grad_rms"] == pytest.approx(starts[0]["grad_rms"], rel=1e-4)
    for a, b in zip(h_cpu, h_gpu):
        assert b["grad_rms"] == pytest.approx(a["grad_rms"], rel=2e-3)


def test_early_stop_stops_and_restores_on_the_gpu_as_on_the_cpu(sample):
    """sine with early_stop = 1 stops after epoch 8 on the CPU; the GPU loop
    stops at the same epoch and keeps the same (best) params."""
    cpu = nncompile.compile(sample("sine"), device="cpu")
    gpu = nncompile.compile(sample("sine"), device="cuda", quiet=True)
    h_cpu, h_gpu = cpu.fit(epochs=40, early_stop=1), gpu.fit(epochs=40, early_stop=1)
    assert [r["epoch"] for r in h_gpu] == [r["epoch"] for r in h_cpu]
    assert [r.get("best") for r in h_gpu] == [r.get("best") for r in h_cpu]
    for k, v in cpu.params.items():
        np.testing.assert_allclose(gpu.params[k], v, rtol=1e-4, atol=1e-5)


def test_cuda_graphs_capture_the_step_and_train_as_plain_launches(sample):
    from nncompile.backends.cuda.launch import CudaStorage, PycudaDevice
    runs = []
    for graphs in (True, False):
        dev = PycudaDevice()
        if not graphs:
            dev._graphs = None
        m = nncompile.compile(sample("spiral"), device="cpu", quiet=True)
        store = CudaStorage(dev)
        for k, v in m._storage.items():
            store[k] = v
        m.device, m._storage, m._programs = "cuda", store, {}
        runs.append((m.fit(epochs=2), m.params, dev.captured))
    (h1, p1, captured), (h2, p2, _) = runs
    assert captured > 0, "no training step was captured in a CUDA graph"
    for a, b in zip(h1, h2):
        assert {k: v for k, v in a.items() if k != "time"} == \
            {k: v for k, v in b.items() if k != "time"}
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])


def test_a_second_process_compiles_nothing(tmp_path, sample):
    """Two runs of the same model with an empty compile cache: the first
    compiles, the second loads everything from the cache."""
    script = ("import json, time, nncompile\n"
              "from nncompile.backends.cuda import nvcc\n"
              "t = time.perf_counter()\n"
              f"m = nncompile.compile({sample('digits_mlp')!r}, device='cuda')\n"
              "m.fit(epochs=1)\n"
              "print(json.dumps(dict(nvcc.STATS, wall=time.perf_counter() - t)))\n")
    env = dict(os.environ, NNCOMPILE_CACHE=str(tmp_path),
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    stats = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        stats.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = stats
    print(f"compile: cold {cold['seconds']:.2f} s for {cold['compiled']} sources, "
          f"cached run compiled {warm['compiled']}")
    assert cold["compiled"] > 0 and warm["compiled"] == 0 and warm["cached"] >= cold["compiled"]


def test_the_context_is_shared_with_pytorch(sample):
    torch = pytest.importorskip("torch")
    m = nncompile.compile(sample("xor"), device="cuda")
    x = np.array([[0, 1], [1, 0]], np.float32)
    before = m.predict(x)
    t = torch.arange(16, dtype=torch.float32, device="cuda") * 3
    torch.cuda.synchronize()
    host = np.empty(16, np.float32)
    device().download(host, t.data_ptr())        # a torch pointer, read through pycuda
    np.testing.assert_array_equal(host, np.arange(16, dtype=np.float32) * 3)
    np.testing.assert_array_equal(m.predict(x), before)
