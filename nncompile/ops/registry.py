"""The op registry: the single place a primitive is defined.

OpDef fields:
  infer(in_shapes, attrs) -> shape        ShapeError naming both shapes on a mismatch
  eval(inputs, attrs) -> ndarray          numpy reference; keeps the inputs' dtype
  into(out, inputs, attrs)                the same, written into a preallocated `out`;
                                          default copies eval
  bind(out, inputs, attrs) -> callable    optional: a zero-argument call (a functools.partial
                                          of a ufunc) that computes into `out`: the numpy
                                          backend's hot path, bound once per batch size
  vjp(b, node, g) -> [cotangent | None]   builds IR with b.add; one entry per input, in the
                                          shape of the node (autodiff undoes broadcasting)
  cuda                                    elementwise: a C expression over a, b ({a}, {b});
                                          otherwise the kernel family that computes it
  kind                                    leaf | elementwise | matmul | reduce | shape | conv
  flops(in_shapes, shape) -> int          optional: the arithmetic of one run (a multiply-add
                                          counts 2), for `check`'s count; default: see flops()
  sample(rng) -> (inputs, attrs)          optional: inputs for the generated registry tests
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from ..ir.graph import N, ShapeError, fmt_shape


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    infer: Callable
    eval: Callable
    vjp: Callable | None = None
    into: Callable | None = None
    cuda: str | None = None
    doc: str = ""
    bind: Callable | None = None
    flops: Callable | None = None


REGISTRY: dict[str, OpDef] = {}


def define(name, kind, infer, eval, vjp=None, into=None, cuda=None, doc="", bind=None,
           flops=None) -> OpDef:
    if name in REGISTRY:
        raise ValueError(f"op {name} defined twice")
    op = OpDef(name, kind, infer, eval, vjp, into, cuda, doc, bind, flops)
    REGISTRY[name] = op
    return op


def ufunc_bind(ufunc, *extra):
    """bind for an op that is one numpy ufunc call (extra: trailing scalar operands)."""
    return lambda out, ins, a: partial(ufunc, *ins, *extra, out=out)


def bind_call(op: OpDef, out, inputs, attrs):
    """A zero-argument callable computing op into out (the numpy hot path)."""
    if op.bind is not None:
        return op.bind(out, inputs, attrs)
    return partial(run_into, op, out, inputs, attrs)


def run_into(op: OpDef, out: np.ndarray, inputs, attrs) -> None:
    if op.into is not None:
        op.into(out, inputs, attrs)
    else:
        out[...] = op.eval(inputs, attrs)


# shapes -------------------------------------------------------------------

def broadcast_shapes(a: tuple, b: tuple) -> tuple:
    """numpy broadcasting, with N (the batch axis) equal only to N or 1."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"shapes {fmt_shape(a)} and {fmt_shape(b)} do not broadcast",
                             "elementwise operands need equal sizes, or a size of 1, "
                             "in each axis counted from the right")
    return tuple(reversed(out))


def concrete(shape: tuple, batch: int) -> tuple:
    return tuple(batch if d == N else d for d in shape)


def normalize_axes(axes, rank: int) -> tuple:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for a value of rank {rank}")
        out.append(a % rank)
    return tuple(sorted(set(out)))


def flops(op: OpDef, in_shapes, shape) -> int:
    """The op's arithmetic on concrete shapes: its own formula where it has
    one (the matrix products and convolutions), none for leaves and shape
    ops, and otherwise one operation per element it writes or reads,
    whichever are more (an elementwise op, a reduction, a pooling window)."""
    if op.flops is not None:
        return int(op.flops(in_shapes, shape))
    if op.kind in ("leaf", "shape"):
        return 0
    return max(int(np.prod(s, dtype=np.int64)) for s in [shape, *in_shapes])
