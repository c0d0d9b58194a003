"""Shape-only primitives: reshape (flatten) with the batch axis kept first."""
from __future__ import annotations

import numpy as np

from ..ir.graph import N, ShapeError, fmt_shape
from .registry import define


def _size(shape):
    out = 1
    for d in shape:
        if d != N:
            out *= d
    return out


def _reshape_infer(shapes, attrs):
    (s,) = shapes
    new = attrs["shape"]
    if (N in s) != (N in new) or _size(s) != _size(new):
        raise ShapeError(f"cannot reshape {fmt_shape(s)} to {fmt_shape(new)}")
    return new


def _concrete(shape, like):
    batch = like.shape[0] if like.ndim else 1
    return tuple(batch if d == N else d for d in shape)


define("reshape", "shape", _reshape_infer,
       lambda ins, a: ins[0].reshape(_concrete(a["shape"], ins[0])),
       lambda b, n, g: [b.add("reshape", [g], {"shape": n.inputs[0].shape})],
       lambda out, ins, a: np.copyto(out, ins[0].reshape(out.shape)), "reshape",
       doc="same elements, new per-example shape; the batch axis stays first")
