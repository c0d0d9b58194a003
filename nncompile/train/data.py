"""Training data: built-in sets, data files, and their preparation for a model.

Conventions:

* A Dataset holds what was loaded, unshaped: `x` is float32 (n, features...)
  as stored (2-D for csv and the built-in sets, (n, 28, 28) for MNIST idx);
  `y` is either integer class labels (n,) (`labels` True) or float32 values
  (n, k).
* `prepare` fits a Dataset to a model: each example is reshaped to the input
  shape, labels become one-hot rows (target with one entry per class) or a
  float column (target [1]), a seeded permutation picks the held-out rows, and
  normalisation statistics come from the training rows only.
* Every fault the user can cause raises `DataError` naming the file and,
  for csv, the 1-based line (and the column where known), with a hint.
* Everything random draws from `np.random.default_rng(seed)`: the same seed
  gives the same arrays.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncompile.diagnostics import DataError, did_you_mean, plural

BUILTIN: tuple[str, ...] = ("and", "or", "nand", "xor", "not", "digits", "circles", "spiral",
                            "sine")
NORMALIZE: tuple[str, ...] = ("none", "minmax", "standardize")
SUPPORTED = (".csv, .npz, MNIST idx files (.idx, *-ubyte, optionally .gz), "
             "or a folder holding train-images-idx3-ubyte and train-labels-idx1-ubyte")

_GATES = {"and": (0, 0, 0, 1), "or": (0, 1, 1, 1), "nand": (1, 1, 1, 0), "xor": (0, 1, 1, 0)}
_DIGITS = Path(__file__).resolve().parent.parent / "data" / "digits.npz"
_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801


@dataclass
class Dataset:
    x: np.ndarray          # float32 (n, features...) as stored
    y: np.ndarray          # int64 labels (n,) when labels, else float32 (n, k)
    labels: bool           # True when y holds class labels
    source: str            # 'xor', 'digits' or the file path, for messages
    default_split: float   # 0.0 for the gates, 0.2 for everything else
    lines: list | None = None   # a csv's file line of each example, for messages


@dataclass
class Split:
    """float32, C-contiguous; x is (n, *input_shape), y is (n, *target_shape).
    stats: None, or (shift, scale) per feature of the flattened example: the
    normalisation x -> (x - shift) / scale that made x_train and x_test."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    stats: tuple | None = None


# ---------------------------------------------------------------- built-in sets

def load_builtin(name: str, seed: int) -> Dataset:
    """A built-in set; the generated ones (circles, spiral, sine) depend on seed.

    Gates: the rows (0,0),(0,1),(1,0),(1,1), y float (4, 1); not: the rows
    (0),(1), y (1),(0).
    digits: UCI 8x8 digits, x (1797, 64) in 0..16, labels 0..9.
    circles: 400 points, 200 on radius 1 (label 0) then 200 on radius 0.5
    (label 1), uniform angles, gaussian noise 0.08 on both coordinates.
    spiral: the CS231n spiral, 3 classes x 100 points in class order, labels 0..2.
    sine: 256 points, x uniform in [-pi, pi], y = sin(x), both (256, 1).
    """
    rng = np.random.default_rng(seed)
    f32 = np.float32
    if name in _GATES:
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=f32)
        y = np.array(_GATES[name], dtype=f32).reshape(4, 1)
        return Dataset(x, y, False, name, 0.0)
    if name == "not":
        return Dataset(np.array([[0], [1]], dtype=f32), np.array([[1], [0]], dtype=f32),
                       False, name, 0.0)
    if name == "digits":
        with np.load(_DIGITS, allow_pickle=False) as z:
            x, y = z["x"].astype(f32), z["y"].astype(np.int64)
        return Dataset(x, y, True, name, 0.2)
    if name == "circles":
        theta = rng.uniform(0.0, 2 * np.pi, 400)
        radius = np.repeat([1.0, 0.5], 200)
        x = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
        x += rng.normal(0.0, 0.08, x.shape)
        return Dataset(x.astype(f32), np.repeat([0, 1], 200).astype(np.int64), True, name, 0.2)
    if name == "spiral":
        parts = []
        for k in range(3):
            r = np.linspace(0.0, 1.0, 100)
            t = np.linspace(4.0 * k, 4.0 * k + 4.0, 100) + rng.normal(0.0, 0.2, 100)
            parts.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        y = np.repeat(np.arange(3), 100).astype(np.int64)
        return Dataset(np.concatenate(parts).astype(f32), y, True, name, 0.2)
    if name == "sine":
        x = rng.uniform(-np.pi, np.pi, (256, 1))
        return Dataset(x.astype(f32), np.sin(x).astype(f32), False, name, 0.2)
    raise _unknown_builtin(name)


