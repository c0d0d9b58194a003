"""The CUDA backend without a GPU: generated source compiles with nvcc for
sm_80 and sm_90, is deterministic and pinned by a golden file; and run on the
CPU emulator (cuda_emu.h, one fiber per CUDA thread) its kernels and runtime
compute what the float64 reference and the numpy backend compute. The same
numerical checks run on a real GPU in test_cuda_gpu.py."""
import glob
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import nncompile
from nncompile.backends.cuda import codegen, nvcc
from nncompile.backends.cuda.codegen import Launch, build, gemm_launch, generate
from nncompile.backends.cuda.launch import CudaStorage
from nncompile.passes import pipeline

import cuda_cases as cases
import cuda_emu
from test_pipeline import MATMULS
from test_training import SHARED_GRADIENTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")
SAMPLES = sorted(glob.glob(os.path.join(ROOT, "samples", "*.nn")))
ARCHS = ("sm_80", "sm_90")

needs_nvcc = pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc is not installed")
needs_gxx = pytest.mark.skipif(not cuda_emu.available(), reason="g++ is not installed")


def sample_model(path):
    try:
        return nncompile.compile(path, device="cpu", quiet=True)
    except nncompile.CompileError as e:
        pytest.skip(f"{os.path.basename(path)} does not compile in this build: {e}")


def step_source(model) -> str:
    return model.emit("cuda")


# compiling --------------------------------------------------------------------

def compile_all(source: str) -> dict:
    """arch -> PTX, both archs at once (nvcc is single-threaded)."""
    with ThreadPoolExecutor(len(ARCHS)) as pool:
        return dict(zip(ARCHS, pool.map(lambda a: nvcc.compile(source, a, "ptx"), ARCHS)))


def entry_points(plan) -> set:
    names = set()
    for s in plan.steps:
        if isinstance(s, Launch):
            names |= {f"{s.name}_{t}" for t in s.tiles} if s.family == "gemm" else {s.name}
    return names


@needs_nvcc
@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_every_sample_compiles_for_sm80_and_sm90(path):
    m = sample_model(path)
    cfg = m.train_config
    sched = pipeline.program(m.graph, outputs=True, updates=cfg.present, cfg=cfg)
    plan = build(sched)
    for arch, ptx in compile_all(plan.source).items():
        text = ptx.decode()
        assert f".target {arch}" in text
        missing = [k for k in entry_points(plan) if f".entry {k}(" not in text]
        assert not missing, f"{arch}: kernels missing from the PTX: {missing}"


@needs_nvcc
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_every_op_compiles_for_sm80_and_sm90(fused):
    _, sched = cases.ops_programs(fused)
    for arch, ptx in compile_all(generate(sched)).items():
        assert f".target {arch}" in ptx.decode()


@needs_nvcc
def test_the_training_loop_kernels_compile():
    for ptx in compile_all(codegen.runtime_source()).values():
        assert all(f".entry {k}(" in ptx.decode() for k in
                   ("nn_gather_rows", "nn_step_end", "nn_metrics", "nn_axpy"))


def _resources(source: str, arch: str, tmp_path) -> dict:
    """kernel -> (registers, bytes of shared memory, bytes spilled), as
    ptxas reports them when it makes the cubin the GPU loads."""
    src = tmp_path / f"k_{arch}.cu"
    src.write_text(source)
    cmd = [nvcc.find_nvcc(), *nvcc.FLAGS, f"-arch={arch}", "-cubin", "-Xptxas", "-v",
           str(src), "-o", str(tmp_path / f"k_{arch}.cubin")]
    if nvcc.host_compiler():
        cmd[1:1] = ["-ccbin", nvcc.host_compiler()]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    out, name = {}, None
    for line in run.stderr.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            name = m[1]
            out[name] = [0, 0, 0]
        elif m := re.search(r"(\d+) bytes spill stores", line):
            out[name][2] = int(m[1])
        elif m := re.search(r"Used (\d+) registers", line):
            out[name][0] = int(m[1])
            smem = re.search(r"(\d+) bytes smem", line)
            out[name][1] = int(smem[1]) if smem else 0
    return out


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_fits_a_multiprocessor_without_spilling(arch, tmp_path):
    """ptxas, which only runs on the way to a cubin (the GPU's path, not
    the PTX tests'), gives each kernel of every op and of the training loop
    what it needs: two 256-thread GEMM blocks per multiprocessor (65536
    registers), at most 48 KiB of static shared memory a block, and no more
    than a few bytes spilled to local memory."""
    _, sched = cases.ops_programs(True)
    res = _resources(generate(sched) + codegen.runtime_source(), arch, tmp_path)
    assert any("gemm_t128" in k for k in res) and "nn_gather_rows" in res
    for k, (regs, smem, spill) in res.items():
        assert regs * 256 * (2 if "gemm" in k else 1) <= 65536, (k, regs)
        assert smem <= 48 * 1024, (k, smem)
        assert spill <= 16, (k, spill)


