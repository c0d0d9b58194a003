"""A differential fuzzer of the optimisation passes and both backends: seeded
random models, written as .nn text (so they go through the real front end),
run three ways that must agree.

(a) The numpy backend (fused, through the Model API: predict, loss,
    gradients, one fit step; and the unfused schedule) against the float64
    reference interpreter on the unoptimised graph, at batch sizes 1, 5, 33.
(b) For a few models, the reference gradients against central finite
    differences (nncompile/check.py's gradient check).
(c) For a subset, the CUDA backend on the CPU emulator (cuda_emu), fused and
    unfused, against the float64 reference, and one training step against
    the numpy backend.

The generator keeps its numbers well conditioned by construction: log and
sqrt only of values bounded away from 0, denominators at least 0.5, exp only
of values of modest size. Every model it writes must compile; a
CompileError fails the test with the model's text.

NNC_FUZZ_GRAPHS=2000 (and NNC_FUZZ_GRAPHS_SEED) run more offline;
NNC_FUZZ_GRAPHS_EMU sets how many of them also run on the emulator.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import nncompile
from nncompile.backends.numpy import NumpyProgram
from nncompile.check import gradient_check
from nncompile.ir.evaluate import evaluate
from nncompile.passes import pipeline

import cuda_cases as cases
import cuda_emu

COUNT = int(os.environ.get("NNC_FUZZ_GRAPHS", "200"))
EMU_COUNT = int(os.environ.get("NNC_FUZZ_GRAPHS_EMU", "4"))
SEED = int(os.environ.get("NNC_FUZZ_GRAPHS_SEED", "7"))
BATCHES = (1, 5, 33)
SIZES = (1, 3, 7, 33)
RTOL, ATOL = 1e-4, 2e-5     # |got - want| <= ATOL * (1 + max |want|) + RTOL * |want|


class Value:
    """A value of the model being written: its text (a name, or an inline
    expression in brackets), shape of one example (of the whole value when
    not batched), a rough bound on its size, and whether a param feeds it."""

    def __init__(self, text, shape, batched=True, bound=1.0, param=False):
        self.text, self.shape, self.batched = text, tuple(shape), batched
        self.bound, self.param = float(bound), param


class Gen:
    """One random model."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.lines, self.pool = [], []
        self.count = 0
        self.used = set()
        self.loss_kind = None
        self.target_shape = None

    # helpers -------------------------------------------------------------
    def chance(self, p):
        return self.rng.random() < p

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def fresh(self, prefix="v"):
        self.count += 1
        return f"{prefix}{self.count}"

    def param(self, shape, kind="any"):
        name = self.fresh("p")
        dims = ", ".join(map(str, shape))
        if kind == "pos":
            init = "uniform(0.5, 1)"
        elif len(shape) == 2 and self.chance(0.5):
            init = self.pick(["xavier", "he"])
        else:
            init = self.pick(["normal(0, 0.5)", "uniform(-1, 1)", "0.3", "ones", "zeros"]
                             if kind != "weight" else ["normal(0, 0.4)", "uniform(-0.6, 0.6)"])
        self.lines.append(f"param {name}[{dims}] = {init}")
        return Value(name, shape, False, 1.0, True)

    def put(self, v: Value, name=False):
        """Add v to the pool, as a named statement or (sometimes) inline."""
        if name or len(v.text) > 90 or self.chance(0.5):
            n = self.fresh()
            self.lines.append(f"{n} = {v.text}")
            v = Value(n, v.shape, v.batched, v.bound, v.param)
        else:
            v.text = f"({v.text})"
        self.pool.append(v)
        return v

    def choose(self, pred=lambda v: True, recent=True):
        cands = [v for v in self.pool if pred(v)]
        if not cands:
            return None
        if recent and self.chance(0.6):
            cands = cands[-3:]
        v = self.pick(cands)
        self.used.add(id(v))
        return v

    # the model ---------------------------------------------------------------
    def model(self):
        self.lines.append(f"model fuzz{self.count}")
        images = self.chance(0.2)
        for k in range(1 if self.chance(0.6) else 2):
            r = self.rng.random()
            if images and k == 0:
                shape = (int(self.rng.integers(1, 3)), int(self.rng.integers(5, 10)),
                         int(self.rng.integers(5, 10)))
            elif r < 0.75:
                shape = (self.pick(SIZES),)
            else:
                shape = self.pick([(3, 7), (3, 1), (1, 7), (7, 3)])
            name = f"x{k}"
            self.lines.append(f"input {name}[{', '.join(map(str, shape))}]")
            self.pool.append(Value(name, shape, True, 2.0))
        if images:
            self.image_chain()
        for _ in range(int(self.rng.integers(4, 14))):
            self.step()
        self.outputs_and_loss()
        return "\n".join(self.lines) + "\n"

    def image_chain(self):
        x = self.pool[0]
        for _ in range(int(self.rng.integers(1, 4))):
            c, h, w = x.shape
            r = self.rng.random()
            if r < 0.45:
                k = int(self.rng.integers(1, min(h, w, 3) + 1))
                stride, pad = int(self.rng.integers(1, 3)), int(self.rng.integers(0, 2))
                act = self.pick(["", ", relu", ", tanh", ", leaky_relu", ", sigmoid"])
                extra = (f", stride = {stride}" if stride > 1 else "") + \
                    (f", padding = {pad}" if pad else "")
                f = int(self.rng.integers(1, 4))
                ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
                x = self.put(Value(f"conv2d({x.text}, {f}, {k}{act}{extra})", (f, ho, wo), True,
                                   x.bound * 2, True), name=True)
            elif r < 0.75 and min(h, w) >= 2:
                op = self.pick(["maxpool", "avgpool"])
                size = int(self.rng.integers(2, min(h, w, 3) + 1))
                strides = [s for s in (1, 2, 3) if (h - size) % s == 0 and (w - size) % s == 0]
                stride = self.pick(strides)
                extra = "" if stride == size else f", stride = {stride}"
                x = self.put(Value(f"{op}({x.text}, {size}{extra})",
                                   (c, (h - size) // stride + 1, (w - size) // stride + 1),
                                   True, x.bound, x.param))
            else:     # elementwise on the image: a bias per channel, an activation
                b = self.param((c, 1, 1))
                f = self.pick(["relu", "tanh", "abs"])
                x = self.put(Value(f"{f}({x.text} + {b.text})", x.shape, True, x.bound + 1,
                                   True))
        c, h, w = x.shape
        self.put(Value(f"flatten({x.text})", (c * h * w,), True, x.bound, x.param))

    def step(self):
        r = self.rng.random()
        for make in ((self.unary, 0.2), (self.constant, 0.28), (self.binary, 0.45),
                     (self.with_param, 0.55), (self.matmul, 0.65), (self.dense, 0.77),
                     (self.reduce, 0.87), (self.softmax, 0.93), (self.transpose, 1.0)):
            if r < make[1]:
                v = make[0]()
                if v is not None:
                    self.put(v)
                    return
                break
        v = self.unary()
        if v is not None:
            self.put(v)

    def unary(self):
        v = self.choose()
        t, b = v.text, v.bound
        opts = [("relu", b), ("sigmoid", 1), ("tanh", 1), ("abs", b), ("step", 1),
                ("leaky_relu", b), ("neg", b), ("log1p", np.log(2 + b * b)),
                ("sqrt1p", 1 + b), ("rsqrt", 1), ("sigpow", 1)]
        if b <= 20:
            opts += [("logsig", b + 1)]
        if b <= 2:
            opts += [("exp", np.exp(b)), ("cube", b ** 3)]
        if b <= 4:
            opts += [("square", b * b), ("sq", b * b)]
        f, bound = self.pick(opts)
        text = {"neg": f"-{t}", "leaky_relu": self.pick([f"leaky_relu({t})",
                                                          f"leaky_relu({t}, 0.2)"]),
                "log1p": f"log(2 + square({t}))", "logsig": f"log(sigmoid({t}))",
                "sqrt1p": f"sqrt(1 + {t} ^ 2)", "rsqrt": f"(1 + square({t})) ^ -0.5",
                "sigpow": f"sigmoid({t}) ^ 1.5", "cube": f"{t} ^ 3", "sq": f"{t} ^ 2"
                }.get(f, f"{f}({t})")
        return Value(text, v.shape, v.batched, bound, v.param)

    def constant(self):
        v = self.choose()
        c = self.pick([0.5, 2, 3, 0.25, 1.5])
        form = self.pick(["{v} * {c}", "{c} * {v}", "{c} - {v}", "{v} / {c}", "{v} + {c}",
                          "{v} - {c}", "{c} + {v}"])
        return Value(form.format(v=v.text, c=c), v.shape, v.batched,
                     v.bound * 3 + 3, v.param)

    def broadcasts(self, a, b):
        try:
            return np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            return None

    def binary(self):
        a = self.choose()
        b = self.choose(lambda v: self.broadcasts(a, v) is not None and v.batched, recent=False)
        if b is None:
            return None
        shape = self.broadcasts(a, b)
        if self.chance(0.5):
            a, b = b, a
        op = self.pick(["+", "-", "*", "/", "/"])
        if op == "*" and a.bound * b.bound > 40:
            op = "+"
        if op == "/":
            den = self.pick([f"(1.5 + tanh({b.text}))", f"(1 + square({b.text}))",
                             f"(0.5 + sigmoid({b.text}))"])
            return Value(f"{a.text} / {den}", shape, True, a.bound * 2, a.param or b.param)
        bound = a.bound * b.bound if op == "*" else a.bound + b.bound
        return Value(f"{a.text} {op} {b.text}", shape, True, bound, a.param or b.param)

    def with_param(self):
        v = self.choose(lambda v: v.batched)
        if v.shape and self.chance(0.6):
            shape = v.shape if self.chance(0.5) else v.shape[-1:]
        else:
            shape = (1,)
        p = self.param(shape)
        if self.chance(0.3):      # a value of params alone, shared by every example
            p = Value(self.pick(["tanh({})", "square({})", "({} * 2)", "sigmoid({})"]).format(
                p.text), p.shape, False, 1.0, True)
        if self.chance(0.15) and not v.shape:     # one number per example by a vector
            p = self.param((self.pick(SIZES),))
        op = self.pick(["+", "-", "*", "+"])
        shape = np.broadcast_shapes(v.shape, p.shape)
        text = f"{v.text} {op} {p.text}" if self.chance(0.7) else f"{p.text} {op} {v.text}"
        return Value(text, shape, True, v.bound * (1.5 if op == "*" else 1) + 1, True)

    def matmul(self):
        v = self.choose(lambda v: v.batched and v.shape and v.bound < 20)
        if v is None:
            return None
        d = v.shape[-1]
        r = self.rng.random()
        if r < 0.55:                              # v @ w
            k = self.pick(SIZES)
            w = self.param((d, k), "weight")
            shape = v.shape[:-1] + (k,)
            return Value(f"{v.text} @ {w.text}", shape, True, v.bound * 2 + 1, True)
        if r < 0.8 and len(v.shape) == 1:        # w @ v
            k = self.pick(SIZES)
            w = self.param((k, d), "weight")
            return Value(f"{w.text} @ {v.text}", (k,), True, v.bound * 2 + 1, True)
        # both batched: a dot product, or matrix by vector or matrix
        u = self.choose(lambda u: u.batched and u.shape and u.bound < 20 and
                        (u.shape[0] == d if len(u.shape) <= 2 else False) and
                        (len(u.shape) == 1 or len(v.shape) <= 2), recent=False)
        if u is None:
            return None
        shape = np.matmul(np.zeros(v.shape), np.zeros(u.shape)).shape
        return Value(f"{v.text} @ {u.text}", shape, True, v.bound * u.bound * 2,
                     v.param or u.param)

    def dense(self):
        v = self.choose(lambda v: v.batched and len(v.shape) == 1)
        if v is None:
            return None
        k = self.pick(SIZES)
        acts = ["", "relu", "sigmoid", "tanh", "step", "leaky_relu", "abs", "square"]
        if k > 1:
            acts += ["softmax", "log_softmax"]
        if v.bound <= 2:
            acts += ["exp"]
        act = self.pick(acts + ["log", "sqrt"])
        if act in ("log", "sqrt"):       # of a positive value: positive inputs and weights
            return Value(f"dense(1 + square({v.text}), {k}, {act}, init = uniform(0.5, 1))",
                         (k,), True, 4, True)
        bound = {"sigmoid": 1, "tanh": 1, "step": 1, "softmax": 1, "exp": 5,
                 "square": 16}.get(act, 2 * v.bound + 1)
        text = f"dense({v.text}, {k}" + (f", {act}" if act else "") + ")"
        return Value(text, (k,), True, bound, True)

    def reduce(self):
        v = self.choose(lambda v: v.shape)
        f = self.pick(["sum", "mean", "max"])
        size = int(np.prod(v.shape))
        if self.chance(0.5) and len(v.shape) >= 1:
            axis = int(self.rng.integers(len(v.shape)))
            shape = v.shape[:axis] + v.shape[axis + 1:]
            size = v.shape[axis]
            text = f"{f}({v.text}, axis = {axis})"
        else:
            shape, text = (), f"{f}({v.text})"
        if not v.batched and not shape:
            return None
        bound = v.bound * size if f == "sum" else v.bound
        return Value(text, shape, v.batched, bound, v.param)

    def softmax(self):
        v = self.choose(lambda v: v.shape and v.shape[-1] > 1)
        if v is None:
            return None
        f = self.pick(["softmax", "log_softmax"])
        bound = 1 if f == "softmax" else 2 * v.bound + np.log(v.shape[-1])
        return Value(f"{f}({v.text})", v.shape, v.batched, bound, v.param)

    def transpose(self):
        v = self.choose(lambda v: v.batched and len(v.shape) >= 2)
        if v is None:
            return None
        return Value(f"transpose({v.text})", v.shape[:-2] + v.shape[-1:] + v.shape[-2:-1],
                     True, v.bound, v.param)

    # outputs and the loss ------------------------------------------------------
    def vector(self, x):
        """An input as one vector per example."""
        if len(x.shape) == 3:
            return Value(f"flatten({x.text})", (int(np.prod(x.shape)),), True, x.bound)
        if len(x.shape) == 2:
            return Value(f"sum({x.text}, axis = 0)", x.shape[1:], True, x.bound * x.shape[0])
        return x

    def outputs_and_loss(self):
        p = self.choose(lambda v: v.batched and v.param and v.shape and len(v.shape) <= 2)
        if p is None or self.chance(0.3):
            src = self.choose(lambda v: v.batched and len(v.shape) == 1) or \
                self.vector(self.pool[0])
            k = self.pick(SIZES)
            src = src if src.bound < 20 else Value(f"tanh({src.text})", src.shape, True, 1)
            p = self.put(Value(f"dense({src.text}, {k})", (k,), True, 2 * src.bound + 1, True))
        if p.bound > 30:
            p = self.put(Value(f"tanh({p.text})", p.shape, True, 1, True))
        named = [v for v in self.pool if v.batched and not v.text.startswith("(")
                 and not v.text.startswith("x")] or [p]
        for v in self.rng.permutation(len(named))[:int(self.rng.integers(1, 3))]:
            v = named[v]
            self.lines.append(f"output {v.text}" if self.chance(0.5) and
                              not v.text.startswith("(") else
                              f"output {self.fresh('o')} = {v.text}")
        shape = p.shape
        kinds = ["mse", "mae", "binary_cross_entropy", "perceptron", "custom"]
        if len(shape) == 1 and shape[0] > 1:
            kinds += ["cross_entropy", "cross_entropy"]
        kind = self.loss_kind = self.pick(kinds)
        self.target_shape = shape
        self.lines.append(f"target y[{', '.join(map(str, shape))}]")
        if kind == "custom":
            forms = ["mean(square({p} - y))", "sum(abs({p} - y)) / 3",
                     "mean(log(1 + square({p} - y)))", "sum({p} * y)", "mean({p} * y) ^ 2",
                     "max(({p} - y) ^ 2)"]
            if len(shape) == 1 and shape[0] > 1:
                forms += ["-sum(y * log_softmax({p}))"]
            loss = self.pick(forms).format(p=p.text)
        else:
            loss = f"{kind}({p.text}, y)"
        extra = self.choose(lambda v: v.batched and v.bound < 20 and v is not p, recent=False)
        if extra is not None and self.chance(0.4):
            loss += f" + 0.1 * mean(square({extra.text}))"
        for v in [v for v in self.pool if id(v) not in self.used and v.batched][-4:]:
            if self.chance(0.7):      # values nothing reads: into the loss too
                loss += f" + {self.pick([0.1, 0.5])} * mean(tanh({v.text}))"
        if self.chance(0.2):
            w = self.param(self.pick([(3,), (1,)]))
            loss += f" + 0.01 * sum(square({w.text}))"
        self.lines.append(f"loss {loss}")
        opt = self.pick(["sgd(lr = 0.05)", "sgd(lr = 0.05, momentum = 0.9)",
                         "adam(lr = 0.01, eps = 0.1)"])
        clip = "\n  clip = 1.0" if self.chance(0.2) else ""
        self.lines.append(f"train {{\n  optimizer = {opt}{clip}\n  batch = 5\n}}")


def generate(seed: int):
    """(source, loss kind, target shape) of model `seed`."""
    g = Gen(seed)
    text = g.model()
    return text, g.loss_kind, g.target_shape


# feeding it ---------------------------------------------------------------------

def feeds(model, kind, batch, seed):
    """Inputs ~ N(0, 1); targets in the loss's domain (float32)."""
    rng = np.random.default_rng([seed, batch])
    x = {k: rng.normal(size=(batch,) + s).astype(np.float32) for k, s in model.inputs.items()}
    (yname, shape), = model.targets.items()
    if kind == "cross_entropy":
        if rng.random() < 0.5:
            y = np.eye(shape[-1])[rng.integers(0, shape[-1], (batch,) + shape[:-1])]
        else:
            y = rng.dirichlet(np.ones(shape[-1]), (batch,) + shape[:-1])
    elif kind == "binary_cross_entropy":
        y = rng.uniform(0, 1, (batch,) + shape)
    elif kind == "perceptron":
        y = rng.integers(0, 2, (batch,) + shape)
    else:
        y = rng.normal(size=(batch,) + shape)
    return x, {yname: y.astype(np.float32)}


def params_of(model, seed):
    """The initial params, moved off zero (a zero weight hides wrong gradients)."""
    rng = np.random.default_rng([seed, 99])
    return {k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32)
            for k, v in model.params.items()}


