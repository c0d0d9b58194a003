"""A mutation fuzzer of the command line: random edits of the samples go through
`nncompile check` and, when they still check clean, a one-epoch `nncompile run`.

Every mutant must end in exit status 0 or 1, never an exception, never a
traceback or an "internal error"; an exit status of 1 comes with the error shape
of docs/cli.md (`MODEL:LINE:COL: error:` at a real position of the file, or
`FILE: error:` for a file that cannot be used) and a hint, or, for check, a
failed gradient check; a run that succeeds reports no loss that is not a number.

The default count keeps the module quick and is the same every time (seeded).
NNC_FUZZ_MUTANTS=5000 (and NNC_FUZZ_SEED) run more offline; the failure then
lists each distinct fault once, with the first mutant that shows it.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import time

import numpy as np

from nncompile.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = {os.path.basename(f): open(f).read()
           for f in sorted(glob.glob(os.path.join(ROOT, "samples", "*.nn")))}
COUNT = int(os.environ.get("NNC_FUZZ_MUTANTS", "600"))
SEED = int(os.environ.get("NNC_FUZZ_SEED", "2026"))

TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|[A-Za-z_]\w*|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\S')
NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
NAME = re.compile(r"[A-Za-z_]\w*")
NUMBERS = ["0", "-1", "1e30", "1e-30", "nan", "inf", "3.5", "100000"]
KEYWORDS = ["model", "input", "target", "param", "output", "loss", "train"]
# names a user swaps for one another: each group holds names valid in the same place
VOCAB = [
    ["relu", "sigmoid", "tanh", "step", "leaky_relu", "exp", "log", "abs", "sqrt", "square",
     "softmax", "log_softmax"],
    ["mse", "mae", "cross_entropy", "binary_cross_entropy", "perceptron"],
    ["dense", "conv2d", "maxpool", "avgpool", "flatten", "dropout"],
    ["sum", "mean", "max", "transpose"],
    ["sgd", "adam"], ["none", "minmax", "standardize"],
    ["and", "or", "nand", "not", "xor", "digits", "circles", "spiral", "sine"],
    ["zeros", "ones", "normal", "uniform", "xavier", "he"],
    ["data", "split", "normalize", "optimizer", "batch", "accumulate", "epochs", "shuffle",
     "clip", "seed", "device", "early_stop"],
]
SHAPES = ["[]", "[0]", "[1]", "[3]", "[2, 2]", "[64]", "[1, 8, 8]", "[10]", "[2, 3, 4]",
          "[-1]", "[1.5]", "[2,]"]


def _tokens(text: str) -> list:
    """(start, end, text) of each token, comments left out."""
    return [(m.start(), m.end(), m.group()) for m in TOKEN.finditer(text)
            if not m.group().startswith("#")]


SEMANTIC = [4, 5, 8, 9]     # the edits that mostly leave a model that parses


def mutate(text: str, rng, semantic: bool = False) -> str:
    """One random edit of text (the text itself when the edit finds nothing to change);
    semantic: only numbers, names and shapes change, so most mutants still parse."""
    toks = _tokens(text)
    kind = int(rng.choice(SEMANTIC)) if semantic else int(rng.integers(10))

    def pick(pred):
        found = [t for t in toks if pred(t[2])]
        return found[int(rng.integers(len(found)))] if found else None

    def put(tok, new):
        return text if tok is None else text[:tok[0]] + new + text[tok[1]:]

    if kind == 0:                                           # delete a token
        return put(pick(lambda s: True), "")
    if kind == 1:                                           # delete a character
        i = int(rng.integers(len(text)))
        return text[:i] + text[i + 1:]
    if kind == 2:                                           # duplicate a line
        lines = text.splitlines(keepends=True)
        i = int(rng.integers(len(lines)))
        return "".join(lines[:i + 1] + lines[i:])
    if kind == 3:                                           # swap two tokens
        a, b = sorted(int(i) for i in rng.choice(len(toks), 2, replace=False))
        (s1, e1, t1), (s2, e2, t2) = toks[a], toks[b]
        return text[:s1] + t2 + text[e1:s2] + t1 + text[e2:]
    if kind == 4:                                           # replace a number
        return put(pick(NUMBER.fullmatch), str(rng.choice(NUMBERS)))
    if kind == 5:                                           # another name or a keyword
        names = sorted({t[2] for t in toks if NAME.fullmatch(t[2])}) + KEYWORDS
        return put(pick(NAME.fullmatch), str(rng.choice(names)))
    if kind == 6:                                           # drop a closing bracket
        return put(pick(lambda s: s in ")]}"), "")
    if kind == 7:                                           # a stray , = or @
        tok = toks[int(rng.integers(len(toks)))]
        return text[:tok[0]] + str(rng.choice([",", "=", "@"])) + text[tok[0]:]
    if kind == 8:                                           # another valid name of its kind
        group = next((g for g in VOCAB if pick(lambda s: s in g)), None)
        if group is None:
            return text
        return put(pick(lambda s: s in group), str(rng.choice(group)))
    shapes = [m.span() for m in re.finditer(r"\[[^\]\n]*\]", text)]  # change a shape
    if not shapes:
        return text
    s, e = shapes[int(rng.integers(len(shapes)))]
    return text[:s] + str(rng.choice(SHAPES)) + text[e:]


def mutants(count: int, seed: int):
    """(sample name, mutant text) for each of count mutants, the same for a seed;
    every other mutant has only semantic edits, to reach training more often."""
    names = sorted(SAMPLES)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        name = names[int(rng.integers(len(names)))]
        text = SAMPLES[name]
        for _ in range(int(rng.integers(1, 3))):
            text = mutate(text, rng, semantic=i % 2 == 1)
        yield name, text


def cli(argv) -> tuple:
    """(exit status, stdout, stderr) of main(argv) run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


