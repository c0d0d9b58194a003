"""Front end: .nn text -> AST (frontend/ast.py), with spans and plain-words errors.

One lark LALR(1) grammar (grammar/nn.lark). Newlines end statements except
inside ( ) and [ ], where a postlexer drops them. CRLF and tabs are accepted.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources

import lark
from lark import Lark, Token, Transformer_NonRecursive, v_args

from ..diagnostics import CompileError, Diagnostic, Span, did_you_mean
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


class _ToAst(Transformer_NonRecursive):
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
        expr = c[1] if len(c) > 1 else None      # output NAME: an existing value
        return ast.Stmt("output", str(c[0]), self._meta(meta), self._tok(c[0]), expr=expr)

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


_OPERATORS = ("PLUS", "MINUS", "STAR", "SLASH", "AT", "CIRCUMFLEX")
# characters that word processors and web pages put in place of ASCII ones
_LOOKALIKES = {"\u00d7": "*", "\u2212": "-", "\u2013": "-", "\u00f7": "/", "\u201c": '"',
               "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u00a0": " ", "\u2009": " "}
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _words(expected) -> str:
    """The tokens a parser state accepts, in plain words: 'an operator, ',' or ')''."""
    parser = _parser()
    expected = set(expected)
    if "_NL" in expected:
        expected.discard("$END")          # the end of the file ends a line too
    names = []
    if {"NAME", "NUMBER", "LPAR"} <= expected:
        names.append("a value")
        expected -= {"NAME", "NUMBER", "LPAR", "STRING", "MINUS"}
    starters = {t for t in expected if t.lower() in KEYWORDS}
    if starters:
        names.append("a statement")
        expected -= starters | {"NAME"}
    if any(t in expected for t in _OPERATORS):
        names.append("an operator")
        # after a name, '(' (a call) and '=' (a named argument) are possible too;
        # naming them would only blur the message
        expected -= set(_OPERATORS) | {"LPAR", "EQUAL"}
    for t in sorted(expected):
        if t in WORDS:
            names.append(WORDS[t])
            continue
        try:
            pattern = parser.get_terminal(t).pattern
        except KeyError:
            continue
        if isinstance(pattern, lark.lexer.PatternStr):
            names.append(f"'{pattern.value}'")
    names = sorted(set(names), key=lambda w: (w.startswith("'"), w))
    if len(names) > 1:
        return ", ".join(names[:-1]) + " or " + names[-1]
    return names[0] if names else "something else"


def _open_brackets(text: str, pos: int) -> list:
    """The ( [ { still open before pos, innermost last: (char, line, column).

    Comments and quoted paths are skipped; a closer pops its opener."""
    stack, line, col, i = [], 1, 1, 0
    while i < pos:
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i)
            j = pos if j < 0 or j > pos else j
            col += j - i
            i = j
            continue
        if ch in "\"'":
            j = text.find(ch, i + 1)
            k = text.find("\n", i + 1)
            if j >= 0 and (k < 0 or j < k) and j < pos:
                col += j + 1 - i
                i = j + 1
                continue
        if ch in _CLOSERS:
            stack.append((ch, line, col))
        elif ch in ")]}" and stack and _CLOSERS[stack[-1][0]] == ch:
            stack.pop()
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    return stack


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


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _position(text: str, pos: int) -> tuple[int, int]:
    start = _line_start(text, pos)
    return text.count("\n", 0, start) + 1, pos - start + 1


_WORD = re.compile(r"[A-Za-z0-9_.]")


def _bad_number(text: str, pos: int) -> tuple[int, str] | None:
    """A token glued to a number before it (1.2.3, 2x, 1e): (start, the whole run)."""
    if pos == 0 or not _WORD.match(text[pos - 1]):
        return None
    start = pos
    while start > 0 and _WORD.match(text[start - 1]):
        start -= 1
    end = pos
    while end < len(text) and _WORD.match(text[end]):
        end += 1
    run = text[start:end]
    if not re.match(r"[0-9.]", run):
        return None
    return start, run


def _syntax_error(text: str, file: str, e) -> Diagnostic:
    """One plain-words Diagnostic for lark's UnexpectedToken."""
    tok = e.token
    try:
        expected = set(e.interactive_parser.accepts())
    except Exception:   # noqa: BLE001 - fall back to the LALR state's lookaheads
        expected = set(e.expected)
    at_end = tok.type == "$END" or tok.start_pos is None
    pos = len(text.rstrip("\n")) if at_end else tok.start_pos
    line, col = _position(text, pos)
    opened = _open_brackets(text, pos)
    first_on_line = text[_line_start(text, pos):pos].strip() == ""
    keyword = tok.type != "$END" and str(tok) in KEYWORDS

    # a bracket left open: point at the bracket, not where the parser gave up
    if opened:
        ch, bline, bcol = opened[-1]
        balanced = len(_open_brackets(text, len(text))) == 0
        # the line where the parser stopped starts a statement: 'loss mse(p, y)'
        starts = re.match(r"[ \t]*(?:" + "|".join(KEYWORDS) + r")\b(?![ \t]*=)",
                          text[_line_start(text, pos):])
        if at_end or (bline < line and starts) or \
                (first_on_line and (keyword or (not balanced and ch != "{"))):
            later = "the end of the file" if at_end else f"the next statement on line {line}"
            how = ("a train block ends with '}' on a line of its own" if ch == "{" else
                   "a statement continues over lines only inside ( ) or [ ]")
            return Diagnostic(Span(file, bline, bcol), f"'{ch}' is not closed",
                              f"close it with '{_CLOSERS[ch]}' before {later}; {how}")

    # a malformed number: 1.2.3, 2x, 1e
    if tok.type in ("NUMBER", "NAME"):
        bad = _bad_number(text, pos)
        if bad:
            start, run = bad
            hint = "numbers are written like 3, 0.5, .5 or 1e-3"
            m = re.fullmatch(r"([0-9.]+)([A-Za-z_]\w*)", run)
            if m and not re.fullmatch(r"[eE]\d*", m.group(2)):
                hint += f"; a product is written {m.group(1)} * {m.group(2)}"
            bline, bcol = _position(text, start)
            return Diagnostic(Span(file, bline, bcol, bcol + len(run)),
                              f"'{run}' is not a number", hint)

    # a declaration without its shape: input x, param w = zeros
    if expected == {"LSQB"}:
        m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", text[:pos])
        if m:
            name = m.group(1)
            nline, ncol = _position(text, m.start(1))
            return Diagnostic(Span(file, nline, ncol, ncol + len(name)),
                              f"'{name}' needs a shape, e.g. {name}[4]",
                              "the shape of one example, in brackets; the batch axis is "
                              "never written")

    # a keyword used as a name: input = x, loss = 3
    prev = re.search(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*$", text[_line_start(text, pos):pos])
    if tok.type == "EQUAL" and prev and prev.group(1) in KEYWORDS:
        kw = prev.group(1)
        kline, kcol = _position(text, _line_start(text, pos) + prev.start(1))
        return Diagnostic(Span(file, kline, kcol, kcol + len(kw)),
                          f"'{kw}' is a keyword, not a name",
                          "the keywords " + ", ".join(KEYWORDS) + " start statements; "
                          "pick another name")

    # a misspelt keyword: targt y[1]
    if prev and tok.type != "EQUAL" and prev.group(1) not in KEYWORDS and \
            not any(c == "{" for c, _, _ in opened):
        word = prev.group(1)
        guess = did_you_mean(word, KEYWORDS)
        if guess:
            wline, wcol = _position(text, _line_start(text, pos) + prev.start(1))
            return Diagnostic(Span(file, wline, wcol, wcol + len(word)),
                              f"unknown keyword '{word}'", guess)

    if "LBRACE" in expected:            # after 'train' a newline may come before '{'
        expected = {"LBRACE"}
    msg = f"unexpected {_describe(tok)}; expected {_words(expected)}"
    hint = None
    inner = opened[-1][0] if opened else None
    if expected == {"LBRACE"}:
        hint = "the settings follow in braces, on the same line or the next: train { ... }"
    elif keyword and "_NL" in expected:
        hint = f"each statement goes on its own line; start '{tok}' on a new line"
    elif keyword:
        hint = f"'{tok}' is a keyword and starts its own statement; pick another name"
    elif tok.type in ("NAME", "NUMBER", "STRING") and "COMMA" in expected:
        what = "sizes" if inner == "[" else "arguments"
        hint = f"is a ',' missing between two {what}?"
    elif prev and "EQUAL" in expected and "_NL" not in expected:
        hint = ("a train setting is written KEY = VALUE" if inner == "{" else
                "a statement starts with a keyword (" + ", ".join(KEYWORDS) +
                ") or defines a value: NAME = EXPR")
    elif tok.type in ("NAME", "NUMBER", "STRING", "LPAR") and "_NL" in expected and \
            not first_on_line:
        hint = "each statement goes on its own line"
    elif tok.type == "EQUAL":
        hint = "'=' appears once in a statement, after the name it defines: NAME = EXPR"
    elif tok.type in ("RPAR", "RSQB", "RBRACE") and not any(
            _CLOSERS[c] == str(tok) for c, _, _ in opened):
        hint = f"this '{tok}' closes nothing"
    return Diagnostic(Span(file, line, col), msg,
                      hint or _what_goes_here(text, pos, tok, expected, inner))


_DECLARE = {"model": "model xor", "input": "input x[2]", "target": "target y[1]",
            "param": "param w[2, 1] = zeros", "output": "output p = dense(h, 1)"}
SHAPE_HINT = ("a shape lists sizes, whole numbers of 1 or more separated by commas: x[2], "
              "x[1, 8, 8]")


def _what_goes_here(text: str, pos: int, tok: Token, expected: set, inner) -> str:
    """The hint of a syntax error that no more particular rule explains: what may
    stand where the parser stopped, from the statement's keyword, the bracket
    it is in, or the token before."""
    before = text[:pos].rstrip(" \t")
    prev = before[-1:] if before and before[-1] != "\n" else ""
    first = re.match(r"[ \t]*([A-Za-z_]\w*)", text[_line_start(text, pos):])
    keyword = first.group(1) if first and first.group(1) in _DECLARE else None
    if inner == "[" and "NUMBER" in expected and "NAME" not in expected:
        return SHAPE_HINT
    if {"NAME", "NUMBER", "LPAR"} <= expected:           # a value is missing
        if prev == "(":
            return "a value is missing after '(': a name, a number, a call or ( ... )"
        if prev == ",":
            return "a value is missing after ','; give it, or delete the ','"
        if prev == "=":
            return "a value is missing after '=': a name, a number, a call or ( ... )"
        if prev in ("+", "-", "*", "/", "@", "^"):
            return f"'{prev}' needs a value on each side"
        return "a value goes here: a name, a number, a call or ( ... )"
    if "NAME" in expected and "RBRACE" in expected:
        return "a train setting is written KEY = VALUE, one per line, e.g. epochs = 10"
    if expected == {"NAME"} and keyword:
        return f"'{keyword}' is followed by the name it declares, e.g. {_DECLARE[keyword]}"
    if "EQUAL" in expected and keyword:
        return f"write it as {_DECLARE[keyword]}" + (
            ", or output p for a value defined before" if keyword == "output" else "")
    if expected == {"RPAR"} and tok.type == "COMMA":
        return ("parentheses group one value; a call has its function's name before "
                "'(': dense(h, 10)")
    if tok.type == "LSQB":
        return ("values are not indexed: [ ] gives a shape only after input, target "
                "and param")
    if tok.type == "LBRACE":
        return "'{' opens only a train block: train { ... }"
    if "_NL" in expected and prev:
        return (f"the statement is complete before this '{tok}'; delete it, or check the "
                "brackets before it")
    return ("a statement starts with a keyword (" + ", ".join(KEYWORDS) +
            ") or defines a value: NAME = EXPR")


def parse(source: str, file: str = "<string>") -> ast.Program:
    """Parse .nn text; raise CompileError with one diagnostic on a syntax error."""
    if source.startswith("\ufeff"):    # a UTF-8 byte order mark, as some editors write
        source = source[1:]
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedCharacters as e:
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        hint = None
        shown = f"'{ch}'"
        if not ch.isascii():
            shown = f"U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed').lower()})"
            hint = "outside comments and quoted paths a model is written in ASCII"
            if ch in _LOOKALIKES:
                hint = f"did you mean '{_LOOKALIKES[ch]}'?"
        elif not ch.isprintable():
            shown = f"U+{ord(ch):04X} (a control character)"
            hint = "the file holds a control character here; delete it"
        elif ch in "\"'":
            hint = "a quoted path must end on the same line"
        elif ch == "{":
            hint = "'{' opens only a train block: train { ... }"
        elif ch == ";":
            hint = "a statement ends at the end of its line; no ';' is needed"
        elif ch == ".":
            hint = "'.' appears only in numbers such as 0.5; a comment starts with '#'"
        else:
            hint = (f"'{ch}' has no meaning in a model: the operators are + - * / @ ^, "
                    "and a comment starts with '#'")
        diag = Diagnostic(Span(file, e.line, e.column), f"unexpected character {shown}", hint)
        raise CompileError([diag], source) from None
    except lark.exceptions.UnexpectedToken as e:
        raise CompileError([_syntax_error(text, file, e)], source) from None
    except lark.exceptions.UnexpectedEOF as e:
        lines = text.rstrip("\n").split("\n")
        diag = Diagnostic(Span(file, len(lines), len(lines[-1]) + 1),
                          f"unexpected end of the file; expected {_words(e.expected)}",
                          "the file ends inside a statement; complete it")
        raise CompileError([diag], source) from None
    program = ast.Program(file, source, _ToAst(file).transform(tree))
    _check_nesting(program, source)
    return program


MAX_NESTING = 200   # as CPython's parser limits nested brackets to 200


def _check_nesting(program: ast.Program, source: str) -> None:
    """Every expression nests at most MAX_NESTING levels, so the passes that
    walk an expression recursively stay far inside Python's recursion limit."""
    for s in program.statements:
        for e in [s.expr] + [it.value for it in s.items]:
            deep = e is not None and ast.too_deep(e, MAX_NESTING)
            if deep:
                diag = Diagnostic(
                    deep.span, f"this expression nests more than {MAX_NESTING} operations "
                    "and calls inside one another",
                    "split it into named steps on lines of their own, e.g. "
                    "a = x1 + x2 + x3 then s = a + x4")
                raise CompileError([diag], source)
