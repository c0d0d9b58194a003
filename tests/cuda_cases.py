"""Checks shared by the CUDA tests: on the CPU emulator (test_cuda_codegen.py)
and on a real GPU (test_cuda_gpu.py) the CUDA backend must compute what the
float64 reference interpreter computes (op by op) and what the numpy backend
computes (training steps of the samples).

ops_graph() is one graph holding every primitive: each case applies its op to
an input with the batch axis (plus a param, so the backward pass reaches it),
and the loss adds up sum(y * t) over the cases, t a target of y's shape. Its
program (outputs and every gradient) runs fused, and unfused so that every op
also runs as a kernel of its own, at batch sizes that are not tile multiples.
Feature sizes 7, 33, 9 are not multiples of anything either.
"""
from __future__ import annotations

import numpy as np

from nncompile.backends.cuda.launch import CudaProgram, CudaStorage
from nncompile.backends.numpy import NumpyProgram
from nncompile.ir.evaluate import evaluate
from nncompile.ir.graph import N, Graph
from nncompile.passes import pipeline

BATCHES = (1, 7, 33, 129)
LEAVES = {"input", "target", "param", "state", "const", "random"}


class _Builder:
    def __init__(self):
        self.g = Graph("ops")
        self.kinds = {}          # leaf name -> how its values are drawn
        self.terms = []

    def leaf(self, op, name, shape, kind):
        attrs = {"name": name, "shape": shape}
        if op == "param":
            attrs["init"] = ("zeros",)
        node = self.g.add(op, [], attrs, name=name, shape=shape)
        {"input": self.g.inputs, "param": self.g.params, "target": self.g.targets}[op][name] = node
        self.kinds[name] = kind
        return node

    def x(self, case, shape, kind="any"):
        return self.leaf("input", f"{case}.x", (N,) + shape, kind)

    def p(self, case, shape, kind="small"):
        return self.leaf("param", f"{case}.p", shape, kind)

    def out(self, case, y):
        self.g.outputs[case] = y
        t = self.leaf("target", f"{case}.t", y.shape, "any")
        prod = self.g.add("mul", [y, t])
        axes = tuple(range(len(y.shape)))
        self.terms.append(self.g.add("sum", [prod], {"axes": axes, "keepdims": False})
                          if axes else prod)

    def add(self, op, inputs, attrs=None):
        return self.g.add(op, inputs, attrs or {})


UNARY = {"neg": {}, "exp": {}, "log": {}, "abs": {}, "sqrt": {}, "square": {}, "relu": {},
         "sigmoid": {}, "tanh": {}, "step": {}, "sign": {}, "stop_gradient": {},
         "leaky_relu": {"slope": 0.1}, "pow": {"k": 3.0}}
POSITIVE = {"log", "sqrt", "pow"}
KINKED = {"abs", "relu", "step", "sign", "leaky_relu"}   # kept away from 0
BINARY = ("add", "sub", "mul", "div", "maximum", "equal")


