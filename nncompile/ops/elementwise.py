"""Elementwise primitives: leaves, unary functions, binary arithmetic.

Derivatives are written in terms of the node's output where that is enough
(relu' = step(y), sigmoid' = y(1-y), tanh' = 1-y^2), so a fused
GEMM + bias + activation need not keep its pre-activation for the backward pass.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ..ir.graph import ShapeError
from .registry import broadcast_shapes, define, ufunc_bind


def _leaf_infer(shapes, attrs):
    return attrs["shape"]


def _no_eval(inputs, attrs):
    raise RuntimeError("a leaf has no eval; its value is bound by the executor")


for _leaf in ("input", "target", "param", "state"):
    define(_leaf, "leaf", _leaf_infer, _no_eval)

define("const", "leaf", lambda s, a: (),
       lambda ins, a: np.asarray(a["value"], dtype=np.float32),
       cuda="{value}f", doc="a scalar number")


def _same(shapes, attrs):
    return shapes[0]


def _bcast(shapes, attrs):
    return broadcast_shapes(shapes[0], shapes[1])


def _unary(name, ev, vjp, cuda, into=None, doc="", bind=None):
    define(name, "elementwise", _same, lambda ins, a: ev(ins[0], a), vjp,
           into or (lambda out, ins, a: out.__setitem__(Ellipsis, ev(ins[0], a))), cuda, doc,
           bind)


def _ufunc1(f):
    return lambda out, ins, a: f(ins[0], out=out)


# unary -------------------------------------------------------------------
_unary("neg", lambda x, a: -x, lambda b, n, g: [b.add("neg", [g])], "(-{a})",
       _ufunc1(np.negative), bind=ufunc_bind(np.negative))
_unary("exp", lambda x, a: np.exp(x),
       lambda b, n, g: [b.add("mul", [g, n])], "expf({a})", _ufunc1(np.exp),
       doc="d exp(x) = exp(x)", bind=ufunc_bind(np.exp))
_unary("log", lambda x, a: np.log(x),
       lambda b, n, g: [b.add("div", [g, n.inputs[0]])], "logf({a})", _ufunc1(np.log), bind=ufunc_bind(np.log))
_unary("abs", lambda x, a: np.abs(x),
       lambda b, n, g: [b.add("mul", [g, b.add("sign", [n.inputs[0]])])], "fabsf({a})",
       _ufunc1(np.abs), bind=ufunc_bind(np.abs))
_unary("sqrt", lambda x, a: np.sqrt(x),
       lambda b, n, g: [b.add("div", [b.add("mul", [g, b.const(0.5)]), n])], "sqrtf({a})",
       _ufunc1(np.sqrt), doc="d sqrt(x) = 1 / (2 sqrt(x))")
_unary("square", lambda x, a: np.square(x),
       lambda b, n, g: [b.add("mul", [g, b.add("mul", [n.inputs[0], b.const(2.0)])])],
       "({a}*{a})", _ufunc1(np.square), bind=ufunc_bind(np.square))
def _relu_bind(out, x):
    """np.maximum(x, 0). numpy's maximum against a broadcast scalar runs a slow
    loop on the bench machine (numpy 2.4: 3.0 us for 1024 float32 and 260 us
    for 221,184, against 1.4 us and 50 us with a zeros array of x's shape; an
    add takes 43 us), so relu compares with a zeros array allocated here. The
    results are the same."""
    if out.ndim and x.shape == out.shape:
        return partial(np.maximum, x, np.zeros(out.shape, out.dtype), out=out)
    return partial(np.maximum, x, out.dtype.type(0), out=out)


_unary("relu", lambda x, a: np.maximum(x, 0).astype(x.dtype),
       lambda b, n, g: [b.add("mul", [g, b.add("step", [n])])], "fmaxf({a}, 0.f)",
       lambda out, ins, a: np.maximum(ins[0], 0, out=out), doc="relu'(x) = step(relu(x))",
       bind=lambda out, ins, a: _relu_bind(out, ins[0]))


def _sigmoid(x, a):
    # 1 / (1 + exp(-x)), as the CUDA kernels compute it: a few ulp from the
    # true value everywhere (exp(-x) overflowing to inf below x = -88 in
    # float32 gives 0 where sigmoid is below 1e-38). The form
    # (1 + tanh(x/2)) / 2 has an absolute error of 3e-8, all of sigmoid(-17):
    # it gave 0 there and log(sigmoid(x)) = -inf.
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _sigmoid_into(out, ins, a):
    np.negative(ins[0], out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)


def _sigmoid_vjp(b, n, g):
    one_minus = b.add("sub", [b.const(1.0), n])
    return [b.add("mul", [g, b.add("mul", [n, one_minus])])]


_unary("sigmoid", _sigmoid, _sigmoid_vjp, "(1.f / (1.f + expf(-{a})))", _sigmoid_into,
       doc="sigmoid' = y (1 - y)")


def _tanh_vjp(b, n, g):
    return [b.add("mul", [g, b.add("sub", [b.const(1.0), b.add("square", [n])])])]


_unary("tanh", lambda x, a: np.tanh(x), _tanh_vjp, "tanhf({a})", _ufunc1(np.tanh),
       doc="tanh' = 1 - y^2", bind=ufunc_bind(np.tanh))
_unary("step", lambda x, a: (x > 0).astype(x.dtype), lambda b, n, g: [None],
       "({a} > 0.f ? 1.f : 0.f)", lambda out, ins, a: np.greater(ins[0], 0, out=out),
       doc="1 where x > 0, else 0; its derivative is zero", bind=ufunc_bind(np.greater, np.float32(0)))
_unary("sign", lambda x, a: np.sign(x), lambda b, n, g: [None],
       "(float)(({a} > 0.f) - ({a} < 0.f))", _ufunc1(np.sign))
_unary("stop_gradient", lambda x, a: x.copy(), lambda b, n, g: [None], "{a}",
       lambda out, ins, a: np.copyto(out, ins[0]),
       doc="identity whose derivative is taken as zero")


def _leaky(x, a):
    return np.where(x > 0, x, x * a["slope"]).astype(x.dtype)


def _leaky_into(out, ins, a):
    # out may be the input itself: read x twice before writing
    pick = np.maximum if a["slope"] <= 1 else np.minimum
    pick(ins[0], ins[0] * a["slope"], out=out)


def _leaky_vjp(b, n, g):
    s = n.attrs["slope"]
    # leaky_relu'(x) = slope + (1 - slope) step(y); y > 0 exactly where x > 0
    d = b.add("add", [b.add("mul", [b.add("step", [n]), b.const(1.0 - s)]), b.const(s)])
    return [b.add("mul", [g, d])]


_unary("leaky_relu", _leaky, _leaky_vjp, "({a} > 0.f ? {a} : {slope}f * {a})", _leaky_into)


def _pow_vjp(b, n, g):
    k = n.attrs["k"]
    if k == 0:          # x ^ 0 is 1 everywhere (0 ^ 0 too): no gradient, not 0 * inf
        return [None]
    if k == 1:
        return [g]
    x = n.inputs[0]
    dx = b.const(k) if k == 2 else b.add("mul", [b.add("pow", [x], {"k": k - 1}), b.const(k)])
    if k == 2:
        dx = b.add("mul", [x, dx])
    return [b.add("mul", [g, dx])]


_unary("pow", lambda x, a: np.power(x, a["k"]).astype(x.dtype), _pow_vjp, "powf({a}, {k}f)",
       lambda out, ins, a: np.power(ins[0], a["k"], out=out), doc="x ^ k for a number k")


# binary ------------------------------------------------------------------
def _binary(name, ufunc, vjp, cuda, doc=""):
    define(name, "elementwise", _bcast, lambda ins, a: ufunc(ins[0], ins[1]), vjp,
           lambda out, ins, a: ufunc(ins[0], ins[1], out=out), cuda, doc, ufunc_bind(ufunc))


_binary("add", np.add, lambda b, n, g: [g, g], "({a} + {b})")
_binary("sub", np.subtract, lambda b, n, g: [g, b.add("neg", [g])], "({a} - {b})")
_binary("mul", np.multiply,
        lambda b, n, g: [b.add("mul", [g, n.inputs[1]]), b.add("mul", [g, n.inputs[0]])],
        "({a} * {b})")


def _div_vjp(b, n, g):
    x, y = n.inputs
    gx = b.add("div", [g, y])
    # d(x/y)/dy = -(x/y) / y
    gy = b.add("neg", [b.add("div", [b.add("mul", [g, n]), y])])
    return [gx, gy]


_binary("div", np.divide, _div_vjp, "({a} / {b})")


def _maximum_vjp(b, n, g):
    x, y = n.inputs
    x_wins = b.add("step", [b.add("sub", [x, y])])   # ties go to the second operand
    return [b.add("mul", [g, x_wins]), b.add("mul", [g, b.add("sub", [b.const(1.0), x_wins])])]


_binary("maximum", np.maximum, _maximum_vjp, "fmaxf({a}, {b})")
define("equal", "elementwise", _bcast,
       lambda ins, a: (ins[0] == ins[1]).astype(ins[0].dtype), lambda b, n, g: [None, None],
       lambda out, ins, a: np.equal(ins[0], ins[1], out=out), "({a} == {b} ? 1.f : 0.f)",
       doc="1 where equal, else 0; no derivative")


def check_scalar(shape, what):
    if shape != ():
        raise ShapeError(f"{what} must be a number")
