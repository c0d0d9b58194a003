"""Matrix product and transpose: GEMM, the heart of every dense and conv layer."""
from __future__ import annotations

from functools import partial

import numpy as np

from ..ir.graph import ShapeError, fmt_shape
from .registry import broadcast_shapes, define


def _matmul_infer(shapes, attrs):
    a, b = shapes
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(f"'@' needs matrices, got shapes {fmt_shape(a)} and {fmt_shape(b)}",
                         "a per-example vector is already a matrix [N, k] with the batch axis; "
                         "declare weights as [k, m]")
    if a[-1] != b[-2]:
        raise ShapeError(f"'@' cannot multiply {fmt_shape(a)} by {fmt_shape(b)}: "
                         f"{a[-1]} column{'s' if a[-1] != 1 else ''} against "
                         f"{b[-2]} row{'s' if b[-2] != 1 else ''}",
                         "the left operand's last size must equal the right operand's "
                         "second-to-last size")
    return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])


def _matmul_vjp(b, n, g):
    x, w = n.inputs
    # d(XW)/dX = G W^T,  d(XW)/dW = X^T G
    return [b.add("matmul", [g, b.add("transpose", [w])]),
            b.add("matmul", [b.add("transpose", [x]), g])]


define("matmul", "matmul", _matmul_infer, lambda ins, a: np.matmul(ins[0], ins[1]),
       _matmul_vjp, lambda out, ins, a: np.matmul(ins[0], ins[1], out=out), "gemm",
       doc="numpy matmul: the last two axes multiply, leading axes broadcast",
       bind=lambda out, ins, a: partial(np.matmul, *ins, out=out),
       flops=lambda shapes, out: 2 * np.prod(out, dtype=np.int64) * shapes[0][-1])


def _transpose_infer(shapes, attrs):
    (s,) = shapes
    if len(s) < 2:
        raise ShapeError(f"transpose needs at least two axes, got {fmt_shape(s)}")
    return s[:-2] + (s[-1], s[-2])


define("transpose", "shape", _transpose_infer, lambda ins, a: np.swapaxes(ins[0], -1, -2),
       lambda b, n, g: [b.add("transpose", [g])],
       lambda out, ins, a: np.copyto(out, np.swapaxes(ins[0], -1, -2)), "transpose",
       doc="swap the last two axes")
