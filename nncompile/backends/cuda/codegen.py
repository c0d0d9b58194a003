"""CUDA code generation: a Schedule -> the CUDA source and its launch plan.

build(schedule) -> Plan (source, steps, buffers, where each root lives);
generate(schedule) -> Plan.source, the text `nncompile emit --target cuda` prints.

1. Roles. Each scheduled node is a kernel head (gemm: matmul and the conv ops
   as implicit GEMMs; reduce: sum, max; softmax: log_softmax), or a point op
   (elementwise ops and chains, views, pooling: one thread per output element).
   A view (expand, transpose, count, reshape) read by point-wise code only is
   virtual: its readers index its source directly. A reshape of a buffer is an
   alias: it shares the buffer.
2. Kernels. Walking the schedule, a point op joins the kernel before it when
   the same thread can compute it right after the value it extends: in a GEMM,
   reduction or softmax kernel it must have the head's shape (an epilogue); in
   an elementwise kernel it goes to the segment of its shape (so one launch
   updates every param). It may read another value of the kernel only at its
   own element, and may overwrite a param or optimizer buffer (an in-place
   update) only when every read of that buffer in the kernel is at the same
   element by the same thread, before the write.
3. Buffers. Only values read by another kernel, or roots, are stored; the rest
   stay in registers. Slots are reused by liveness over kernels; a kernel's
   outputs never share a buffer with what it reads.
4. Source. Each kernel comes from its family's template (templates/*.cu.jinja)
   with the fused code in the template's hook. Every kernel is extern "C" and
   takes the batch size `nb` last; identifiers are made here (k03_gemm, buf2,
   st1, v17), never from the model's text, whose names appear in comments only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import jinja2
import numpy as np

from ...ir.graph import N
from ...ops import REGISTRY
from ...ops.registry import normalize_axes

TILE = {"t64": (64, 16), "t128": (128, 8)}       # tile -> (BM = BN, BK)
GEMM_OPS = ("matmul", "conv2d", "conv2d_input_grad", "conv2d_weight_grad")
VIEW_OPS = ("expand", "transpose", "count", "reshape")
POOL_OPS = ("maxpool", "maxpool_grad", "maxpool_select", "avgpool", "avgpool_grad")
LEAF_REF = {"input": "feed", "target": "feed", "param": "store", "state": "store",
            "random": "random"}
FAMILY = {"gemm": "gemm", "conv": "gemm", "reduce": "reduce", "elementwise": "point"}
MAX_SEGMENTS = 16
PLACE_DEPTH = 8       # how many kernels back a point op may move to join one


class UnsupportedOp(NotImplementedError):
    """The program uses an op this backend has no kernel for."""


# sizes: (k, b) means k * nb**b elements ------------------------------------

def size_of(shape) -> tuple:
    k, b = 1, 0
    for d in shape:
        if d == N:
            b += 1
        else:
            k *= int(d)
    if b > 1:
        raise UnsupportedOp("a value with the batch axis twice")
    return k, b


def c_size(sz) -> str:
    k, b = sz
    if b == 0:
        return str(k)
    return "nb" if k == 1 else f"({k} * nb)"


def c_sum(sizes) -> str:
    """A sum of sizes as one C expression: k0 + k1 * nb."""
    k0 = sum(k for k, b in sizes if b == 0)
    k1 = sum(k for k, b in sizes if b == 1)
    if k1 == 0:
        return str(k0)
    return c_size((k1, 1)) if k0 == 0 else f"{k0} + {c_size((k1, 1))}"


def py_size(sz, batch: int) -> int:
    return sz[0] * batch ** sz[1]


def c_dim(d) -> str:
    return "nb" if d == N else str(d)


def atom(e: str) -> str:
    """e, parenthesised unless it is a name, a number or one bracketed group."""
    if re.fullmatch(r"[A-Za-z_]\w*|\d+|[A-Za-z_]\w*\[[^\[\]]*\]", e):
        return e
    if e.startswith("("):
        depth = 0
        for i, ch in enumerate(e):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                if i == len(e) - 1:
                    return e
                break
    return f"({e})"


def decompose(var: str, dims) -> list:
    """The coordinates (C expressions) of flat row-major index var over dims."""
    out = []
    for i, d in enumerate(dims):
        if d == 1:
            out.append("0")
            continue
        inner = size_of(dims[i + 1:])
        e = var if inner == (1, 0) else f"{atom(var)} / {c_size(inner)}"
        if any(x != 1 for x in dims[:i]):
            e = f"{atom(e)} % {c_dim(d)}"
        out.append(atom(e))
    return out


def flat(coords, shape) -> str:
    """The flat row-major index of coords (one C expression per axis of shape)."""
    terms = []
    for d, c in enumerate(coords):
        if shape[d] == 1 or c == "0":
            continue
        stride = size_of(shape[d + 1:])
        terms.append(c if stride == (1, 0) else f"{atom(c)} * {c_size(stride)}")
    return " + ".join(terms) or "0"


def broadcast_coords(coords, shape, vshape) -> list:
    """Coordinates in vshape of the element at coords in shape (numpy broadcasting)."""
    off = len(shape) - len(vshape)
    return ["0" if vshape[d] == 1 else coords[off + d] for d in range(len(vshape))]


def num(x) -> str:
    """The shortest decimal of float32 x, with a point or an exponent."""
    x = np.float32(x)
    a = abs(float(x))
    if a == 0 or 1e-4 <= a < 1e7:
        return np.format_float_positional(x, unique=True)
    return np.format_float_scientific(x, unique=True)


def lit(x) -> str:
    x = np.float32(x)
    if np.isnan(x):
        return "__int_as_float(0x7fc00000)"
    if np.isinf(x):
        return "INFINITY" if x > 0 else "(-INFINITY)"
    s = num(x) + "f"
    return f"({s})" if s.startswith("-") else s


def safe(text: str) -> str:
    """A name from the model, fit for a comment."""
    return re.sub(r"[^A-Za-z0-9_ .,:;/%=()\[\]+*<>\-]", "?", str(text))


# the plan ------------------------------------------------------------------

@dataclass
class Launch:
    """One kernel launch. grid: ("flat", [size]) | ("rows", size, per_block) |
    ("gemm", M, N, K, batches) with sizes as (k, b); ints after the pointers:
    nb, then for gemm splits, kchunk, row tiles (from gemm_launch), and the
    first row tile and batch x split of the part launched (gemm_parts)."""
    name: str
    family: str
    params: list          # refs, in C order: ("slot", i) ("store", name) ("feed", name)
    grid: tuple           # ("random", name); gemm kernels then take ws and counters
    block: tuple
    tiles: tuple = ()     # gemm: the tile variants compiled, name + "_" + tile
    text: str = ""        # one line for the plan in the source's header
    written: list = field(default_factory=list)   # the refs among params it writes
    op: str = ""          # gemm: the head op (matmul, conv2d, ...) and its transposes
    trans: tuple = (False, False)
    column_sum: bool = False   # gemm: sums its rows too; then takes cws and ccount
    grid_sums: int = 0    # softmax: floats per block of sums over rows; then takes gws, gcount


@dataclass
class Plan:
    source: str
    steps: list                                    # Launch | ("copy", dst, src, size)
    slots: list                                    # slot -> size (elements)
    roots: dict                                    # root Node -> ref (or ("const", x))
    feeds: dict = field(default_factory=dict)      # name -> shape
    randoms: dict = field(default_factory=dict)    # name -> the random leaf Node
    storage: list = field(default_factory=list)    # param/state names read or written
    written: list = field(default_factory=list)    # storage names the program writes


MAX_GRID_YZ = 65535   # CUDA's most blocks in y and in z; a GEMM with more is launched in parts


def gemm_launch(M: int, N: int, K: int, batches: int, tiles: tuple, sms: int):
    """(tile, grid, splits, kchunk, workspace floats, counters) for one GEMM:
    the 128 tile when it alone gives a wave of blocks, else the 64 tile; split
    K (summed in order by the last block of each tile) when there are fewer
    tiles than multiprocessors and K is long enough for each split to have 4
    k-tiles (up to two blocks per multiprocessor). The grid is (column tiles,
    row tiles, batches x splits), whatever its size: gemm_parts cuts it into
    launches CUDA takes."""
    for t in ("t128", "t64"):
        if t not in tiles:
            continue
        bm, bk = TILE[t]
        n_tiles = -(-M // bm) * -(-N // bm) * batches
        if t == "t128" and "t64" in tiles and n_tiles < sms:
            continue
        k_tiles = -(-K // bk)
        splits = 1
        if n_tiles < sms and k_tiles >= 8:
            splits = max(1, min(-(-2 * sms // n_tiles), k_tiles // 4, 32))
        kchunk = -(-k_tiles // splits) * bk
        splits = max(1, -(-K // kchunk))
        grid = (-(-N // bm), -(-M // bm), batches * splits)
        ws = n_tiles * splits * bm * bm if splits > 1 else 0
        return t, grid, splits, kchunk, ws, n_tiles
    raise ValueError("no tile")


def gemm_parts(grid: tuple) -> list:
    """A GEMM's grid as launches of at most MAX_GRID_YZ blocks in y and z:
    [(grid, y0, z0)], the first row tile and batch x split of each part."""
    gx, ny, nz = grid
    return [((gx, min(MAX_GRID_YZ, ny - y0), min(MAX_GRID_YZ, nz - z0)), y0, z0)
            for y0 in range(0, ny, MAX_GRID_YZ) for z0 in range(0, nz, MAX_GRID_YZ)]


def resolve(launch: Launch, batch: int, sms: int):
    """(function name, grid, block, ints, workspace floats, counters) at this batch size."""
    rule = launch.grid
    if rule[0] == "gemm":
        M, Nc, K, bat = (py_size(x, batch) for x in rule[1:])
        t, grid, splits, kchunk, ws, tiles = gemm_launch(M, Nc, K, bat, launch.tiles, sms)
        return f"{launch.name}_{t}", grid, launch.block, [batch, splits, kchunk, grid[1]], ws, \
            tiles
    if rule[0] == "flat":
        total = sum(py_size(sz, batch) for sz in rule[1])
        blocks = max(1, min(-(-total // 256), 32 * max(sms, 1)))
    else:
        blocks = max(1, -(-py_size(rule[1], batch) // rule[2]))
    return launch.name, (blocks, 1, 1), launch.block, [batch], 0, 0


# templates -----------------------------------------------------------------

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def template(name: str):
    return _ENV.get_template(f"{name}.cu.jinja").module


# the pass ------------------------------------------------------------------

@dataclass
class Point:
    """Where point-wise code runs: an element of `shape` at coords (C
    expressions), whose flat index is the C expression `flat`."""
    shape: tuple
    flat: str
    coords: list


@dataclass
class _Kernel:
    family: str                   # gemm | reduce | softmax | point
    host: object                  # the head Node, None for a point kernel
    segs: list                    # [shape, [Node]]; a head kernel has one, the head first
    seg_of: dict                  # Node -> segment
    reads: list                   # (owner Node, at its own element, segment)
    writes: dict                  # storage name -> Node
    copy_out: str | None = None   # the head writes a slot; then this storage gets a copy
    phase: dict = field(default_factory=dict)   # softmax kernels: Node -> 1, 2, "row", "grid"
    grid_phase: dict = field(default_factory=dict)   # a sum over rows -> where it is fed


def _head(n) -> int:
    """The index of the GEMM-kind entry of a fused gemm/conv body."""
    return next(j for j, e in enumerate(n.attrs["body"]) if e[0] in GEMM_OPS)


def role(n) -> str:
    if n.op == "fused":
        return FAMILY[n.attrs["kind"]]
    if n.op in GEMM_OPS:
        return "gemm"
    if n.op in ("sum", "max"):
        return "reduce"
    if n.op == "log_softmax":
        return "softmax"
    if n.op in VIEW_OPS or n.op in POOL_OPS or \
            (n.op in REGISTRY and REGISTRY[n.op].kind == "elementwise"):
        return "point"
    raise UnsupportedOp(f"the CUDA backend has no kernel for op '{n.op}' yet")


def reduce_input_shape(n) -> tuple:
    """The shape a reduction (lone or fused) reduces."""
    if n.op == "fused":
        kind, x = n.attrs["body"][-1][1][0]
        return body_shapes(n)[x] if kind == "v" else n.inputs[x].shape
    return n.inputs[0].shape


def reduce_axes(n) -> tuple:
    attrs = dict(n.attrs["body"][-1][2]) if n.op == "fused" else n.attrs
    return normalize_axes(attrs["axes"], len(reduce_input_shape(n)))


def reduce_op(n) -> str:
    return n.attrs["body"][-1][0] if n.op == "fused" else n.op


def body_shapes(n) -> list:
    shapes = []
    for op, args, attrs in n.attrs["body"]:
        ins = [n.inputs[x].shape if k == "in" else shapes[x] if k == "v" else ()
               for k, x in args]
        attrs = dict(attrs)
        if op == "matmul":
            a = ins[0][:-2] + ins[0][-2:][::-1] if attrs.get("trans_a") else ins[0]
            b = ins[1][:-2] + ins[1][-2:][::-1] if attrs.get("trans_b") else ins[1]
            ins = [a, b]
        shapes.append(tuple(REGISTRY[op].infer(ins, attrs)))
    return shapes


class _Builder:
    def __init__(self, s):
        self.s, self.g = s, s.graph
        self.roots = set(self.g.roots())
        # a random leaf (a dropout mask) is scheduled, but filled before the run
        self.order = [n for n in s.order if n.op not in LEAF_REF]
        operands = set()
        for n in self.order:
            if role(n) == "gemm":
                operands |= set(self.operands(n))
        self.virtual, self.alias = set(), {}
        for n in self.order:
            if n.op not in VIEW_OPS:
                continue
            src = n.inputs[0]
            if n.op == "reshape" and self.buffered(src) and not self.storage(src):
                self.alias[n] = self.owner(src)
            elif n not in self.roots and n not in operands and \
                    (n.op == "count" or not self.touches_storage(src)):
                self.virtual.add(n)
        names = sorted({n.attrs["name"] for n in self.g.nodes if self.storage(n)})
        self.store_name = {k: f"st{i}" for i, k in enumerate(names)}
        feeds = list(self.g.inputs) + [k for k in self.g.targets if k not in self.g.inputs]
        self.feed_name = {k: f"in{i}" for i, k in enumerate(feeds)}
        rand = sorted(n.attrs["name"] for n in self.g.nodes if n.op == "random")
        self.rand_name = {k: f"rnd{i}" for i, k in enumerate(rand)}

    # what a node is -----------------------------------------------------
    def storage(self, v) -> bool:
        return v.op in ("param", "state")

    def buffered(self, v) -> bool:
        return v.op in LEAF_REF or (v.op != "const" and v not in self.virtual)

    def owner(self, v):
        return self.alias.get(v, v)

    def touches_storage(self, v) -> bool:
        while not self.storage(v):
            if v not in self.virtual or v.op == "count":
                return False
            v = v.inputs[0]      # a view: follow it to what it views
        return True

    def operands(self, n) -> list:
        if n.op == "fused":
            return [n.inputs[x] for k, x in n.attrs["body"][_head(n)][1] if k == "in"]
        return list(n.inputs)

    def reads(self, n, row_reduce=False) -> list:
        """(owner, at n's own element) for every buffer n reads. row_reduce: n
        is a reduction computed element by element of its input (in a softmax
        kernel), whose map reads at the input's elements."""
        out = []
        here = reduce_input_shape(n) if row_reduce else n.shape

        def add(v, at_point):
            while v in self.virtual:     # a view reads what it views, not at n's element
                if v.op == "count":
                    return
                v, at_point = v.inputs[0], False
            if v.op != "const":
                out.append((self.owner(v), at_point and v not in self.alias
                            and v.shape == here))

        r = role(n)
        if n.op == "fused":
            body = n.attrs["body"]
            head = _head(n) if r == "gemm" else None
            for j, (op, args, _) in enumerate(body):
                for k, x in args:
                    if k == "in":
                        add(n.inputs[x], (r in ("point", "gemm") or row_reduce) and j != head)
        elif row_reduce or (r == "point" and REGISTRY[n.op].kind == "elementwise"):
            for v in n.inputs:
                add(v, True)
        elif n.op != "count":
            for v in n.inputs:
                add(v, False)
        return out

    def indirect(self, n) -> set:
        """The values n reads through a view or a reshape alias: at elements
        its own point does not name, however the shapes compare."""
        ins = [n.inputs[x] for _, args, _ in n.attrs["body"] for k, x in args if k == "in"] \
            if n.op == "fused" else list(n.inputs)
        out = set()
        for v in ins:
            if v in self.virtual or v in self.alias:
                while v in self.virtual and v.op != "count":
                    v = v.inputs[0]
                out.add(self.owner(v))
        return out

    # kernels ------------------------------------------------------------
    def new_kernel(self, n) -> _Kernel:
        fam = role(n)
        k = _Kernel(fam, None if fam == "point" else n, [[n.shape, [n]]], {n: 0},
                    [(v, ident, 0) for v, ident in self.reads(n)], {})
        if fam == "softmax":
            k.phase[n] = 1
        name = self.s.writes.get(n)
        if name is not None:
            if any(self.storage(v) and v.attrs["name"] == name and not ident
                   for v, ident in self.reads(n)):
                k.copy_out = name
            else:
                k.writes[name] = n
        return k

    def join(self, k: _Kernel, n) -> bool:
        """Add n to k if one thread can compute it from k's values (see module doc)."""
        if k.family == "softmax":
            return self.join_row(k, n)
        if k.family == "gemm" and role(n) == "reduce":
            return self.join_column_sum(k, n)
        if role(n) != "point":
            return False
        if k.family != "point":
            seg = next((i for i, (shape, _) in enumerate(k.segs) if shape == n.shape), None)
            if seg is None:
                return False
        else:
            seg = next((i for i, (shape, _) in enumerate(k.segs) if shape == n.shape), None)
            if seg is None:
                if len(k.segs) >= MAX_SEGMENTS:
                    return False
                seg = len(k.segs)
        reads = self.reads(n)
        for v, ident in reads:
            if v in k.seg_of and not (ident and k.seg_of[v] == seg):
                return False
            if self.storage(v) and v.attrs["name"] in k.writes:
                return False
        name = self.s.writes.get(n)
        if name is not None:
            for v, ident, sg in k.reads + [(v, i, seg) for v, i in reads]:
                if self.storage(v) and v.attrs["name"] == name and not (ident and sg == seg):
                    return False
            k.writes[name] = n
        if seg == len(k.segs):
            k.segs.append([n.shape, []])
        k.segs[seg][1].append(n)
        k.seg_of[n] = seg
        k.reads += [(v, ident, seg) for v, ident in reads]
        return True

    def join_column_sum(self, k: _Kernel, n) -> bool:
        """Add to a GEMM kernel the sum over its rows of a value it computes
        (the bias gradient of the layer whose input gradient it is): segment
        1 holds that sum and the values of its shape (the bias update)."""
        S = k.host.shape
        if len(k.segs) > 1 or len(S) != 2 or reduce_op(n) != "sum" or \
                reduce_input_shape(n) != S or reduce_axes(n) != (0,) or n.shape == S or \
                n in self.s.writes:
            return False
        reads = self.reads(n, row_reduce=True)
        for v, ident in reads:
            if v in k.seg_of and not (ident and k.seg_of[v] == 0):
                return False
            if self.storage(v) and v.attrs["name"] in k.writes:
                return False
        k.segs.append([n.shape, [n]])
        k.seg_of[n] = 1
        k.reads += [(v, ident, 0) for v, ident in reads]
        return True

    def join_row(self, k: _Kernel, n) -> bool:
        """Add n to a softmax kernel, a warp per row of the head's shape S:
        phase 1 computes values of shape S element by element and sums or
        maxes them along the row (row reductions, phase 1 too); then come
        per-row values (shape S without its last axis, or with it as 1); then
        phase 2 passes over the row again for values of shape S that read
        per-row values (the cross-entropy gradient reads the row sums).
        Last, sums over all rows (the loss's batch mean, the bias gradient of
        the logits) of an [N, C] value or of a per-row value: each block adds
        its rows, the last block adds the blocks (segments 1, 2, ...); values
        of their shapes follow (the mean's division, the bias update), and
        only these may write a param or optimizer buffer, at their element."""
        S = k.host.shape
        row_shapes = (S[:-1], S[:-1] + (1,))
        grid_shapes = {shape: i for i, (shape, _) in enumerate(k.segs) if i > 0}
        r = role(n)
        name = self.s.writes.get(n)
        if r == "reduce" and reduce_input_shape(n) == S and reduce_axes(n) == (len(S) - 1,):
            level, reads = "reduce", self.reads(n, row_reduce=True)
        elif r == "reduce" and reduce_op(n) == "sum" and S[0] == N and len(k.segs) <= 4 and \
                n.shape not in row_shapes and n.shape != S and n.shape not in grid_shapes and (
                    (len(S) == 2 and S[1] != N and self.grid_width(k) + S[1] <= 1024 and
                     reduce_input_shape(n) == S and reduce_axes(n) == (0,)) or
                    (reduce_input_shape(n) in row_shapes and
                     reduce_axes(n) == tuple(range(len(reduce_input_shape(n)))))):
            level, reads = "grid", self.reads(n, row_reduce=True)
        elif r == "point" and n.shape == S:
            level, reads = "elem", self.reads(n)
        elif r == "point" and n.shape in row_shapes:
            level, reads = "row", self.reads(n)
        elif r == "point" and n.shape in grid_shapes:
            level, reads = "after", self.reads(n)
        else:
            return False
        if name is not None and level != "after":
            return False
        if self.indirect(n) & set(k.phase):   # only in registers here, read elsewhere
            return False
        seg = grid_shapes.get(n.shape, len(k.segs)) if level in ("grid", "after") else 0
        per_row = level == "row" or (level == "grid" and reduce_input_shape(n) != S)
        phase = 1
        for v, ident in reads:
            if self.storage(v) and v.attrs["name"] in k.writes:
                return False
            if v not in k.phase:
                continue
            at = k.phase[v]
            if level == "after":
                ok = ident and k.seg_of[v] == seg
            elif per_row:                  # a value per row reads per-row values
                ok = at == "row"
            elif at == "row":              # an element reads its row's value: phase 2
                ok, phase = True, 2
            elif at == "grid":
                ok = False
            else:                          # an element reads an element at its place
                ok, phase = ident, max(phase, at)
            if not ok:
                return False
        if level == "reduce" and phase != 1:
            return False
        if name is not None:
            for v, ident, sg in k.reads + [(v, i, seg) for v, i in reads]:
                if self.storage(v) and v.attrs["name"] == name and not (ident and sg == seg):
                    return False
            k.writes[name] = n
        if level == "grid":
            k.phase[n] = "grid"
            k.grid_phase[n] = phase if reduce_input_shape(n) == S else "row"
            k.segs.append([n.shape, [n]])
        elif level == "after":
            k.phase[n] = "grid"
            k.segs[seg][1].append(n)
        else:
            k.phase[n] = "row" if level in ("row", "reduce") else phase
            k.segs[0][1].append(n)
        k.seg_of[n] = seg
        k.reads += [(v, ident, 0 if level == "grid" else seg) for v, ident in reads]
        return True

    def grid_width(self, k: _Kernel) -> int:
        """Floats per row of a block's shared sums over rows (at most 1024: 32 KB)."""
        return sum(1 if p == "row" else int(reduce_input_shape(m)[1])
                   for m, p in k.grid_phase.items())

    def kernels(self) -> list:
        out = []
        for n in self.order:
            if n in self.virtual or n in self.alias:
                continue
            if not self.place(out, n):
                out.append(self.new_kernel(n))
        return out

    def place(self, out, n) -> bool:
        """Join n to one of the last kernels: the last that accepts it, moving
        it before the kernels after that one, which must not compute what it
        reads, write a param it reads, or read a param it writes."""
        if role(n) not in ("point", "reduce"):
            return False
        reads = {v for v, _ in self.reads(n)}
        read_names = {v.attrs["name"] for v in reads if self.storage(v)}
        name = self.s.writes.get(n)
        for k in reversed(out[-PLACE_DEPTH:]):
            if self.join(k, n):
                return True
            written = set(k.writes) | ({k.copy_out} if k.copy_out else set())
            if reads & set(k.seg_of) or read_names & written or \
                    (name and any(self.storage(v) and v.attrs["name"] == name
                                  for v, _, _ in k.reads)):
                return False
        return False

    # refs ---------------------------------------------------------------
    def leaf_ref(self, v):
        kind = LEAF_REF[v.op]
        return (kind, v.attrs["name"])

    def ref(self, v):
        v = self.owner(v)
        if v.op == "const":
            return ("const", float(v.attrs["value"]))
        if v.op in LEAF_REF:
            return self.leaf_ref(v)
        return self.refs[v]

    def c_name(self, ref) -> str:
        kind, x = ref
        if kind == "slot":
            return f"buf{x}"
        return {"store": self.store_name, "feed": self.feed_name,
                "random": self.rand_name}[kind][x]

    # buffers ------------------------------------------------------------
    def plan_buffers(self, kernels):
        end = len(kernels)
        kernel_of = {}
        for i, k in enumerate(kernels):
            for _, members in k.segs:
                for m in members:
                    kernel_of[m] = i
        needed = {}
        for i, k in enumerate(kernels):
            for v, _, _ in k.reads:
                needed.setdefault(v, set()).add(i)
        for r in self.roots:
            needed.setdefault(self.owner(r), set()).add(end)
        self.stored = {v for v, i in kernel_of.items()
                       if v in self.roots or any(j != i for j in needed.get(v, ()))}
        self.refs, self.slots, free = {}, [], {}
        dies = {}
        for v in self.stored:
            dies.setdefault(max(needed.get(v, {kernel_of[v]})), []).append(v)
        for i, k in enumerate(kernels):
            for _, members in k.segs:
                for m in members:
                    if m not in self.stored:
                        continue
                    name = self.s.writes.get(m)
                    if name is not None and k.writes.get(name) is m:
                        self.refs[m] = ("store", name)
                        continue
                    sz = size_of(m.shape)
                    pool = free.get(sz)
                    if pool:
                        self.refs[m] = ("slot", pool.pop())
                    else:
                        self.refs[m] = ("slot", len(self.slots))
                        self.slots.append(sz)
            for v in sorted(dies.get(i, []), key=lambda v: v.id):
                if self.refs[v][0] == "slot":
                    free.setdefault(size_of(v.shape), []).append(self.refs[v][1])
            # a freed slot is reused only by a later kernel's outputs


class _Emit:
    """The code of one kernel: pointer parameters and the fused point-wise code."""

    def __init__(self, b: _Builder):
        self.b = b
        self.params = {}      # ref -> written?
        self.regs = {}        # Node -> C variable holding its value at the current point

    def ptr(self, ref, write=False) -> str:
        if ref[0] == "const":
            raise AssertionError("a constant has no buffer")
        self.params[ref] = self.params.get(ref, False) or write
        return self.b.c_name(ref)

    def param_list(self) -> str:
        return ", ".join(
            f"{'float' if w else 'const float'}* __restrict__ {self.b.c_name(r)}"
            for r, w in self.params.items())

    # values -------------------------------------------------------------
    def at_point(self, v, pt: Point) -> str:
        """v's value at the point (v broadcast to the point's shape)."""
        if v in self.regs:
            return self.regs[v]
        if v.op == "const":
            return lit(v.attrs["value"])
        if v.shape == pt.shape:
            return self.load(v, pt.coords, pt)
        return self.load(v, broadcast_coords(pt.coords, pt.shape, v.shape))

    def load(self, v, coords, pt: Point | None = None) -> str:
        """v's element at coords (one C expression per axis of v)."""
        if v.op == "const":
            return lit(v.attrs["value"])
        if v in self.regs:
            raise AssertionError(f"{v!r} is read at another element in its own kernel")
        if v in self.b.virtual:
            return self.view(v, coords)
        if pt is not None and v.shape == pt.shape and coords == pt.coords:
            index = pt.flat
        else:
            index = flat(coords, v.shape)
        return f"{self.ptr(self.b.ref(v))}[{index}]"

    def view(self, v, coords) -> str:
        """A view's element at coords, read from its source."""
        src = v.inputs[0]
        if v.op == "count":
            axes = normalize_axes(v.attrs["axes"], len(src.shape))
            sz = size_of([src.shape[a] for a in axes])
            return lit(sz[0]) if sz[1] == 0 else f"((float){c_size(sz)})"
        if v.op == "transpose":
            c = list(coords)
            c[-1], c[-2] = c[-2], c[-1]
            return self.load(src, c)
        if v.op == "expand":
            if v.attrs["keepdims"]:
                return self.load(src, broadcast_coords(coords, v.shape, src.shape))
            rank = len(src.shape) + len(v.attrs["axes"])
            axes = normalize_axes(v.attrs["axes"], rank)
            shape = list(src.shape)
            for a in axes:
                shape.insert(a, 1)
            c = broadcast_coords(coords, v.shape, tuple(shape))
            return self.load(src, [x for d, x in enumerate(c) if d not in axes])
        if v.op == "reshape":
            index = flat(coords, v.shape)
            if self.b.buffered(src) and src not in self.regs:
                return f"{self.ptr(self.b.ref(src))}[{index}]"
            return self.load(src, decompose(atom(index), src.shape))
        raise AssertionError(v.op)

    # point-wise code ----------------------------------------------------
    def op_expr(self, op, attrs, atoms) -> str:
        names = dict(zip("ab", atoms))
        names.update({k: num(x) for k, x in dict(attrs).items()
                      if isinstance(x, (int, float)) and not isinstance(x, bool)})
        return REGISTRY[op].cuda.format(**names)

    def body(self, n, pt: Point, entries, head_value=None) -> list:
        """Lines computing the given entries of a fused body at pt; the head
        entry (a GEMM's product) is head_value."""
        body = n.attrs["body"]
        var = f"v{n.id}"
        last = len(body) - 1

        def name(j):
            return var if j == last else f"{var}_{j}"
        lines = []
        for j in entries:
            op, args, attrs = body[j]
            if op in GEMM_OPS:
                lines.append(f"const float {name(j)} = {head_value};")
                continue
            atoms = [self.at_point(n.inputs[x], pt) if k == "in" else name(x) if k == "v"
                     else lit(x) for k, x in args]
            lines.append(f"const float {name(j)} = {self.op_expr(op, attrs, atoms)};")
        return lines

    def reduced(self, n, pt: Point) -> tuple:
        """(lines, value): the element at pt of what reduction n reduces, its
        fused chain evaluated there."""
        if n.op != "fused":
            return [], self.at_point(n.inputs[0], pt)
        body = n.attrs["body"]
        kind, x = body[-1][1][0]
        lines = self.body(n, pt, range(len(body) - 1))
        return lines, (f"v{n.id}_{x}" if kind == "v" else self.at_point(n.inputs[x], pt))

    def compute(self, n, pt: Point) -> list:
        """Lines computing point op n at pt into the register v<id>."""
        var = f"v{n.id}"
        if n.op == "fused":
            lines = self.body(n, pt, range(len(n.attrs["body"])))
        elif n.op in VIEW_OPS:
            lines = [f"const float {var} = {self.view(n, pt.coords)};"]
        elif n.op in POOL_OPS:
            lines = self.pool(n, pt, var)
        else:
            atoms = [self.at_point(i, pt) for i in n.inputs]
            lines = [f"const float {var} = {self.op_expr(n.op, n.attrs, atoms)};"]
        self.regs[n] = var
        return lines

    def store(self, n, pt: Point) -> list:
        if n not in self.b.stored:
            return []
        return [f"{self.ptr(self.b.ref(n), write=True)}[{pt.flat}] = {self.regs[n]};"]

    def pool(self, n, pt: Point, var) -> list:
        """Pooling, one output element: windows of size x size, stride apart
        (ties go to the first element of a window in row-major order)."""
        S, st = n.attrs["size"], n.attrs["stride"]
        u = n.id
        bn, ch, i, j = pt.coords
        x = n.inputs[0]

        def tap(v, a, b):
            return self.load(v, [bn, ch, f"{atom(a)} * {st} + a{u}", f"{atom(b)} * {st} + b{u}"])

        loops = [f"for (int a{u} = 0; a{u} < {S}; ++a{u})",
                 f"  for (int b{u} = 0; b{u} < {S}; ++b{u}) {{"]
        if n.op in ("maxpool", "avgpool"):
            step = f"{var} = fmaxf({var}, {tap(x, i, j)});" if n.op == "maxpool" else \
                f"{var} += {tap(x, i, j)};"
            lines = [f"float {var} = {'-INFINITY' if n.op == 'maxpool' else '0.f'};", *loops,
                     f"    {step}", "  }"]
            if n.op == "avgpool":
                lines.append(f"{var} *= {lit(np.float32(1.0 / S ** 2))};")
            return lines
        if n.op == "maxpool_select":
            return [f"float best{u} = -INFINITY;", f"int at{u} = 0;", *loops,
                    f"    const float t{u} = {tap(x, i, j)};",
                    f"    if (t{u} > best{u}) {{ best{u} = t{u}; at{u} = a{u} * {S} + b{u}; }}",
                    "  }",
                    f"const float {var} = " + self.load(
                        n.inputs[1], [bn, ch, f"{atom(i)} * {st} + at{u} / {S}",
                                      f"{atom(j)} * {st} + at{u} % {S}"]) + ";"]
        # the gradients gather from every window that holds this element, in
        # the order the numpy backend adds them (its taps in row-major order)
        g = n.inputs[1] if n.op == "maxpool_grad" else n.inputs[0]
        ho, wo = g.shape[2], g.shape[3]
        lines = [f"float {var} = 0.f;", "{",
                 f"  const int h{u} = {i}, w{u} = {j};",
                 f"  const int ilo{u} = h{u} >= {S} ? (h{u} - {S}) / {st} + 1 : 0, "
                 f"ihi{u} = min(h{u} / {st}, {ho - 1});",
                 f"  const int jlo{u} = w{u} >= {S} ? (w{u} - {S}) / {st} + 1 : 0, "
                 f"jhi{u} = min(w{u} / {st}, {wo - 1});",
                 f"  for (int i{u} = ihi{u}; i{u} >= ilo{u}; --i{u})",
                 f"    for (int j{u} = jhi{u}; j{u} >= jlo{u}; --j{u}) {{"]
        gval = self.load(g, [bn, ch, f"i{u}", f"j{u}"])
        if n.op == "avgpool_grad":
            lines.append(f"      {var} += __fmul_rn({gval}, {lit(np.float32(1.0 / S ** 2))});")
        else:
            lines += [f"      float best{u} = -INFINITY;", f"      int at{u} = 0;",
                      *["      " + s for s in loops],
                      f"          const float t{u} = {tap(x, f'i{u}', f'j{u}')};",
                      f"          if (t{u} > best{u}) {{ best{u} = t{u}; "
                      f"at{u} = a{u} * {S} + b{u}; }}",
                      "        }",
                      f"      if (i{u} * {st} + at{u} / {S} == h{u} && "
                      f"j{u} * {st} + at{u} % {S} == w{u}) {var} += {gval};"]
        lines += ["    }", "}"]
        return lines

    def epilogue(self, k: _Kernel, members, pt: Point) -> list:
        lines = []
        for m in members:
            lines += self.compute(m, pt) + self.store(m, pt)
        return lines


# GEMM operands -------------------------------------------------------------

def _gather_struct(name, kcontig, at_body) -> str:
    return (f"struct {name} {{\n"
            f"  static constexpr bool kcontig = {'true' if kcontig else 'false'}, vec = false;\n"
            f"  const float* __restrict__ p;\n  int bat;\n"
            f"  __device__ __forceinline__ float at(int r, int k) const {{\n"
            + "".join(f"    {line}\n" for line in at_body) +
            "  }\n"
            "  __device__ __forceinline__ float4 at4(int, int) const "
            "{ return make_float4(0.f, 0.f, 0.f, 0.f); }\n};\n")


def gemm_spec(e: _Emit, n, kname: str) -> dict:
    """M, N, K, the batch count, the two operands and the output's coordinates
    (in row, col, bat) of a GEMM-kind node, lone or the head of a fused body."""
    if n.op == "fused":
        op, args, attrs = n.attrs["body"][_head(n)]
        ins = [n.inputs[x] for _, x in args]
        attrs = dict(attrs)
    else:
        op, ins, attrs = n.op, list(n.inputs), n.attrs
    out = n.shape
    p0, p1 = (e.ptr(e.b.ref(v)) for v in ins)
    structs = []
    if op == "matmul":
        A, B = ins
        ta, tb = bool(attrs.get("trans_a")), bool(attrs.get("trans_b"))
        ash, bsh = A.shape, B.shape
        M, K = (ash[-1], ash[-2]) if ta else (ash[-2], ash[-1])
        Nc = bsh[-2] if tb else bsh[-1]
        lead = out[:-2]
        fold = len(bsh) == 2 and not ta and len(ash) > 2
        if fold:
            msz, batches, a_off, b_off = size_of(ash[:-1]), (1, 0), "", ""
        else:
            msz, batches = size_of((M,)), size_of(lead)
            bc = decompose("bat", lead)
            offs = []
            for v, sh in ((A, ash), (B, bsh)):
                f = flat(broadcast_coords(bc, lead, sh[:-2]), sh[:-2])
                offs.append("" if f == "0" else f" + {atom(f)} * {c_size(size_of(sh[-2:]))}")
            a_off, b_off = offs

        def vec(ld, sh, off):
            return ld != N and int(ld) % 4 == 0 and (not off or size_of(sh[-2:])[0] % 4 == 0)
        lda, ldb = ash[-1], bsh[-1]
        spec = dict(
            M=c_size(msz), N=c_dim(Nc), K=c_dim(K), sizes=(msz, size_of((Nc,)), size_of((K,)),
                                                            batches),
            a_type=f"MatrixOperand<{'false' if ta else 'true'}, "
                   f"{'true' if vec(lda, ash, a_off) else 'false'}>",
            a_init=f"{{{p0}{a_off}, {c_dim(lda)}}}",
            b_type=f"MatrixOperand<{'true' if tb else 'false'}, "
                   f"{'true' if vec(ldb, bsh, b_off) else 'false'}>",
            b_init=f"{{{p1}{b_off}, {c_dim(ldb)}}}")
        rowflat = "row" if batches == (1, 0) else f"(bat * {c_size(msz)} + row)"
        spec["coords"] = decompose(rowflat, out[:-1]) + ["col"]
        spec["flat"] = f"{atom(rowflat)} * {c_dim(Nc)} + col"
        spec.update(structs="", op=op, trans=(ta, tb))
        return spec
    s, pad = attrs["stride"], attrs["padding"]
    if op == "conv2d":
        x, w = ins
        nb_, C, H, W = x.shape
        F, _, kh, kw = w.shape
        ho, wo = out[2], out[3]
        K = C * kh * kw
        structs.append(_gather_struct(f"{kname}_b", False, [
            f"const int c = k / {kh * kw}, a = k / {kw} % {kh}, b = k % {kw};",
            f"const int h = r / {wo} * {s} + a - {pad}, w = r % {wo} * {s} + b - {pad};",
            f"return (h >= 0 && h < {H} && w >= 0 && w < {W}) ? "
            f"p[((bat * {C} + c) * {H} + h) * {W} + w] : 0.f;"]))
        spec = dict(M=str(F), N=str(ho * wo), K=str(K),
                    sizes=((F, 0), (ho * wo, 0), (K, 0), size_of((nb_,))),
                    a_type=f"MatrixOperand<true, {'true' if K % 4 == 0 else 'false'}>",
                    a_init=f"{{{p1}, {K}}}", b_type=f"{kname}_b", b_init=f"{{{p0}, bat}}",
                    coords=["bat", "row", f"(col / {wo})", f"(col % {wo})"],
                    flat=f"(bat * {F} + row) * {ho * wo} + col")
    elif op == "conv2d_input_grad":
        g, w = ins
        F, C, kh, kw = w.shape
        ho, wo = g.shape[2], g.shape[3]
        H, W = out[2], out[3]
        structs.append(_gather_struct(f"{kname}_a", True, [
            f"const int f = k / {kh * kw}, a = k / {kw} % {kh}, b = k % {kw};",
            f"return p[((f * {C} + r) * {kh} + a) * {kw} + b];"]))
        structs.append(_gather_struct(f"{kname}_b", False, [
            f"const int f = k / {kh * kw}, a = k / {kw} % {kh}, b = k % {kw};",
            f"const int i = r / {W} + {pad} - a, j = r % {W} + {pad} - b;",
            f"return (i >= 0 && j >= 0 && i % {s} == 0 && j % {s} == 0 && i / {s} < {ho} && "
            f"j / {s} < {wo}) ? p[((bat * {F} + f) * {ho} + i / {s}) * {wo} + j / {s}] : 0.f;"]))
        spec = dict(M=str(C), N=str(H * W), K=str(F * kh * kw),
                    sizes=((C, 0), (H * W, 0), (F * kh * kw, 0), size_of((g.shape[0],))),
                    a_type=f"{kname}_a", a_init=f"{{{p1}, bat}}",
                    b_type=f"{kname}_b", b_init=f"{{{p0}, bat}}",
                    coords=["bat", "row", f"(col / {W})", f"(col % {W})"],
                    flat=f"(bat * {C} + row) * {H * W} + col")
    elif op == "conv2d_weight_grad":
        x, g = ins
        _, C, H, W = x.shape
        F, ho, wo = g.shape[1], g.shape[2], g.shape[3]
        kh, kw = attrs["kernel"]
        P = ho * wo
        ksz = size_of((x.shape[0], P))
        structs.append(_gather_struct(f"{kname}_a", True, [
            f"return p[(k / {P} * {F} + r) * {P} + k % {P}];"]))
        structs.append(_gather_struct(f"{kname}_b", True, [
            f"const int c = r / {kh * kw}, a = r / {kw} % {kh}, b = r % {kw};",
            f"const int n = k / {P}, q = k % {P};",
            f"const int h = q / {wo} * {s} + a - {pad}, w = q % {wo} * {s} + b - {pad};",
            f"return (h >= 0 && h < {H} && w >= 0 && w < {W}) ? "
            f"p[((n * {C} + c) * {H} + h) * {W} + w] : 0.f;"]))
        spec = dict(M=str(F), N=str(C * kh * kw), K=c_size(ksz),
                    sizes=((F, 0), (C * kh * kw, 0), ksz, (1, 0)),
                    a_type=f"{kname}_a", a_init=f"{{{p1}, 0}}",
                    b_type=f"{kname}_b", b_init=f"{{{p0}, 0}}",
                    coords=["row", f"(col / {kh * kw})", f"(col / {kw} % {kh})", f"(col % {kw})"],
                    flat=f"row * {C * kh * kw} + col")
    else:
        raise UnsupportedOp(op)
    spec.update(structs="".join(structs), op=op, trans=(False, False))
    return spec


def gemm_tiles(sizes) -> tuple:
    """The tile variants worth compiling. The 128 tile only pays when both M
    and N can reach 256; then both are compiled if a size depends on the batch
    (gemm_launch picks at launch), else the one it picks on 132 multiprocessors."""
    (m, mb), (n, nbt), _, (bt, bb) = sizes
    if not ((mb or m >= 256) and (nbt or n >= 256)):
        return ("t64",)
    if mb or nbt or bb:
        return ("t64", "t128")
    return (gemm_launch(m, n, 1, bt, ("t64", "t128"), 132)[0],)


# kernels -> source ---------------------------------------------------------

def _describe(n) -> str:
    if n.op == "fused":
        head = f"fused[{n.attrs['kind']}: {', '.join(e[0] for e in n.attrs['body'])}]"
    else:
        head = n.op
    return safe(f"{n!r} = {head}({', '.join(repr(i) for i in n.inputs)})")


def _reduce_layout(outs, count, row_mode) -> tuple:
    """(threads sharing an output, outputs per block)."""
    big = count[1] == 1 or count[0] >= 512
    few = outs[1] == 0 and outs[0] <= (16 if row_mode else 512)
    if row_mode:
        return (256, 1) if (few and big) else (32, 8)
    return (32, 32) if (few and big) else (8, 32)


def _emit_kernel(b: _Builder, k: _Kernel, index: int):
    """(C source, Launch) of one kernel."""
    e = _Emit(b)
    host = k.host
    comments = [f"// {_describe(m)}  ->  " +
                (b.c_name(b.refs[m]) if m in b.stored else "registers")
                for _, members in k.segs for m in members]
    if k.family == "point":
        name = f"k{index:02d}_elementwise"
        segs, sizes = [], []
        for shape, members in k.segs:
            pt = Point(shape, "idx", decompose("idx", shape))
            e.regs = {}
            body = "\n".join(e.epilogue(k, members, pt))
            start = c_sum(sizes)
            sizes.append(size_of(shape))
            segs.append(dict(start=atom(start), end=c_sum(sizes), body=body))
        total = c_sum(sizes)
        src = template("elementwise").kernel(dict(name=name, params=e.param_list(),
                                                  total=total, segments=segs))
        launch = Launch(name, "elementwise", [], ("flat", [size_of(s) for s, _ in k.segs]),
                        (256, 1, 1))
        text = f"{name:<22} grid flat({total})"
    elif k.family == "gemm":
        name = f"k{index:02d}_gemm"
        spec = gemm_spec(e, host, name)
        pt = Point(host.shape, "idx", spec["coords"])
        lines = [f"const int idx = {spec['flat']};"]
        e.regs = {}
        if host.op == "fused":
            lines += e.body(host, pt, range(len(host.attrs["body"])), head_value="c")
            e.regs[host] = f"v{host.id}"
        else:
            lines.append(f"const float v{host.id} = c;")
            e.regs[host] = f"v{host.id}"
        lines += _store_host(e, k, host, pt)
        lines += e.epilogue(k, k.segs[0][1][1:], pt)
        column = ""
        if len(k.segs) > 1:            # a sum over the rows, and what follows it
            total, *after = k.segs[1][1]
            more, val = e.reduced(total, pt)
            lines += more + [f"csum[j] += {val};"]
            cp = Point(total.shape, "cidx", decompose("cidx", total.shape))
            e.regs = {total: f"v{total.id}"}
            column = "\n".join([f"const float v{total.id} = colsum;"] + e.store(total, cp) +
                               e.epilogue(k, after, cp))
        tiles = gemm_tiles(spec["sizes"])
        params = e.param_list()
        lib = template("gemm")
        src = spec["structs"] + "".join(
            lib.kernel(dict(name=name, params=params, M=spec["M"], N=spec["N"], K=spec["K"],
                            a_type=spec["a_type"], a_init=spec["a_init"], b_type=spec["b_type"],
                            b_init=spec["b_init"], epilogue="\n".join(lines), column=column),
                       t) + "\n"
            for t in tiles)
        launch = Launch(name, "gemm", [], ("gemm",) + spec["sizes"], (256, 1, 1), tiles,
                        op=spec["op"], trans=spec["trans"], column_sum=bool(column))
        text = (f"{name:<22} gemm M={spec['M']} N={spec['N']} K={spec['K']} "
                f"batches={c_size(spec['sizes'][3])} tiles {'/'.join(tiles)}"
                + (", with its column sums" if column else ""))
    elif k.family == "reduce":
        name = f"k{index:02d}_reduce"
        op, xshape, axes = reduce_op(host), reduce_input_shape(host), reduce_axes(host)
        kept = [d for i, d in enumerate(xshape) if i not in axes]
        red = [d for i, d in enumerate(xshape) if i in axes]
        ko, kr = iter(decompose("o", kept)), iter(decompose("r", red))
        coords = [next(kr) if i in axes else next(ko) for i in range(len(xshape))]
        e.regs = {}
        load, val = e.reduced(host, Point(tuple(xshape), flat(coords, xshape), coords))
        load.append(f"const float val = {val};")
        pt = Point(host.shape, "o", decompose("o", host.shape))
        e.regs = {host: f"v{host.id}"}
        lines = [f"const float v{host.id} = c;"] + _store_host(e, k, host, pt)
        lines += e.epilogue(k, k.segs[0][1][1:], pt)
        wide = [i for i, d in enumerate(xshape) if d != 1]
        row_mode = bool(wide) and wide[-1] in axes
        outs, count = size_of(kept), size_of(red)
        tr, to = _reduce_layout(outs, count, row_mode)
        is_max = op == "max"
        src = template("reduce").kernel(dict(
            name=name, params=e.param_list(), tr=tr, to=to, row_mode=row_mode,
            outs=c_size(outs), count=c_size(count), init="-INFINITY" if is_max else "0.f",
            combine=(lambda a, b: f"fmaxf({a}, {b})") if is_max else (lambda a, b: f"{a} + {b}"),
            load="\n".join(load), epilogue="\n".join(lines)))
        block = (tr, to, 1) if row_mode else (to, tr, 1)
        launch = Launch(name, "reduce", [], ("rows", outs, to), block)
        text = f"{name:<22} {op} of {c_size(count)} each, {c_size(outs)} outputs, block {block[:2]}"
    else:   # softmax, with row reductions, per-row values and sums over rows (join_row)
        name = f"k{index:02d}_softmax"
        xshape = host.inputs[0].shape
        rows = size_of(xshape[:-1])
        cols = c_dim(xshape[-1])
        coords = decompose("row", xshape[:-1]) + ["col"]
        e.regs = {}
        load = e.at_point(host.inputs[0], Point(xshape, f"row * {cols} + col", coords))
        pt = Point(host.shape, "idx", coords)
        members = k.segs[0][1][1:]
        elem1 = [m for m in members if k.phase[m] == 1]
        elem2 = [m for m in members if k.phase[m] == 2]
        reductions = [m for m in members if k.phase[m] == "row" and role(m) == "reduce"]
        per_row = [m for m in members if k.phase[m] == "row" and role(m) == "point"]
        sums = [seg[1][0] for seg in k.segs[1:]]          # sums over all rows

        def feed_sums(where) -> list:
            """Each element's (or row's) share of the sums over rows."""
            out = []
            for m in sums:
                if k.grid_phase[m] == where:
                    more, val = e.reduced(m, pt if where != "row" else
                                          Point(reduce_input_shape(m), "row",
                                                decompose("row", reduce_input_shape(m))))
                    slot = f"g{m.id}[warp][col]" if where != "row" else f"g{m.id}[warp]"
                    out += more + ([f"{slot} = {val};"] if where != "row" else
                                   [f"if (lane == 0) {slot} = {val};"])
            return out

        def elements(stores: bool) -> list:
            """The phase-1 values at (row, col): the head and its epilogue."""
            e.regs = {host: f"v{host.id}"}
            out = [f"const int idx = row * {cols} + col;", f"const float v{host.id} = c;"]
            if stores:
                out += _store_host(e, k, host, pt)
            for m in elem1:
                out += e.compute(m, pt) + (e.store(m, pt) if stores else [])
            return out
        lines = elements(stores=True)
        inits, finish = [], []
        for m in reductions:           # accumulated per lane in phase 1, then across the warp
            is_max = reduce_op(m) == "max"
            acc = f"r{m.id}"
            combine = (lambda a, b: f"fmaxf({a}, {b})") if is_max else (lambda a, b: f"{a} + {b}")
            more, val = e.reduced(m, pt)
            lines += more + [f"{acc} = {combine(acc, val)};"]
            inits.append(f"float {acc} = {'-INFINITY' if is_max else '0.f'};")
            finish += ["#pragma unroll",
                       "for (int s = 16; s > 0; s >>= 1) "
                       f"{acc} = {combine(acc, f'__shfl_xor_sync(0xffffffffu, {acc}, s)')};",
                       f"const float v{m.id} = {acc};"]
        lines += feed_sums(1)
        row_regs = {m: f"v{m.id}" for m in reductions}
        e.regs = dict(row_regs)
        stores = []
        for m in reductions + per_row:
            rp = Point(m.shape, "row", decompose("row", m.shape))
            if m in per_row:
                finish += e.compute(m, rp)
            stores += e.store(m, rp)
        if stores:
            finish += ["if (lane == 0) {"] + ["  " + x for x in stores] + ["}"]
        finish += feed_sums("row")
        row_regs = dict(e.regs)
        second = []
        if elem2 or any(k.grid_phase[m] == 2 for m in sums):   # the row again, with its values
            second = elements(stores=False)
            e.regs.update(row_regs)
            for m in elem2:
                second += e.compute(m, pt) + e.store(m, pt)
            second += feed_sums(2)
        grid = []
        offset = []                    # where each sum's block partials start in gws
        for m in sums:
            width = c_dim(reduce_input_shape(m)[1]) if k.grid_phase[m] != "row" else "1"
            rank = len(m.shape)
            if k.grid_phase[m] == "row":
                shared = f"__shared__ float g{m.id}[8];"
                partial = ["if (threadIdx.x == 0) {",
                           "  float s = 0.f;",
                           f"  for (int w = 0; w < 8; ++w) s += g{m.id}[w];",
                           f"  gws[{' + '.join(offset) or '0'} + blockIdx.x] = s;", "}"]
                e.regs = {m: f"v{m.id}"}
                gp = Point(m.shape, "0", ["0"] * rank)
                final = ["if (threadIdx.x == 0) {", "  float total = 0.f;",
                         f"  for (int b = 0; b < gridDim.x; ++b) "
                         f"total += __ldcg(&gws[{' + '.join(offset) or '0'} + b]);",
                         f"  const float v{m.id} = total;"]
                final += ["  " + x for x in e.store(m, gp) + e.epilogue(k, k.segs[k.seg_of[m]][1][1:],
                                                                         gp)] + ["}"]
            else:
                shared = f"__shared__ float g{m.id}[8][{width}];"
                base = " + ".join(offset) or "0"
                partial = [f"for (int gc = threadIdx.x; gc < {width}; gc += 256) {{",
                           "  float s = 0.f;",
                           f"  for (int w = 0; w < 8; ++w) s += g{m.id}[w][gc];",
                           f"  gws[{base} + blockIdx.x * {width} + gc] = s;", "}"]
                e.regs = {m: f"v{m.id}"}
                gp = Point(m.shape, "gc", decompose("gc", m.shape))
                final = [f"for (int gc = threadIdx.x; gc < {width}; gc += 256) {{",
                         "  float total = 0.f;",
                         f"  for (int b = 0; b < gridDim.x; ++b) "
                         f"total += __ldcg(&gws[{base} + b * {width} + gc]);",
                         f"  const float v{m.id} = total;"]
                final += ["  " + x for x in e.store(m, gp) + e.epilogue(k, k.segs[k.seg_of[m]][1][1:],
                                                                         gp)] + ["}"]
            offset.append(f"gridDim.x * {width}" if width != "1" else "gridDim.x")
            grid.append(dict(shared=shared, partial="\n".join(partial), final="\n".join(final),
                             dead=(f"for (int col = lane; col < {width}; col += 32) "
                                   f"g{m.id}[warp][col] = 0.f;" if k.grid_phase[m] != "row"
                                   else f"if (lane == 0) g{m.id}[warp] = 0.f;")))
        src = template("softmax").kernel(dict(
            name=name, params=e.param_list(), rows=c_size(rows), cols=cols, load=load,
            epilogue="\n".join(lines), inits="\n".join(inits), finish="\n".join(finish),
            second="\n".join(second), grid=grid))
        launch = Launch(name, "softmax", [], ("rows", rows, 8), (256, 1, 1),
                        grid_sums=b.grid_width(k))
        extra = f", {len(reductions)} row reductions" if reductions else ""
        extra += f", {len(sums)} sums over rows" if sums else ""
        text = f"{name:<22} log_softmax of {c_size(rows)} rows of {cols}{extra}"
    launch.params = list(e.params)
    launch.written = [r for r, w in e.params.items() if w]
    launch.text = text
    return "\n".join(comments) + "\n" + src.strip("\n") + "\n", launch


def _store_host(e: _Emit, k: _Kernel, host, pt: Point) -> list:
    if host not in e.b.stored:
        return []
    return [f"{e.ptr(e.b.ref(host), write=True)}[{pt.flat}] = v{host.id};"]


def build(schedule) -> Plan:
    """The CUDA source of a schedule and everything needed to launch it."""
    b = _Builder(schedule)
    kernels = b.kernels()
    b.plan_buffers(kernels)
    g = schedule.graph
    pieces, steps, families = [], [], set()
    for i, k in enumerate(kernels):
        src, launch = _emit_kernel(b, k, i)
        pieces.append(src)
        steps.append(launch)
        families.add(k.family)
        if k.copy_out:
            steps.append(("copy", ("store", k.copy_out), b.ref(k.host), size_of(k.host.shape)))
    for name, node in g.updates.items():
        if schedule.writes.get(node) == name:
            continue
        src = b.ref(node)
        if src == ("store", name) or any(s[:2] == ("copy", ("store", name)) for s in steps
                                          if isinstance(s, tuple)):
            continue
        if src[0] == "const":
            raise UnsupportedOp(f"update of {name} to a constant")
        steps.append(("copy", ("store", name), src, size_of(node.shape)))
    roots = {r: b.ref(r) for r in g.roots()}
    written = sorted({s[1][1] for s in steps if isinstance(s, tuple)} |
                     {name for k in kernels for name in k.writes})
    used = sorted({r[1] for s in steps if isinstance(s, Launch) for r in s.params
                   if r[0] == "store"} | set(written) |
                  {r[1] for r in roots.values() if r[0] == "store"})
    feeds = {**{k: v.shape for k, v in g.inputs.items()},
             **{k: v.shape for k, v in g.targets.items()}}
    randoms = {n.attrs["name"]: n for n in g.nodes if n.op == "random"}
    header = _header(b, g, steps, feeds, randoms, used)
    lib = template("gemm").library().strip("\n") + "\n\n" if "gemm" in families else ""
    source = header + "\n" + lib + "\n".join(pieces)
    return Plan(source, steps, list(b.slots), roots, feeds, randoms, used, written)


def _header(b: _Builder, g, steps, feeds, randoms, used) -> str:
    lines = [f"// nncompile: CUDA for graph {safe(g.name)} (generated; every kernel takes the "
             "batch size nb last)"]
    if feeds:
        lines.append("// feeds:   " + ", ".join(
            f"{b.feed_name[k]} = {safe(k)} f32[{', '.join(c_dim(d) for d in s)}]"
            for k, s in feeds.items()))
    if used:
        lines.append("// storage: " + ", ".join(f"{b.store_name[k]} = {safe(k)}" for k in used))
    if randoms:
        lines.append("// masks:   " + ", ".join(f"{b.rand_name[k]} = {safe(k)}" for k in randoms))
    if b.slots:
        lines.append("// buffers: " + ", ".join(f"buf{i} f32[{c_size(sz)}]"
                                                for i, sz in enumerate(b.slots)))
    lines.append("// launch plan, in order:")
    for s in steps:
        if isinstance(s, Launch):
            lines.append(f"//   {s.text}")
        else:
            lines.append(f"//   copy {b.c_name(s[2])} -> {b.c_name(s[1])} ({c_size(s[3])} floats)")
    lines.append("")
    return "\n".join(lines) + "\n"


def generate(schedule) -> str:
    """The complete CUDA source for a schedule (deterministic: golden-testable)."""
    return build(schedule).source


def runtime_source() -> str:
    """The training loop's own kernels (gather, loss and accuracy sums, axpy)."""
    return _ENV.get_template("train.cu.jinja").render()