def ops_graph() -> Graph:
    b = _Builder()
    for op, attrs in UNARY.items():
        kind = "pos" if op in POSITIVE else "away" if op in KINKED else "any"
        x = b.x(op, (33,), kind)
        p = b.p(op, (33,), "tiny" if kind != "any" else "small")
        b.out(op, b.add(op, [b.add("add", [x, p])], attrs))
    for op in BINARY:
        x, p = b.x(op, (7, 33)), b.p(op, (33,), "away" if op == "div" else "small")
        b.out(op, b.add(op, [x, p]))
    q, p = b.x("add_both", (1,)), b.p("add_both", (33,))       # [N, 1] + [33]
    b.out("add_both", b.add("add", [q, p]))
    x, w = b.x("matmul", (33,)), b.p("matmul", (33, 7))
    b.out("matmul", b.add("matmul", [x, w]))
    x, w = b.x("matmul_wide", (33,)), b.p("matmul_wide", (33, 520))   # the 128 tile too
    b.out("matmul_wide", b.add("matmul", [x, w]))
    x, w1 = b.x("dense2", (33,)), b.p("dense2", (33, 70))    # bias gradients: column sums
    b1 = b.leaf("param", "dense2.b1", (70,), "small")              # in the backward GEMM
    w2 = b.leaf("param", "dense2.w2", (70, 9), "small")
    h = b.add("relu", [b.add("add", [b.add("matmul", [x, w1]), b1])])
    b.out("dense2", b.add("matmul", [h, w2]))
    x, w = b.x("matmul3", (3, 7)), b.p("matmul3", (7, 5))    # leading axes fold into M
    b.out("matmul3", b.add("matmul", [x, w]))
    x, w = b.x("bmm", (7, 5)), b.p("bmm", (3, 7))             # W [3,7] @ x[n] [7,5]: per example
    b.out("bmm", b.add("matmul", [w, x]))
    x, p = b.x("transpose", (7, 5)), b.p("transpose", (7, 5))
    b.out("transpose", b.add("transpose", [b.add("add", [x, p])]))
    for case, op, axes, keep in (("sum1", "sum", (1,), False), ("sum0", "sum", (0,), True),
                                 ("sum02", "sum", (0, 2), False), ("max2", "max", (2,), False),
                                 ("max0", "max", (0,), True)):
        x, p = b.x(case, (7, 5)), b.p(case, (7, 5))
        b.out(case, b.add(op, [b.add("add", [x, p])], {"axes": axes, "keepdims": keep}))
    x, q = b.x("expand", (7,)), b.p("expand", (7,))
    b.out("expand", b.add("expand", [q, x], {"axes": (0,), "keepdims": False}))
    x, p = b.x("count", (7,)), b.p("count", ())
    b.out("count", b.add("mul", [b.add("count", [x], {"axes": (0, 1)}), p]))
    x, p = b.x("log_softmax", (10,)), b.p("log_softmax", (10,))
    b.out("log_softmax", b.add("log_softmax", [b.add("add", [x, p])]))
    x, p = b.x("softmax_rows", (37,)), b.p("softmax_rows", (37,))   # one kernel: row max,
    ls = b.add("log_softmax", [b.add("add", [x, p])])               # row sum, per-row values
    top = b.add("max", [ls], {"axes": (1,), "keepdims": True})      # and a second pass
    b.out("softmax_rows", b.add("sub", [ls, top]))
    b.out("softmax_rowsum", b.add("neg", [b.add("sum", [ls], {"axes": (1,), "keepdims": False})]))
    b.out("softmax_colsum", b.add("sum", [ls], {"axes": (0,), "keepdims": False}))   # sums over
    shifted = b.add("sub", [ls, top])                                                # all rows
    b.out("softmax_colsum2", b.add("sum", [shifted], {"axes": (0,), "keepdims": True}))
    x, p = b.x("reshape", (7, 3)), b.p("reshape", (7, 3))
    b.out("reshape", b.add("reshape", [b.add("add", [x, p])], {"shape": (N, 21)}))
    for case, f, s, pad in (("conv", 3, 1, 1), ("conv_s2", 4, 2, 0)):
        x, p = b.x(case, (2, 9, 9)), b.p(case, (2, 9, 9))
        w = b.leaf("param", f"{case}.w", (f, 2, 3, 3), "small")
        b.out(case, b.add("conv2d", [b.add("add", [x, p]), w], {"stride": s, "padding": pad}))
    for case, op, size, stride, side in (("maxpool", "maxpool", 2, 2, 8),
                                         ("maxpool_overlap", "maxpool", 3, 2, 9),
                                         ("avgpool", "avgpool", 2, 2, 8),
                                         ("avgpool_overlap", "avgpool", 3, 2, 9)):
        x, p = b.x(case, (2, side, side)), b.p(case, (2, side, side))
        b.out(case, b.add(op, [b.add("add", [x, p])], {"size": size, "stride": stride}))
    x, h = b.x("maxpool_select", (2, 9, 9)), b.p("maxpool_select", (2, 9, 9))
    b.out("maxpool_select", b.add("maxpool_select", [x, b.add("add", [x, h])],
                                  {"size": 3, "stride": 2}))
    x, p = b.x("dropout", (33,)), b.p("dropout", (33,))
    b.out("dropout", b.add("dropout", [b.add("add", [x, p])], {"rate": 0.25}))
    total = b.terms[0]
    for t in b.terms[1:]:
        total = b.add("add", [total, t])
    b.g.loss = total
    b.g.kinds = b.kinds
    return b.g


def draw(kind, shape, rng) -> np.ndarray:
    if kind == "pos":
        x = rng.uniform(0.5, 1.5, shape)
    elif kind == "away":
        x = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.3, shape)
    elif kind == "tiny":
        x = rng.uniform(-0.01, 0.01, shape)
    elif kind == "small":
        x = rng.normal(0, 0.5, shape)
    else:
        x = rng.normal(0, 1, shape)
    return np.asarray(x, np.float32)


