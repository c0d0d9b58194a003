"""Golden IR text at each stage, whole-model gradients against finite
differences, fusion and scheduling invariants, and the numpy backend against
the float64 reference interpreter."""
import glob
import os

import numpy as np
import pytest

import nncompile
from nncompile.check import gradient_check, random_batch
from nncompile.ir.evaluate import evaluate
from nncompile.passes import pipeline
from nncompile.passes.mode import training_mode

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
SAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "samples", "*.nn")))


def compiles_here(path):
    try:
        nncompile.compile(path, device="cpu")
        return True
    except nncompile.CompileError:
        return False


@pytest.mark.parametrize("stage", ["ast", "ir", "grad", "fused"])
def test_golden_text_of_each_stage(stage, sample):
    with open(sample("xor")) as f:
        m = nncompile.compile_source(f.read(), device="cpu", file="xor.nn")
    text = m.emit(stage)
    path = os.path.join(GOLDEN, f"xor.{stage}.txt")
    if os.environ.get("NNCOMPILE_REGEN_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"{stage} differs from {path} (NNCOMPILE_REGEN_GOLDEN=1 rewrites)"


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_whole_model_gradients_match_finite_differences(path):
    if not compiles_here(path):
        pytest.skip("uses ops this build lacks")
    m = nncompile.compile(path, device="cpu")
    lines, worst, ok = gradient_check(m)
    assert ok, "\n".join(lines)


# '@' example by example: (declarations, expression, its value by einsum from
# the inputs x, m and the params s, t, p, v); every case has params on the path
MATMULS = {
    "vector @ matrix per example": (
        "input x[3]\ninput m[3, 4]\nparam s[3] = uniform(0.5, 1.5)\n"
        "param t[4] = uniform(0.5, 1.5)\n", "(x * s) @ (m * t)",
        lambda f, q: np.einsum("nk,nkj->nj", f["x"] * q["s"], f["m"] * q["t"])),
    "param matrix @ vector": (
        "input x[3]\nparam p[2, 3] = uniform(-1, 1)\n", "p @ x",
        lambda f, q: np.einsum("ak,nk->na", q["p"], f["x"])),
    "matrix @ vector per example": (
        "input x[3]\ninput m[2, 3]\nparam s[3] = uniform(0.5, 1.5)\n"
        "param t[3] = uniform(0.5, 1.5)\n", "(m * t) @ (x * s)",
        lambda f, q: np.einsum("nak,nk->na", f["m"] * q["t"], f["x"] * q["s"])),
    "vector @ vector: a dot product": (
        "input x[3]\ninput m[3]\nparam s[3] = uniform(0.5, 1.5)\n", "(x * s) @ m",
        lambda f, q: np.einsum("nk,nk->n", f["x"] * q["s"], f["m"])),
    "vector @ stack of matrices": (
        "input x[3]\nparam p[4, 3, 5] = uniform(-1, 1)\n", "x @ p",
        lambda f, q: np.einsum("nk,bkj->nbj", f["x"], q["p"])),
    "matrix @ stack of matrices": (
        "input x[2, 3]\nparam p[4, 3, 5] = uniform(-1, 1)\n", "x @ p",
        lambda f, q: np.einsum("nak,bkj->nbaj", f["x"], q["p"])),
    "matrices per example": (
        "input x[2, 3]\ninput m[3, 4]\nparam s[3] = uniform(0.5, 1.5)\n", "(x * s) @ m",
        lambda f, q: np.einsum("nak,nkj->naj", f["x"] * q["s"], f["m"])),
    "param vector @ param matrix": (
        "input x[3]\nparam v[3] = uniform(-1, 1)\nparam p[3, 2] = uniform(-1, 1)\n",
        "(v @ p) * sum(x)",
        lambda f, q: (q["v"] @ q["p"])[None] * f["x"].sum(1)[:, None]),
}


@pytest.mark.parametrize("case", MATMULS)
def test_matmul_multiplies_each_example_by_itself(case):
    """numpy's matmul within one example (a vector is a row on the left, a
    column on the right); an example's result does not depend on the batch
    it is in; gradients match finite differences."""
    decls, expr, ref = MATMULS[case]
    m = nncompile.compile_source(decls + f"output o = {expr}\nloss sum(o * o)\n",
                                 device="cpu")
    rng = np.random.default_rng(5)
    feeds = {k: rng.normal(size=(6,) + s).astype(np.float32) for k, s in m.inputs.items()}
    want = ref(feeds, m.params)
    got = m.predict(feeds)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.predict({k: v[2:3] for k, v in feeds.items()}), want[2:3],
                               rtol=1e-5, atol=1e-5)
    lines, worst, ok = gradient_check(m)
    assert ok, "\n".join(lines)