def _unknown_builtin(name: str) -> DataError:
    known = "built-in sets: " + ", ".join(BUILTIN) + '; a file path goes in quotes'
    guess = did_you_mean(name, BUILTIN)
    return DataError(f"unknown data set '{name}'", hint=f"{guess} {known}" if guess else known)


def load(spec: str, is_path: bool, seed: int, n_features: int, n_targets: int) -> Dataset:
    """`data = NAME` (is_path False) or `data = "PATH"` (is_path True)."""
    if is_path:
        return load_file(spec, n_features, n_targets)
    if spec not in BUILTIN:
        raise _unknown_builtin(spec)
    return load_builtin(spec, seed)


# ---------------------------------------------------------------- files

def load_file(path: str, n_features: int, n_targets: int) -> Dataset:
    """Load by extension: .csv, .npz, MNIST idx (optionally gzip), or an MNIST folder.

    n_features / n_targets are the element counts of the model's input and
    target; csv needs them to split its columns, the other formats ignore them
    except that a 1-D npz `y` counts as class labels when n_targets > 1.
    """
    p = Path(path)
    if not p.exists():
        mnist = "; docs/mnist.md says where to get MNIST's files" \
            if is_idx(path) or "mnist" in path.lower() else ""
        raise DataError("no such file or folder", file=path,
                        hint=f"looked for {p.resolve()}; supported: {SUPPORTED}{mnist}")
    if p.is_dir():
        return _load_mnist_dir(path)
    name = p.name.lower()
    if name.endswith(".csv"):
        return _load_csv(path, n_features, n_targets)
    if name.endswith(".npz"):
        return _load_npz(path, n_targets)
    if is_idx(path):
        return _load_idx_pair(path, _labels_path(path))
    raise DataError(f"unsupported data file type '{p.suffix or p.name}'", file=path,
                    hint=f"supported: {SUPPORTED}")


FLOAT32_MAX = float(np.finfo(np.float32).max)
_PLAIN = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _number(cell: str) -> float | None:
    """The number in a csv cell when it is a plain decimal number (3, -0.5,
    1e-3; not 1_0, nan or inf) that float32 holds (at most about 3.4e38 in
    size), or None."""
    cell = cell.strip()
    if not _PLAIN.fullmatch(cell):
        return None
    v = float(cell)
    return v if abs(v) <= FLOAT32_MAX else None


def _looks_numeric(cell: str) -> bool:
    """A number, one beyond float32, nan or inf: a cell no header has."""
    cell = cell.strip()
    return bool(_PLAIN.fullmatch(cell)) or cell.lower().lstrip("+-") in ("nan", "inf",
                                                                          "infinity")