def reference(graph, leaves, **roles):
    rg = pipeline.select(graph, **roles)
    roots = {**{f"output {k}": v for k, v in rg.outputs.items()},
             **{f"grad {k}": v for k, v in rg.grads.items()},
             **({"loss": rg.loss} if rg.loss is not None else {}),
             **{f"update {k}": v for k, v in rg.updates.items()}}
    values = evaluate(rg, leaves, list(roots.values()))
    return {k: values[v] for k, v in roots.items()}


def differ(want: dict, got: dict, where: str) -> list:
    bad = []
    for label, a in want.items():
        b = np.asarray(got[label], np.float64)
        a = np.asarray(a, np.float64)
        if a.shape != b.shape:
            bad.append(f"{where}: {label}: shape {b.shape}, want {a.shape}")
            continue
        if not np.all(np.isfinite(a)):
            bad.append(f"{where}: {label}: the reference is not finite (a generator fault)")
            continue
        tol = ATOL * (1 + float(np.max(np.abs(a), initial=0))) + RTOL * np.abs(a)
        if not np.all(np.abs(a - b) <= tol):
            err = np.abs(a - b)
            i = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err)), a.shape)
            bad.append(f"{where}: {label}: max |diff| {float(err[i]):.3g} at {i}: "
                       f"got {float(b[i]):.7g}, want {float(a[i]):.7g}")
    return bad


