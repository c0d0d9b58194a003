"""What the numpy backend does at bind time: the horizontal fusion of the
update (backends/numpy/pack.py: the same results, bit for bit, as the update
param by param, in fewer calls, and no run where moving it would change a
value), values fixed per batch size computed once, and short-row sums as
matmuls."""
import glob
import os

import numpy as np
import pytest

import nncompile
from nncompile.backends.device import store_family
from nncompile.backends.numpy import NumpyProgram
from nncompile.backends.numpy.pack import flat_location
from nncompile.ir.graph import Graph
from nncompile.passes import pipeline
from nncompile.passes.schedule import schedule

SAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "samples", "*.nn")))
OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", momentum=0.0),
    "momentum": dict(optimizer="sgd", momentum=0.9),
    "adam": dict(optimizer="adam"),
    "momentum_clip": dict(optimizer="sgd", momentum=0.9, clip=0.5),
}


def _storages(m, sched):
    """The same values twice: flat families (as Model keeps them) and one
    array per name (which gives the packer nothing to fuse)."""
    values = dict(m.params)
    for n in sched.graph.nodes:
        if n.op == "state":
            values[n.attrs["name"]] = np.full(n.shape, n.attrs["value"], np.float32)
    flat, single = {}, {}
    store_family(flat, {k: values[k] for k in m.graph.params})
    for k in values:
        if k not in flat:
            flat[k] = values[k].copy()
    for k, v in values.items():
        single[k] = v.copy()
    return flat, single


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=list(OPTIMIZERS))
@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_packed_update_equals_the_update_param_by_param(path, opt):
    if "mnist" in path:
        pytest.skip("same network as lenet; its data files are not here")
    m = nncompile.compile(path, device="cpu")
    cfg = m.config(accumulate=1, **OPTIMIZERS[opt])
    sched = pipeline.program(m.graph, updates=True, cfg=cfg)
    flat, single = _storages(m, sched)
    # optimizer state as families too, grouped the way Model groups it
    fams = {}
    for k in list(flat):
        for p in m.graph.params:
            if k.startswith(p + "."):
                fams.setdefault(k.replace(p, "*", 1), {})[k] = flat.pop(k)
    for fam in fams.values():
        store_family(flat, fam)
    packed, plain = NumpyProgram(sched, flat), NumpyProgram(sched, single)
    rng = np.random.default_rng(0)
    for batch in (7, 7, 3):
        feeds = {k: rng.standard_normal(b.shape).astype(np.float32)
                 for k, b in packed.feeds(batch).items()}
        a, b = packed(feeds), plain(feeds)
        assert float(a[sched.graph.loss]) == float(b[sched.graph.loss])
    for k in single:
        assert np.array_equal(flat[k], single[k]), k
    # every sample has more than one param, all with the same momentum or adam
    # rule (plain sgd with weight decay updates weights and biases differently)
    fewer = len(packed.bound(7).calls) < len(plain.bound(7).calls)
    assert fewer or (opt == "sgd" and "custom_loss" in path)


def test_momentum_update_of_digits_mlp_is_four_calls_over_every_param():
    """v = 0.9 v + g; p = p - lr v over all four params: 2 + 2 numpy calls
    (plus the two weight-gradient GEMMs, which write into the gradient pack)."""
    m = nncompile.compile(os.path.join(os.path.dirname(__file__), "..", "samples",
                                       "digits_mlp.nn"), device="cpu")
    prog = m._program("step", m.train_config)
    b = prog.bound(32)
    runs = [c for c in b.calls if getattr(c, "args", None)
            and any(getattr(x, "size", 0) == 64 * 64 + 64 + 64 * 10 + 10 for x in c.args)]
    assert len(runs) == 4
    # the whole step: 47 calls with the update param by param, 31 now (the
    # update 18 -> 4, and -1/count and -count computed once per batch size)
    assert len(b.calls) == 31
    for name in m.graph.params:       # still views of the model's flat buffers
        assert flat_location(m._storage[name]) is not None