def _csv_rows(path: str) -> list:
    """[(line, cells)] of the file's non-blank rows, line being the 1-based
    line the row starts on; a DataError at its line (and column) for bytes
    that are not UTF-8, for a fault of quotes, and for a first row separated
    by ';' or tabs."""
    hint = "save the file as UTF-8 text: one example per line, its numbers separated by commas"
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror})", file=path,
                        hint="check that the file is readable") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        at, data = e.start, e.object                # e.object: the bytes after a BOM
        col = data.count(b",", data.rfind(b"\n", 0, at) + 1, at) + 1
        raise DataError(f"column {col}: byte 0x{data[at]:02x} is not UTF-8 text", file=path,
                        row=data.count(b"\n", 0, at) + 1, hint=hint) from None
    lines = io.StringIO(text, newline="").readlines()   # the lines as csv counts them
    reader = csv.reader(lines, strict=True)
    rows, end = [], 0
    quote = "numbers need no quotes: remove the stray '\"'"
    try:
        for row in reader:
            broken = next((i for i, c in enumerate(row) if "\n" in c or "\r" in c), None)
            if broken is not None:
                raise DataError(f"column {broken + 1}: a quoted cell runs from line {end + 1} "
                                f"to line {reader.line_num}: is a '\"' unbalanced?",
                                file=path, row=end + 1, hint=quote)
            if any(c.strip() for c in row):
                if not rows:
                    _check_separator(path, end + 1, lines[end])
                rows.append((end + 1, row))
            end = reader.line_num
    except csv.Error as e:
        if not rows and "expected after" in str(e):     # "a";"b": ';' or tabs between cells
            _check_separator(path, end + 1, lines[end])
        what = "unbalanced quote: a '\"' opens a cell that no '\"' closes" \
            if "end of data" in str(e) else "a quoted cell goes on after its closing '\"'" \
            if "expected after" in str(e) else None
        what = f"column {_quote_column(''.join(lines[end:]))}: {what}" if what \
            else f"cannot read as csv text ({e})"
        raise DataError(what, file=path, row=end + 1, hint=quote) from None
    return rows


_QUOTED = re.compile(r'"[^"]*(?:""[^"]*)*"')  # a quoted csv cell, '""' being a '"' in it
_UNQUOTED = re.compile(r"[^,\r\n]*")


def _quote_column(text: str) -> int:
    """The 1-based column of the cell whose quotes break the csv row that
    text starts with: a '"' opens it and none closes it, or it goes on after
    its closing '"'. A '"' is a quote only at the start of a cell, as for csv."""
    col, at = 1, 0
    while True:
        if text.startswith('"', at):
            m = _QUOTED.match(text, at)
            if m is None or text[m.end():m.end() + 1] not in ("", ",", "\r", "\n"):
                return col
            at = m.end()
        else:
            at = _UNQUOTED.match(text, at).end()
        if not text.startswith(",", at):
            return col
        col, at = col + 1, at + 1


def _check_separator(path: str, line: int, text: str) -> None:
    """A DataError when the first row's text holds ';' or a tab in a cell,
    outside quotes: a file separated by them. A quoted header name may hold
    either."""
    bare = re.sub("(^|,)" + _QUOTED.pattern, r"\1", text)   # the row less its quoted cells
    for sep, name in ((";", "';'"), ("\t", "tabs")):
        if any(sep in c.strip() for c in bare.split(",")):
            raise DataError(f"cells are separated by {name}; nncompile reads comma-separated "
                            "values", file=path, row=line,
                            hint="save the file with ',' between cells (and '.' as the decimal "
                                 "mark: 0.5, not 0,5)")


