"""Reductions and the softmax family. Axes are absolute (the batch axis is 0
for batched values); the front end translates the user's per-example axes."""
from __future__ import annotations

from functools import partial

import numpy as np

from ..ir.graph import N, ShapeError
from .registry import define, normalize_axes


def _reduce_infer(shapes, attrs):
    (s,) = shapes
    axes = normalize_axes(attrs["axes"], len(s))
    if attrs.get("keepdims"):
        return tuple(1 if i in axes else d for i, d in enumerate(s))
    return tuple(d for i, d in enumerate(s) if i not in axes)


def _sum_vjp(b, n, g):
    return [b.add("expand", [g, n.inputs[0]], {"axes": n.attrs["axes"],
                                               "keepdims": n.attrs["keepdims"]})]


ROW_SUM_MAX = 64     # rows up to this long are summed by a matmul with ones


def row_sum_call(x, out):
    """A call summing the last axis of x into out, or None. numpy reduces a
    short last axis row by row, slowly (33 us for 1024 rows of 10 on the bench
    machine); a matmul with a column of ones does it in one BLAS call (8 us).
    Only for contiguous x whose rows are short, and out not overlapping x."""
    k = x.shape[-1] if x.ndim >= 2 else 0
    if not 1 < k <= ROW_SUM_MAX or not x.flags.c_contiguous or out.size * k != x.size \
            or not out.flags.c_contiguous or np.shares_memory(x, out):
        return None
    ones = np.ones((k, 1), x.dtype)
    return partial(np.matmul, x.reshape(-1, k), ones, out=out.reshape(-1, 1))


def _sum_bind(out, ins, a):
    x = ins[0]
    last = normalize_axes(a["axes"], x.ndim) == (x.ndim - 1,)
    call = row_sum_call(x, out) if last else None
    return call or partial(np.add.reduce, x, axis=a["axes"], keepdims=a["keepdims"], out=out)


define("sum", "reduce", _reduce_infer,
       lambda ins, a: np.sum(ins[0], axis=a["axes"], keepdims=a["keepdims"]),
       _sum_vjp,
       lambda out, ins, a: np.sum(ins[0], axis=a["axes"], keepdims=a["keepdims"], out=out),
       "reduce_sum", bind=_sum_bind)


def _max_vjp(b, n, g):
    x = n.inputs[0]
    attrs = {"axes": n.attrs["axes"], "keepdims": n.attrs["keepdims"]}
    mask = b.add("equal", [x, b.add("expand", [n, x], attrs)])
    ties = b.add("expand", [b.add("sum", [mask], attrs), x], attrs)
    # the cotangent is shared equally among tied maxima
    return [b.add("div", [b.add("mul", [b.add("expand", [g, x], attrs), mask]), ties])]


define("max", "reduce", _reduce_infer,
       lambda ins, a: np.max(ins[0], axis=a["axes"], keepdims=a["keepdims"]),
       _max_vjp,
       lambda out, ins, a: np.max(ins[0], axis=a["axes"], keepdims=a["keepdims"], out=out),
       "reduce_max")


def _expand_infer(shapes, attrs):
    g, like = shapes
    return like


def _expand_eval(ins, a):
    g, like = ins
    if not a["keepdims"]:
        g = np.expand_dims(g, a["axes"])
    return np.broadcast_to(g, like.shape).copy()


def _expand_into(out, ins, a):
    g = ins[0] if a["keepdims"] else np.expand_dims(ins[0], a["axes"])
    np.copyto(out, g)


def _expand_bind(out, ins, a):
    g = ins[0] if a["keepdims"] else np.expand_dims(ins[0], a["axes"])
    return partial(np.copyto, out, np.broadcast_to(g, out.shape))


define("expand", "shape", _expand_infer, _expand_eval,
       lambda b, n, g: [b.add("sum", [g], {"axes": n.attrs["axes"],
                                           "keepdims": n.attrs["keepdims"]}), None],
       _expand_into, "broadcast", bind=_expand_bind,
       doc="broadcast the first input (reduced over axes) back to the second input's shape")


def _count_infer(shapes, attrs):
    normalize_axes(attrs["axes"], len(shapes[0]))
    return ()


def _count_eval(ins, a):
    return np.asarray(np.prod([ins[0].shape[i] for i in a["axes"]]), dtype=ins[0].dtype)


define("count", "reduce", _count_infer, _count_eval, lambda b, n, g: [None],
       lambda out, ins, a: out.fill(np.prod([ins[0].shape[i] for i in a["axes"]])), "count",
       bind=lambda out, ins, a: partial(out.fill, np.prod([ins[0].shape[i] for i in a["axes"]])),
       doc="how many elements a reduction over axes takes (mean = sum / count)")


def _log_softmax_infer(shapes, attrs):
    (s,) = shapes
    if len(s) < 1:
        raise ShapeError("softmax and log_softmax normalise along the last axis, and a "
                         "single number has none",
                         "apply it to a value with one entry per class, e.g. logits[10]")
    if s == (N,):
        raise ShapeError("softmax and log_softmax normalise along the last axis of one "
                         "example, and this value is one number per example",
                         "apply it to a value with one entry per class, e.g. logits[10]")
    return s


def _log_softmax_eval(ins, a):
    x = ins[0]
    m = np.max(x, axis=-1, keepdims=True)
    z = x - m
    return (z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))).astype(x.dtype)


def _log_softmax_into(out, ins, a):
    x = ins[0]
    m = np.max(x, axis=-1, keepdims=True)
    np.subtract(x, m, out=out)
    s = np.sum(np.exp(out), axis=-1, keepdims=True)
    out -= np.log(s)


def _log_softmax_vjp(b, n, g):
    # d log_softmax: g - softmax * sum(g) along the last axis
    total = b.add("sum", [g], {"axes": (len(n.shape) - 1,), "keepdims": True})
    return [b.add("sub", [g, b.add("mul", [b.add("exp", [n]), total])])]


define("log_softmax", "reduce", _log_softmax_infer, _log_softmax_eval, _log_softmax_vjp,
       _log_softmax_into, "softmax",
       doc="x - logsumexp(x) along the last axis, in the stable max-shifted form")
