"""AST -> IR. Layers, losses and sugar become primitives; all errors collected.

After lowering, the Graph holds the forward program: inputs, targets, params
(with their init in attrs), every user value, outputs and the loss (a scalar:
per-example losses are averaged over the batch). Nothing is differentiated yet.

Conventions (docs/language.md):
- Axes the user writes count within one example; a batched value's IR axis is +1.
- A statement with one layer names its params STMT.weight and STMT.bias; a
  statement with several names them STMT.LAYER_I.weight, e.g. h.dense_2.weight,
  numbering the layers of each kind from 1 in evaluation order (inner first).
- mean = sum / count; softmax = exp(log_softmax); losses in their stable forms.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

from ..diagnostics import CompileError, Diagnostic, Span, did_you_mean
from ..ir.graph import N, Graph, Node, ShapeError, fmt_shape
from ..ops.registry import broadcast_shapes
from ..train.config import CHOICES, LIMITS, MAX_INT, Limit, TrainConfig
from . import ast
from .parse import KEYWORDS

ACTIVATIONS = ("relu", "sigmoid", "tanh", "step", "leaky_relu", "exp", "log", "abs", "sqrt",
               "square", "softmax", "log_softmax")
UNARY = ("relu", "sigmoid", "tanh", "step", "exp", "log", "abs", "sqrt", "square")
REDUCTIONS = ("sum", "mean", "max")
LOSSES = ("mse", "mae", "cross_entropy", "binary_cross_entropy", "perceptron")
INITS = ("zeros", "ones", "normal", "uniform", "xavier", "he")
PARAM_LAYERS = ("dense", "conv2d")
LAYERS = ("dense", "conv2d", "maxpool", "avgpool", "flatten", "dropout")
FUNCTIONS = UNARY + ("leaky_relu", "softmax", "log_softmax", "transpose") + REDUCTIONS + \
    LAYERS + LOSSES
LEAKY_SLOPE = 0.01
FLOAT32_MAX = 3.4028234663852886e38
MAX_SIZE = MAX_INT
COUNT = Limit(1, whole=True)      # units, filters, kernel and window sizes, strides
SLOPE = Limit(0, example="leaky_relu(x, 0.01)")
RATE = "the dropout rate is the fraction of values dropped, 0 or more and below 1, e.g. " \
    "dropout(h, 0.5)"
EXPONENT = "the exponent is a number, or numbers combined such as 2 ^ 3 or 1 / 2; a power " \
    "by a value is exp(k * log(x))"
ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "^": operator.pow}
AXES = "axes count within one example, from 0; the batch axis is never counted"
TOO_LARGE = "numbers must fit in float32: at most about 3.4e38"


class _Failed(Exception):
    """An expression could not be lowered; its diagnostic is already recorded."""


@dataclass
class Lowering:
    program: ast.Program
    graph: Graph
    train: TrainConfig = field(default_factory=TrainConfig)
    diags: list = field(default_factory=list)
    env: dict = field(default_factory=dict)          # name -> Node
    defined_at: dict = field(default_factory=dict)   # name -> Span of its definition
    poisoned: set = field(default_factory=set)       # names whose definition failed
    later: dict = field(default_factory=dict)        # name -> Span where defined, for hints
    stmt_name: str = ""
    layer_counts: dict = field(default_factory=dict)
    several_layers: bool = False

    # diagnostics ---------------------------------------------------------
    def error(self, span: Span, message: str, hint: str | None = None):
        self.diags.append(Diagnostic(span, message, hint))
        raise _Failed

    def warn(self, span: Span, message: str, hint: str | None = None):
        self.graph.warnings.append(Diagnostic(span, message, hint, "warning"))

    def add(self, op, inputs, attrs=None, span=None, name=None):
        try:
            return self.graph.add(op, inputs, attrs, span, name)
        except ShapeError as e:
            self.error(span, e.message, e.hint)

    def const(self, value, span=None):
        return self.graph.const(value, span)

    # helpers ---------------------------------------------------------------
    def number(self, e, what: str, limit: Limit | None = None, hint: str | None = None):
        """The number e is (a number or a negated one), checked against limit:
        an int where the limit wants whole numbers, else a float."""
        value = None
        if isinstance(e, ast.Num):
            value = e.value
        elif isinstance(e, ast.Neg) and isinstance(e.operand, ast.Num):
            value = -e.operand.value
        if hint is None and limit is not None:
            hint = f"{what} is {limit.text()}" + (f", e.g. {limit.example}" if limit.example
                                                  else "")
        if value is None:
            self.error(_span(e), f"{what} must be a number", hint)
        if not abs(value) <= FLOAT32_MAX:
            self.error(_span(e), f"{what} is too large: {_text(self.program, e)}", TOO_LARGE)
        if limit is not None and not limit.allows(value):
            self.error(_span(e), f"{what} must be {limit.fault(value)}, got "
                       f"{_written(self.program, e, value)}", hint)
        return int(value) if limit is not None and limit.whole else float(value)

    def example_axes(self, x: Node, axis, span) -> tuple:
        """The user's per-example axis (or all of them) as IR axes."""
        off = 1 if x.shape[:1] == (N,) else 0
        rank = len(x.shape) - off
        if axis is None:
            return tuple(range(off, len(x.shape)))
        if not -rank <= axis < rank:
            self.error(span, f"axis {axis} is out of range: one example of this value is "
                       f"{fmt_shape(x.shape[off:])}, which has {rank} "
                       f"ax{'i' if rank == 1 else 'e'}s", AXES)
        return (axis % rank + off,)

    def mean(self, x: Node, axes, span, keepdims=False) -> Node:
        attrs = {"axes": axes, "keepdims": keepdims}
        s = self.add("sum", [x], attrs, span)
        return self.add("div", [s, self.add("count", [x], {"axes": axes}, span)], span=span)

    # statements ------------------------------------------------------------
    def define(self, name: str, span: Span):
        if name in self.defined_at:
            first = self.defined_at[name]
            self.diags.append(Diagnostic(span, f"'{name}' is already defined on line {first.line}",
                                         "a name is defined once; choose another name"))
            return False
        if name in KEYWORDS:
            self.diags.append(Diagnostic(span, f"'{name}' is a keyword, not a name",
                                         "pick another name"))
            return False
        if name in FUNCTIONS or name in ("N",):
            self.diags.append(Diagnostic(span, f"'{name}' is the name of a built-in function",
                                         "choose another name"))
            return False
        if name in INITS:
            self.diags.append(Diagnostic(span, f"'{name}' is the name of an initialiser",
                                         f"choose another name: after 'param w[3] =', "
                                         f"'{name}' always means the initialiser"))
            return False
        self.defined_at[name] = span
        return True

    def run(self):
        stmts = self.program.statements
        for s in stmts:
            if s.name and s.kind not in ("model", "output") or (s.kind == "output" and s.expr):
                self.later.setdefault(s.name, s.name_span or s.span)
        has_loss = False
        for i, s in enumerate(stmts):
            try:
                if s.kind == "model":
                    if i != 0:
                        self.error(s.span, "'model' must be the first statement",
                                   "move 'model NAME' to the top of the file (comments may "
                                   "come before it)")
                    if s.name in KEYWORDS:
                        self.error(s.name_span or s.span, f"'{s.name}' is a keyword, not a name",
                                   "pick another name for the model")
                    self.graph.name = s.name
                elif s.kind in ("input", "target"):
                    self.declare(s)
                elif s.kind == "param":
                    self.param(s)
                elif s.kind == "assign":
                    self.assign(s.name, s, s.expr)
                elif s.kind == "output":
                    self.output(s)
                elif s.kind == "loss":
                    if has_loss:
                        self.error(s.span, "a model has exactly one 'loss' statement",
                                   "combine several terms into one expression with '+'")
                    has_loss = True
                    self.loss(s)
                elif s.kind == "train":
                    if self.train.present:
                        self.error(s.span, "a model has at most one 'train' block",
                                   "merge the settings into the first train block")
                    self.train_block(s)
            except _Failed:
                if s.name:
                    self.poisoned.add(s.name)
        if not any(s.kind not in ("model", "train") for s in stmts) and not self.diags:
            self.diags.append(Diagnostic(Span(self.program.file, 1, 1),
                                         "the model declares nothing: no input, param, value, "
                                         "output or loss",
                                         "start with an input and a layer, e.g. input x[2] "
                                         "and output p = dense(x, 1); samples/xor.nn is a "
                                         "whole model"))
        elif self.train.present and not has_loss:
            self.diags.append(Diagnostic(self.train.spans["train"],
                                         "this model trains but has no 'loss' statement",
                                         "add e.g. 'loss mse(p, y)' before the train block"))
        if self.graph.loss is not None and not self.diags:
            self.unused_params()

    def unused_params(self):
        """A warning at each statement whose params the loss does not depend on
        (h1 = dense(x, 64) followed by logits = dense(x, 10)): training never
        changes them."""
        used = {n.id for n in _ancestors(self.graph.loss)}
        unused = {}
        for name, n in self.graph.params.items():
            if n.id not in used:
                unused.setdefault(n.span, []).append(name)
        for span, names in unused.items():
            listed = " and ".join([", ".join(names[:-1]), names[-1]] if names[1:] else names)
            self.warn(span, f"the loss does not depend on {listed}, so training never "
                      f"changes {'it' if len(names) == 1 else 'them'}",
                      "use the value this statement makes (as the next layer's input), or "
                      "delete the statement" if "." in names[0] else
                      f"use {names[0]} on the way to the loss, or delete its declaration")

    def declare(self, s: ast.Stmt):
        dims = self.shape(s)
        if not self.define(s.name, s.name_span):
            raise _Failed
        node = self.add(s.kind, [], {"name": s.name, "shape": (N,) + dims}, s.name_span, s.name)
        (self.graph.inputs if s.kind == "input" else self.graph.targets)[s.name] = node
        self.env[s.name] = node

    def shape(self, s: ast.Stmt) -> tuple:
        dims = []
        if not s.shape:
            self.error(s.name_span, f"the shape of '{s.name}' is empty",
                       f"give the size of each axis of one example, e.g. {s.name}[4] "
                       f"({s.name}[1] for one number); the batch axis is never written")
        for d, sp in zip(s.shape, s.shape_spans):
            text = _text(self.program, sp).strip("'")
            if math.isfinite(d) and d > MAX_SIZE:
                self.error(sp, f"a size of {text} is too large", f"a size is at most {MAX_SIZE}")
            if not math.isfinite(d) or d != int(d) or d < 1:
                self.error(sp, f"a size must be a positive whole number, got {text}",
                           "a shape lists whole numbers of 1 or more, e.g. x[2], x[1, 8, 8]")
            dims.append(int(d))
        return tuple(dims)

    def param(self, s: ast.Stmt):
        dims = self.shape(s)
        init = self.init(s.expr)
        if not self.define(s.name, s.name_span):
            raise _Failed
        self.make_param(s.name, dims, init, s.name_span)

    def make_param(self, name, dims, init, span) -> Node:
        node = self.add("param", [], {"name": name, "shape": tuple(dims), "init": init}, span,
                        name)
        self.graph.params[name] = node
        self.env[name] = node
        return node

    def init(self, e) -> tuple:
        """An init expression as a plain tuple: (kind, *numbers)."""
        if isinstance(e, (ast.Num, ast.Neg)):
            return ("constant", self.number(e, "an initial value"))
        if isinstance(e, ast.Name) and e.id in ("zeros", "ones", "xavier", "he"):
            return (e.id,)
        if isinstance(e, ast.Call) and e.func in ("normal", "uniform"):
            if len(e.args) != 2 or e.kwargs:
                a, b = ("mean", "std") if e.func == "normal" else ("lo", "hi")
                self.error(e.span, f"{e.func} takes two numbers: {e.func}({a}, {b})",
                           _given(e))
            x, y = (self.number(a, f"an argument of {e.func}") for a in e.args)
            if e.func == "normal" and y < 0:
                self.error(_span(e.args[1]), f"normal(mean, std) needs std >= 0, got {y:g}",
                           "the standard deviation is a spread: 0 or more")
            if e.func == "uniform" and y < x:
                self.error(e.span, f"uniform(lo, hi) needs lo <= hi, got {x:g} > {y:g}",
                           f"swap them: uniform({y:g}, {x:g})")
            return (e.func, x, y)
        name = e.id if isinstance(e, ast.Name) else getattr(e, "func", None)
        hint = "an init is zeros, ones, normal(mean, std), uniform(lo, hi), xavier, he or a number"
        if name:
            close = did_you_mean(name, INITS)
            hint = close or hint
        self.error(_span(e), f"{repr(name) if name else _text(self.program, e)} is not an "
                   "initialiser", hint)

    def assign(self, name, s, e):
        self.stmt_name = name
        self.count_layers(e)
        node = self.expr(e)
        if not self.define(name, s.name_span or s.span):
            raise _Failed
        if node.name is None and node.op not in ("const",):
            node.name = name
        self.graph.values[name] = node
        self.env[name] = node
        return node

    def output(self, s: ast.Stmt):
        if s.expr is None and s.name in self.graph.outputs:
            self.error(s.name_span, f"'{s.name}' is already an output",
                       "declare each output once")
        if s.expr is not None:
            node = self.assign(s.name, s, s.expr)
        else:
            node = self.lookup(ast.Name(s.name, s.name_span))
        if node.shape[:1] != (N,):
            self.error(s.name_span, f"output '{s.name}' does not depend on an input",
                       "an output is computed per example from the model's inputs")
        targets = [t.name for t in _ancestors(node) if t.op == "target"]
        if targets:
            self.error(s.name_span, f"output '{s.name}' depends on the target "
                       f"'{targets[0]}', which predict is not given",
                       "compute outputs from the inputs and params only; targets are for "
                       "the loss")
        self.graph.outputs[s.name] = node

    def loss(self, s: ast.Stmt):
        self.stmt_name = "loss"
        self.count_layers(s.expr)
        node = self.expr(s.expr)
        batched = node.shape[:1] == (N,)
        if math.prod(node.shape[batched:]) == 1 and len(node.shape) > batched:
            # one number in axes of size 1 ([N, 1] from a target y[1]): that number
            node = self.add("reshape", [node], {"shape": (N,) * batched}, s.span)
        if node.shape == (N,):
            node = self.mean(node, (0,), s.span)
        elif node.shape != ():
            self.error(_span(s.expr), f"the loss must be one number, or one number per "
                       f"example; this expression has shape {fmt_shape(node.shape)}",
                       "reduce it, e.g. loss mean((p - y) ^ 2)")
        if not any(n.op == "param" for n in _ancestors(node)):
            self.error(_span(s.expr), "the loss does not depend on any param, so training has "
                       "nothing to change",
                       "the loss should compare a prediction made with params (a layer such "
                       "as dense, or a param) with a target, e.g. loss mse(p, y)")
        node.name = "loss"
        self.graph.loss = node
        self.zero_gradients(node)

    def zero_gradients(self, loss: Node):
        """A warning at each step the loss's gradient cannot pass (its
        derivative is 0 wherever it exists), naming the params that are then
        never changed: those the loss reaches only through a step."""
        passes, stack = {loss.id}, [loss]
        while stack:
            n = stack.pop()
            if n.op in ("step", "stop_gradient"):
                continue
            for u in n.inputs:
                if u.id not in passes:
                    passes.add(u.id)
                    stack.append(u)
        for n in sorted(_ancestors(loss), key=lambda n: n.id):
            if n.op != "step" or n.id not in passes:
                continue
            above = {p.name for p in _ancestors(n) if p.op == "param" and p.id not in passes}
            stuck = [name for name in self.graph.params if name in above]
            if stuck:
                names = " and ".join([", ".join(stuck[:-1]), stuck[-1]] if stuck[1:] else stuck)
                at = f"at {_origin(n)}" if n.name else "here"
                self.warn(n.span, f"step's gradient is 0 wherever it has one, so the loss's "
                          f"gradient stops {at}: gradient descent never changes {names}",
                          "use sigmoid, step's smooth version, or tanh in layers trained by "
                          "backpropagation; step suits a perceptron's output, trained with "
                          "loss perceptron(z, t) on its scores z")

    def count_layers(self, e):
        layers, stack = 0, [e]
        while stack:
            x = stack.pop()
            layers += isinstance(x, ast.Call) and x.func in PARAM_LAYERS
            stack += ast.subexpressions(x)
        self.several_layers = layers > 1
        self.layer_counts = {}

    def layer_prefix(self, kind: str) -> str:
        if not self.several_layers:
            return self.stmt_name
        i = self.layer_counts.get(kind, 0) + 1
        self.layer_counts[kind] = i
        return f"{self.stmt_name}.{kind}_{i}"

    # expressions -----------------------------------------------------------
    def lookup(self, e: ast.Name) -> Node:
        if e.id in self.env:
            return self.env[e.id]
        if e.id in self.poisoned:
            raise _Failed    # already reported where it was defined
        if e.id in self.later:
            self.error(e.span, f"'{e.id}' is used before its definition on line "
                       f"{self.later[e.id].line}", "define a name before using it")
        if e.id in FUNCTIONS or e.id in ACTIVATIONS:
            self.error(e.span, f"'{e.id}' is a function, not a value", f"call it: {e.id}(x)")
        if e.id in KEYWORDS:
            self.error(e.span, f"'{e.id}' is a keyword, not a name",
                       "the keywords " + ", ".join(KEYWORDS) + " start statements")
        self.error(e.span, f"unknown name '{e.id}'",
                   did_you_mean(e.id, list(self.env)) or "define it with 'NAME = ...' or "
                   "declare it with 'input', 'target' or 'param'")

    def expr(self, e) -> Node:
        if isinstance(e, ast.Num) or isinstance(e, ast.Neg) and isinstance(e.operand, ast.Num):
            value = self.number(e, "the number")
            return self.const(value, e.span)
        if isinstance(e, ast.Name):
            return self.lookup(e)
        if isinstance(e, ast.Str):
            self.error(e.span, "a quoted path is only allowed as the value of 'data'",
                       "names of values are written without quotes")
        if isinstance(e, ast.Neg):
            return self.add("neg", [self.expr(e.operand)], span=e.span)
        if isinstance(e, ast.BinOp):
            return self.binop(e)
        if isinstance(e, ast.Call):
            return self.call(e)
        raise AssertionError(e)

    def binop(self, e: ast.BinOp) -> Node:
        if e.op == "^":
            k = self.exponent(e.right)
            x = self.expr(e.left)
            if k == 2:
                return self.add("square", [x], span=e.span)
            return self.add("pow", [x], {"k": k}, e.span)
        a, b = self.expr(e.left), self.expr(e.right)
        if e.op == "@":
            return self.matmul(a, b, e.span)
        op = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[e.op]
        a, b = self.per_example(a, b, e.span)
        try:
            return self.graph.add(op, [a, b], {}, e.span)
        except ShapeError as err:
            self.error(e.span, f"{err.message} ({_origin(a)} {e.op} {_origin(b)})", err.hint)

    def exponent(self, e) -> float:
        """The exponent of '^': a number, or numbers combined with + - * / ^,
        worked out now (x ^ 2 ^ 3 is x ^ 8)."""
        if isinstance(e, ast.Neg) and not isinstance(e.operand, ast.Num):
            return -self.exponent(e.operand)
        if not isinstance(e, ast.BinOp) or e.op == "@":
            return self.number(e, "the exponent of '^'", hint=EXPONENT)
        a, b = self.exponent(e.left), self.exponent(e.right)
        try:
            k = ARITHMETIC[e.op](a, b)
        except ArithmeticError:         # 0 ^ -1, 1 / 0, 10 ^ 400
            k = math.nan
        if isinstance(k, complex) or not abs(k) <= FLOAT32_MAX:
            self.error(_span(e), f"the exponent {_text(self.program, e)} does not work out to "
                       "a real number float32 holds", EXPONENT)
        return k

    def matmul(self, a: Node, b: Node, span) -> Node:
        """a @ b example by example, as numpy's matmul on one example's values:
        the last two axes multiply and the axes before them broadcast; a
        vector is a row on the left and a column on the right, and that axis
        is not in the result. The batch axis is never multiplied."""
        where = f"({_origin(a)} @ {_origin(b)})"
        batched = [n.shape[:1] == (N,) for n in (a, b)]
        pa, pb = (n.shape[1:] if bat else n.shape for n, bat in zip((a, b), batched))
        for n, per, bat in ((a, pa, batched[0]), (b, pb, batched[1])):
            if not per:
                self.error(span, f"'@' multiplies vectors and matrices, and {_origin(n)} is "
                           f"one number{' per example' * bat} {where}",
                           "scale by a number with '*'")
        rows = pb[-2] if len(pb) > 1 else pb[0]
        if pa[-1] != rows:
            self.error(span, f"'@' cannot multiply {fmt_shape(a.shape)} by {fmt_shape(b.shape)}: "
                       f"{pa[-1]} column{'s' * (pa[-1] != 1)} against {rows} "
                       f"row{'s' * (rows != 1)} {where}",
                       "the left operand's last size must equal the right operand's "
                       + ("second-to-last size" if len(pb) > 1 else "size"))
        try:
            lead = broadcast_shapes(pa[:-2], pb[:-2])
        except ShapeError:
            self.error(span, f"'@' multiplies the last two axes of each example and broadcasts "
                       f"the axes before them, and {fmt_shape(pa[:-2])} and "
                       f"{fmt_shape(pb[:-2])} do not broadcast {where}",
                       "those axes need equal sizes, or a size of 1, counted from the right")
        per = lead + pa[-2:-1] + pb[-1:] if len(pb) > 1 else lead + pa[-2:-1]
        if batched[0] and len(pa) == 1 and not batched[1] and len(pb) == 2:
            return self.add("matmul", [a, b], span=span)     # [N, k] @ [k, m]: as it is
        if len(pa) == 1:
            a = self.add("reshape", [a], {"shape": a.shape[:-1] + (1,) + pa[-1:]}, span)
        if len(pb) == 1:
            b = self.add("reshape", [b], {"shape": b.shape + (1,)}, span)
        out = self.add("matmul", list(self.per_example(a, b, span)), span=span)
        shape = (N,) * any(batched) + per
        return out if out.shape == shape else self.add("reshape", [out], {"shape": shape}, span)

    def per_example(self, a: Node, b: Node, span) -> tuple:
        """a and b ready for numpy broadcasting, example by example: an operand
        with the batch axis whose example has fewer axes than the other's
        gets axes of size 1 after its batch axis ([N] + [N, 3]: [N, 1] + [N, 3]),
        where numpy alone would line its batch axis up with an example's."""
        rank = max(len(n.shape) - (n.shape[:1] == (N,)) for n in (a, b))

        def lift(n):
            per = n.shape[1:]
            if n.shape[:1] != (N,) or len(per) == rank:
                return n
            return self.add("reshape", [n], {"shape": (N,) + (1,) * (rank - len(per)) + per},
                            span)
        return lift(a), lift(b)

    def call(self, e: ast.Call) -> Node:
        f = e.func
        if f in UNARY:
            x, = self.args(e, 1)
            return self.add(f, [x], span=e.span)
        if f == "leaky_relu":
            self.check_kwargs(e, ("slope",))
            if not 1 <= len(e.args) <= 2:
                self.error(e.span, "leaky_relu takes one value and a slope: leaky_relu(x, 0.01)",
                           _given(e) + "; leaky_relu(x) has slope 0.01")
            if len(e.args) == 2 and self.kw(e, "slope") is not None:
                self.error(e.kwargs[0].span, "'slope' is given twice", "give each argument once")
            x = self.expr(e.args[0])
            # leaky_relu'(x) is read from its output's sign, which is x's for slope >= 0
            slope = self.number(e.args[1], "the slope", SLOPE) if len(e.args) == 2 else \
                self.kw_number(e, "slope", LEAKY_SLOPE, SLOPE, "the slope")
            return self.add("leaky_relu", [x], {"slope": slope}, e.span)
        if f in ("softmax", "log_softmax"):
            x, = self.args(e, 1)
            return self.activation(f, x, e.span)
        if f == "transpose":
            x, = self.args(e, 1)
            if x.shape[:1] == (N,) and len(x.shape) < 3:
                self.error(e.span, f"transpose needs an example with at least two axes, got "
                           f"{fmt_shape(x.shape[1:])} per example",
                           "a vector needs no transpose: '@' takes it as a row on its left "
                           "(x @ w) and as a column on its right (w @ x)")
            return self.add("transpose", [x], span=e.span)
        if f in REDUCTIONS:
            return self.reduction(e)
        if f in LOSSES:
            return self.loss_call(e)
        if f in LAYERS:
            return LAYER_LOWERINGS[f](self, e)
        known = FUNCTIONS + INITS
        self.error(e.span, f"unknown function '{f}'",
                   did_you_mean(f, known) or
                   "the built-in functions are " + ", ".join(sorted(set(FUNCTIONS))))

    def args(self, e: ast.Call, n: int, names=()) -> list:
        self.check_kwargs(e, names)
        if len(e.args) != n:
            form = {1: "x", 2: "prediction, target"}.get(n, ", ".join("x" * n))
            self.error(e.span, f"{e.func} takes {n} argument{'s' if n > 1 else ''}, "
                       f"got {len(e.args)}", f"write it as {e.func}({form})")
        return [self.expr(a) for a in e.args]

    def check_kwargs(self, e: ast.Call, allowed):
        seen = set()
        for k in e.kwargs:
            if k.name in seen:
                self.error(k.span, f"'{k.name}' is given twice", "give each argument once")
            seen.add(k.name)
            if k.name not in allowed:
                hint = did_you_mean(k.name, allowed) or (
                    f"{e.func} accepts {', '.join(allowed)}" if allowed else
                    f"{e.func} takes no named arguments")
                self.error(k.span, f"{e.func} has no argument '{k.name}'", hint)

    def kw(self, e: ast.Call, name):
        for k in e.kwargs:
            if k.name == name:
                return k.value
        return None

    def kw_number(self, e, name, default, limit=None, what=None):
        v = self.kw(e, name)
        return default if v is None else self.number(v, what or f"'{name}'", limit)

    def activation(self, name: str, x: Node, span, slope=LEAKY_SLOPE) -> Node:
        if name in ("softmax", "log_softmax") and not x.shape:
            self.error(span, f"{name} of a single number: it normalises along the last axis "
                       "of a value with one entry per class",
                       f"apply it to such a value, e.g. {name}(logits) with logits = "
                       "dense(h, 10)")
        if name in ("softmax", "log_softmax") and x.shape[-1] == 1:
            self.error(span, f"{name} over a last axis of one entry is always "
                       f"{1 if name == 'softmax' else 0}: "
                       f"{_origin(x) if x.name else 'its value'} is {fmt_shape(x.shape)}",
                       "for a yes/no score use sigmoid (and binary_cross_entropy); for "
                       "classes, give the value one entry per class")
        if name == "log_softmax":
            return self.add("log_softmax", [x], span=span)
        if name == "softmax":
            return self.add("exp", [self.add("log_softmax", [x], span=span)], span=span)
        if name == "leaky_relu":
            return self.add("leaky_relu", [x], {"slope": slope}, span)
        return self.add(name, [x], span=span)

    def reduction(self, e: ast.Call) -> Node:
        self.check_kwargs(e, ("axis",))
        if len(e.args) != 1:
            self.error(e.span, f"{e.func} takes one value and an optional axis: "
                       f"{e.func}(x, axis = 0)", _given(e))
        x = self.expr(e.args[0])
        ax = self.kw(e, "axis")
        axis = None if ax is None else self.number(ax, "the axis", Limit(whole=True), AXES)
        axes = self.example_axes(x, axis, _span(ax) if ax is not None else e.span)
        if not axes:            # one number per example (or a scalar): nothing to reduce
            return x
        if e.func == "mean":
            return self.mean(x, axes, e.span)
        return self.add(e.func, [x], {"axes": axes, "keepdims": False}, e.span)

    def loss_call(self, e: ast.Call) -> Node:
        p, t = self.args(e, 2)
        if p.shape != t.shape:
            self.error(e.span, f"{e.func} compares values of different shapes: "
                       f"{_origin(p)} is {fmt_shape(p.shape)} but {_origin(t)} is "
                       f"{fmt_shape(t.shape)}",
                       "the prediction and the target need the same shape")
        if p.shape[:1] != (N,):
            self.error(e.span, f"{e.func} needs per-example values (from an input and a "
                       f"target), got {fmt_shape(p.shape)}",
                       f"give {e.func} the network's output and a target: {e.func}(p, y)")
        sp = e.span
        all_axes = tuple(range(len(p.shape)))
        self.squashed_scores(e, p)
        if t.op == "target" and e.func in ("cross_entropy", "binary_cross_entropy",
                                           "perceptron"):   # checked against the data
            self.graph.target_losses.setdefault(t.attrs["name"], (e.func, sp))
        if e.func == "mse":
            return self.mean(self.add("square", [self.add("sub", [p, t], span=sp)], span=sp),
                             all_axes, sp)
        if e.func == "mae":
            return self.mean(self.add("abs", [self.add("sub", [p, t], span=sp)], span=sp),
                             all_axes, sp)
        if e.func == "cross_entropy":
            if p.shape[-1] == 1:
                self.error(_span(e.args[0]), f"cross_entropy over one class is always 0: the "
                           f"softmax of {_origin(p)}, one number per example, is 1 whatever "
                           "it is, so nothing would train",
                           "for a yes/no target y[1] use binary_cross_entropy(logits, y) "
                           "(sigmoid and cross-entropy); for classes, one column per class")
            # -sum(t * log_softmax(z)) per example, averaged over the batch
            ls = self.add("log_softmax", [p], span=sp)
            per = self.add("sum", [self.add("mul", [t, ls], span=sp)],
                           {"axes": all_axes[1:], "keepdims": False}, sp)
            return self.add("neg", [self.mean(per, (0,), sp)], span=sp)
        if e.func == "binary_cross_entropy":
            # on logits z: max(z, 0) - z t + log(1 + exp(-|z|)), which never overflows
            z = p
            soft = self.add("log", [self.add("add", [self.const(1.0), self.add(
                "exp", [self.add("neg", [self.add("abs", [z], span=sp)], span=sp)], span=sp)],
                span=sp)], span=sp)
            per = self.add("add", [self.add("sub", [self.add("relu", [z], span=sp), self.add(
                "mul", [z, t], span=sp)], span=sp), soft], span=sp)
            return self.mean(per, all_axes, sp)
        if e.func == "perceptron":
            # mean over the batch of sum((step(z) - t) * z), step(z) held constant:
            # d/dz = step(z) - t, so sgd gives the perceptron rule w += lr (t - y) x
            y = self.add("stop_gradient", [self.add("step", [p], span=sp)], span=sp)
            per = self.add("sum", [self.add("mul", [self.add("sub", [y, t], span=sp), p],
                                            span=sp)], {"axes": all_axes[1:], "keepdims": False},
                           sp)
            return self.mean(per, (0,), sp)
        raise AssertionError(e.func)

    def squashed_scores(self, e: ast.Call, p: Node):
        """A warning where a loss that takes raw scores (logits) is given
        probabilities: softmax or sigmoid applied twice, or a perceptron's
        threshold at 0 that a sigmoid output never crosses."""
        if e.func not in ("cross_entropy", "binary_cross_entropy", "perceptron"):
            return
        if p.op == "exp" and p.inputs[0].op == "log_softmax":
            what, z = "softmax", p.inputs[0].inputs[0]
        elif p.op == "sigmoid":
            what, z = "sigmoid", p.inputs[0]
        else:
            return
        if e.func == "perceptron":
            effect = (f"a {what}'s output is above 0 for every input, so the perceptron "
                      "never sees a negative score")
        else:
            own = "softmax" if e.func == "cross_entropy" else "sigmoid"
            effect = (f"the loss applies {own} a second time, which squeezes the scores into "
                      "(0, 1) and slows learning")
        if z.name:
            hint = (f"pass the values before the {what}: {e.func}({z.name}, "
                    f"{_text(self.program, e.args[1]).strip(chr(39))})")
        else:
            hint = (f"name the layer without its activation (z = dense(h, 10) instead of "
                    f"dense(h, 10, {what})), pass z to {e.func}, and apply the {what} to "
                    "z for the output")
        self.warn(_span(e.args[0]), f"{e.func} takes raw scores (logits), but {_origin(p)} "
                  f"is already a {what} output: {effect}", hint)

    # train block -------------------------------------------------------------
    def train_block(self, s: ast.Stmt):
        cfg = self.train
        cfg.present = True
        cfg.spans["train"] = s.span
        seen = {}
        for item in s.items:
            key, v = item.name, item.value
            if key in seen:
                self.diags.append(Diagnostic(item.span, f"'{key}' is set twice in the train block",
                                             f"it was first set on line {seen[key].line}; "
                                             "delete one of the two"))
                continue
            seen[key] = item.span
            cfg.spans[key] = _span(v)
            try:
                self.train_item(cfg, key, v, item.span)
            except _Failed:
                pass

    def train_item(self, cfg: TrainConfig, key, v, span):
        def word(choices):
            if not isinstance(v, ast.Name) or v.id not in choices:
                one_of = f"{key} is one of: {', '.join(choices)}"
                if isinstance(v, ast.Name):
                    alias = {"gpu": "cuda", "nvidia": "cuda"}.get(v.id.lower()) \
                        if key == "device" else None
                    self.error(_span(v), f"'{v.id}' is not a valid {key}",
                               (f"did you mean '{alias}'?" if alias else None) or
                               did_you_mean(v.id, choices) or one_of)
                self.error(_span(v), f"{key} must be a word, not {_text(self.program, v)}",
                           one_of)
            return v.id

        if key == "data":
            from ..train.data import BUILTIN
            if isinstance(v, ast.Str):
                cfg.data, cfg.data_is_path = v.value, True
            elif isinstance(v, ast.Name):
                if v.id not in BUILTIN:
                    self.error(v.span, f"'{v.id}' is not a built-in data set",
                               did_you_mean(v.id, BUILTIN) or
                               f"built-in sets: {', '.join(BUILTIN)}; or a path in quotes")
                cfg.data = v.id
            else:
                self.error(_span(v), "data is a built-in set or a path in quotes",
                           'e.g. data = xor or data = "train.csv"')
        elif key in ("split", "batch", "accumulate", "epochs", "seed", "clip", "early_stop"):
            setattr(cfg, key, self.number(v, key, LIMITS[key]))
        elif key in ("normalize", "device"):
            setattr(cfg, key, word(CHOICES[key]))
        elif key == "optimizer":
            self.optimizer(cfg, v)
        elif key == "shuffle":
            cfg.shuffle = word(("true", "false")) == "true"
        else:
            keys = ("data", "split", "normalize", "optimizer", "batch", "accumulate", "epochs",
                    "shuffle", "clip", "early_stop", "seed", "device")
            self.error(span, f"unknown train setting '{key}'",
                       did_you_mean(key, keys) or f"settings: {', '.join(keys)}")

    def optimizer(self, cfg, v):
        if isinstance(v, ast.Name) and v.id in CHOICES["optimizer"]:
            self.error(v.span, f"{v.id} needs a learning rate in brackets: {v.id}(lr = 0.01)",
                       f"write optimizer = {v.id}(lr = 0.01)")
        if not isinstance(v, ast.Call) or v.func not in CHOICES["optimizer"]:
            name = getattr(v, "func", getattr(v, "id", None))
            name = f"'{name}'" if name else _text(self.program, v)
            self.error(_span(v), f"{name} is not an optimizer",
                       did_you_mean(name, CHOICES["optimizer"]) or
                       "optimizer is sgd(lr, momentum = 0) or adam(lr)")
        cfg.optimizer = v.func
        names = ("lr", "momentum") if v.func == "sgd" else ("lr", "beta1", "beta2", "eps")
        self.check_kwargs(v, names)
        if len(v.args) > len(names):
            self.error(v.span, f"{v.func} takes at most {len(names)} values: "
                       f"{v.func}({', '.join(names)})", _given(v))
        given = dict(zip(names, v.args))
        for k in v.kwargs:
            if k.name in given:
                self.error(k.span, f"'{k.name}' is given twice", "give each argument once")
            given[k.name] = k.value
        if "lr" not in given:
            self.error(v.span, f"{v.func} needs a learning rate: {v.func}(lr = 0.01)",
                       f"lr comes first, by name or by place: {v.func}(lr = 0.01) or "
                       f"{v.func}(0.01)")
        for k, e in given.items():
            setattr(cfg, k, self.number(e, "the learning rate" if k == "lr" else f"'{k}'",
                                        LIMITS[k]))