def _load_csv(path: str, nf: int, nt: int) -> Dataset:
    """Comma separated, optional header, the last columns are the target.

    A row has nf + nt columns (float targets) or, when nt > 1, nf + 1 columns
    (the last one an integer class label 0..nt-1); all rows use the same form.
    nt 0 reads input examples only (predict). Every cell is a plain decimal
    number. The first row is a header when none of its cells is a number (so
    a typo in the first example's cells is reported, not taken for a header).
    Blank lines are skipped.
    """
    rows = _csv_rows(path)
    if not rows:
        raise DataError("the file is empty", file=path,
                        hint="a csv row holds the input values, then the target values" if nt
                        else "give one input example per row, its values separated by commas")
    first_line, first = rows[0]
    numbers = [c.strip() for c in first if _looks_numeric(c)]
    if not numbers:
        rows = rows[1:]                                     # a header
        if not rows:
            raise DataError("the file has a header but no data rows", file=path,
                            hint="add one row per example below the header")

    forms = {nf + nt: f"{nf + nt} ({plural(nf, 'feature')} + {plural(nt, 'target')})"}
    if nt == 0:                                             # inputs only (predict)
        forms = {nf: f"{nf} (one input example)"}
    if nt > 1:
        forms[nf + 1] = f"{nf + 1} ({plural(nf, 'feature')} + 1 class label)"
    width = len(rows[0][1])
    values = []
    for line, row in rows:
        if len(row) != width or width not in forms:
            need = forms[width] if width in forms else " or ".join(forms.values())
            hint = "each row holds an example's input values, then its target" if nt else None
            if len(row) == 1 and (";" in row[0] or "\t" in row[0]):
                hint = "cells must be separated by commas"
            elif width in forms and nt > 1:
                hint = f"line {rows[0][0]} has {width} columns; every row needs the same layout"
            raise DataError(f"row has {plural(len(row), 'column')}; the model needs {need}",
                            file=path, row=line, hint=hint)
        vals = [_number(c) for c in row]
        if None in vals:
            col = vals.index(None)
            raise _cell_error(path, line, col, row[col].strip(), nt,
                              numbers if line == first_line else None)
        values.append(vals)
    data = np.asarray(values, dtype=np.float64)
    x = data[:, :nf].astype(np.float32)
    if width == nf + nt:
        return Dataset(x, data[:, nf:].astype(np.float32), False, path, 0.2,
                       [line for line, _ in rows])
    last = data[:, nf]
    for (line, row), v in zip(rows, last):
        if v != int(v) or not 0 <= v < nt:
            raise DataError(f"class label '{row[-1].strip()}' is not an integer in 0..{nt - 1}",
                            file=path, row=line,
                            hint=f"with {width} columns the last one is a class label "
                                 f"for the {nt}-entry target")
    return Dataset(x, last.astype(np.int64), True, path, 0.2, [line for line, _ in rows])


def _cell_error(path: str, line: int, col: int, cell: str, nt: int,
                first_numbers: list | None) -> DataError:
    """The fault of a csv cell that _number refuses. first_numbers: the
    number cells of the file's first row when this is that row."""
    if _PLAIN.fullmatch(cell):
        return DataError(f"column {col + 1}: '{cell}' is beyond what float32 holds (about "
                         "3.4e38)", file=path, row=line,
                         hint="rescale the data; normalize = standardize then maps it near 0"
                         if nt else "float32 holds numbers up to about 3.4e38; give the inputs "
                                    "in the units of the training data")
    try:
        plain = math.isfinite(float(cell))                  # 1_0, or digits of other scripts
    except ValueError:
        plain = False
    what = "is not a plain decimal number" if plain else "is not a finite number"
    hint = "every cell is a number such as 3, -0.5 or 1e-3; only the first line may be a header"
    if first_numbers and not _looks_numeric(cell):         # a header or an example?
        shown = ", ".join(f"'{c}'" for c in first_numbers[:3])
        hint = (f"line {line} is an example, as it holds numbers ({shown}): every cell of an "
                "example is a number such as 3, -0.5 or 1e-3, and no cell of a header is "
                "(name a column x1, not 1)")
    return DataError(f"column {col + 1}: '{cell}' {what}", file=path, row=line, hint=hint)