@needs_nvcc
def test_a_second_compile_comes_from_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_CACHE", str(tmp_path))
    source = 'extern "C" __global__ void twice(float* x) { x[threadIdx.x] *= 2.f; }\n'
    before = dict(nvcc.STATS)
    first = nvcc.compile(source, "sm_80", "ptx")
    assert nvcc.STATS["compiled"] == before["compiled"] + 1
    second = nvcc.compile(source, "sm_80", "ptx")
    assert second == first
    assert nvcc.STATS["compiled"] == before["compiled"] + 1
    assert nvcc.STATS["cached"] == before["cached"] + 1
    assert len(list(tmp_path.iterdir())) == 1
    nvcc.compile(source, "sm_90", "ptx")             # another arch is another entry
    assert len(list(tmp_path.iterdir())) == 2


# the source ---------------------------------------------------------------------

def test_golden_cuda_source_of_xor(sample):
    with open(sample("xor")) as f:
        m = nncompile.compile_source(f.read(), device="cpu", file="xor.nn")
    text = m.emit("cuda")
    path = os.path.join(GOLDEN, "xor.cu")
    if os.environ.get("NNCOMPILE_REGEN_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"the CUDA source differs from {path} " \
                                 "(NNCOMPILE_REGEN_GOLDEN=1 rewrites)"


def test_generated_source_is_deterministic(sample):
    texts = {nncompile.compile(sample("spiral"), device="cpu").emit("cuda") for _ in range(2)}
    assert len(texts) == 1


def test_identifiers_come_from_the_compiler_not_the_model_text():
    src = """model evil
input x[2]
target y[1]
h = dense(x, 3, tanh)
output p = dense(h, 1)
loss mse(p, y)
train { data = xor
optimizer = sgd(lr = 0.1) }
"""
    text = nncompile.compile_source(src, device="cpu").emit("cuda")
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    assert "evil" not in code and "h.weight" not in code
    assert "// storage: st0 = h.bias, st1 = h.weight" in text


def test_bias_activation_and_update_are_fused_into_the_gemms(sample):
    """digits_mlp: the forward GEMMs carry bias + relu, the backward GEMM the
    relu derivative and the hidden bias's gradient (its column sums) with its
    update, the weight-gradient GEMMs the momentum and the param update;
    log_softmax, cross-entropy, its batch mean, its gradient and the logits'
    bias gradient and update are one kernel."""
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    plan = build(pipeline.program(m.graph, outputs=True, updates=True, cfg=m.train_config))
    kernels = [s for s in plan.steps if isinstance(s, Launch)]
    assert [k.family for k in kernels].count("gemm") == 5
    src = plan.source
    assert "fused[gemm: matmul, add, relu](%x, %h1.weight, %h1.bias)" in src
    assert "fused[gemm: matmul, step, mul]" in src
    # the momentum update and the weight update in one epilogue
    weight_gemms = [k for k in kernels if ("store", "h1.weight") in k.written]
    assert len(weight_gemms) == 1 and weight_gemms[0].family == "gemm"
    assert ("store", "h1.weight.velocity") in weight_gemms[0].written
    bias = [k for k in kernels if ("store", "h1.bias") in k.written]
    assert [(k.family, k.column_sum) for k in bias] == [("gemm", True)]
    assert [k.family for k in kernels].count("softmax") == 1
    assert len(kernels) == 6


def test_gemm_launch_uses_big_tiles_for_big_problems_and_splits_long_k():
    t, grid, splits, kchunk, ws, tiles = gemm_launch(1024, 4096, 4096, 1, ("t64", "t128"), 132)
    assert (t, grid, splits) == ("t128", (32, 8, 1), 1) and ws == 0
    t, grid, splits, kchunk, ws, tiles = gemm_launch(128, 256, 784, 1, ("t64", "t128"), 132)
    assert t == "t64" and splits > 1 and grid == (4, 2, splits)
    assert kchunk % 16 == 0 and (splits - 1) * kchunk < 784 <= splits * kchunk
    assert ws == tiles * splits * 64 * 64
    assert gemm_launch(5, 3, 2, 1, ("t64",), 132)[2] == 1


def test_gemm_grids_past_65535_blocks_in_y_or_z_are_launched_in_parts():
    assert codegen.gemm_parts((3, 7, 2)) == [((3, 7, 2), 0, 0)]
    assert codegen.gemm_parts((2, 70000, 3)) == [((2, 65535, 3), 0, 0),
                                                 ((2, 4465, 3), 65535, 0)]
    assert codegen.gemm_parts((1, 2, 131071)) == [((1, 2, 65535), 0, 0),
                                                  ((1, 2, 65535), 0, 65535),
                                                  ((1, 2, 1), 0, 131070)]


def test_every_registry_op_is_in_the_op_cases():
    from nncompile.ops import REGISTRY
    seen = set()
    for fused in (True, False):
        g, sched = cases.ops_programs(fused)
        seen |= {n.op for n in sched.graph.nodes}
        seen |= {e[0] for n in sched.graph.nodes if n.op == "fused" for e in n.attrs["body"]}
    seen |= {n.op for n in cases.ops_graph().nodes}
    missing = set(REGISTRY) - seen - cases.LEAVES
    assert not missing, f"ops without a CUDA test case: {sorted(missing)}"


# numbers, on the emulator ----------------------------------------------------

# how the emulator runs a launch's threads (test_cuda_emu.py): one block at a
# time, its threads by index; or shuffled: eight blocks resident at once, each
# running at a random speed and picking its threads in a random way, so a
# missing barrier or a block reading another block's unfinished partial sums
# shows as wrong numbers
SCHEDULES = {"in-order": dict(order="index", resident=1),
             "shuffled": dict(order="shuffle", resident=8, seed=11)}


@needs_gxx
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_every_op_forward_and_backward_on_the_emulator(fused, schedule):
    g, sched = cases.ops_programs(fused)
    bad = cases.compare(sched, cuda_emu.EmuDevice(sms=16, **SCHEDULES[schedule]), cases.BATCHES,
                        cases.params_of(g), lambda b: cases.feeds_of(g, b))
    assert not bad, "\n".join(bad)


@needs_gxx
@pytest.mark.parametrize("sms,batch", [(4, 5), (132, 129)], ids=["4sms", "132sms"])
@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_every_sample_training_step_on_the_emulator(path, sms, batch):
    """On 132 multiprocessors (an H100) with 129 rows (3 row tiles) the
    GEMMs split K where they would on the GPU; there the threads of eight
    resident blocks run shuffled."""
    if sms == 132 and os.path.basename(path) == "mnist_lenet.nn":
        pytest.skip("lenet.nn's kernels at 28 x 28: 40 s on the emulator")
    m = sample_model(path)
    if m.graph.loss is None:
        pytest.skip("the model does not train")
    sched, params = cases.step_programs(m)
    schedule = SCHEDULES["shuffled" if sms == 132 else "in-order"]
    bad = cases.compare_step(sched, cuda_emu.EmuDevice(sms=sms, **schedule), params, batch=batch)
    assert not bad, "\n".join(bad)



@needs_gxx
@pytest.mark.parametrize("name", SHARED_GRADIENTS)
def test_params_sharing_one_gradient_value_train_alike_on_the_emulator(name):
    """Two params whose gradients are one node each get their own update."""
    src = SHARED_GRADIENTS[name] + "train {\n  optimizer = sgd(lr = 0.1, momentum = 0.9)\n}\n"
    sched, params = cases.step_programs(nncompile.compile_source(src, device="cpu"))
    bad = cases.compare_step(sched, cuda_emu.EmuDevice(sms=4), params, batch=7)
    assert not bad, "\n".join(bad)


@needs_gxx
@pytest.mark.parametrize("case", MATMULS)
def test_matmul_of_each_example_on_the_emulator(case):
    """Every form of '@' (vectors, stacks of matrices, both operands batched)."""
    decls, expr, _ = MATMULS[case]
    src = decls + f"output o = {expr}\nloss sum(o * o)\ntrain {{\n  optimizer = sgd(lr = 0.01)\n}}\n"
    sched, params = cases.step_programs(nncompile.compile_source(src, device="cpu"))
    bad = cases.compare_step(sched, cuda_emu.EmuDevice(sms=4), params, batch=7)
    assert not bad, "\n".join(bad)

def _predict_on_emulator(src, params, x):
    m = nncompile.compile_source(src, device="cpu")
    m.set_params(params)
    return _emulated(m, cuda_emu.EmuDevice(sms=4)).predict(x)


@needs_gxx
def test_a_row_sum_of_a_softmax_reshaped_for_broadcasting_on_the_emulator():
    """sum(softmax(x)) is a row value of the softmax kernel, [N] made [N, 1]
    by a reshape that shares its buffer; the add that reads it was joined to
    the kernel and found no buffer (a KeyError in the code generator). The
    softmax sums to 1, so o = 1 + b."""
    src = "input x[3]\nparam b[3] = zeros\noutput o = sum(softmax(x)) + b\n"
    x = np.array([[0.5, -1, 2], [3, 0, -2]], np.float32)
    got = _predict_on_emulator(src, {"b": np.array([0.5, -1, 2], np.float32)}, x)
    np.testing.assert_allclose(got, [[1.5, 0, 3], [1.5, 0, 3]], rtol=1e-6)


@needs_gxx
def test_a_row_max_broadcast_across_rows_on_the_emulator():
    """max(ls, axis = 1) of a [3, 3] example is one number per row, and
    ls - it broadcasts it as numpy does, along the rows: element (i, j) takes
    row j's max, which the softmax kernel's thread for row i does not hold."""
    src = ("input m[3, 3]\nparam b[3, 3] = zeros\nls = log_softmax(m + b)\n"
           "output o = ls - max(ls, axis = 1)\n")
    x = np.array([[[0, 1, 2], [2, 0, 0], [1, 1, 4]]], np.float32)
    z = x[0] - np.log(np.exp(x[0]).sum(-1, keepdims=True))
    want = z - z.max(-1)[None, :]
    assert want[0, 1] != want[0, 0]
    got = _predict_on_emulator(src, {"b": np.zeros((3, 3), np.float32)}, x)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


SPLIT_COLSUM = """input x[3]
target y[3]
h1 = dense(x, 40, relu)
h2 = dense(h1, 160, tanh)
p = dense(h2, 3)
loss mse(p, y)
train {
  data = "unused.csv"
  optimizer = sgd(lr = 0.1, momentum = 0.9)
}
"""


def _gemm_launches(sched, batch, sms):
    plan = build(sched)
    return [(s, codegen.resolve(s, batch, sms)) for s in plan.steps
            if isinstance(s, Launch) and s.family == "gemm"]


@needs_gxx
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("limit", [codegen.MAX_GRID_YZ, 1], ids=["one-launch", "in-parts"])
def test_split_k_with_a_column_sum_on_the_emulator(monkeypatch, limit, schedule):
    """dh1 = dh2 . W2^T has K = 160: on 132 multiprocessors it splits K in two,
    and the same GEMM sums dh1's rows for h1's bias gradient. 129 rows are 3
    row tiles. With the grid limited to 1 block in y and z, each row tile and
    split is a launch of its own: the same numbers."""
    monkeypatch.setattr(codegen, "MAX_GRID_YZ", limit)
    m = nncompile.compile_source(SPLIT_COLSUM, device="cpu")
    sched, params = cases.step_programs(m)
    both = [(s, r) for s, r in _gemm_launches(sched, 129, 132)
            if s.column_sum and r[3][1] > 1]
    assert both, "no GEMM splits K and sums columns at this size"
    assert all(r[1][1] == 3 and r[3][3] == 3 for _, r in both)      # 3 row tiles
    parts = [codegen.gemm_parts(r[1]) for _, r in both]
    assert all(len(p) == (1 if limit > 3 else 3 * r[1][2]) for p, (_, r) in zip(parts, both))
    bad = cases.compare_step(sched, cuda_emu.EmuDevice(sms=132, **SCHEDULES[schedule]), params,
                             batch=129)
    assert not bad, "\n".join(bad)


@needs_gxx
def test_every_op_with_the_grid_limited_to_one_block_in_y_and_z(monkeypatch):
    """The batched GEMMs of the convolutions (one per example, in z) and the
    129-row products (3 row tiles, in y) are launched in parts, as they would
    be past CUDA's 65535 blocks."""
    monkeypatch.setattr(codegen, "MAX_GRID_YZ", 1)
    g, sched = cases.ops_programs(True)
    grids = [r[1] for _, r in _gemm_launches(sched, 129, 16)]
    assert any(gy > 1 for _, gy, _ in grids) and any(gz > 1 for _, _, gz in grids)
    bad = cases.compare(sched, cuda_emu.EmuDevice(sms=16), (129,), cases.params_of(g),
                        lambda b: cases.feeds_of(g, b))
    assert not bad, "\n".join(bad)


def _emulated(model, device):
    """model, moved onto an emulated GPU (as compile(device="cuda") would)."""
    store = CudaStorage(device)
    for k, v in model._storage.items():
        store[k] = v
    model.device, model._storage, model._programs = "cuda", store, {}
    return model


def _same_history(h1, h2, rtol=1e-5):
    assert len(h1) == len(h2)
    for a, b in zip(h1, h2):
        assert set(a) == set(b)
        for k in a:
            if k != "time":
                assert b[k] == pytest.approx(a[k], rel=rtol, abs=1e-7), (a["epoch"], k)


@needs_gxx
@pytest.mark.parametrize("name,epochs", [("xor", 3), ("circles", 2)])
def test_gpu_training_loop_matches_the_cpu_loop_on_the_emulator(sample, name, epochs):
    """The same records (grad_rms included: the probe runs on the GPU too),
    params and predictions."""
    cpu = nncompile.compile(sample(name), device="cpu")
    dev = cuda_emu.EmuDevice()
    gpu = _emulated(nncompile.compile(sample(name), device="cpu"), dev)
    starts = []
    _same_history(cpu.fit(epochs=epochs, grad_rms=True, on_start=starts.append),
                  gpu.fit(epochs=epochs, grad_rms=True, on_start=starts.append))
    assert starts[1]["grad_rms"] == pytest.approx(starts[0]["grad_rms"], rel=1e-5)
    for k, v in cpu.params.items():
        np.testing.assert_allclose(gpu.params[k], v, rtol=1e-5, atol=1e-6)
    x = np.random.default_rng(0).normal(size=(9, 2)).astype(np.float32)
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=1e-5, atol=1e-6)