ERROR_LINE = re.compile(r"^(.+?):(\d+):(\d+): error: ", re.M)
FILE_ERROR = re.compile(r"^(?:.+?: )?error: ", re.M)


def fault(path: str, text: str, command: str, rc, out: str, err: str) -> str | None:
    """What is wrong with one command's outcome, in a line; None when nothing is."""
    if rc not in (0, 1):
        return f"{command}: exit status {rc}"
    if "Traceback" in out + err:
        return f"{command}: a traceback"
    if "internal error" in err:
        return f"{command}: " + err.strip().splitlines()[0]
    if "something else" in err:
        return f"{command}: a message that expects 'something else'"
    if rc == 0:
        for ln in err.splitlines():
            if not ln.startswith(("    ", "hint: ", f"{path}:")):
                return f"{command}: exit status 0 with stderr: {ln.replace(path, 'MODEL')}"
        lines = [ln for ln in out.splitlines() if ln.startswith(("epoch ", "final:"))]
        if any(re.search(r"\b(nan|inf)\b", ln) for ln in lines):
            return f"{command}: exit status 0 with a loss that is not a number"
        return None
    if command == "check" and "worst relative error" in out and "FAILED" in out:
        return None                      # a failed gradient check: stdout says so
    if not FILE_ERROR.search(err):
        return f"{command}: exit status 1 without an error message"
    source = text.replace("\r\n", "\n").split("\n")
    for m in ERROR_LINE.finditer(err):
        if m.group(1) != path:
            continue
        line, col = int(m.group(2)), int(m.group(3))
        if not (1 <= line <= len(source) and 1 <= col <= len(source[line - 1]) + 1):
            return f"{command}: an error at {line}:{col}, outside the file"
    blocks = re.split(r"(?m)^(?=(?:.+?: )?error: )", err)
    for block in blocks[1:]:
        if "\nhint: " not in block:
            return f"{command}: no hint: " + block.splitlines()[0].replace(path, "MODEL")
    return None


def slow(text: str) -> bool:
    """A mutant with a layer of 100000 units (or filters) takes minutes to check."""
    return "100000" in _head(text)


def _head(text: str) -> str:
    """The text before the train block."""
    return re.split(r"(?m)^train\b", text)[0]


def outcome(path: str, text: str, out_dir: str) -> tuple:
    """(fault or None, the commands' outputs) of check and, if it passes, run."""
    with open(path, "w") as f:
        f.write(text)
    start = time.perf_counter()
    rc, out, err = cli(["check", path])
    seen = [("check", rc, out, err)]
    problem = fault(path, text, "check", rc, out, err)
    quick = time.perf_counter() - start < 1.0 and "1e30" not in _head(text)
    if problem is None and rc == 0 and quick:
        rc, out, err = cli(["run", path, "--epochs", "1", "--device", "cpu", "--quiet",
                            "--out", out_dir])
        seen.append(("run", rc, out, err))
        problem = fault(path, text, "run", rc, out, err)
    return problem, seen


def test_mutants_of_the_samples_end_in_clear_errors(tmp_path):
    found = {}
    for i, (name, text) in enumerate(mutants(COUNT, SEED)):
        if slow(text):
            continue
        path = str(tmp_path / f"{i}_{name}")
        try:
            problem, seen = outcome(path, text, str(tmp_path / "out"))
        except BaseException as e:              # noqa: BLE001 - an escape is the fault
            problem, seen = f"raised {e.__class__.__name__}: {e}", []
        if problem:
            key = re.sub(r"\d+", "N", problem.replace(path, "MODEL"))
            found.setdefault(key, (i, name, text, seen))
    report = []
    for key, (i, name, text, seen) in found.items():
        report.append(f"--- {key}\nmutant {i} of {name}:\n{text}")
        report += [f"[{cmd} -> {rc}]\n{err}" for cmd, rc, _, err in seen]
    assert not found, "\n".join(report)


# faults the fuzzer led to ------------------------------------------------------

SPLIT_GATE = ("input x[2]\ntarget t[1]\nparam w[2, 1] = zeros\nparam b[1] = zeros\n"
              "z = x @ w + b\noutput y = step(z)\nloss perceptron(z, t)\n"
              "train {\n  data = and\n  optimizer = sgd(lr = 0.1)\n  batch = 1\n"
              "  split = 0.25\n  epochs = 20\n}\n")


def test_an_overfitting_note_from_a_held_out_loss_of_0_is_no_internal_error(tmp_path):
    """The perceptron's criterion reaches 0: the note said how many percent above
    its lowest the held-out loss ended, dividing by 0 (an internal error)."""
    path = tmp_path / "gate.nn"
    path.write_text(SPLIT_GATE)
    rc, out, err = cli(["run", str(path), "--device", "cpu", "--quiet"])
    assert (rc, err) == (0, "")
    assert "note: overfitting: the held-out loss was lowest at epoch 1 (0.0000) and ended " \
           "at 0.1000, while the training loss fell from 0.0667 to 0.0000\n" in out