def _two_param_graph(reader_first: bool):
    """a' = a * 0.5 and b' = b * 0.5 (one rule: a run), and an output o = a' + 1
    scheduled either between the two updates or after both."""
    g = Graph("t")
    for name in ("a", "b"):
        g.params[name] = g.add("param", [], {"name": name, "shape": (3,), "init": ("zeros",)},
                               name=name, shape=(3,))
    half = g.const(0.5)
    a_new = g.add("mul", [g.params["a"], half])
    if reader_first:
        o = g.add("add", [a_new, g.const(1.0)])
    b_new = g.add("mul", [g.params["b"], half])
    if not reader_first:
        o = g.add("add", [a_new, g.const(1.0)])
    g.updates = {"a": a_new, "b": b_new}
    g.outputs = {"o": o}
    return g


@pytest.mark.parametrize("reader_first", [True, False])
def test_a_run_is_not_moved_past_a_reader_of_its_result(reader_first):
    g = _two_param_graph(reader_first)
    s = schedule(g)
    assert set(s.writes.values()) == {"a", "b"}
    storage = {}
    store_family(storage, {"a": np.array([2.0, 4.0, 6.0], np.float32),
                           "b": np.array([1.0, 3.0, 5.0], np.float32)})
    prog = NumpyProgram(s, storage)
    roots = prog.run(1)
    np.testing.assert_array_equal(roots[g.outputs["o"]], [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(storage["a"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(storage["b"], [0.5, 1.5, 2.5])
    # with the reader in between, the two updates run apart (2 calls + the add);
    # after both, as one run (1 call + the add)
    assert len(prog.bound(1).calls) == (3 if reader_first else 2)


def test_values_fixed_per_batch_size_are_computed_once_at_bind():
    """The mean's -count and the loss seed -1/count depend on the batch size
    alone: computed when the step is bound, and right for each batch size."""
    m = nncompile.compile(os.path.join(os.path.dirname(__file__), "..", "samples",
                                       "digits_mlp.nn"), device="cpu")
    prog = m._program("evaluate")
    rng = np.random.default_rng(1)
    for batch in (5, 8):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
        roots = prog({"x": x, "y": y})
        p = roots[prog.schedule.graph.outputs["p"]]
        want = -np.mean(np.sum(y * np.log(p.astype(np.float64)), axis=1))
        assert float(roots[prog.schedule.graph.loss]) == pytest.approx(want, rel=1e-5)
        scalar = [c.func for c in prog.bound(batch).calls
                  if all(np.ndim(a) == 0 for a in getattr(c, "args", (0,)))]
        assert scalar == [np.divide]        # sum / -count; -count is not recomputed


@pytest.mark.parametrize("shape", [(7, 10), (3, 5, 2), (129, 64)])
def test_short_rows_are_summed_by_a_matmul_with_ones(shape):
    from nncompile.ops.reduce import _sum_bind
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    for keepdims in (False, True):
        out = np.zeros(shape[:-1] + ((1,) if keepdims else ()), np.float32)
        call = _sum_bind(out, [x], {"axes": (-1,), "keepdims": keepdims})
        assert call.func is np.matmul
        call()
        np.testing.assert_allclose(out, x.astype(np.float64).sum(-1, keepdims=keepdims),
                                   rtol=1e-5, atol=1e-5)


def test_long_rows_and_strided_values_keep_numpys_reduction():
    from nncompile.ops.reduce import _sum_bind
    x = np.ones((4, 100), np.float32)
    assert _sum_bind(np.zeros(4, np.float32), [x], {"axes": (1,), "keepdims": False}).func \
        == np.add.reduce
    t = np.ones((10, 4), np.float32).T          # rows of 10 that are not contiguous
    call = _sum_bind(np.zeros(4, np.float32), [t], {"axes": (1,), "keepdims": False})
    assert call.func == np.add.reduce


def _flat_calls(calls):
    from nncompile.ops.conv import _run_all
    out = []
    for c in calls:
        out += _flat_calls(c.args[0]) if getattr(c, "func", None) is _run_all else [c]
    return out


def test_a_conv_and_its_weight_gradient_share_the_im2col_columns(monkeypatch):
    """lenet's two convs, at a batch of two blocks (32 + 8 examples): the
    weight gradients read the forward's columns, so 2 copies fewer per conv
    and block, and the second conv's two gradients share the transposed g, 1
    copy fewer per block; the training steps give the same params bit for bit."""
    from nncompile.backends.numpy import executor
    path = os.path.join(os.path.dirname(__file__), "..", "samples", "lenet.nn")
    results, counts = [], []
    for share in (executor.SHARE_COLS, ()):
        monkeypatch.setattr(executor, "SHARE_COLS", share)
        m = nncompile.compile(path, device="cpu")
        cfg = m.config(accumulate=1)
        sched = pipeline.program(m.graph, updates=True, cfg=cfg)
        flat, _ = _storages(m, sched)
        prog = NumpyProgram(sched, flat)
        feeds = {k: np.random.default_rng(3).standard_normal(b.shape).astype(np.float32)
                 for k, b in prog.feeds(40).items()}
        for _ in range(2):
            prog(feeds)
        results.append({k: v.copy() for k, v in flat.items()})
        counts.append(len(_flat_calls(prog.bound(40).calls)))
    for k in results[1]:
        assert np.array_equal(results[0][k], results[1][k]), k
    assert counts[1] - counts[0] == 2 * 2 * 2 + 2


def test_shared_conv_buffers_are_forgotten_once_their_source_is_overwritten():
    """A gradient's transposed copy entered by conv2d_input_grad is read by
    conv2d_weight_grad of the same g, unless an op bound in between writes
    g's memory: then the weight gradient makes its own copy."""
    from nncompile.ops import REGISTRY
    from nncompile.ops.conv import forget_overwritten
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    g = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    attrs = {"stride": 1, "padding": 0}
    for overwritten in (False, True):
        cache = {}
        dx, dw = np.empty_like(x), np.empty_like(w)
        first = REGISTRY["conv2d_input_grad"].bind(dx, [g, w], {**attrs, "size": (7, 7)},
                                                   cols_cache=cache)
        assert len(cache) == 1
        if overwritten:
            forget_overwritten(cache, g[1:2, 1])     # any overlap drops the entry
            assert not cache
        second = REGISTRY["conv2d_weight_grad"].bind(dw, [x, g], {**attrs, "kernel": (3, 3)},
                                                     cols_cache=cache)
        first()
        g[...] = rng.standard_normal(g.shape)        # the memory is written again
        second()
        want = REGISTRY["conv2d_weight_grad"].eval([x, g], {**attrs, "kernel": (3, 3)})
        assert np.array_equal(dw, want) == overwritten
    assert len(cache) == 1                            # the weight gradient's own copy
    forget_overwritten(cache, np.empty(3, np.float32))   # no overlap: it stays
    assert len(cache) == 1


def test_relu_compares_with_a_zeros_array_and_gives_maximums_bits():
    from nncompile.ops import REGISTRY
    x = np.random.default_rng(4).standard_normal((33, 7)).astype(np.float32)
    x[0, :3] = [np.nan, -0.0, 0.0]
    out = np.empty_like(x)
    call = REGISTRY["relu"].bind(out, [x], {})
    assert call.args[1].shape == x.shape and not call.args[1].any()
    call()
    want = np.maximum(x, np.float32(0))
    assert np.array_equal(out.view(np.int32), want.view(np.int32))


def test_log_of_a_sigmoid_far_below_zero_is_exact():
    """sigmoid was (1 + tanh(x/2)) / 2, whose absolute error of 3e-8 in
    float32 is all of sigmoid(-17): log(sigmoid(x)) came out -16.2 at
    x = -16.6 (the fuzzer's find, tests/test_fuzz_graphs.py) and -inf below
    -17, where it is x - log(1 + e^x), about x. Now 1 / (1 + exp(-x)), as on
    the GPU; its gradient, 1 - sigmoid(x), is exact too."""
    m = nncompile.compile_source("input x[1]\ntarget y[1]\nparam b[1] = zeros\n"
                                 "output o = log(sigmoid(x + b))\nloss mean(o * y)\n",
                                 device="cpu")
    x = np.array([[-30], [-16.6], [-5], [0], [5], [30]], np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(m.predict(x), x64 - np.log1p(np.exp(x64)), rtol=1e-6, atol=1e-7)
    y = np.ones_like(x)
    grad = m.gradients(x, y)["b"]
    np.testing.assert_allclose(grad, [np.mean(1 / (1 + np.exp(x64)))], rtol=1e-6)