# layers ----------------------------------------------------------------------

def _weight_init(lw: Lowering, e: ast.Call, act: str | None) -> tuple:
    v = lw.kw(e, "init")
    if v is not None:
        return lw.init(v)
    return ("he",) if act in ("relu", "leaky_relu") else ("xavier",)


def _activation_arg(lw: Lowering, e: ast.Call, index: int) -> str | None:
    if len(e.args) <= index:
        return None
    a = e.args[index]
    if not isinstance(a, ast.Name) or a.id not in ACTIVATIONS:
        got = a.id if isinstance(a, ast.Name) else None
        what = f"'{got}'" if got else ("a number" if isinstance(a, (ast.Num, ast.Neg))
                                       else "this expression")
        lw.error(_span(a), f"{what} is not an activation",
                 (did_you_mean(got, ACTIVATIONS) if got else None) or
                 f"activations: {', '.join(ACTIVATIONS)}")
    return a.id


def lower_dense(lw: Lowering, e: ast.Call) -> Node:
    lw.check_kwargs(e, ("init",))
    if not 2 <= len(e.args) <= 3:
        lw.error(e.span, "dense takes a value, a number of units and an optional activation: "
                 "dense(x, 10, relu)", _given(e))
    x = lw.expr(e.args[0])
    units = lw.number(e.args[1], "the number of units", COUNT)
    act = _activation_arg(lw, e, 2)
    if x.shape[:1] != (N,):
        lw.error(_span(e.args[0]), f"dense needs a vector per example, but {_constant(x)} does "
                 "not depend on an input", "a layer takes a value computed from an input: "
                 "dense(x, 10) with input x[64]")
    if len(x.shape) != 2:
        got = fmt_shape(x.shape[1:]) if len(x.shape) > 2 else "one number"
        lw.error(_span(e.args[0]), f"dense needs a vector per example, got {got}",
                 "flatten it first: dense(flatten(x), ...)" if len(x.shape) > 2 else
                 "a vector of one number is declared with one entry, as input x[1]")
    prefix = lw.layer_prefix("dense")
    k = x.shape[1]
    w = lw.make_param(f"{prefix}.weight", (k, units), _weight_init(lw, e, act), e.span)
    b = lw.make_param(f"{prefix}.bias", (units,), ("zeros",), e.span)
    z = lw.add("add", [lw.add("matmul", [x, w], span=e.span), b], span=e.span)
    return lw.activation(act, z, e.span) if act else z