DROPOUT = """input x[5]
target y[3]
h = dense(x, 24, relu)
d = dropout(h, 0.5)
logits = dense(d, 3)
output p = softmax(logits)
loss cross_entropy(logits, y)
train {
  data = "unused.csv"
  optimizer = sgd(lr = 0.1, momentum = 0.9)
  batch = 8
  seed = 4
}
"""


@needs_gxx
def test_dropout_training_on_the_emulator_matches_the_cpu():
    """A fresh mask every step, drawn on the host into a page-locked buffer
    and uploaded: the emulator reads that buffer only when the step runs, so
    a mask drawn over it before the last step has read it shows here."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(45, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 45)]
    cpu = nncompile.compile_source(DROPOUT, device="cpu")
    gpu = _emulated(nncompile.compile_source(DROPOUT, device="cpu"), cuda_emu.EmuDevice())
    _same_history(cpu.fit(x=x, y=y, epochs=3), gpu.fit(x=x, y=y, epochs=3))
    for k, v in cpu.params.items():
        np.testing.assert_allclose(gpu.params[k], v, rtol=1e-5, atol=1e-6)



@needs_gxx
def test_a_held_out_loss_that_is_no_mean_of_chunks_on_the_emulator():
    """sqrt(mse) over 1100 held-out rows is taken in one call, as on the CPU."""
    from test_training import ROOT_MSE
    src = ROOT_MSE.replace("LOSS", "sqrt(mse(p, y))")
    x = np.zeros((1100, 2), np.float32)
    y = np.zeros((1100, 1), np.float32)
    y[1024:] = 10
    gpu = _emulated(nncompile.compile_source(src, device="cpu"), cuda_emu.EmuDevice(sms=4))
    h = gpu.fit(x=x[1020:1030], y=y[1020:1030], x_test=x, y_test=y, epochs=1, lr=1e-30)
    assert h[0]["test_loss"] == pytest.approx(np.sqrt(76 * 100 / 1100), rel=1e-6)

@needs_gxx
def test_loss_and_prediction_in_chunks_on_the_emulator_match_the_cpu():
    """2500 rows are three chunks (1024, 1024, 452) through the same
    page-locked feed buffers, which the emulator reads only when the GPU's
    queue runs. Each chunk's result is read (a synchronization) before the
    next chunk is written, so feeds()' own synchronize is not what this
    checks: it checks the chunks, the last one short, against the CPU."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2500, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 2500)]
    cpu = nncompile.compile_source(DROPOUT, device="cpu")
    gpu = _emulated(nncompile.compile_source(DROPOUT, device="cpu"), cuda_emu.EmuDevice())
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=1e-5, atol=1e-6)
    assert gpu.loss(x, y) == pytest.approx(cpu.loss(x, y), rel=1e-5)


