"""Convolutional-network primitives: conv2d and its two gradients, max and
average pooling and theirs, dropout and its random mask.

Layout: images are [N, C, H, W] (batch, channels, height, width), conv weights
[F, C, kh, kw]; stride and padding are the same along both axes. Output size
Ho = (H + 2 padding - kh) // stride + 1 (rows a window does not reach are not
read), likewise Wo. Pooling has no padding: Ho = (H - size) // stride + 1.

numpy form. The conv ops work in the batch-innermost layout [C, H, W, N]
(a transposed copy of x or g at the start, of the result at the end), where
the rows a window reads are long runs of Wo*N contiguous numbers, and
K = C*kh*kw, M = Ho*Wo*N:
  cols[(c,a,b), (i,j,n)] = xpad[n, c, i*stride + a, j*stride + b]   (im2col: one
                           strided view of the padded input, copied once)
  conv2d:             y[F, M] = W[F, K] @ cols
  conv2d_weight_grad: dW^T[K, F] = cols @ g[F, M]^T
  conv2d_input_grad:  dcols[K, M] = W^T @ g, then col2im: each kernel tap (a, b)
                      adds its [C, Ho, Wo, N] slice of dcols into a strided slice of dx
Each matmul covers a block of BLOCK (32) examples: the whole mini-batch up to
32, and for larger batches one matmul per block, so that a block's columns
stay in cache (measured 25% faster per example than 64 at once for 28x28
images); the blocks share their buffers, and the weight gradient sums them.
In a bound program (the numpy executor passes a cols_cache) each block of a
forward conv keeps its own columns, and the weight gradient of the same x
reads them instead of building them again; likewise the two gradients of one
conv share one batch-innermost copy of g. The executor drops an entry once an
op bound after it writes the memory it was copied from, so a hit always
reads a copy of the current values.
Nothing loops over pixels or channels: the Python loops below run over the
kh*kw kernel taps (the window offsets), each a whole-array numpy call.
Pooling also loops over its window's taps.

The three conv ops are bilinear and close under vjp, as do the pooling ops
(maxpool(x) = maxpool_select(x, x); maxpool_grad and maxpool_select are each
other's transpose in g; avgpool and avgpool_grad likewise).
Max-pool ties go to the first element of the window in row-major order.

Every numpy implementation is written once, as a `bind`: it allocates its
scratch buffers (transposed input, im2col columns) for the given input and
output arrays and returns the call that computes into `out`; eval allocates
`out` and runs it.
"""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..ir.graph import N, ShapeError, fmt_shape
from .registry import define


def _out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _image(shape, what):
    if len(shape) != 4:
        raise ShapeError(f"{what} needs [batch, channels, height, width], got {fmt_shape(shape)}")
    return shape


def _same_batch(a, b, what):
    if a[0] != b[0] and N not in (a[0], b[0]):
        raise ShapeError(f"{what}: batch sizes differ in {fmt_shape(a)} and {fmt_shape(b)}")


def _eval_by_bind(bind, infer):
    def ev(ins, attrs):
        ins = [np.ascontiguousarray(x) for x in ins]
        shape = tuple(infer([x.shape for x in ins], attrs))
        out = np.empty(shape, np.result_type(*ins))
        bind(out, ins, attrs)()
        return out
    return ev


def _into_by_bind(bind):
    return lambda out, ins, attrs: bind(out, [np.ascontiguousarray(x) for x in ins], attrs)()


def _view(a, shape):
    """A reshape that must not copy (bound calls keep using the same memory)."""
    return np.reshape(a, shape, copy=False)


def _run_all(calls):
    for c in calls:
        c()


# im2col -------------------------------------------------------------------

BLOCK = 32   # examples per im2col block: 32 28x28 images' columns (~2 MB) stay in cache


def _blocks(n):
    return [(s, min(s + BLOCK, n)) for s in range(0, n, BLOCK)]


def _buffer(scratch, name, shape, dtype):
    """A zeroed buffer, shared by the blocks of one bound op that need this shape."""
    if (name, shape) not in scratch:
        scratch[name, shape] = np.zeros(shape, dtype)
    return scratch[name, shape]