def lower_flatten(lw: Lowering, e: ast.Call) -> Node:
    x, = lw.args(e, 1)
    if x.shape[:1] != (N,):
        lw.error(e.span, "flatten works on per-example values",
                 f"flatten a value computed from an input; this one is {fmt_shape(x.shape)}, "
                 "without the batch axis")
    return lw.add("reshape", [x], {"shape": (N, math.prod(x.shape[1:]))}, e.span)


# Images are [channels, height, width] per example, [N, C, H, W] in the IR.
# conv2d's bias is one number per filter, stored as [filters, 1, 1] so that it
# broadcasts over the height and width of the [N, filters, Ho, Wo] output: the
# same "matmul + bias" pattern as dense, which the fuser folds into the conv.
# Pooling must tile its input exactly: (height - size) % stride == 0 and the
# same for the width, so that no pixel is silently left out of every window.

def _image_arg(lw: Lowering, e: ast.Call, x: Node) -> tuple:
    """x's per-example (channels, height, width), or a diagnostic in the user's terms."""
    if x.shape[:1] == (N,) and len(x.shape) == 4:
        return x.shape[1:]
    per = fmt_shape(x.shape[1:])
    hint = "images are declared as [channels, height, width], e.g. input x[1, 28, 28]"
    if x.shape[:1] == (N,) and len(x.shape) == 3:
        hint = f"give it one channel: [1, {x.shape[1]}, {x.shape[2]}]"
    elif x.shape[:1] == (N,) and len(x.shape) == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        side = math.isqrt(x.shape[1])
        hint = f"declare the input as [1, {side}, {side}]; {e.func} comes before flatten"
    if x.shape[:1] != (N,):
        lw.error(_span(e.args[0]), f"{e.func} needs [channels, height, width] per example, but "
                 f"{_constant(x)} does not depend on an input",
                 f"a layer takes a value computed from an input: {e.func}(x, ...) with input "
                 "x[1, 28, 28]")
    lw.error(_span(e.args[0]), f"{e.func} needs [channels, height, width] per example, but "
             f"{_origin(x)} is {per}", hint)


