"""Per-op tests generated from the registry: every primitive has an entry in
CASES (a test fails when an op is added without one), and each entry is checked
for shape inference, eval against a direct formula, the executor's in-place
form against eval, and vjp against central finite differences in float64."""
import numpy as np
import pytest

from nncompile.ir.evaluate import evaluate
from nncompile.ir.graph import Graph, ShapeError
from nncompile.ops import REGISTRY
from nncompile.ops.registry import bind_call, broadcast_shapes
from nncompile.passes.autodiff import autodiff


def pos(shape):        # inputs that must be positive (log, sqrt, pow 0.5)
    return ("pos", shape)


def away(shape):       # inputs kept away from 0 (kinks of abs, relu, step; div)
    return ("away", shape)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _log_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return np.log(e / e.sum(-1, keepdims=True))


# op -> list of (input specs, attrs, direct formula)
CASES = {
    "neg": [([(3, 4)], {}, lambda x: -x)],
    "exp": [([(3, 4)], {}, np.exp)],
    "log": [([pos((3, 4))], {}, np.log)],
    "abs": [([away((3, 4))], {}, np.abs)],
    "sqrt": [([pos((3, 4))], {}, np.sqrt)],
    "square": [([(3, 4)], {}, lambda x: x * x)],
    "relu": [([away((3, 4))], {}, lambda x: np.where(x > 0, x, 0))],
    "sigmoid": [([(3, 4)], {}, _sigmoid)],
    "tanh": [([(3, 4)], {}, np.tanh)],
    "step": [([away((3, 4))], {}, lambda x: (x > 0) * 1.0)],
    "sign": [([away((3, 4))], {}, np.sign)],
    "stop_gradient": [([(3, 4)], {}, lambda x: x)],
    "leaky_relu": [([away((3, 4))], {"slope": 0.1}, lambda x: np.where(x > 0, x, 0.1 * x))],
    "pow": [([pos((3, 4))], {"k": 3.0}, lambda x: x ** 3),
            ([pos((5,))], {"k": 0.5}, lambda x: x ** 0.5)],
    "add": [([(3, 4), (4,)], {}, np.add), ([(3, 1), (1, 4)], {}, np.add)],
    "sub": [([(3, 4), (3, 1)], {}, np.subtract)],
    "mul": [([(3, 4), (4,)], {}, np.multiply), ([(2, 3, 4), ()], {}, np.multiply)],
    "div": [([(3, 4), away((3, 4))], {}, np.divide), ([(3, 4), away((1,))], {}, np.divide)],
    "maximum": [([(3, 4), (3, 4)], {}, np.maximum)],
    "equal": [([(3, 4), (3, 4)], {}, lambda a, b: (a == b) * 1.0)],
    "matmul": [([(3, 4), (4, 5)], {}, np.matmul), ([(2, 3, 4), (4, 5)], {}, np.matmul),
               ([(1, 7), (7, 1)], {}, np.matmul)],
    "transpose": [([(2, 3, 4)], {}, lambda x: x.transpose(0, 2, 1))],
    "sum": [([(3, 4, 5)], {"axes": (1,), "keepdims": False}, lambda x: x.sum(1)),
            ([(3, 4)], {"axes": (0, 1), "keepdims": True}, lambda x: x.sum((0, 1), keepdims=True))],
    "max": [([(3, 4, 5)], {"axes": (2,), "keepdims": False}, lambda x: x.max(2)),
            ([(3, 4)], {"axes": (0,), "keepdims": True}, lambda x: x.max(0, keepdims=True))],
    "expand": [([(3,), (3, 4)], {"axes": (1,), "keepdims": False},
                lambda g, like: np.broadcast_to(g[:, None], like.shape)),
               ([(1, 4), (3, 4)], {"axes": (0,), "keepdims": True},
                lambda g, like: np.broadcast_to(g, like.shape))],
    "count": [([(3, 4, 5)], {"axes": (0, 2)}, lambda x: np.float64(15))],
    "log_softmax": [([(3, 5)], {}, _log_softmax), ([(2, 3, 4)], {}, _log_softmax)],
    "reshape": [([("N", 2, 3)], {"shape": ("N", 6)}, lambda x: x.reshape(len(x), 6))],
}
ZERO_BY_DESIGN = {"stop_gradient"}   # its derivative is defined as zero
COVERED_ELSEWHERE = {"input", "target", "param", "state", "const"}   # leaves: no eval


def test_every_op_has_a_test_case():
    from importlib import import_module
    extra = set()
    try:   # ops whose tests live in their own file (tests/test_conv.py)
        extra = set(import_module("test_conv").OPS_TESTED_HERE)
    except (ImportError, AttributeError):
        pass
    missing = set(REGISTRY) - set(CASES) - COVERED_ELSEWHERE - extra
    assert not missing, f"ops without a test case: {sorted(missing)}"


def _inputs(specs, rng, batch=3):
    out = []
    for s in specs:
        kind, shape = s if isinstance(s[0] if s else None, str) and s and s[0] in ("pos", "away") \
            else ("any", s)
        shape = tuple(batch if d == "N" else d for d in shape)
        x = rng.normal(size=shape)
        if kind == "pos":
            x = np.abs(x) + 0.5
        elif kind == "away":
            x = np.sign(x + 1e-12) * (np.abs(x) + 0.3)
        out.append(x)
    return out