SMALL = "input x[3]\ntarget y[2]\nh = dense(x, 40, relu)\np = dense(h, 2)\nloss mse(p, y)\n"


def _small_on_emulator(device):
    m = _emulated(nncompile.compile_source(SMALL, device="cpu", file="m.nn"), device)
    return m, np.ones((50, 3), np.float32), np.ones((50, 2), np.float32)


@needs_gxx
def test_a_batch_that_does_not_fit_on_the_gpu_names_the_largest_layer(monkeypatch):
    """A refused allocation is an error at h's statement, with the batch that
    the GPU's memory would hold: (3000 - 176) // 356 = 7 (356 bytes an example,
    as on the CPU)."""
    dev = cuda_emu.EmuDevice()
    m, x, y = _small_on_emulator(dev)
    alloc = dev.alloc

    def small_gpu(nbytes):
        if nbytes >= 4 * 10 * 40:                 # h's buffer at batch 10
            raise MemoryError
        return alloc(nbytes)
    monkeypatch.setattr(dev, "alloc", small_gpu)
    monkeypatch.setattr(dev, "memory", lambda: 3000.0, raising=False)
    with pytest.raises(nncompile.CompileError) as info:
        m.fit(x=x, y=y, batch=10, epochs=1)
    lines = str(info.value).splitlines()
    assert lines[0] == ("m.nn:3:5: error: one batch of 10 examples does not fit on the GPU: "
                        "its values take 3.6 KiB, 1.6 KiB of it for 'h' [10, 40]")
    assert lines[-1] == ("hint: a batch of at most about 7 examples fits; use a smaller batch "
                         "or make this layer smaller")
    monkeypatch.setattr(dev, "alloc", alloc)
    m.fit(x=x, y=y, batch=7, epochs=1)
    # the buffers a failed attempt got (every value's, here, before x's feed
    # is refused) are freed at once, though its error is still held
    m.gradients(x[:5], y[:5])
    live = len(dev.buffers)

    def no_feed(nbytes):
        if nbytes == 4 * 10 * 3:                  # x's feed at batch 10
            raise MemoryError
        return alloc(nbytes)
    monkeypatch.setattr(dev, "alloc", no_feed)
    with pytest.raises(nncompile.CompileError, match="does not fit on the GPU") as held:
        m.gradients(x[:10], y[:10])
    assert len(dev.buffers) == live and held.value.__context__ is None