def damaged_numpy_file(path: str) -> DataError | None:
    """The DataError for an .npy or .npz file that numpy failed to read when
    it is cut short or damaged (judged by its first bytes, the .npy header's
    shape and dtype against the file's size, and whether zipfile reads every
    member of an .npz), or None when it looks whole: its fault is another."""
    try:
        fh = open(path, "rb")
    except OSError:
        return None
    with fh:
        head = fh.read(6)
        fh.seek(0)
        if head == b"\x93NUMPY":
            hint = "write it again with numpy.save; a copy cut short in transfer looks like this"
            try:
                version = np.lib.format.read_magic(fh)
                shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)(fh)
            except ValueError:
                return DataError("truncated or corrupt .npy file (not a complete .npy header)",
                                 file=path, hint=hint)
            have, need = os.path.getsize(path), fh.tell() + math.prod(shape) * dtype.itemsize
            if dtype.hasobject or have >= need:
                return None
            return DataError(f"truncated or corrupt .npy file: it holds {have} bytes, its header "
                             f"says {need}", file=path, hint=hint)
        if b"PK".startswith(head[:2]):                  # a zip archive, or what is left of one
            try:
                with zipfile.ZipFile(fh) as z:
                    if z.testzip() is None:
                        return None
            except (zipfile.BadZipFile, zlib.error, EOFError):
                pass
            return DataError("truncated or corrupt .npz file (not a complete zip archive)",
                             file=path, hint="write it again with numpy.savez; a copy cut short "
                                             "in transfer looks like this")
    return None


def _load_npz(path: str, nt: int) -> Dataset:
    """Arrays `x` (n, features...) and `y`: a 1-D y is class labels when nt > 1
    (floats must be whole numbers), any other y is float values reshaped to
    (n, k)."""
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a DataError
        raise damaged_numpy_file(path) or DataError(
            f"not a readable .npz file ({e})", file=path,
            hint="save with np.savez(path, x=inputs, y=targets)") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError("not an .npz archive (a single array?)", file=path,
                        hint="save with np.savez(path, x=inputs, y=targets)")
    with z:
        missing = [k for k in ("x", "y") if k not in z.files]
        if missing:
            found = ", ".join(z.files) or "none"
            raise DataError(f"no array '{missing[0]}' in the archive (found: {found})",
                            file=path, hint="save with np.savez(path, x=inputs, y=targets)")
        try:
            x, y = z["x"], z["y"]
        except Exception as e:  # noqa: BLE001 - a damaged member is a DataError too
            raise damaged_numpy_file(path) or DataError(
                f"cannot read the arrays ({e})", file=path,
                hint="save numeric arrays: np.savez(path, x=inputs, y=targets)") from None
    for key, a in (("x", x), ("y", y)):
        if np.iscomplexobj(a):
            raise DataError(f"array '{key}' holds complex numbers", file=path,
                            hint="keep the real part (a.real) or the magnitude (abs(a))")
        if a.ndim == 0 or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise DataError(f"array '{key}' must be numeric with one row per example "
                            f"(it is {a.dtype} {list(a.shape)})", file=path,
                            hint="convert it with .astype(np.float32) before np.savez")
    if len(x) != len(y):
        raise DataError(f"'x' has {len(x)} examples but 'y' has {len(y)}", file=path,
                        hint="row i of y is the target of row i of x")
    if len(x) == 0:
        raise DataError("the arrays hold no examples", file=path,
                        hint="x and y need at least one row")
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    with np.errstate(over="ignore", invalid="ignore"):     # beyond float32: inf, below
        x = x.astype(np.float32)
    bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))
    if len(bad):
        raise DataError(f"'x' example {bad[0][0]} (counting from 0) holds a value that is not "
                        "a finite float32 number (NaN, infinite, or beyond about 3.4e38)",
                        file=path, hint="remove or fill the NaN and infinite values first")
    labels = y.ndim == 1 and nt > 1             # class labels, as a csv's one last column
    if labels and np.issubdtype(y.dtype, np.integer):
        return Dataset(x, y.astype(np.int64), True, path, 0.2)
    with np.errstate(over="ignore", invalid="ignore"):
        values = y.reshape(len(y), -1).astype(np.float32)
    if not np.isfinite(values).all():
        raise DataError(f"'y' example {int(np.argwhere(~np.isfinite(values))[0][0])} "
                        "(counting from 0) holds a value that is not a finite float32 number",
                        file=path, hint="remove or fill the NaN and infinite values first")
    if labels:                                  # float labels: each a whole number
        y = y.astype(np.float64)
        bad = np.flatnonzero((y != np.round(y)) | (np.abs(y) >= 2 ** 31))
        if len(bad):
            raise DataError(f"a 1-D 'y' holds class labels for the {nt}-entry target, but "
                            f"example {bad[0]} (counting from 0) is {y[bad[0]]:g}, not a whole "
                            f"number 0..{nt - 1}", file=path,
                            hint=f"save the labels 0..{nt - 1} as integers (y.astype(int)), or "
                                 f"target values as a 'y' of shape (n, {nt})")
        return Dataset(x, y.astype(np.int64), True, path, 0.2)
    return Dataset(x, values, False, path, 0.2)