def _shape(spec):
    return spec[1] if spec and isinstance(spec[0], str) and spec[0] in ("pos", "away") else spec


CASE_LIST = [(op, i) for op, cases in CASES.items() for i in range(len(cases))]


@pytest.mark.parametrize("op,i", CASE_LIST)
def test_infer_and_eval_match_the_direct_formula(op, i):
    specs, attrs, formula = CASES[op][i]
    xs = _inputs(specs, np.random.default_rng(1))
    got = REGISTRY[op].eval(xs, attrs)
    want = formula(*xs)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    shapes = [_shape(s) for s in specs]
    inferred = REGISTRY[op].infer(shapes, attrs)
    concrete = tuple(3 if d == "N" else d for d in inferred)
    assert concrete == np.shape(want)


@pytest.mark.parametrize("op,i", CASE_LIST)
def test_in_place_form_matches_eval_in_float32(op, i):
    specs, attrs, _ = CASES[op][i]
    xs = [x.astype(np.float32) for x in _inputs(specs, np.random.default_rng(2))]
    want = REGISTRY[op].eval(xs, attrs)
    out = np.full(np.shape(want), np.nan, np.float32)
    bind_call(REGISTRY[op], out, xs, attrs)()
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


ELEMENTWISE_CASES = [(op, i) for op, i in CASE_LIST if REGISTRY[op].kind == "elementwise"]


@pytest.mark.parametrize("op,i", ELEMENTWISE_CASES)
def test_in_place_form_may_overwrite_its_first_input(op, i):
    """The schedule lets an elementwise op write over an input it reads last."""
    specs, attrs, _ = CASES[op][i]
    xs = [x.astype(np.float32) for x in _inputs(specs, np.random.default_rng(4))]
    want = REGISTRY[op].eval(xs, attrs)
    if xs[0].shape != np.shape(want):
        pytest.skip("the first input is broadcast, so it is never the output buffer")
    out = xs[0].copy()
    bind_call(REGISTRY[op], out, [out] + xs[1:], attrs)()
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op,i", CASE_LIST)
def test_vjp_matches_central_differences(op, i):
    specs, attrs, _ = CASES[op][i]
    rng = np.random.default_rng(3)
    xs = _inputs(specs, rng)
    g = Graph()
    leaves = {}
    params = []
    for k, x in enumerate(xs):
        name = f"p{k}"
        shape = tuple("N" if (s == "N") else d for s, d in
                      zip(_shape(specs[k]) + (None,) * 0, x.shape))
        node = g.add("param", [], {"name": name, "shape": shape}, name=name, shape=shape)
        g.params[name] = node
        params.append(node)
        leaves[name] = x
    out = g.add(op, params, attrs)
    weights = rng.normal(size=np.shape(REGISTRY[op].eval(xs, attrs)))
    r = g.add("input", [], {"name": "r", "shape": out.shape}, name="r", shape=out.shape)
    leaves["r"] = weights
    total = g.add("mul", [out, r])
    g.loss = g.add("sum", [total], {"axes": tuple(range(len(out.shape))), "keepdims": False})
    gd = autodiff(g)
    values = evaluate(gd, leaves, list(gd.grads.values()))

    def loss_of(trial):
        return float(evaluate(g, trial, [g.loss])[g.loss])

    h = 1e-6
    for k, x in enumerate(xs):
        analytic = values[gd.grads[f"p{k}"]]
        assert analytic.shape == x.shape
        if op in ZERO_BY_DESIGN:
            np.testing.assert_array_equal(analytic, 0.0)
            continue
        numeric = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            plus, minus = dict(leaves), dict(leaves)
            plus[f"p{k}"] = x.copy()
            plus[f"p{k}"][idx] += h
            minus[f"p{k}"] = x.copy()
            minus[f"p{k}"][idx] -= h
            numeric[idx] = (loss_of(plus) - loss_of(minus)) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


def test_broadcasting_rules_treat_the_batch_axis_as_its_own_size():
    assert broadcast_shapes(("N", 4), (4,)) == ("N", 4)
    assert broadcast_shapes(("N", 1), (1, 5)) == ("N", 5)
    with pytest.raises(ShapeError, match=r"shapes \[N, 4\] and \[3\] do not broadcast"):
        broadcast_shapes(("N", 4), (3,))


def test_matmul_infer_names_both_shapes():
    with pytest.raises(ShapeError, match=r"cannot multiply \[N, 3\] by \[4, 2\]"):
        REGISTRY["matmul"].infer([("N", 3), (4, 2)], {})


@pytest.mark.parametrize("shape", [(), ("N",)])
def test_log_softmax_of_one_number_says_what_to_apply_it_to(shape):
    with pytest.raises(ShapeError, match="normalise along the last axis") as e:
        REGISTRY["log_softmax"].infer([shape], {})
    assert e.value.hint == "apply it to a value with one entry per class, e.g. logits[10]"


def test_sigmoid_does_not_overflow_for_large_inputs():
    x = np.array([-1000.0, 0.0, 1000.0], np.float32)
    np.testing.assert_array_equal(REGISTRY["sigmoid"].eval([x], {}), [0.0, 0.5, 1.0])


def test_log_softmax_is_stable_for_large_logits():
    x = np.array([[1000.0, 1000.0]])
    np.testing.assert_allclose(REGISTRY["log_softmax"].eval([x], {}), np.log([[0.5, 0.5]]))