def lower_conv2d(lw: Lowering, e: ast.Call) -> Node:
    lw.check_kwargs(e, ("stride", "padding", "init"))
    if not 3 <= len(e.args) <= 4:
        lw.error(e.span, "conv2d takes a value, a number of filters, a kernel size and an "
                 "optional activation: conv2d(x, 8, 3, relu)", _given(e))
    x = lw.expr(e.args[0])
    filters = lw.number(e.args[1], "the number of filters", COUNT)
    k = lw.number(e.args[2], "the kernel size", COUNT)
    act = _activation_arg(lw, e, 3)
    stride = lw.kw_number(e, "stride", 1, COUNT)
    padding = lw.kw_number(e, "padding", 0, Limit(0, whole=True))
    c, h, w = _image_arg(lw, e, x)
    if k > h + 2 * padding or k > w + 2 * padding:
        lw.error(_span(e.args[2]), f"the {k}x{k} kernel of conv2d is larger than its input: "
                 f"{_origin(x)} is {fmt_shape((c, h, w))} per example, "
                 f"{h + 2 * padding}x{w + 2 * padding} with padding {padding}",
                 f"use a kernel of at most {min(h, w) + 2 * padding}, or more padding")
    prefix = lw.layer_prefix("conv2d")
    wt = lw.make_param(f"{prefix}.weight", (filters, c, k, k), _weight_init(lw, e, act), e.span)
    b = lw.make_param(f"{prefix}.bias", (filters, 1, 1), ("zeros",), e.span)
    y = lw.add("conv2d", [x, wt], {"stride": stride, "padding": padding}, e.span)
    z = lw.add("add", [y, b], span=e.span)
    return lw.activation(act, z, e.span) if act else z