@needs_gxx
def test_values_past_32_bit_indices_are_an_error_before_any_launch(monkeypatch):
    """The kernels index with 32-bit ints; with the limit lowered to 300
    numbers, h [10, 40] is too many and a batch of 7 (280) is not."""
    from nncompile.backends.cuda import launch
    monkeypatch.setattr(launch, "MAX_INDEX", 300)
    dev = cuda_emu.EmuDevice()
    m, x, y = _small_on_emulator(dev)
    with pytest.raises(nncompile.CompileError) as info:
        m.fit(x=x, y=y, batch=10, epochs=1)
    assert str(info.value).splitlines()[0] == (
        "m.nn:3:5: error: one batch of 10 examples makes 'h' [10, 40] hold 400 numbers, "
        "more than the 300 the GPU kernels can index")
    assert str(info.value).splitlines()[-1] == "hint: use a batch of at most 7 examples"
    assert dev.launches == 0
    m.fit(x=x, y=y, batch=7, epochs=1)
    assert dev.launches > 0


@needs_gxx
def test_early_stop_on_the_emulator_stops_and_restores_as_the_cpu(sample):
    """sine stops after epoch 8 with early_stop = 1 (its held-out loss rises at
    epoch 8); the GPU loop stops there too and keeps epoch 7's params."""
    cpu = nncompile.compile(sample("sine"), device="cpu")
    gpu = _emulated(nncompile.compile(sample("sine"), device="cpu"), cuda_emu.EmuDevice())
    h_cpu, h_gpu = cpu.fit(epochs=40, early_stop=1), gpu.fit(epochs=40, early_stop=1)
    _same_history(h_cpu, h_gpu)
    assert len(h_gpu) == 8 and h_gpu[-1]["stopped_early"] and h_gpu[-2]["best"]
    for k, v in cpu.params.items():
        np.testing.assert_allclose(gpu.params[k], v, rtol=1e-5, atol=1e-6)