def _batch_inner(a, scratch, name, padding=0):
    """(buffer, calls): a [C, H + 2 padding, W + 2 padding, N] copy of a
    [N, C, H, W] array, zero-bordered, refreshed by the calls."""
    n, c, h, w = a.shape
    t = _buffer(scratch, name, (c, h + 2 * padding, w + 2 * padding, n), a.dtype)
    inner = t[:, padding:padding + h, padding:padding + w]
    return t, [partial(np.copyto, inner, a.transpose(1, 2, 3, 0))]


def _im2col(x, kh, kw, stride, padding, ho, wo, scratch, own=False):
    """(cols [C*kh*kw, Ho*Wo*N], calls that refill cols from x): element
    ((c, a, b), (i, j, n)) is xpad[n, c, i*stride + a, j*stride + b].
    own: cols get a buffer of their own instead of one shared by the blocks."""
    xt, calls = _batch_inner(x, scratch, "x", padding)
    c, n = xt.shape[0], xt.shape[3]
    sc, sh, sw, sn = xt.strides
    windows = as_strided(xt, (c, kh, kw, ho, wo, n), (sc, sh, sw, sh * stride, sw * stride, sn),
                         writeable=False)
    cols = _buffer({} if own else scratch, "cols", windows.shape, x.dtype)
    calls.append(partial(np.copyto, cols, windows))
    return _view(cols, (c * kh * kw, ho * wo * n)), calls


SHARE_COLS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")   # binds taking a cols_cache


def _cols_key(x, kh, kw, attrs) -> tuple:
    """What identifies the im2col columns of one block of x: its memory, its
    layout and the window."""
    return (x.__array_interface__["data"][0], x.shape, x.strides, kh, kw, attrs["stride"],
            attrs["padding"])


def _byte_range(a) -> tuple:
    """[low, high) of the bytes an array's elements occupy."""
    lo = hi = a.__array_interface__["data"][0]
    if a.size == 0:
        return lo, lo
    for n, stride in zip(a.shape, a.strides):
        if stride > 0:
            hi += (n - 1) * stride
        else:
            lo += (n - 1) * stride
    return lo, hi + a.itemsize


def forget_overwritten(cols_cache: dict, out) -> None:
    """Drop the cache entries made from memory that `out` overlaps: the
    executor calls this after binding each op, whose run overwrites out, so
    an entry is only found while the array it was copied from is unchanged."""
    lo, hi = _byte_range(out)
    for key in [k for k, (a, b, _) in cols_cache.items() if a < hi and lo < b]:
        del cols_cache[key]


def _cached(cols_cache, key):
    """The buffer entered for key (None when there is none)."""
    hit = (cols_cache or {}).get(key)
    return hit[2] if hit is not None else None


def _enter(cols_cache, key, source, buffer) -> None:
    if cols_cache is not None:
        cols_cache[key] = (*_byte_range(source), buffer)


def _shared_inner(g, scratch, cols_cache):
    """(buffer, calls) as _batch_inner(g, scratch, "g"), but shared by the two
    gradients of one conv (same g): the first bound makes a buffer of its own
    for this block and enters it in cols_cache; the second reads it, with no
    calls."""
    key = ("g", g.__array_interface__["data"][0], g.shape, g.strides)
    found = _cached(cols_cache, key)
    if found is not None:
        return found, []
    gt, calls = _batch_inner(g, {} if cols_cache is not None else scratch, "g")
    _enter(cols_cache, key, g, gt)
    return gt, calls


def _per_block(bind_block, out, ins, attrs):
    """The calls of bind_block(out, ins, attrs, scratch) on each block of
    examples (axis 0 of out and of ins), sharing scratch buffers."""
    scratch = {}
    return partial(_run_all, [bind_block(out[s:e], [a[s:e] for a in ins], attrs, scratch)
                              for s, e in _blocks(out.shape[0])])