def ops_programs(fused: bool):
    """(the ops graph, its scheduled program: outputs and every gradient);
    sched.graph.source is the graph it came from."""
    g = ops_graph()
    sched = pipeline.program(g, fused=fused, outputs=True, grads=True)
    sched.graph.source = g
    return g, sched


def params_of(g, seed=1) -> dict:
    rng = np.random.default_rng(seed)
    return {k: draw(g.kinds[k], p.shape, rng) for k, p in g.params.items()}


def feeds_of(g, batch, seed=2) -> dict:
    rng = np.random.default_rng([seed, batch])
    leaves = {**g.inputs, **g.targets}
    return {k: draw(g.kinds[k], tuple(batch if d == N else d for d in v.shape), rng)
            for k, v in leaves.items()}


def reference(g, leaves: dict) -> dict:
    """Outputs, loss and gradients of g's program by the float64 reference
    interpreter, unfused: role label -> value."""
    rg = pipeline.select(g, outputs=True, grads=True)
    roots = {**{f"output {k}": v for k, v in rg.outputs.items()},
             **{f"grad {k}": v for k, v in rg.grads.items()}, "loss": rg.loss}
    values = evaluate(rg, leaves, list(roots.values()))
    return {k: values[v] for k, v in roots.items()}


def compare(sched, device, batches, params, feeds_for, rtol=2e-4, atol=1e-4) -> list:
    """Run sched on device at each batch size; the roots (outputs, loss,
    gradients) that differ from the float64 reference, with the worst error.
    Differences are measured against atol * (1 + the root's largest value)."""
    g = sched.graph
    store = CudaStorage(device)
    for k, v in params.items():
        store[k] = v.copy()
    gpu = CudaProgram(sched, store)
    names = {**{f"output {k}": v for k, v in g.outputs.items()},
             **{f"grad {k}": v for k, v in g.grads.items()}, "loss": g.loss}
    mask_rng = np.random.default_rng([0, 2])     # CudaProgram.rng: default_rng([seed, 2])
    randoms = [n for n in g.nodes if n.op == "random"]
    bad = []
    for batch in batches:
        feeds = feeds_for(batch)
        got = gpu(feeds)
        leaves = {**params, **feeds}
        for n in randoms:
            u = mask_rng.random(tuple(batch if d == N else d for d in n.shape), dtype=np.float32)
            np.greater_equal(u, n.attrs["rate"], out=u)
            u *= np.float32(1.0 / (1.0 - n.attrs["rate"]))
            leaves[n.attrs["name"]] = u
        want = reference(g.source, leaves)
        for label, node in names.items():
            a, b = want[label], np.asarray(got[node])
            tol = atol * (1 + float(np.max(np.abs(a)))) + rtol * np.abs(a)
            if a.shape != b.shape or not np.all(np.abs(a - b) <= tol):
                err = float(np.max(np.abs(a - b))) if a.shape == b.shape else "shape"
                bad.append(f"batch {batch}: {label}: max |diff| {err}")
    return bad


def step_programs(model):
    """The training step of a model, as `fit` builds it (optimizer state made)."""
    cfg = model.train_config
    sched = pipeline.program(model.graph, updates=True, cfg=cfg)
    params = {k: v.copy() for k, v in model.params.items()}
    for node in sched.graph.nodes:
        if node.op == "state":
            params[node.attrs["name"]] = np.full(node.shape, node.attrs["value"], np.float32)
    return sched, params


def compare_step(sched, device, params, batch, steps=2, rtol=2e-4, atol=2e-5) -> list:
    """`steps` training steps with numpy and on device from the same params:
    the loss of each step, then every param and optimizer buffer after."""
    g = sched.graph
    cpu_store = {k: v.copy() for k, v in params.items()}
    cpu = NumpyProgram(sched, cpu_store)
    store = CudaStorage(device)
    for k, v in params.items():
        store[k] = v.copy()
    gpu = CudaProgram(sched, store)
    rng = np.random.default_rng(3)
    bad = []
    for step in range(steps):
        feeds = {k: rng.normal(size=(batch,) + tuple(v.shape[1:])).astype(np.float32)
                 for k, v in {**g.inputs, **g.targets}.items()}
        a = float(cpu(feeds)[g.loss])
        b = float(gpu(feeds)[g.loss])
        if abs(a - b) > atol + rtol * abs(a):
            bad.append(f"step {step}: loss {a} vs {b}")
    for k, v in cpu_store.items():
        got = store[k]
        if not np.allclose(got, v, rtol=rtol, atol=atol):
            bad.append(f"{k}: max |diff| {float(np.max(np.abs(got - v)))}")
    return bad