def compiled(seed):
    text, kind, _ = generate(seed)
    try:
        model = nncompile.compile_source(text, device="cpu", quiet=True)
    except nncompile.CompileError as e:
        pytest.fail(f"model {seed} does not compile:\n{text}\n{e}")
    return text, kind, model


def numpy_faults(seed) -> list:
    """(a): what the numpy backend gets wrong on model `seed`."""
    text, kind, model = compiled(seed)
    params = params_of(model, seed)
    model.set_params(params)
    g = model.graph
    unfused = pipeline.program(g, fused=False, outputs=True, loss=True, grads=True)
    store = {k: v.copy() for k, v in params.items()}
    bad = []
    with np.errstate(all="ignore"):
        for batch in BATCHES:
            x, y = feeds(model, kind, batch, seed)
            leaves = {**params, **x, **y}
            want = reference(g, leaves, outputs=True, loss=True, grads=True)
            pred = model.predict(x)
            got = {f"output {k}": pred if len(g.outputs) == 1 else pred[k] for k in g.outputs}
            got["loss"] = model.loss(x, y)
            got.update({f"grad {k}": v for k, v in model.gradients(x, y).items()})
            bad += differ(want, got, f"batch {batch}")
            roots = NumpyProgram(unfused, store)({**x, **y})
            sg = unfused.graph
            got = {**{f"output {k}": roots[v] for k, v in sg.outputs.items()},
                   **{f"grad {k}": roots[v] for k, v in sg.grads.items()}, "loss": roots[sg.loss]}
            bad += differ(want, got, f"batch {batch} unfused")
        # two training steps (5 rows, then 2) through fit and its packed update
        x, y = feeds(model, kind, 7, seed + 1)
        cfg = model.train_config
        rg = pipeline.select(g, updates=True, cfg=cfg)
        leaves = {**params, **{n.attrs["name"]: np.full(n.shape, n.attrs["value"])
                               for n in rg.state.values()}}
        for rows in (slice(0, 5), slice(5, 7)):
            feed = {k: v[rows] for k, v in {**x, **y}.items()}
            new = reference(g, {**leaves, **feed}, updates=True, cfg=cfg)
            leaves.update({k.removeprefix("update "): v for k, v in new.items()})
        want = {f"update {k}": leaves[k] for k in g.params}
        model.fit(x=x, y=y, epochs=1, batch=5, shuffle=False)
        got = {f"update {k}": v for k, v in model.params.items()}
        bad += differ(want, got, "fit, 2 steps")
    return [f"model {seed}:\n{text}" + "\n".join(bad)] if bad else []