def lower_pool(lw: Lowering, e: ast.Call) -> Node:
    lw.check_kwargs(e, ("stride",))
    if len(e.args) != 2:
        lw.error(e.span, f"{e.func} takes a value and a window size: {e.func}(x, 2), "
                 f"optionally with stride = ...", _given(e))
    x = lw.expr(e.args[0])
    size = lw.number(e.args[1], "the window size", COUNT)
    stride = lw.kw_number(e, "stride", size, COUNT)
    c, h, w = _image_arg(lw, e, x)
    what = f"{_origin(x)} is {fmt_shape((c, h, w))} per example"
    if size > h or size > w:
        lw.error(_span(e.args[1]), f"the {size}x{size} window of {e.func} is larger than its "
                 f"input: {what}", f"use a window of at most {min(h, w)}")
    rows, cols = (h - size) % stride, (w - size) % stride
    if rows or cols:
        lost = " and ".join(f"last {word}" if n == 1 else f"last {n} {word}s"
                            for n, word in ((rows, "row"), (cols, "column")) if n)
        call = f"{e.func}(size {size}, stride {stride})"
        after_conv = " (e.g. padding in the conv before it)" \
            if any(n.op == "conv2d" for n in _ancestors(x)) else ""
        lw.error(e.span, f"{call} does not tile its input exactly: {what}, so its {lost} "
                 f"would be dropped",
                 f"pad the input to {h + (stride - rows) % stride}x{w + (stride - cols) % stride}"
                 f"{after_conv}, or choose a size and stride with "
                 f"(height - size) and (width - size) divisible by the stride")
    return lw.add(e.func, [x], {"size": size, "stride": stride}, e.span)