def _labels_path(images: str) -> str:
    """The MNIST labels file beside an images file (same name, images-idx3 ->
    labels-idx1, or images.idx3 -> labels.idx1), with or without .gz."""
    p = Path(images)
    name = p.name
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
        if a in name:
            guess = p.with_name(name.replace(a, b))
            other = Path(str(guess)[:-3]) if guess.name.endswith(".gz") else Path(f"{guess}.gz")
            return str(other if not guess.exists() and other.exists() else guess)
    if "labels-idx1" in name or "labels.idx1" in name:
        raise DataError("this is the labels file; give the images file", file=images,
                        hint="the labels are found from the images file's name")
    raise DataError("cannot tell where the labels file is", file=images,
                    hint="name the images file like train-images-idx3-ubyte; the labels "
                         "are read from train-labels-idx1-ubyte beside it")


def _load_mnist_dir(folder: str) -> Dataset:
    d = Path(folder)
    found = {}
    for kind in ("images-idx3", "labels-idx1"):
        names = [d / f"train-{kind}-ubyte", d / f"train-{kind}-ubyte.gz"]
        hit = [n for n in names if n.is_file()]
        if not hit:
            raise DataError(f"the folder has no train-{kind}-ubyte[.gz]", file=folder,
                            hint=f"a data folder holds MNIST idx files; supported: {SUPPORTED}")
        found[kind] = str(hit[0])
    return _load_idx_pair(found["images-idx3"], found["labels-idx1"])


def _read_idx(path: str, magic: int) -> np.ndarray:
    """One big-endian idx file of unsigned bytes (gzip detected by content)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError("no such file", file=path,
                        hint="MNIST images need their labels file beside them") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"corrupt or truncated gzip data ({e})", file=path,
                            hint="download the file again") from None
    kind = "images" if magic == _IDX_IMAGES else "labels"
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        got = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else \
            f"missing (the file has {plural(len(raw), 'byte')})"
        raise DataError(f"bad idx magic number {got}; expected 0x{magic:08x} for {kind}",
                        file=path, hint="is this an MNIST idx file of the right kind?")
    ndim = magic & 0xFF
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"truncated idx file: {len(raw)} bytes, the header alone needs {head}",
                        file=path, hint="download the file again")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    need = head + math.prod(dims)
    if len(raw) != need:
        what = "truncated idx file" if len(raw) < need else "idx file longer than its header says"
        raise DataError(f"{what}: {len(raw)} bytes, header {list(dims)} needs {need}", file=path,
                        hint="download the file again")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def is_idx(path: str) -> bool:
    """An MNIST idx file by its name (.idx3, ...ubyte; optionally .gz)."""
    name = Path(path).name.lower()
    return bool(re.search(r"(\.idx\d?|ubyte)$", name[:-3] if name.endswith(".gz") else name))


def read_images(path: str) -> np.ndarray:
    """An idx file of images (n, rows, cols) as raw float32 0..255, the
    values training reads from it (predict's input; no labels needed)."""
    return _read_idx(path, _IDX_IMAGES).astype(np.float32)


def _load_idx_pair(images: str, labels: str) -> Dataset:
    """MNIST images (n, rows, cols) as raw float32 0..255, labels as integers."""
    if not Path(labels).is_file():
        raise DataError(f"the labels file {labels} is missing", file=images,
                        hint="MNIST images need their labels file beside them")
    x = _read_idx(images, _IDX_IMAGES)
    y = _read_idx(labels, _IDX_LABELS)
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels in {labels}", file=images,
                        hint="the two files must come from the same set (train or t10k)")
    if len(x) == 0:
        raise DataError("the file holds no images", file=images,
                        hint="download the file again")
    return Dataset(x.astype(np.float32), y.astype(np.int64), True, images, 0.2)


