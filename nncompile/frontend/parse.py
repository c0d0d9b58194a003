"""Front end: .nn text -> AST (frontend/ast.py), with spans and plain-words errors.

One lark LALR(1) grammar (grammar/nn.lark). Newlines end statements except
inside ( ) and [ ], where a postlexer drops them. CRLF and tabs are accepted.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import lark
from lark import Lark, Token, Transformer, v_args

from ..diagnostics import CompileError, Diagnostic, Span
from . import ast

KEYWORDS = ("model", "input", "target", "param", "output", "loss", "train")

# lark's terminal names, in the words a user knows
WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a quoted path",
    "_NL": "the end of the line", "$END": "the end of the file",
}


class _BracketNewlines:
    """Postlexer: newlines inside ( ) and [ ] continue the statement."""
    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth:
                continue
            yield tok


@lru_cache(maxsize=1)
def _parser() -> Lark:
    text = resources.files("nncompile").joinpath("grammar/nn.lark").read_text()
    return Lark(text, parser="lalr", propagate_positions=True, cache=True,
                postlex=_BracketNewlines(), maybe_placeholders=True)


def _span(file, line, column, end_line=None, end_column=None) -> Span:
    return Span(file, line, column, end_column if end_line in (None, line) else None)


class _ToAst(Transformer):
    def __init__(self, file):
        super().__init__()
        self.file = file

    def _tok(self, tok: Token) -> Span:
        return _span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def _meta(self, meta) -> Span:
        return _span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def start(self, stmts):
        return [s for s in stmts if s is not None]

    # statements -----------------------------------------------------------
    @v_args(meta=True)
    def model_stmt(self, meta, c):
        return ast.Stmt("model", str(c[0]), self._meta(meta), self._tok(c[0]))

    def _decl(self, kind, meta, c):
        dims, spans = c[1]
        return ast.Stmt(kind, str(c[0]), self._meta(meta), self._tok(c[0]),
                        shape=dims, shape_spans=spans)

    @v_args(meta=True)
    def input_stmt(self, meta, c):
        return self._decl("input", meta, c)

    @v_args(meta=True)
    def target_stmt(self, meta, c):
        return self._decl("target", meta, c)

    @v_args(meta=True)
    def param_stmt(self, meta, c):
        s = self._decl("param", meta, c)
        s.expr = c[2]
        return s

    @v_args(meta=True)
    def output_stmt(self, meta, c):
        return ast.Stmt("output", str(c[0]), self._meta(meta), self._tok(c[0]), expr=c[1])

    @v_args(meta=True)
    def loss_stmt(self, meta, c):
        return ast.Stmt("loss", None, self._meta(meta), expr=c[0])

    @v_args(meta=True)
    def assign_stmt(self, meta, c):
        return ast.Stmt("assign", str(c[0]), self._tok(c[0]), self._tok(c[0]), expr=c[1])

    @v_args(meta=True)
    def train_stmt(self, meta, c):
        return ast.Stmt("train", None, self._meta(meta), items=[i for i in c if i is not None])

    def train_item(self, c):
        return ast.KwArg(str(c[0]), c[1], self._tok(c[0]))

    def shape(self, c):
        dims = [d for d in c if d is not None]
        return tuple(d[0] for d in dims), tuple(d[1] for d in dims)

    def dim(self, c):
        return float(c[0]), self._tok(c[0])

    # expressions ----------------------------------------------------------
    def number(self, c):
        return ast.Num(float(c[0]), self._tok(c[0]), str(c[0]))

    def name(self, c):
        return ast.Name(str(c[0]), self._tok(c[0]))

    def string(self, c):
        return ast.Str(str(c[0])[1:-1], self._tok(c[0]))

    @v_args(meta=True)
    def neg(self, meta, c):
        return ast.Neg(c[0], self._meta(meta))

    def _bin(op):
        @v_args(meta=True)
        def rule(self, meta, c):
            return ast.BinOp(op, c[0], c[1], self._meta(meta))
        return rule

    add, sub, mul, div, matmul, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("@"), _bin("^")

    def kwarg(self, c):
        return ast.KwArg(str(c[0]), c[1], self._tok(c[0]))

    def call(self, c):
        name, args = c[0], [a for a in c[1:] if a is not None]
        pos = [a for a in args if not isinstance(a, ast.KwArg)]
        kws = [a for a in args if isinstance(a, ast.KwArg)]
        return ast.Call(str(name), pos, kws, self._tok(name))


def _words(expected, in_brackets: bool = False) -> str:
    parser = _parser()
    expected = set(expected)
    if in_brackets:
        expected.discard("_NL")
    names, ops = [], False
    starts_value = {"NAME", "NUMBER", "LPAR"} <= expected
    if starts_value:
        names.append("a value")
        expected -= {"NAME", "NUMBER", "LPAR", "STRING", "MINUS"}
    for t in sorted(expected):
        if t in WORDS:
            names.append(WORDS[t])
            continue
        try:
            pattern = parser.get_terminal(t).pattern
        except KeyError:
            continue
        if isinstance(pattern, lark.lexer.PatternStr):
            if pattern.value in "+-*/@^":
                ops = True
            else:
                names.append(f"'{pattern.value}'")
    if ops:
        names.append("an operator")
    names = sorted(set(names), key=lambda w: (w.startswith("'"), w))
    if len(names) > 1:
        return ", ".join(names[:-1]) + " or " + names[-1]
    return names[0] if names else "something else"


def _depth(text: str, pos: int) -> int:
    """How many ( and [ are open before pos (comments skipped)."""
    depth = 0
    for line in text[:pos].split("\n"):
        code = line.split("#", 1)[0]
        depth += code.count("(") + code.count("[") - code.count(")") - code.count("]")
    return max(depth, 0)


def _describe(tok: Token) -> str:
    if tok.type == "_NL":
        return "end of the line"
    if tok.type == "$END":
        return "end of the file"
    if str(tok) in KEYWORDS:
        return f"keyword '{tok}'"
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type == "NUMBER":
        return f"number {tok}"
    return f"'{tok}'"


def _hint(tok: Token, expected, inside: bool = False, first_on_line: bool = False) -> str | None:
    if inside and first_on_line:
        return "a '(' or '[' on an earlier line is not closed"
    if tok.type in ("_NL", "$END") and ("RPAR" in expected or "RSQB" in expected):
        return "a bracket is not closed; a statement may continue over lines only inside ( ) or [ ]"
    if str(tok) in KEYWORDS:
        return f"'{tok}' is a keyword and starts its own statement; pick another name"
    if tok.type in ("NAME", "NUMBER", "STRING") and "COMMA" in expected:
        return "is a ',' missing between two arguments?"
    if tok.type == "NAME" and "_NL" in expected:
        return "each statement goes on its own line"
    if tok.type == "EQUAL" and "EQUAL" not in expected:
        return "'=' defines a name; compare or combine values with + - * / @ ^"
    return None


def _first_on_line(text: str, tok: Token) -> bool:
    start = tok.start_pos or 0
    return text[text.rfind("\n", 0, start) + 1:start].strip() == ""


def parse(source: str, file: str = "<string>") -> ast.Program:
    """Parse .nn text; raise CompileError with one diagnostic on a syntax error."""
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedCharacters as e:
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        hint = None
        if ch in "\"'":
            hint = "a quoted path must end on the same line"
        elif ch == "{":
            hint = "'{' opens only a train block: train { ... }"
        diag = Diagnostic(Span(file, e.line, e.column), f"unexpected character '{ch}'", hint)
        raise CompileError([diag], source) from None
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        line = tok.line if tok.line is not None else text.count("\n")
        col = tok.column if tok.column is not None else 1
        if tok.type == "$END":
            lines = text.rstrip("\n").split("\n")
            line, col = len(lines), len(lines[-1]) + 1
        inside = tok.type != "$END" and _depth(text, tok.start_pos or 0) > 0
        msg = f"unexpected {_describe(tok)}; expected {_words(e.expected, inside)}"
        raise CompileError([Diagnostic(Span(file, line, col), msg, _hint(tok, e.expected, inside, _first_on_line(text, tok)))],
                           source) from None
    except lark.exceptions.UnexpectedEOF as e:
        lines = text.rstrip("\n").split("\n")
        diag = Diagnostic(Span(file, len(lines), len(lines[-1]) + 1),
                          f"unexpected end of the file; expected {_words(e.expected)}")
        raise CompileError([diag], source) from None
    return ast.Program(file, source, _ToAst(file).transform(tree))