def test_the_generator_writes_varied_models():
    """The models the default run checks cover what the fuzzer is for."""
    texts = "\n".join(generate(SEED * 100000 + i)[0] for i in range(max(COUNT, 60)))
    for word in ("dense(", " @ ", "softmax(", "log_softmax(", "sum(", "mean(", "max(",
                 "axis = ", "conv2d(", "pool(", "flatten(", "transpose(", "cross_entropy(",
                 "binary_cross_entropy(", "perceptron(", "mse(", "mae(", "leaky_relu(",
                 "step(", "exp(", "log(", "sqrt(", "^ 3", " / ", "momentum", "adam"):
        assert word in texts, word


@pytest.mark.parametrize("part", range(4))
def test_numpy_backend_matches_the_reference_on_random_models(part):
    bad = []
    for i in range(part, COUNT, 4):
        bad += numpy_faults(SEED * 100000 + i)
    assert not bad, "\n\n".join(bad[:5])


def test_reference_gradients_match_finite_differences():
    bad = []
    for i in range(0, COUNT, max(1, COUNT // 6)):
        seed = SEED * 100000 + i
        text, _, model = compiled(seed)
        lines, worst, ok = gradient_check(model, seed)
        if not ok:
            bad.append(f"model {seed} (max rel error {worst:.2e}):\n{text}" + "\n".join(lines))
    assert not bad, "\n\n".join(bad[:3])


def emulator_faults(seed) -> list:
    """(c): the CUDA backend on the emulator, fused and unfused, against the
    float64 reference; a training step against numpy."""
    text, kind, model = compiled(seed)
    params = params_of(model, seed)
    model.set_params(params)
    bad = []
    for fused in (True, False):
        sched = pipeline.program(model.graph, fused=fused, outputs=True, grads=True)
        sched.graph.source = model.graph
        device = cuda_emu.EmuDevice(sms=8, order="shuffle", resident=4, seed=seed)
        bad += [f"{'fused' if fused else 'unfused'}: {b}" for b in cases.compare(
            sched, device, (1, 33), params,
            lambda b: {k: v for d in feeds(model, kind, b, seed) for k, v in d.items()},
            rtol=RTOL, atol=1e-4)]
    sched, start = cases.step_programs(model)
    bad += [f"step: {b}" for b in cases.compare_step(sched, cuda_emu.EmuDevice(sms=8), start,
                                                      batch=5, steps=1)]
    return [f"model {seed}:\n{text}" + "\n".join(bad)] if bad else []


@pytest.mark.skipif(not cuda_emu.available(), reason="g++ is not installed")
def test_cuda_backend_on_the_emulator_matches_on_random_models():
    bad = []
    for i in range(EMU_COUNT):
        bad += emulator_faults(SEED * 100000 + i * max(1, COUNT // max(EMU_COUNT, 1)))
    assert not bad, "\n\n".join(bad[:3])
