"""Convolution, pooling and dropout: each op against a direct (looping)
reference and its vjp against central finite differences in float64; the
max-pool tie rule; dropout in training and prediction; the layers' shape
errors as the user sees them; conv + bias + activation fusion."""
import numpy as np
import pytest

import nncompile
from nncompile.ir.evaluate import evaluate
from nncompile.ir.graph import Graph
from nncompile.ops import REGISTRY
from nncompile.ops.registry import bind_call
from nncompile.passes import pipeline
from nncompile.passes.autodiff import autodiff

# test_ops.py's registry check counts these ops as tested here
OPS_TESTED_HERE = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "maxpool",
                   "maxpool_grad", "maxpool_select", "avgpool", "avgpool_grad", "dropout",
                   "random")


# direct references: loops over every output pixel -----------------------------

def conv_ref(x, w, stride, padding):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, f, ho, wo))
    for b in range(n):
        for o in range(f):
            for i in range(ho):
                for j in range(wo):
                    win = xp[b, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[b, o, i, j] = np.sum(win * w[o])
    return y


def conv_input_grad_ref(g, w, stride, padding, size):
    n, f, ho, wo = g.shape
    _, c, kh, kw = w.shape
    h, wd = size
    dxp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding))
    for b in range(n):
        for o in range(f):
            for i in range(ho):
                for j in range(wo):
                    dxp[b, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += \
                        g[b, o, i, j] * w[o]
    return dxp[:, :, padding:padding + h, padding:padding + wd]


def conv_weight_grad_ref(x, g, stride, padding, kernel):
    n, f, ho, wo = g.shape
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dw = np.zeros((f, x.shape[1], kh, kw))
    for b in range(n):
        for o in range(f):
            for i in range(ho):
                for j in range(wo):
                    dw[o] += g[b, o, i, j] * \
                        xp[b, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
    return dw


def pool_ref(x, size, stride, reduce):
    n, c, h, w = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = reduce(x[:, :, i * stride:i * stride + size,
                                     j * stride:j * stride + size], axis=(2, 3))
    return y


def maxpool_grad_ref(x, g, size, stride):
    """g routed to the first maximum of each window in row-major order."""
    dx = np.zeros_like(x)
    n, c, ho, wo = g.shape
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    win = x[b, ch, i * stride:i * stride + size, j * stride:j * stride + size]
                    a, k = divmod(int(np.argmax(win)), size)
                    dx[b, ch, i * stride + a, j * stride + k] += g[b, ch, i, j]
    return dx


def maxpool_select_ref(x, h, size, stride):
    n, c, hh, ww = x.shape
    ho, wo = (hh - size) // stride + 1, (ww - size) // stride + 1
    out = np.zeros((n, c, ho, wo))
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    sl = np.s_[b, ch, i * stride:i * stride + size, j * stride:j * stride + size]
                    a, k = divmod(int(np.argmax(x[sl])), size)
                    out[b, ch, i, j] = h[sl][a, k]
    return out


def avgpool_grad_ref(g, size, stride, shape):
    n, c, ho, wo = g.shape
    dx = np.zeros((n, c) + tuple(shape))
    for i in range(ho):
        for j in range(wo):
            dx[:, :, i * stride:i * stride + size, j * stride:j * stride + size] += \
                g[:, :, i, j, None, None] / size ** 2
    return dx


# op -> (input shapes, attrs, direct reference); odd sizes, several channels,
# stride 1, 2 and 3, padding 0, 1 and 2
S2P1 = {"stride": 2, "padding": 1}
S1P2 = {"stride": 1, "padding": 2}
S3P0 = {"stride": 3, "padding": 0}
CASES = [
    ("conv2d", [(2, 3, 7, 5), (4, 3, 3, 3)], S2P1, lambda x, w: conv_ref(x, w, 2, 1)),
    ("conv2d", [(2, 2, 5, 6), (3, 2, 3, 2)], S1P2, lambda x, w: conv_ref(x, w, 1, 2)),
    ("conv2d", [(1, 2, 8, 7), (2, 2, 3, 3)], S3P0, lambda x, w: conv_ref(x, w, 3, 0)),
    ("conv2d", [(2, 3, 5, 5), (2, 3, 5, 5)], {"stride": 2, "padding": 2},
     lambda x, w: conv_ref(x, w, 2, 2)),
    ("conv2d_input_grad", [(2, 4, 4, 3), (4, 3, 3, 3)], {**S2P1, "size": (7, 5)},
     lambda g, w: conv_input_grad_ref(g, w, 2, 1, (7, 5))),
    ("conv2d_input_grad", [(2, 3, 7, 9), (3, 2, 3, 2)], {**S1P2, "size": (5, 6)},
     lambda g, w: conv_input_grad_ref(g, w, 1, 2, (5, 6))),
    ("conv2d_input_grad", [(1, 2, 2, 2), (2, 2, 3, 3)], {**S3P0, "size": (8, 7)},
     lambda g, w: conv_input_grad_ref(g, w, 3, 0, (8, 7))),
    ("conv2d_weight_grad", [(2, 3, 7, 5), (2, 4, 4, 3)], {**S2P1, "kernel": (3, 3)},
     lambda x, g: conv_weight_grad_ref(x, g, 2, 1, (3, 3))),
    ("conv2d_weight_grad", [(2, 2, 5, 6), (2, 3, 7, 9)], {**S1P2, "kernel": (3, 2)},
     lambda x, g: conv_weight_grad_ref(x, g, 1, 2, (3, 2))),
    ("maxpool", [(2, 3, 5, 5)], {"size": 3, "stride": 2},
     lambda x: pool_ref(x, 3, 2, np.max)),
    ("maxpool", [(2, 2, 6, 4)], {"size": 2, "stride": 2},
     lambda x: pool_ref(x, 2, 2, np.max)),
    ("maxpool_grad", [(2, 3, 5, 5), (2, 3, 2, 2)], {"size": 3, "stride": 2},
     lambda x, g: maxpool_grad_ref(x, g, 3, 2)),
    ("maxpool_grad", [(1, 2, 7, 7), (1, 2, 3, 3)], {"size": 3, "stride": 2},
     lambda x, g: maxpool_grad_ref(x, g, 3, 2)),
    ("maxpool_select", [(2, 3, 5, 5), (2, 3, 5, 5)], {"size": 3, "stride": 2},
     lambda x, h: maxpool_select_ref(x, h, 3, 2)),
    ("avgpool", [(2, 3, 5, 5)], {"size": 3, "stride": 2},
     lambda x: pool_ref(x, 3, 2, np.mean)),
    ("avgpool", [(2, 2, 6, 4)], {"size": 2, "stride": 2},
     lambda x: pool_ref(x, 2, 2, np.mean)),
    ("avgpool_grad", [(2, 3, 2, 2)], {"size": 3, "stride": 2, "shape": (5, 5)},
     lambda g: avgpool_grad_ref(g, 3, 2, (5, 5))),
    ("dropout", [(3, 4)], {"rate": 0.5}, lambda x: x),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]
# d/dx is zero almost everywhere for the max-pool routing ops (x only picks positions)
CONSTANT_IN = {("maxpool_grad", 0), ("maxpool_select", 0)}


def inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


@pytest.mark.parametrize("op,shapes,attrs,ref", CASES, ids=IDS)
def test_eval_and_infer_match_the_direct_reference(op, shapes, attrs, ref):
    xs = inputs(shapes, 1)
    got = REGISTRY[op].eval(xs, attrs)
    np.testing.assert_allclose(got, ref(*xs), rtol=1e-12, atol=1e-12)
    assert tuple(REGISTRY[op].infer(shapes, attrs)) == got.shape
    assert got.dtype == np.float64


@pytest.mark.parametrize("op,shapes,attrs,ref", CASES, ids=IDS)
def test_bound_float32_call_matches_eval_and_can_rerun(op, shapes, attrs, ref):
    xs = [x.astype(np.float32) for x in inputs(shapes, 2)]
    want = REGISTRY[op].eval(xs, attrs)
    out = np.full(want.shape, np.nan, np.float32)
    call = bind_call(REGISTRY[op], out, xs, attrs)
    call()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    for x in xs:                       # the same call sees new contents of its inputs
        x *= -2
    call()
    np.testing.assert_allclose(out, REGISTRY[op].eval(xs, attrs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,shapes,attrs,ref", CASES, ids=IDS)
def test_vjp_matches_central_differences(op, shapes, attrs, ref):
    """d sum(op(p...) * r) / d p by autodiff against (L(p + h) - L(p - h)) / 2h."""
    xs = inputs(shapes, 3)
    g = Graph()
    leaves = {}
    ps = []
    for k, x in enumerate(xs):
        node = g.add("param", [], {"name": f"p{k}", "shape": x.shape}, name=f"p{k}")
        g.params[f"p{k}"] = node
        ps.append(node)
        leaves[f"p{k}"] = x
    out = g.add(op, ps, attrs)
    leaves["r"] = np.random.default_rng(4).normal(size=out.shape)
    r = g.add("input", [], {"name": "r", "shape": out.shape}, name="r")
    g.loss = g.add("sum", [g.add("mul", [out, r])],
                   {"axes": tuple(range(len(out.shape))), "keepdims": False})
    gd = autodiff(g)
    analytic = evaluate(gd, leaves, list(gd.grads.values()))

    def loss(trial):
        return float(evaluate(g, trial, [g.loss])[g.loss])

    h = 1e-6
    for k, x in enumerate(xs):
        numeric = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            plus, minus = x.copy(), x.copy()
            plus[idx] += h
            minus[idx] -= h
            numeric[idx] = (loss({**leaves, f"p{k}": plus}) -
                            loss({**leaves, f"p{k}": minus})) / (2 * h)
        got = analytic[gd.grads[f"p{k}"]]
        if (op, k) in CONSTANT_IN:
            np.testing.assert_array_equal(got, 0.0)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)


def test_conv_ops_work_block_by_block_on_large_batches():
    """70 examples: blocks of conv.BLOCK and a partial last one."""
    from nncompile.ops.conv import BLOCK
    assert 70 > 2 * BLOCK
    x, w, g = inputs([(70, 2, 6, 5), (3, 2, 3, 3), (70, 3, 3, 3)], 5)
    a = {"stride": 2, "padding": 1}
    np.testing.assert_allclose(REGISTRY["conv2d"].eval([x, w], a), conv_ref(x, w, 2, 1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(REGISTRY["conv2d_weight_grad"].eval([x, g], {**a, "kernel": (3, 3)}),
                               conv_weight_grad_ref(x, g, 2, 1, (3, 3)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(REGISTRY["conv2d_input_grad"].eval([g, w], {**a, "size": (6, 5)}),
                               conv_input_grad_ref(g, w, 2, 1, (6, 5)), rtol=1e-12, atol=1e-12)


def test_conv_shape_inference_names_both_shapes():
    from nncompile.ir.graph import ShapeError
    with pytest.raises(ShapeError, match=r"the input \[N, 3, 8, 8\] has 3 channels but the "
                                         r"weights \[4, 2, 3, 3\] expect 2"):
        REGISTRY["conv2d"].infer([("N", 3, 8, 8), (4, 2, 3, 3)], {"stride": 1, "padding": 0})


# max-pool ties ------------------------------------------------------------------

def test_maxpool_ties_go_to_the_first_element_in_row_major_order():
    x = np.array([[[[1., 3., 0., 0.],
                    [3., 3., 0., 0.],
                    [5., 2., 7., 7.],
                    [1., 5., 7., 7.]]]])
    g = np.array([[[[10., 20.], [30., 40.]]]])
    attrs = {"size": 2, "stride": 2}
    np.testing.assert_array_equal(REGISTRY["maxpool"].eval([x], attrs), [[[[3, 0], [5, 7]]]])
    np.testing.assert_array_equal(REGISTRY["maxpool_grad"].eval([x, g], attrs),
                                  [[[[0, 10, 20, 0],
                                     [0, 0, 0, 0],
                                     [30, 0, 40, 0],
                                     [0, 0, 0, 0]]]])


def test_overlapping_maxpool_windows_add_their_gradients_at_a_shared_maximum():
    # size 3, stride 2 on 5x5: the centre pixel 9 is the max of all four windows
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 9.0
    g = np.array([[[[1., 2.], [3., 4.]]]])
    dx = REGISTRY["maxpool_grad"].eval([x, g], {"size": 3, "stride": 2})
    want = np.zeros((1, 1, 5, 5))
    want[0, 0, 2, 2] = 10.0
    np.testing.assert_array_equal(dx, want)


# the layers, end to end -------------------------------------------------------------

CONV_MODEL = """model convs
input x[2, 7, 7]
target y[3]
c = conv2d(x, 4, 3, relu, stride = 2, padding = 1)
a = avgpool(c, 2)
m = maxpool(c, 3, stride = 1)
h = dense(flatten(a), 3)
k = dense(flatten(m), 3)
loss cross_entropy(h + k, y)
"""


def test_conv_layer_params_and_output_shapes():
    m = nncompile.compile_source(CONV_MODEL, device="cpu", file="convs.nn")
    shapes = {k: v.shape for k, v in m.params.items()}
    assert shapes == {"c.weight": (4, 2, 3, 3), "c.bias": (4, 1, 1), "h.weight": (16, 3),
                      "h.bias": (3,), "k.weight": (16, 3), "k.bias": (3,)}
    assert m.graph.params["c.weight"].attrs["init"] == ("he",)
    np.testing.assert_array_equal(m.params["c.bias"], 0.0)
    values = m.graph.values
    assert values["c"].shape == ("N", 4, 4, 4)
    assert values["a"].shape == ("N", 4, 2, 2)
    assert values["m"].shape == ("N", 4, 2, 2)


def test_conv_layer_computes_relu_of_conv_plus_bias():
    src = "input x[2, 6, 5]\noutput c = conv2d(x, 3, 3, relu, stride = 2, padding = 1, " \
          "init = normal(0, 1))\n"
    m = nncompile.compile_source(src, device="cpu")
    rng = np.random.default_rng(0)
    bias = rng.normal(size=(3, 1, 1)).astype(np.float32)
    m.set_params({"c.bias": bias})
    x = rng.normal(size=(4, 2, 6, 5)).astype(np.float32)
    want = np.maximum(conv_ref(x.astype(np.float64), m.params["c.weight"].astype(np.float64),
                               2, 1) + bias, 0)
    np.testing.assert_allclose(m.predict(x), want, rtol=1e-5, atol=1e-5)


def test_conv_bias_and_activation_fuse_into_the_conv_kernel(sample):
    m = nncompile.compile(sample("lenet"), device="cpu")
    g = pipeline.optimize(pipeline.select(m.graph, outputs=True))
    convs = [n for n in g.nodes if n.op == "fused" and n.attrs["kind"] == "conv"]
    assert [[e[0] for e in n.attrs["body"]] for n in convs] == [["conv2d", "add", "relu"]] * 2
    assert not any(n.op in ("conv2d", "relu") for n in g.nodes)
    x = np.random.default_rng(1).random((5, 1, 8, 8)).astype(np.float32)
    want = evaluate(m.graph, {"x": x, "y": np.zeros((5, 10)), **m.params},
                    [m.graph.outputs["p"]])
    np.testing.assert_allclose(m.predict(x), want[m.graph.outputs["p"]], rtol=1e-5, atol=1e-6)


def test_momentum_update_fuses_into_the_conv_weight_gradient():
    src = CONV_MODEL + "train {\n  optimizer = sgd(lr = 0.1, momentum = 0.9)\n}\n"
    m = nncompile.compile_source(src, device="cpu")
    g = pipeline.optimize(pipeline.select(m.graph, updates=True, cfg=m.train_config))
    bodies = [[e[0] for e in n.attrs["body"]] for n in g.nodes
              if n.op == "fused" and n.attrs["kind"] == "conv"]
    assert ["conv2d_weight_grad", "mul", "add"] in bodies


# dropout -----------------------------------------------------------------------------

DROPOUT_MODEL = """model drop
input x[2000]
target t[2000]
param w[2000] = ones
output p = dropout(x * w, 0.25)
loss mean(p * t)
train {
  optimizer = sgd(lr = 2000)
  batch = 1
  seed = 3
}
"""
ONES = np.ones((1, 2000), np.float32)


def mask_stream(seed, rate, draws, size=2000):
    """The masks the spec's generator gives: (u >= rate) / (1 - rate)."""
    rng = np.random.default_rng([seed, 2])
    scale = np.float32(1 / (1 - rate))
    return [(rng.random(size, dtype=np.float32) >= rate) * scale for _ in range(draws)]


def test_dropout_is_the_identity_in_prediction_and_evaluation():
    m = nncompile.compile_source(DROPOUT_MODEL, device="cpu")
    x = np.arange(2000, dtype=np.float32)[None] / 7
    np.testing.assert_array_equal(m.predict(x), x)
    assert m.loss(x, ONES) == pytest.approx(float(np.mean(x)), rel=1e-6)
    g = pipeline.optimize(pipeline.select(m.graph, outputs=True, loss=True))
    assert not any(n.op in ("dropout", "random") for n in g.nodes)


def test_dropout_in_training_scales_kept_values_by_one_over_keep():
    """d mean(mask * x * w * t) / dw = mask / 2000 for x = t = 1."""
    m = nncompile.compile_source(DROPOUT_MODEL, device="cpu")
    mask = m.gradients(ONES, ONES)["w"] * 2000
    np.testing.assert_allclose(mask[mask != 0], 4 / 3, rtol=1e-6)
    assert abs(np.mean(mask == 0) - 0.25) < 0.03
    assert abs(np.mean(mask) - 1.0) < 0.04
    np.testing.assert_allclose(mask, mask_stream(3, 0.25, 1)[0], rtol=1e-6)


def test_dropout_masks_change_between_steps_and_repeat_with_the_seed():
    a = nncompile.compile_source(DROPOUT_MODEL, device="cpu")
    b = nncompile.compile_source(DROPOUT_MODEL, device="cpu")
    first, second = (a.gradients(ONES, ONES)["w"] for _ in range(2))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(b.gradients(ONES, ONES)["w"], first)
    np.testing.assert_array_equal(b.gradients(ONES, ONES)["w"], second)
    other = nncompile.compile_source(DROPOUT_MODEL.replace("seed = 3", "seed = 4"), device="cpu")
    assert not np.array_equal(other.gradients(ONES, ONES)["w"], first)


def test_each_training_step_draws_a_new_mask_from_the_seed():
    """Two sgd steps with lr 2000 on dL/dw = mask / 2000: w = 1 - mask1 - mask2."""
    m = nncompile.compile_source(DROPOUT_MODEL, device="cpu")
    m.fit(x=np.ones((2, 2000)), y=np.ones((2, 2000)), epochs=1, shuffle=False)
    m1, m2 = mask_stream(3, 0.25, 2)
    np.testing.assert_allclose(m.params["w"], 1 - m1 - m2, atol=1e-6)


def test_the_reference_interpreter_takes_a_mask_by_name():
    m = nncompile.compile_source(DROPOUT_MODEL, device="cpu")
    g = pipeline.select(m.graph, outputs=True, grads=True, cfg=m.train_config)
    (mask,) = [n for n in g.nodes if n.op == "random"]
    assert mask.attrs == {"name": mask.attrs["name"], "shape": ("N", 2000), "rate": 0.25,
                          "seed": 3}
    assert not any(n.op == "dropout" for n in g.nodes)
    given = np.tile([0.0, 4 / 3], 1000)[None]
    x = np.arange(2000.0)[None]
    v = evaluate(g, {"x": x, "t": np.ones((1, 2000)), "w": np.ones(2000),
                     mask.attrs["name"]: given}, [g.outputs["p"], g.grads["w"]])
    np.testing.assert_array_equal(v[g.outputs["p"]], x * given)
    np.testing.assert_allclose(v[g.grads["w"]], (x * given / 2000)[0], rtol=1e-12)


def test_dropout_rate_zero_adds_no_mask():
    m = nncompile.compile_source(DROPOUT_MODEL.replace("0.25", "0"), device="cpu")
    g = pipeline.select(m.graph, updates=True, cfg=m.train_config)
    assert not any(n.op in ("dropout", "random") for n in g.nodes)


# shape errors, as the user reads them ------------------------------------------------

def error_of(src):
    with pytest.raises(nncompile.CompileError) as e:
        nncompile.compile_source(src, device="cpu", file="bad.nn")
    return str(e.value)


def test_conv_on_a_flat_input_says_what_shape_it_needs():
    text = error_of("input x[64]\nc = conv2d(x, 4, 3)\n")
    assert text.splitlines()[0] == (
        "bad.nn:2:12: error: conv2d needs [channels, height, width] per example, but "
        "'x' on line 1 is [64]")
    assert text.splitlines()[-1] == "hint: declare the input as [1, 8, 8]; conv2d comes " \
                                    "before flatten"


def test_conv_on_a_two_axis_input_suggests_one_channel():
    text = error_of("input img[8, 8]\nc = conv2d(img, 4, 3)\n")
    assert text.splitlines()[0].startswith("bad.nn:2:12: error: conv2d needs [channels, height, "
                                           "width] per example, but 'img' on line 1 is [8, 8]")
    assert text.splitlines()[-1] == "hint: give it one channel: [1, 8, 8]"


def test_a_kernel_larger_than_the_padded_input_is_an_error():
    text = error_of("input x[1, 8, 8]\np = maxpool(x, 4)\nc = conv2d(p, 4, 5, padding = 1)\n")
    assert text.splitlines()[0] == (
        "bad.nn:3:18: error: the 5x5 kernel of conv2d is larger than its input: 'p' on line 2 "
        "is [1, 2, 2] per example, 4x4 with padding 1")
    assert text.splitlines()[-1] == "hint: use a kernel of at most 4, or more padding"


def test_a_pool_that_would_drop_pixels_is_an_error_naming_them():
    text = error_of("input x[1, 8, 8]\nc1 = conv2d(x, 4, 2)\np1 = maxpool(c1, 2)\n")
    assert text.splitlines()[0] == (
        "bad.nn:3:6: error: maxpool(size 2, stride 2) does not tile its input exactly: 'c1' on "
        "line 2 is [4, 7, 7] per example, so its last row and last column would be dropped")
    assert text.splitlines()[-1] == (
        "hint: pad the input to 8x8 (e.g. padding in the conv before it), or choose a size and "
        "stride with (height - size) and (width - size) divisible by the stride")


def test_a_strided_pool_names_how_many_rows_it_would_drop():
    text = error_of("input x[2, 9, 7]\np = avgpool(x, 2, stride = 4)\n")
    assert "avgpool(size 2, stride 4) does not tile its input exactly: 'x' on line 1 is " \
           "[2, 9, 7] per example, so its last 3 rows and last column would be dropped" in text
    # no conv before it, so the hint does not suggest one's padding
    assert text.splitlines()[-1] == (
        "hint: pad the input to 10x10, or choose a size and stride with (height - size) and "
        "(width - size) divisible by the stride")


def test_a_pool_window_larger_than_its_input_is_an_error():
    text = error_of("input x[3, 4, 2]\np = maxpool(x, 3)\n")
    assert text.splitlines()[0] == (
        "bad.nn:2:16: error: the 3x3 window of maxpool is larger than its input: 'x' on line 1 "
        "is [3, 4, 2] per example")


def test_flatten_into_a_weight_of_the_wrong_width_names_both_shapes():
    text = error_of("input x[1, 8, 8]\nparam w[60, 10] = zeros\nc = conv2d(x, 4, 3)\n"
                    "z = flatten(c) @ w\n")
    assert text.splitlines()[0] == (
        "bad.nn:4:5: error: '@' cannot multiply [N, 144] by [60, 10]: 144 columns against 60 "
        "rows (a [N, 144] value @ 'w' on line 2)")


def test_dropout_rate_must_be_below_one():
    text = error_of("input x[4]\nh = dropout(x, 1)\n")
    assert text.splitlines()[0] == "bad.nn:2:16: error: the dropout rate must be below 1, got 1"
    assert text.splitlines()[-1] == ("hint: the dropout rate is the fraction of values dropped, "
                                     "0 or more and below 1, e.g. dropout(h, 0.5)")


def test_every_faulty_layer_is_reported_at_once():
    text = error_of("input x[1, 8, 8]\na = maxpool(x, 3)\nb = conv2d(x, 2, 9)\n"
                    "c = dropout(x, -0.5)\n")
    assert [line.split(": error")[0] for line in text.splitlines() if ": error" in line] == \
        ["bad.nn:2:5", "bad.nn:3:18", "bad.nn:4:16"]