@pytest.mark.parametrize("f", ["sum", "mean", "max"])
def test_a_reduction_of_one_number_per_example_is_that_number(f):
    """sum, mean and max over every axis of an [N] value reduce nothing: the
    loss is the batch mean of s (max once crashed simplify's count rule)."""
    m = nncompile.compile_source(f"input x[3]\ns = sum(dense(x, 2))\nloss {f}(s)\n",
                                 device="cpu")
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    w, b = m.params["s.weight"], m.params["s.bias"]
    assert m.loss(x, {}) == pytest.approx(float(np.mean((x @ w + b).sum(1))), rel=1e-6)
    lines, worst, ok = gradient_check(m)
    assert ok, "\n".join(lines)


def test_the_gradient_of_a_zeroth_power_is_zero_at_zero():
    """w ^ 0 is 1 everywhere, 0 ^ 0 included: its gradient is 0, not 0 * inf."""
    m = nncompile.compile_source("input x[2]\ntarget y[2]\nparam w[2] = 0\nparam v[2] = 1\n"
                                 "loss mse(x * w ^ 0 + v, y)\n", device="cpu")
    x, y = np.ones((3, 2), np.float32), np.zeros((3, 2), np.float32)
    g = m.gradients(x, y)
    np.testing.assert_array_equal(g["w"], [0, 0])
    np.testing.assert_allclose(g["v"], [2, 2])      # d/dv mean((1 + v) ^ 2) at v = 1


def test_a_loss_of_one_number_in_axes_of_size_one_is_that_number():
    """(p - y) ^ 2 with a target y[1] is [N, 1]: the batch mean of its one
    number, as mse(p, y); a param w[1]'s square is that one number."""
    m = nncompile.compile_source("input x[2]\ntarget y[1]\np = dense(x, 1)\n"
                                 "loss (p - y) ^ 2\n", device="cpu")
    ref = nncompile.compile_source("input x[2]\ntarget y[1]\np = dense(x, 1)\n"
                                   "loss mse(p, y)\n", device="cpu")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 2)).astype(np.float32), rng.normal(size=(5, 1)).astype(np.float32)
    assert m.loss(x, y) == pytest.approx(ref.loss(x, y), rel=1e-6)
    w = nncompile.compile_source("param w[1] = 3\nloss w ^ 2\n", device="cpu")
    assert w.graph.loss.shape == ()


def test_simplify_leaves_a_count_of_a_reduction_over_no_axes():
    from nncompile.ir.graph import N, Graph
    from nncompile.passes.simplify import simplify
    g = Graph("t")
    x = g.inputs["x"] = g.add("input", [], {"name": "x", "shape": (N,)}, name="x", shape=(N,))
    top = g.add("max", [x], {"axes": (), "keepdims": False})
    g.outputs["c"] = g.add("count", [top], {"axes": (0,)})
    out = simplify(g).outputs["c"]
    assert out.op == "count" and out.inputs[0].op in ("max", "input")


def test_gradient_check_catches_a_derivative_off_by_a_tenth_of_a_percent(sample, monkeypatch):
    """In deep_sigmoid.nn, whose first layers' gradients are about 1e-6 (where
    the check's floor for rounding applies), a sigmoid derivative 0.1% too large
    fails the check, and the true one passes."""
    import dataclasses

    from nncompile.ops.registry import REGISTRY
    true = REGISTRY["sigmoid"]

    def wrong_vjp(b, n, g):
        (d,) = true.vjp(b, n, g)
        return [b.add("mul", [d, b.const(1.001)])]

    m = nncompile.compile(sample("deep_sigmoid"), device="cpu")
    assert gradient_check(m)[2]
    monkeypatch.setitem(REGISTRY, "sigmoid", dataclasses.replace(true, vjp=wrong_vjp))
    lines, worst, ok = gradient_check(m)
    assert not ok and worst > 1e-4
    errors = {ln.split()[0]: float(ln.split()[-1]) for ln in lines}
    assert errors["h6.weight"] > 1e-4 and errors["logits.weight"] < 1e-5


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_numpy_backend_step_matches_the_reference(path):
    """The fused, scheduled float32 training step equals the unfused float64
    graph: the loss and every updated param and optimizer buffer (with the
    dropout masks the step drew)."""
    if not compiles_here(path):
        pytest.skip("uses ops this build lacks")
    m = nncompile.compile(path, device="cpu")
    cfg = m.train_config
    batch = random_batch(m, seed=5)
    g = pipeline.differentiate(training_mode(m.graph, True, cfg.seed), cfg, with_update=True)
    leaves = dict(batch)
    leaves.update(m.params)
    for k, v in g.state.items():
        leaves[k] = np.full(v.shape, v.attrs["value"])
    prog = m._program("step", cfg)
    roots = prog({k: v.astype(np.float32) for k, v in batch.items()})
    bound = prog.bound(len(next(iter(batch.values()))))
    for n in prog.schedule.graph.nodes:      # the dropout masks this step drew
        if n.op == "random":
            leaves[n.attrs["name"]] = bound.value[n].astype(np.float64)
    want = evaluate(g, leaves, g.roots())
    assert float(roots[prog.schedule.graph.loss]) == pytest.approx(float(want[g.loss]),
                                                                   rel=1e-5, abs=1e-6)
    for name, node in g.updates.items():
        np.testing.assert_allclose(m._storage[name], want[node], rtol=2e-5, atol=2e-6,
                                   err_msg=name)