@needs_gxx
def test_gradient_accumulation_and_conv_on_the_emulator(sample):
    """lenet: conv, max pooling, accumulate = 2, on 150 examples for 2 epochs."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 1, 8, 8)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 150)]
    data = dict(epochs=2, x=x, y=y, x_test=x[:40], y_test=y[:40])
    cpu = nncompile.compile(sample("lenet"), device="cpu")
    gpu = _emulated(nncompile.compile(sample("lenet"), device="cpu"), cuda_emu.EmuDevice())
    _same_history(cpu.fit(**data), gpu.fit(**data), rtol=2e-5)


@needs_gxx
def test_graph_replay_and_plain_launches_train_alike(sample):
    """xor's 4 examples are one batch a step: the first step runs plainly, the
    second is captured, and later ones replay it."""
    runs = []
    for graphs in (True, False):
        dev = cuda_emu.EmuDevice(graphs=graphs)
        m = _emulated(nncompile.compile(sample("xor"), device="cpu"), dev)
        runs.append((m.fit(epochs=1), None))
        assert dev.captured == 0                 # one step: plain launches only
        runs[-1] = (runs[-1][0] + m.fit(epochs=2), m.params)
        assert dev.captured == (1 if graphs else 0)
    _same_history(runs[0][0], runs[1][0], rtol=0)
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


def test_a_launch_refused_while_capturing_falls_back_to_plain_launches():
    """_GraphApi.capture ends the capture and returns None (the plain launches
    then run) when a launch raises, and holds the garbage collector off while
    capturing (a buffer freed then would invalidate the capture)."""
    import gc
    from types import SimpleNamespace
    from nncompile.backends.cuda.launch import _GraphApi
    events = []

    class Lib:
        def cuStreamBeginCapture_v2(self, h, mode):
            events.append("begin")
            return 0

        def cuStreamEndCapture(self, h, graph):
            events.append("end")
            return 0

        def cuGraphDestroy(self, graph):
            events.append("destroy")

    api = object.__new__(_GraphApi)
    api.lib = Lib()

    def refused():
        events.append(f"gc on: {gc.isenabled()}")
        raise RuntimeError("cuLaunchKernel failed: stream capture invalidated")
    assert gc.isenabled()
    assert api.capture(SimpleNamespace(handle=7), [refused]) is None
    assert events == ["begin", "gc on: False", "end"]
    assert gc.isenabled()


@needs_gxx
def test_params_stay_on_the_device_until_read_and_host_writes_reach_it(sample):
    dev = cuda_emu.EmuDevice()
    m = _emulated(nncompile.compile(sample("xor"), device="cpu"), dev)
    x = np.array([[0, 0], [1, 1]], np.float32)
    before = m.predict(x)
    m.set_params({"p.bias": m.params["p.bias"] + 5})      # host write, then a device run
    after = m.predict(x)
    assert np.all(after > before)
    m.fit(epochs=1)
    store = m._storage
    assert store._fresh["p.bias"] == "device"             # trained on the device, not copied
    p = m.params["p.bias"]                                 # reading copies back
    assert store._fresh["p.bias"] == "host"
    cpu = nncompile.compile(sample("xor"), device="cpu")
    cpu.set_params({"p.bias": cpu.params["p.bias"] + 5})
    cpu.fit(epochs=1)
    np.testing.assert_allclose(p, cpu.params["p.bias"], rtol=1e-6)


@needs_gxx
def test_cli_run_with_device_cuda_on_an_emulated_gpu(sample, tmp_path, monkeypatch, capsys):
    """`nncompile run --device cuda` end to end, the GPU emulated: it trains
    on the device, writes the weights, and they equal the CPU run's."""
    from nncompile import cli
    from nncompile.backends import device
    from nncompile.backends.cuda import launch
    monkeypatch.setattr(device, "cuda_status", lambda: (True, ""))
    monkeypatch.setattr(launch, "_DEVICE", cuda_emu.EmuDevice())
    assert cli.main(["run", sample("xor"), "--device", "cuda", "--epochs", "3",
                     "--out", str(tmp_path / "gpu")]) == 0
    assert "(cuda, 3 epochs" in capsys.readouterr().out
    assert cli.main(["run", sample("xor"), "--device", "cpu", "--epochs", "3",
                     "--out", str(tmp_path / "cpu")]) == 0
    with np.load(tmp_path / "gpu" / "xor.weights.npz") as g, \
            np.load(tmp_path / "cpu" / "xor.weights.npz") as c:
        for k in c.files:
            np.testing.assert_allclose(g[k], c[k], rtol=1e-5, atol=1e-7)