# ---------------------------------------------------------------- preparation

def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def prepare(ds: Dataset, input_shape: tuple, target_shape: tuple, split: float,
            normalize: str, seed: int) -> Split:
    """Fit `ds` to a model with these input and target shapes (without batch).

    The held-out rows are the first round(split * n) of
    np.random.default_rng(seed).permutation(n); both parts keep the data's
    row order. Normalisation is per feature of the flattened example, with
    statistics from the training rows, applied to both parts: minmax maps
    [min, max] to [0, 1] (constant features to 0), standardize subtracts the
    mean and divides by the standard deviation (ddof 0; 0 counts as 1).
    """
    input_shape = tuple(int(d) for d in input_shape)
    target_shape = tuple(int(d) for d in target_shape)
    n = len(ds.x)
    per, need = math.prod(ds.x.shape[1:]), math.prod(input_shape)
    if per != need:
        raise DataError(f"each example has {per} values but the model's input is "
                        f"{_shape(input_shape)} ({plural(need, 'value')})", file=ds.source,
                        hint="change the model's input shape or the data to match")
    x = np.asarray(ds.x, dtype=np.float32).reshape(n, per)

    nt = math.prod(target_shape)
    if ds.labels:
        y = np.asarray(ds.y).astype(np.int64)
        if nt > 1:
            y = one_hot(y, target_shape, ds.source)
        elif nt == 1:
            y = y.astype(np.float32).reshape(n, 1)
        else:
            raise DataError(f"class labels need a target with one entry per class; "
                            f"the model's target is {_shape(target_shape)}", file=ds.source,
                            hint=f"declare the target as y[{int(y.max()) + 1 if len(y) else 2}]")
    else:
        y = np.asarray(ds.y, dtype=np.float32).reshape(n, -1)
        if y.shape[1] != nt:
            raise DataError(f"each target has {plural(y.shape[1], 'value')} but the model's "
                            f"target is {_shape(target_shape)} ({plural(nt, 'value')})",
                            file=ds.source,
                            hint="change the model's target shape or the data to match")

    if not 0.0 <= split < 1.0:
        raise DataError(f"split {split} must be at least 0 and below 1", file=ds.source,
                        hint="split is the held-out share, e.g. split = 0.2")
    n_test = int(round(split * n))
    if n - n_test < 1:
        raise DataError(f"split {split} of {n} examples leaves no training rows",
                        file=ds.source, hint="use a smaller split")
    order = np.random.default_rng(seed).permutation(n)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    x_train, x_test = x[train], x[test]

    stats = statistics(x_train, normalize)
    if stats is not None:
        x_train, x_test = normalized(x_train, stats), normalized(x_test, stats)

    def out(a, shape):
        return np.ascontiguousarray(a.reshape((len(a),) + shape), dtype=np.float32)

    return Split(out(x_train, input_shape), out(y[train], target_shape),
                 out(x_test, input_shape), out(y[test], target_shape), stats)