def test_fan_out_gradients_are_summed():
    """loss = sum(w * w + w): d/dw = 2w + 1, from two uses of w."""
    src = "input x[1]\nparam w[3] = 2\nloss sum(w * w + w) + 0 * sum(x)\n"
    m = nncompile.compile_source(src, device="cpu")
    gd = pipeline.differentiate(m.graph, with_update=False)
    v = evaluate(gd, {"x": np.zeros((2, 1)), "w": np.full(3, 2.0)}, [gd.grads["w"]])
    np.testing.assert_array_equal(v[gd.grads["w"]], [5.0, 5.0, 5.0])


def test_broadcasting_is_undone_in_the_bias_gradient():
    """z = x + b with x [N, 3], b [3]: d sum(z) / db = N for each entry."""
    src = "input x[3]\ntarget t[3]\nparam b[3] = zeros\noutput z = x + b\nloss mse(z, t)\n"
    m = nncompile.compile_source(src, device="cpu")
    x = np.zeros((4, 3), np.float32)
    t = np.ones((4, 3), np.float32)
    # mse = mean((b - 1)^2) over 12 entries; d/db = 2 (b - 1) * 4 / 12
    np.testing.assert_allclose(m.gradients(x, t)["b"], np.full(3, -2 * 4 / 12), rtol=1e-6)


def test_dense_relu_fuses_into_one_gemm_kernel_forward_and_backward(sample):
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    g = pipeline.optimize(pipeline.select(m.graph, updates=True, cfg=m.train_config))
    gemms = [n for n in g.nodes if n.op == "fused" and n.attrs["kind"] == "gemm"]
    bodies = [[e[0] for e in n.attrs["body"]] for n in gemms]
    assert ["matmul", "add", "relu"] in bodies                 # forward: bias + activation
    assert ["matmul", "step", "mul"] in bodies                 # backward: dY * relu'(Z)
    assert ["matmul", "mul", "add"] in bodies                  # dW fused into v = mu v + dW
    assert not any(n.op in ("relu", "transpose", "expand") for n in g.nodes)


def test_updates_write_params_in_place(sample):
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    s = pipeline.program(m.graph, updates=True, cfg=m.train_config)
    assert sorted(s.writes.values()) == sorted(s.graph.updates)


def test_buffers_are_reused(sample):
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    s = pipeline.program(m.graph, updates=True, cfg=m.train_config)
    assert len(s.slot_shapes) < len([n for n in s.order if n not in s.writes])


def test_a_training_step_allocates_no_new_buffers(sample):
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    prog = m._program("step", m.train_config)
    feeds = prog.feeds(32)
    feeds["x"][:] = 1.0
    feeds["y"][:, 0] = 1.0
    first = {n: id(v) for n, v in prog.run(32).items()}
    second = {n: id(v) for n, v in prog.run(32).items()}
    assert first == second


def test_step_flops_count_the_gemms_of_forward_and_backward(sample):
    """xor (batch 4): forward 2*4*2*4 + 2*4*4*1, backward G W2^T 2*4*1*4, the
    weight gradients 2*4*1*4 and 2*2*4*4 (no gradient for the input).
    lenet (batch 64): each conv's forward and weight gradient, conv2's input
    gradient (conv1's input is data), and the two dense layers three times,
    each 2 * output-side elements * window."""
    from nncompile.check import step_flops
    what, batch, total, gemm = step_flops(nncompile.compile(sample("xor"), device="cpu"))
    assert (what, batch, gemm) == ("a training step", 4, 64 + 32 + 32 + 32 + 64)
    what, batch, total, gemm = step_flops(nncompile.compile(sample("lenet"), device="cpu"))
    conv1 = 2 * 64 * (8 * 8 * 8) * (1 * 3 * 3)
    conv2 = 2 * 64 * (16 * 4 * 4) * (8 * 3 * 3)
    dense = 2 * 64 * 64 * 64 + 2 * 64 * 64 * 10
    assert (what, batch, gemm) == ("a training step", 64, 2 * conv1 + 3 * conv2 + 3 * dense)
    assert 0.95 < gemm / total < 0.97
    m = nncompile.compile_source("input x[3]\nparam w[3, 2] = ones\noutput y = relu(x @ w)\n",
                                 device="cpu")
    assert step_flops(m) == ("a forward pass", 32, 2 * 32 * 3 * 2 + 32 * 2, 2 * 32 * 3 * 2)