def _tap_slices(img, kh, kw, stride, ho, wo):
    """For each kernel tap (a, b), row-major: the [N, C, Ho, Wo] view of img
    at rows a, a+stride, ... and columns b, b+stride, ..."""
    return [img[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
            for a in range(kh) for b in range(kw)]


# conv2d -------------------------------------------------------------------

def _conv2d_infer(shapes, attrs):
    x, w = shapes
    _image(x, "conv2d")
    if len(w) != 4:
        raise ShapeError(f"conv2d weights are [filters, channels, kh, kw], got {fmt_shape(w)}")
    if x[1] != w[1]:
        raise ShapeError(f"conv2d: the input {fmt_shape(x)} has {x[1]} channels but the "
                         f"weights {fmt_shape(w)} expect {w[1]}")
    s, p = attrs["stride"], attrs["padding"]
    ho, wo = _out_size(x[2], w[2], s, p), _out_size(x[3], w[3], s, p)
    if ho < 1 or wo < 1:
        raise ShapeError(f"conv2d: a {w[2]}x{w[3]} kernel does not fit the input {fmt_shape(x)} "
                         f"padded by {p}")
    return (x[0], w[0], ho, wo)


def _conv2d_block(out, ins, attrs, scratch, cols_cache=None):
    x, w = ins
    n, f, ho, wo = out.shape
    kh, kw = w.shape[2:]
    cols, calls = _im2col(x, kh, kw, attrs["stride"], attrs["padding"], ho, wo, scratch,
                          own=cols_cache is not None)
    _enter(cols_cache, _cols_key(x, kh, kw, attrs), x, cols)
    y = _buffer(scratch, "y", (f, ho, wo, n), out.dtype)
    calls += [partial(np.matmul, _view(w, (f, cols.shape[0])), cols, out=_view(y, (f, -1))),
              partial(np.copyto, out, y.transpose(3, 0, 1, 2))]
    return partial(_run_all, calls)


def _conv2d_bind(out, ins, attrs, cols_cache=None):
    """cols_cache (a dict, one per bound program): each block's columns get a
    buffer of their own and are entered there, for the weight gradient of the
    same x, bound (so run) later, to read instead of building them again."""
    x, w = ins
    return _per_block(lambda o, xs, a, scratch: _conv2d_block(o, [xs[0], w], a, scratch,
                                                              cols_cache),
                      out, [x], attrs)


def _conv2d_vjp(b, node, g):
    x, w = node.inputs
    a = {"stride": node.attrs["stride"], "padding": node.attrs["padding"]}
    return [b.add("conv2d_input_grad", [g, w], {**a, "size": tuple(x.shape[2:])}),
            b.add("conv2d_weight_grad", [x, g], {**a, "kernel": tuple(w.shape[2:])})]


def _gemm_flops(pixels, window) -> int:
    """A conv and both its gradients are one GEMM each: every element of the
    [N, F, Ho, Wo] output-side tensor meets one C x kh x kw window."""
    return 2 * int(np.prod(pixels, dtype=np.int64)) * int(np.prod(window, dtype=np.int64))


define("conv2d", "conv", _conv2d_infer, _eval_by_bind(_conv2d_bind, _conv2d_infer),
       _conv2d_vjp, _into_by_bind(_conv2d_bind), "conv2d", bind=_conv2d_bind,
       doc="cross-correlation of x[N, C, H, W] with w[F, C, kh, kw] -> [N, F, Ho, Wo]",
       flops=lambda shapes, out: _gemm_flops(out, shapes[1][1:]))


def _input_grad_infer(shapes, attrs):
    g, w = shapes
    _image(g, "conv2d_input_grad")
    h, wd = attrs["size"]
    x = (g[0], w[1], h, wd)
    if _conv2d_infer([x, w], attrs) != g:
        raise ShapeError(f"conv2d_input_grad: {fmt_shape(g)} is not the output of a conv of "
                         f"{fmt_shape(x)} by {fmt_shape(w)}")
    return x


def _input_grad_block(out, ins, attrs, scratch, cols_cache=None):
    g, w = ins
    n, f, ho, wo = g.shape
    c, kh, kw = w.shape[1:]
    s, p = attrs["stride"], attrs["padding"]
    h, wd = attrs["size"]
    gt, calls = _shared_inner(g, scratch, cols_cache)
    dcols = _buffer(scratch, "dcols", (c, kh, kw, ho, wo, n), out.dtype)
    dxt = _buffer(scratch, "dx", (c, h + 2 * p, wd + 2 * p, n), out.dtype)
    calls += [partial(np.matmul, _view(w, (f, -1)).T, _view(gt, (f, -1)),
                      out=_view(dcols, (c * kh * kw, -1))),
              partial(dxt.fill, 0)]
    # col2im: the windows overlap where stride < kernel, so each tap adds
    for a in range(kh):
        for b in range(kw):
            dst = dxt[:, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s]
            calls.append(partial(np.add, dst, dcols[:, a, b], out=dst))
    calls.append(partial(np.copyto, out, dxt[:, p:p + h, p:p + wd].transpose(3, 0, 1, 2)))
    return partial(_run_all, calls)


def _input_grad_bind(out, ins, attrs, cols_cache=None):
    """cols_cache: as for conv2d_weight_grad, which reads the same g in the
    same batch-innermost layout, so one of the two copies it."""
    g, w = ins
    return _per_block(lambda o, gs, a, scratch: _input_grad_block(o, [gs[0], w], a, scratch,
                                                                  cols_cache),
                      out, [g], attrs)


def _input_grad_vjp(b, node, h):
    g, w = node.inputs
    a = {"stride": node.attrs["stride"], "padding": node.attrs["padding"]}
    # dx = conv^T(g, w) is linear in g and in w: <dx, h> = <g, conv2d(h, w)>
    return [b.add("conv2d", [h, w], a),
            b.add("conv2d_weight_grad", [h, g], {**a, "kernel": tuple(w.shape[2:])})]


define("conv2d_input_grad", "conv", _input_grad_infer,
       _eval_by_bind(_input_grad_bind, _input_grad_infer), _input_grad_vjp,
       _into_by_bind(_input_grad_bind), "conv2d", bind=_input_grad_bind,
       doc="d conv2d / d x: g[N, F, Ho, Wo], w -> [N, C, H, W] (size = (H, W)); col2im",
       flops=lambda shapes, out: _gemm_flops(shapes[0], shapes[1][1:]))


def _weight_grad_infer(shapes, attrs):
    x, g = shapes
    _image(x, "conv2d_weight_grad")
    _image(g, "conv2d_weight_grad")
    _same_batch(x, g, "conv2d_weight_grad")
    w = (g[1], x[1]) + tuple(attrs["kernel"])
    if _conv2d_infer([x, w], attrs)[1:] != g[1:]:
        raise ShapeError(f"conv2d_weight_grad: {fmt_shape(g)} is not the output of a conv of "
                         f"{fmt_shape(x)} by {fmt_shape(w)}")
    return w


def _weight_grad_block(out, ins, attrs, scratch, cols_cache=None):
    x, g = ins
    n, f, ho, wo = g.shape
    kh, kw = attrs["kernel"]
    cols = _cached(cols_cache, _cols_key(x, kh, kw, attrs))
    calls = []
    if cols is None:
        cols, calls = _im2col(x, kh, kw, attrs["stride"], attrs["padding"], ho, wo, scratch)
    gt, more = _shared_inner(g, scratch, cols_cache)
    dw_t = _buffer(scratch, "dw", (cols.shape[0], f), out.dtype)
    # dW^T = cols @ g^T: OpenBLAS runs this about twice as fast as dW = g @ cols^T
    calls += more + [partial(np.matmul, cols, _view(gt, (f, -1)).T, out=dw_t),
                     partial(np.copyto, _view(out, (f, -1)), dw_t.T)]
    return partial(_run_all, calls)


def _weight_grad_bind(out, ins, attrs, cols_cache=None):
    """The blocks' weight gradients, summed. Columns that the forward conv of
    this x entered in cols_cache are read, not built again: x is an input of
    this op, so nothing overwrites it between the two."""
    x, g = ins
    scratch = {}
    part = np.empty_like(out)
    calls = []
    for k, (s, e) in enumerate(_blocks(x.shape[0])):
        calls.append(_weight_grad_block(part if k else out, [x[s:e], g[s:e]], attrs, scratch,
                                        cols_cache))
        if k:
            calls.append(partial(np.add, out, part, out=out))
    return partial(_run_all, calls)


def _weight_grad_vjp(b, node, h):
    x, g = node.inputs
    a = {"stride": node.attrs["stride"], "padding": node.attrs["padding"]}
    # dW is linear in x and in g: <dW, h> = <g, conv2d(x, h)>
    return [b.add("conv2d_input_grad", [g, h], {**a, "size": tuple(x.shape[2:])}),
            b.add("conv2d", [x, h], a)]


define("conv2d_weight_grad", "conv", _weight_grad_infer,
       _eval_by_bind(_weight_grad_bind, _weight_grad_infer), _weight_grad_vjp,
       _into_by_bind(_weight_grad_bind), "conv2d", bind=_weight_grad_bind,
       doc="d conv2d / d w: x[N, C, H, W], g[N, F, Ho, Wo] -> [F, C, kh, kw] (kernel = (kh, kw))",
       flops=lambda shapes, out: _gemm_flops(shapes[1], out[1:]))


# pooling ------------------------------------------------------------------

def _pool_infer(shapes, attrs):
    (x,) = shapes
    _image(x, "pooling")
    k, s = attrs["size"], attrs["stride"]
    if k > x[2] or k > x[3]:
        raise ShapeError(f"a {k}x{k} pooling window is larger than the input {fmt_shape(x)}")
    return x[:2] + ((x[2] - k) // s + 1, (x[3] - k) // s + 1)


def _pool_taps(x, attrs, ho, wo):
    return _tap_slices(x, attrs["size"], attrs["size"], attrs["stride"], ho, wo)


def _maxpool_bind(out, ins, attrs):
    (x,) = ins
    first, *rest = _pool_taps(x, attrs, *out.shape[2:])
    return partial(_run_all, [partial(np.copyto, out, first)] +
                   [partial(np.maximum, out, t, out=out) for t in rest])


def _winners(x, attrs, shape):
    """(calls, hits): after the calls, hits[t] marks the windows whose max is
    first reached at tap t in row-major order (ties go to the first), one
    bool array [N, C, Ho, Wo] per tap."""
    taps = _pool_taps(x, attrs, *shape[2:])
    best = np.empty(shape, x.dtype)
    free = np.empty(shape, bool)      # no earlier tap of the window reached the max
    hits = [np.empty(shape, bool) for _ in taps[:-1]] + [free]   # the last tap gets the rest
    calls = [partial(np.copyto, best, taps[0])] + \
        [partial(np.maximum, best, t, out=best) for t in taps[1:]] + [partial(free.fill, True)]
    for tap, hit in zip(taps, hits[:-1]):
        calls += [partial(np.equal, tap, best, out=hit),
                  partial(np.logical_and, hit, free, out=hit),
                  partial(np.greater, free, hit, out=free)]      # free and not hit
    return calls, hits


def _maxpool_grad_infer(shapes, attrs):
    x, g = shapes
    if tuple(_pool_infer([x], attrs)) != tuple(g):
        raise ShapeError(f"maxpool_grad: {fmt_shape(g)} is not the pooled shape of {fmt_shape(x)}")
    return x


def _maxpool_grad_bind(out, ins, attrs):
    x, g = ins
    calls, hits = _winners(x, attrs, g.shape)
    calls.append(partial(out.fill, 0))
    dst = _pool_taps(out, attrs, *g.shape[2:])
    if attrs["stride"] >= attrs["size"]:      # windows are disjoint: each pixel gets one value
        calls += [partial(np.multiply, g, hit, out=d) for d, hit in zip(dst, hits)]
    else:
        part = np.empty(g.shape, out.dtype)
        for d, hit in zip(dst, hits):
            calls += [partial(np.multiply, g, hit, out=part), partial(np.add, d, part, out=d)]
    return partial(_run_all, calls)


def _maxpool_select_bind(out, ins, attrs):
    x, h = ins
    calls, hits = _winners(x, attrs, out.shape)
    src = _pool_taps(h, attrs, *out.shape[2:])
    part = np.empty(out.shape, out.dtype)
    calls.append(partial(np.multiply, src[0], hits[0], out=out))
    for t, hit in zip(src[1:], hits[1:]):
        calls += [partial(np.multiply, t, hit, out=part), partial(np.add, out, part, out=out)]
    return partial(_run_all, calls)


def _select_infer(shapes, attrs):
    x, h = shapes
    if tuple(x) != tuple(h):
        raise ShapeError(f"maxpool_select: {fmt_shape(x)} and {fmt_shape(h)} differ")
    return _pool_infer([x], attrs)


def _pool_attrs(node):
    return {"size": node.attrs["size"], "stride": node.attrs["stride"]}


define("maxpool", "reduce", _pool_infer, _eval_by_bind(_maxpool_bind, _pool_infer),
       lambda b, n, g: [b.add("maxpool_grad", [n.inputs[0], g], _pool_attrs(n))],
       _into_by_bind(_maxpool_bind), "pool", bind=_maxpool_bind,
       doc="max over size x size windows, stride apart")
define("maxpool_grad", "reduce", _maxpool_grad_infer,
       _eval_by_bind(_maxpool_grad_bind, _maxpool_grad_infer),
       lambda b, n, h: [None, b.add("maxpool_select", [n.inputs[0], h], _pool_attrs(n))],
       _into_by_bind(_maxpool_grad_bind), "pool", bind=_maxpool_grad_bind,
       doc="d maxpool / d x: g[N, C, Ho, Wo] routed to each window's argmax of x "
           "(the first on ties); zero derivative in x")
define("maxpool_select", "reduce", _select_infer,
       _eval_by_bind(_maxpool_select_bind, _select_infer),
       lambda b, n, g: [None, b.add("maxpool_grad", [n.inputs[0], g], _pool_attrs(n))],
       _into_by_bind(_maxpool_select_bind), "pool", bind=_maxpool_select_bind,
       doc="h at each window's argmax of x (maxpool(x) = maxpool_select(x, x)); "
           "the transpose of maxpool_grad in g")


def _avgpool_bind(out, ins, attrs):
    (x,) = ins
    first, *rest = _pool_taps(x, attrs, *out.shape[2:])
    scale = out.dtype.type(1.0 / attrs["size"] ** 2)
    return partial(_run_all, [partial(np.copyto, out, first)] +
                   [partial(np.add, out, t, out=out) for t in rest] +
                   [partial(np.multiply, out, scale, out=out)])


def _avgpool_grad_infer(shapes, attrs):
    (g,) = shapes
    _image(g, "avgpool_grad")
    x = g[:2] + tuple(attrs["shape"])
    if tuple(_pool_infer([x], attrs)) != tuple(g):
        raise ShapeError(f"avgpool_grad: {fmt_shape(g)} is not the pooled shape of {fmt_shape(x)}")
    return x


def _avgpool_grad_bind(out, ins, attrs):
    (g,) = ins
    part = np.empty(g.shape, out.dtype)
    scale = out.dtype.type(1.0 / attrs["size"] ** 2)
    calls = [partial(out.fill, 0), partial(np.multiply, g, scale, out=part)]
    calls += [partial(np.add, t, part, out=t) for t in _pool_taps(out, attrs, *g.shape[2:])]
    return partial(_run_all, calls)


define("avgpool", "reduce", _pool_infer, _eval_by_bind(_avgpool_bind, _pool_infer),
       lambda b, n, g: [b.add("avgpool_grad", [g], {**_pool_attrs(n),
                                                    "shape": tuple(n.inputs[0].shape[2:])})],
       _into_by_bind(_avgpool_bind), "pool", bind=_avgpool_bind,
       doc="mean over size x size windows, stride apart")
define("avgpool_grad", "reduce", _avgpool_grad_infer,
       _eval_by_bind(_avgpool_grad_bind, _avgpool_grad_infer),
       lambda b, n, h: [b.add("avgpool", [h], _pool_attrs(n))],
       _into_by_bind(_avgpool_grad_bind), "pool", bind=_avgpool_grad_bind,
       doc="d avgpool / d x: each window's g / size^2 spread over it (shape = (H, W))")


# dropout ------------------------------------------------------------------

define("dropout", "elementwise", lambda s, a: s[0], lambda ins, a: ins[0].copy(),
       lambda b, n, g: [g], lambda out, ins, a: np.copyto(out, ins[0]), "{a}",
       doc="identity as written; passes/mode.py makes it x * mask in training programs "
           "and removes it elsewhere, so only unmoded graphs (gradient checks) run it")
define("random", "leaf", lambda s, a: a["shape"], lambda ins, a: _no_value(a),
       doc="a dropout mask refilled by the executor before every run: (u >= rate) / (1 - rate) "
           "for u uniform in [0, 1) from default_rng([seed, 2]); attrs name, shape, rate, seed")


def _no_value(attrs):
    raise RuntimeError(f"mask {attrs['name']} is a leaf; the executor fills it")