def statistics(x: np.ndarray, normalize: str):
    """(shift, scale), float32, per column of x (rows are examples), or None
    for `none`: minmax maps [min, max] to [0, 1] (a constant column's scale
    is infinite: it maps to 0), standardize subtracts the mean and divides
    by the standard deviation (ddof 0, taken in float64; 0 counts as 1)."""
    if normalize == "minmax":
        lo, hi = x.min(axis=0), x.max(axis=0)
        span = hi - lo
        span[span == 0] = np.inf
        return lo, span
    if normalize == "standardize":
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
        std[std == 0] = 1.0
        return mean.astype(np.float32), std.astype(np.float32)
    if normalize != "none":
        guess = did_you_mean(normalize, NORMALIZE)
        raise DataError(f"unknown normalize '{normalize}'",
                        hint=(guess + " " if guess else "") + "choose none, minmax or standardize")
    return None


def normalized(x: np.ndarray, stats: tuple) -> np.ndarray:
    """x (rows of examples, any example shape) normalised with stats, float32."""
    shift, scale = stats
    flat = np.asarray(x, np.float32).reshape(len(x), len(shift))
    return ((flat - shift) / scale).astype(np.float32, copy=False).reshape(x.shape)


def one_hot(labels, target_shape: tuple, source: str | None) -> np.ndarray:
    """Class labels 0..K-1 (K entries in the target) as one-hot float32 rows;
    a DataError naming the first label outside that range."""
    y = np.asarray(labels).astype(np.int64)
    nt = math.prod(target_shape)
    bad = np.flatnonzero((y < 0) | (y >= nt))
    if len(bad):
        hint = "class labels are 0..N-1 for a target y[N], one entry per class"
        if y.min() >= 0:
            hint += f": labels 0..{y.max()} need target y[{y.max() + 1}]"
        raise DataError(f"class label {y[bad[0]]} of example {bad[0]} (counting from 0) "
                        f"is outside 0..{nt - 1} for the target {_shape(target_shape)}",
                        file=source, hint=hint)
    return np.eye(nt, dtype=np.float32)[y]


TARGETS = {    # loss -> (what its targets must be, a hint)
    "cross_entropy": ("one-hot rows or probabilities that sum to 1",
                      "give class labels (one integer per example) or one-hot rows; for "
                      "several yes/no targets use binary_cross_entropy"),
    "binary_cross_entropy": ("targets from 0 to 1",
                             "scale the targets into [0, 1]; for other values use mse"),
    "perceptron": ("targets 0 or 1", "this perceptron rule takes 0/1 targets (step's "
                                     "outputs): write -1 targets as 0"),
}


def target_fault(y: np.ndarray, loss: str) -> tuple | None:
    """(example, what is wrong with its target) for the first example whose
    target the loss cannot take (TARGETS), or None."""
    y = np.asarray(y, np.float64).reshape(len(y), -1) if loss != "cross_entropy" else \
        np.asarray(y, np.float64)
    if loss == "cross_entropy":
        rows = y.reshape(len(y), -1, y.shape[-1]) if y.ndim > 1 else y.reshape(len(y), 1, 1)
        sums = rows.sum(-1)
        bad = (rows < 0).any(-1) | (np.abs(sums - 1) > 1e-3)
        hit = np.flatnonzero(bad.any(-1))
        if len(hit):
            i = hit[0]
            j = np.flatnonzero(bad[i])[0]
            neg = rows[i, j][rows[i, j] < 0]
            return i, f"holds {neg[0]:g}" if len(neg) else f"sums to {sums[i, j]:g}"
        return None
    bad = (y < 0) | (y > 1) if loss == "binary_cross_entropy" else (y != 0) & (y != 1)
    hit = np.argwhere(bad)
    return None if not len(hit) else (hit[0][0], f"holds {y[hit[0][0], hit[0][1]]:g}")
