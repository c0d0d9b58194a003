"""Diagnostics: every fault a user can cause ends here, rendered as

    FILE:LINE:COL: error: WHAT
        source line
        ^
    hint: HOW TO FIX

CompileError carries one or more Diagnostics (semantic checks collect all of
them before stopping); DataError names a data file and, where known, a row,
or a span of the model file. A warning is a Diagnostic that does not stop
compiling (a model that trains, but not as its author meant): the same text
with "warning:", raised as ModelWarning through Python's warnings module.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A position in a .nn file: 1-based line and column."""
    file: str
    line: int
    column: int
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    span: Span | None
    message: str
    hint: str | None = None
    severity: str = "error"          # or "warning"

    def render(self, source: str | None = None) -> str:
        where = f"{self.span}: " if self.span else ""
        lines = [f"{where}{self.severity}: {self.message}"]
        if self.span and source is not None:
            text = source.splitlines()
            if 1 <= self.span.line <= len(text):
                src = text[self.span.line - 1].rstrip("\r\n").replace("\t", " ")
                width = 1
                if self.span.end_column and self.span.end_column > self.span.column:
                    width = self.span.end_column - self.span.column
                src, at, width = _window(src, self.span.column - 1, width)
                lines.append("    " + src)
                lines.append("    " + " " * at + "^" * width)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


SHOWN = 100   # characters of a source line shown around the caret


def _window(src: str, at: int, width: int) -> tuple[str, int, int]:
    """A long line cut to SHOWN characters around column `at` (0-based), with
    '...' where it was cut: (text, caret column in it, caret width)."""
    if len(src) <= SHOWN:
        return src, at, width
    start = max(0, min(at - SHOWN // 2, len(src) - SHOWN))
    head = "..." if start else ""
    tail = "..." if start + SHOWN < len(src) else ""
    width = max(1, min(width, start + SHOWN - at))
    return head + src[start:start + SHOWN] + tail, len(head) + at - start, width


class NNCompileError(Exception):
    """Base of the errors a user can cause; str() is the full rendered text."""


class CompileError(NNCompileError):
    """A model that cannot be compiled; holds every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic], source: str | None = None):
        self.diagnostics = list(diagnostics)
        self.source = source
        super().__init__("\n".join(d.render(source) for d in self.diagnostics))


class ModelWarning(UserWarning):
    """A model that compiles and trains, but likely not as meant (softmax
    applied twice before a loss); str() is the rendered FILE:LINE:COL: warning."""


class DataError(NNCompileError):
    """A data, weights or input file that does not fit: names the file and the row.
    A fault the model file itself shows (a train block without data) has a span
    instead, and reads as a Diagnostic: FILE:LINE:COL, the line and a caret
    when the source is given, the hint."""

    def __init__(self, message: str, file: str | None = None, row: int | None = None,
                 hint: str | None = None, span: Span | None = None, source: str | None = None):
        if span is not None and file is None:
            file = span.file
        self.message, self.file, self.row, self.hint = message, file, row, hint
        self.span, self.source = span, source
        if span is not None:
            super().__init__(Diagnostic(span, message, hint).render(source))
            return
        where = ""
        if file is not None:
            where = f"{file}:{row}: " if row is not None else f"{file}: "
        text = f"{where}error: {message}"
        if hint:
            text += f"\nhint: {hint}"
        super().__init__(text)


def plural(n: int, word: str) -> str:
    """'1 row', '3 rows'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def size_text(n: float) -> str:
    """A byte count for people: 12 bytes, 18.8 KiB, 41.1 TiB."""
    if n < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"


def closest(name: str, candidates) -> str | None:
    """The defined name nearest to a misspelt one, or None when nothing is close."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, candidates) -> str | None:
    best = closest(name, candidates)
    return f"did you mean '{best}'?" if best else None