def test_params_that_do_not_fit_on_the_gpu_point_at_the_largest_layer(monkeypatch, capsys):
    """A refused upload of the params or the optimizer state: the error at the
    statement of the largest param (h.weight, 3 x 40 floats), as for params
    beyond the host's memory."""
    from nncompile import cli
    from nncompile.backends import device
    from nncompile.backends.cuda import launch
    dev = cuda_emu.EmuDevice()
    alloc = dev.alloc

    def small_gpu(nbytes):
        if nbytes > 300:
            raise MemoryError
        return alloc(nbytes)
    monkeypatch.setattr(dev, "alloc", small_gpu)
    monkeypatch.setattr(device, "cuda_status", lambda: (True, ""))
    monkeypatch.setattr(launch, "_DEVICE", dev)
    m = nncompile.compile_source(SMALL, device="cuda", file="m.nn")
    with pytest.raises(nncompile.CompileError) as info:      # uploaded for the first step
        m.fit(x=np.ones((5, 3), np.float32), y=np.ones((5, 2), np.float32), epochs=1,
              momentum=0.9)
    # 3*40 + 40 + 40*2 + 2 = 242 params, and as many velocities
    assert str(info.value).splitlines() == [
        "m.nn:3:5: error: the model's params and optimizer state do not fit on the GPU: "
        "they take 1.9 KiB, 480 bytes of it for h.weight [3, 40]",
        "    h = dense(x, 40, relu)",
        "        ^^^^^",
        "hint: make this layer smaller"]