def lower_dropout(lw: Lowering, e: ast.Call) -> Node:
    lw.check_kwargs(e, ("rate",))
    given = e.args[1] if len(e.args) == 2 else lw.kw(e, "rate")
    if given is None or not e.args or len(e.args) + len(e.kwargs) != 2:
        lw.error(e.span, "dropout takes a value and the fraction to drop: dropout(x, 0.5)",
                 _given(e))
    rate = lw.number(given, "the dropout rate", Limit(0), RATE)
    if rate >= 1:
        lw.error(_span(given), f"the dropout rate must be below 1, got "
                 f"{_written(lw.program, given, rate)}", RATE)
    x = lw.expr(e.args[0])
    if x.shape[:1] != (N,):
        lw.error(_span(e.args[0]), f"dropout works on per-example values, and {_origin(x)} does "
                 "not depend on an input", "drop units of a layer's output: dropout(h, 0.5)")
    return lw.add("dropout", [x], {"rate": rate}, e.span)


LAYER_LOWERINGS = {"dense": lower_dense, "flatten": lower_flatten, "conv2d": lower_conv2d,
                   "maxpool": lower_pool, "avgpool": lower_pool, "dropout": lower_dropout}


# -----------------------------------------------------------------------------

def _ancestors(node: Node) -> list:
    """node and every node it is computed from."""
    seen, stack = {node.id: node}, [node]
    while stack:
        for u in stack.pop().inputs:
            if u.id not in seen:
                seen[u.id] = u
                stack.append(u)
    return list(seen.values())


