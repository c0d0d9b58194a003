"""The syntax tree of a .nn file: plain dataclasses, every node with its Span."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import Span


@dataclass
class Num:
    value: float
    span: Span
    text: str = ""


@dataclass
class Str:
    value: str
    span: Span


@dataclass
class Name:
    id: str
    span: Span


@dataclass
class KwArg:
    name: str
    value: "Expr"
    span: Span


@dataclass
class Call:
    func: str
    args: list
    kwargs: list          # list[KwArg]
    span: Span            # the function's name


@dataclass
class BinOp:
    op: str               # one of + - * / @ ^
    left: "Expr"
    right: "Expr"
    span: Span            # the operator


@dataclass
class Neg:
    operand: "Expr"
    span: Span


Expr = Num | Str | Name | Call | BinOp | Neg


def subexpressions(e) -> list:
    """The expressions e is made of, in source order."""
    if isinstance(e, BinOp):
        return [e.left, e.right]
    if isinstance(e, Neg):
        return [e.operand]
    if isinstance(e, Call):
        return list(e.args) + [k.value for k in e.kwargs]
    return []


def too_deep(e, limit: int):
    """The first operation or call that lies more than limit levels inside e
    (e itself is level 1; names and numbers do not count), or None.
    Iterative, so it is safe on any depth."""
    stack = [(e, 1)]
    while stack:
        x, level = stack.pop()
        inner = subexpressions(x)
        if level > limit and (inner or isinstance(x, Call)):
            return x
        stack.extend((c, level + 1) for c in reversed(inner))
    return None


@dataclass
class Stmt:
    kind: str             # model input target param assign output loss train
    name: str | None      # the defined name (None for loss, train)
    span: Span            # the statement's keyword or name
    name_span: Span | None = None
    shape: tuple | None = None          # input / target / param
    shape_spans: tuple = ()
    expr: Expr | None = None            # param init, assign, output, loss
    items: list = field(default_factory=list)   # train: list[KwArg]


@dataclass
class Program:
    file: str
    source: str
    statements: list


def dump(program: Program) -> str:
    """The AST as indented text (`nncompile emit --target ast`)."""
    out = []

    def expr(e, depth):
        pad = "  " * depth
        if isinstance(e, Num):
            out.append(f"{pad}Num {e.text or e.value}")
        elif isinstance(e, Str):
            out.append(f"{pad}Str {e.value!r}")
        elif isinstance(e, Name):
            out.append(f"{pad}Name {e.id}")
        elif isinstance(e, Neg):
            out.append(f"{pad}Neg")
            expr(e.operand, depth + 1)
        elif isinstance(e, BinOp):
            out.append(f"{pad}BinOp {e.op}")
            expr(e.left, depth + 1)
            expr(e.right, depth + 1)
        elif isinstance(e, Call):
            out.append(f"{pad}Call {e.func}")
            for a in e.args:
                expr(a, depth + 1)
            for k in e.kwargs:
                out.append(f"{pad}  {k.name} =")
                expr(k.value, depth + 2)

    for s in program.statements:
        head = f"{s.kind}" + (f" {s.name}" if s.name else "")
        if s.shape is not None:
            head += "[" + ", ".join(f"{d:g}" for d in s.shape) + "]"
        out.append(f"{head}    # {s.span}")
        if s.expr is not None:
            expr(s.expr, 1)
        for it in s.items:
            out.append(f"  {it.name} =")
            expr(it.value, 2)
    return "\n".join(out) + "\n"