def test_accumulated_gradients_that_do_not_fit_on_the_gpu_are_the_same_error(monkeypatch):
    """With accumulate = 2 the sums of the gradients (grad/PARAM) live on the
    GPU too; refused, they are the params and optimizer state error."""
    from nncompile.backends.cuda.launch import CudaStorage
    m, x, y = _small_on_emulator(cuda_emu.EmuDevice())
    device_ptr = CudaStorage.device_ptr

    def no_sums(self, name):
        if name.startswith("grad/") and name not in self._dev:
            raise MemoryError
        return device_ptr(self, name)
    monkeypatch.setattr(CudaStorage, "device_ptr", no_sums)
    with pytest.raises(nncompile.CompileError) as info:
        m.fit(x=x, y=y, batch=5, accumulate=2, epochs=1)
    # 242 params and 242 gradient sums: 1936 bytes
    assert str(info.value).splitlines()[0] == (
        "m.nn:3:5: error: the model's params and optimizer state do not fit on the GPU: "
        "they take 1.9 KiB, 480 bytes of it for h.weight [3, 40]")


def test_explicit_cuda_without_a_gpu_is_a_clear_error(sample):
    from nncompile.backends.device import DeviceError, cuda_status
    if cuda_status()[0]:
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="device cuda is not available") as e:
        nncompile.compile(sample("xor"), device="cuda")
    assert "pip install 'nncompile[cuda]'" in str(e.value)