def _span(e) -> Span:
    return e.span


def _given(e: ast.Call) -> str:
    """What a call with the wrong number of arguments was given: 'this call gives 1 value'."""
    n = len(e.args)
    named = ", ".join(k.name for k in e.kwargs)
    named = f" and {'named arguments' if len(e.kwargs) > 1 else 'the named argument'} " \
        f"{named}" if named else ""
    return f"this call gives {n} value{'' if n == 1 else 's'}{named}"


def _constant(n: Node) -> str:
    """A value that does not depend on an input, as the user knows it: 'w' on
    line 3, the number 2."""
    return f"the number {n.attrs['value']:g}" if n.op == "const" else _origin(n)


def _origin(n: Node) -> str:
    """A value as the user knows it: 'h' on line 3, 2, or a [N, 4] value."""
    if n.name:
        return f"'{n.name}' on line {n.span.line}" if n.span else f"'{n.name}'"
    if n.op == "const":
        return f"{n.attrs['value']:g}"
    return f"a {fmt_shape(n.shape)} value"


def _written(program: ast.Program, e, value: float) -> str:
    """A number as the source writes it (99999999999999999999, not 1e+20)."""
    text = _text(program, e)
    return text[1:-1] if text.startswith("'") else f"{value:g}"


def _text(program: ast.Program, e) -> str:
    """The source text of a one-line expression (or Span), quoted, for messages."""
    sp = e if isinstance(e, Span) else e.span
    lines = program.source.splitlines()
    if sp.end_column and 1 <= sp.line <= len(lines):
        return f"'{lines[sp.line - 1][sp.column - 1:sp.end_column - 1]}'"
    return "this"


def lower(program: ast.Program) -> tuple[Graph, TrainConfig]:
    """Lower a parsed program; raise CompileError with every problem found."""
    stem = program.file.replace("\\", "/").rsplit("/", 1)[-1]
    name = stem[:-3] if stem.endswith(".nn") else stem
    name = "model" if name == "<string>" else name       # source text without a file
    lw = Lowering(program, Graph(name=name or "model", file=program.file,
                                 source=program.source))
    lw.run()
    if lw.diags:
        lw.diags.sort(key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
        raise CompileError(lw.diags, program.source)
    return lw.graph, lw.train
