"""The tables of docs/normalize.md, docs/batches.md and docs/overfitting.md
are what training digits_mlp.nn with their settings gives, to the digits
they print."""
from __future__ import annotations

import math
import os
import re

import pytest

import nncompile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _doc(name):
    with open(os.path.join(ROOT, "docs", name)) as f:
        return f.read()


def _fit(text=None, **settings):
    """digits_mlp.nn (or text) with some of its train block's lines changed, fitted."""
    if text is None:
        with open(os.path.join(ROOT, "samples", "digits_mlp.nn")) as f:
            text = f.read()
    for key, value in settings.items():
        text, n = re.subn(rf"^(  {key}\s*=\s*)\S.*$", rf"\g<1>{value}", text, flags=re.M)
        assert n == 1 or key in ("accumulate", "seed")   # lines the sample lacks
        if n == 0:
            text = text.replace("  epochs", f"  {key} = {value}\n  epochs")
    return nncompile.compile_source(text, device="cpu", quiet=True).fit()


NORMALIZE = re.compile(r"^\| (0\.05|0\.005) \| (none|minmax|standardize) \| (.+) \|$", re.M)
BATCHES = re.compile(r"^\| (\d+)(?: x (\d+))? \| ([\d.]+) \| (.+) \| \d+ \|$", re.M)


def test_the_docs_have_all_their_rows():
    assert [(lr, n) for lr, n, _ in NORMALIZE.findall(_doc("normalize.md"))] == [
        (lr, n) for lr in ("0.05", "0.005") for n in ("none", "minmax", "standardize")]
    assert [(b, k, lr) for b, k, lr, _ in BATCHES.findall(_doc("batches.md"))] == [
        ("1", "", "0.05"), ("10", "", "0.05"), ("32", "", "0.05"), ("100", "", "0.05"),
        ("1000", "", "0.05"), ("1438", "", "0.05"), ("1", "", "0.0016"), ("10", "", "0.016"),
        ("100", "", "0.16"), ("1000", "", "1.6"), ("1438", "", "2.3"), ("10", "10", "0.16")]


@pytest.mark.parametrize("lr, normalize, figures", NORMALIZE.findall(_doc("normalize.md")))
def test_each_row_of_the_normalize_table(lr, normalize, figures):
    h = _fit(normalize=normalize, optimizer=f"sgd(lr = {lr}, momentum = 0.9)")
    got = [f"{h[0]['loss']:.3f}", f"{h[0]['test_accuracy']:.4f}", f"{h[-1]['loss']:.4f}",
           f"{h[-1]['test_accuracy']:.4f}"]
    assert figures.split(" | ") == got


@pytest.mark.parametrize("batch, accumulate, lr, figures", BATCHES.findall(_doc("batches.md")))
def test_each_row_of_the_batch_tables(batch, accumulate, lr, figures):
    h = _fit(batch=batch, accumulate=accumulate or 1,
             optimizer=f"sgd(lr = {lr}, momentum = 0.9)")
    first = next((r["epoch"] for r in h if r["test_accuracy"] >= 0.95), "never")
    updates = math.ceil(1438 / (int(batch) * int(accumulate or 1)))
    got = [str(updates), f"{h[0]['test_accuracy']:.4f}", str(first), f"{h[-1]['loss']:.4f}",
           f"{h[-1]['test_accuracy']:.4f}"]
    assert figures.split(" | ") == got


SEEDS = range(5)
# docs/overfitting.md's second table: each row's change to digits_mlp.nn
L2 = ("h1     = dense(x, 64, relu)",
      "param w1[64, 64] = he\nparam b1[64] = zeros\nh1 = relu(x @ w1 + b1)")
VARIANTS = {
    "as it is": lambda s: s,
    "early_stop = 5": lambda s: s.replace("  epochs", "  early_stop = 5\n  epochs"),
    "dropout(h1, 0.5)": lambda s: s.replace("dense(h1, 10)", "dense(dropout(h1, 0.5), 10)"),
    "16 hidden units": lambda s: s.replace("dense(x, 64, relu)", "dense(x, 16, relu)"),
    "256 hidden units": lambda s: s.replace("dense(x, 64, relu)", "dense(x, 256, relu)"),
    **{f"L2, {lam} * sum(w1 ^ 2)": lambda s, lam=lam: s.replace(*L2).replace(
        "loss cross_entropy(logits, y)", f"loss cross_entropy(logits, y) + {lam} * sum(w1 ^ 2)")
       for lam in ("0", "0.003", "0.01", "0.03")},
}
SPLITS = re.compile(r"^\| (0\.\d+) \| (\d+) \| (.+) \|$", re.M)
REMEDIES = re.compile(r"^\| `?([^|`]+?)`? \| (.+) \|$", re.M)


def overfitting_figures(text: str, split: str) -> list:
    """Training and held-out accuracy of the kept epoch, averaged over SEEDS (each
    seed draws its own held-out rows and initial weights), the held-out range and
    the gap, as docs/overfitting.md prints them."""
    train, test = [], []
    for seed in SEEDS:
        h = _fit(text, split=split, seed=seed)
        kept = next((r for r in h if r.get("best")), h[-1])
        train.append(kept["train_accuracy"])
        test.append(kept["test_accuracy"])
    mean_train, mean_test = sum(train) / len(train), sum(test) / len(test)
    return [f"{mean_train:.4f}", f"{mean_test:.4f}", f"{min(test):.4f} to {max(test):.4f}",
            f"{mean_train - mean_test:+.4f}"]


def _digits_mlp():
    with open(os.path.join(ROOT, "samples", "digits_mlp.nn")) as f:
        return f.read()


def _remedy_rows():
    doc = _doc("overfitting.md")
    return [(name, figures) for name, figures in REMEDIES.findall(doc.split("## Remedies")[1])
            if name in VARIANTS]


def test_the_overfitting_doc_has_all_its_rows():
    assert [s for s, _, _ in SPLITS.findall(_doc("overfitting.md"))] == \
        ["0.2", "0.5", "0.8", "0.9", "0.95"]
    assert [name for name, _ in _remedy_rows()] == list(VARIANTS)


@pytest.mark.parametrize("split, examples, figures", SPLITS.findall(_doc("overfitting.md")))
def test_each_row_of_the_training_set_size_table(split, examples, figures):
    assert int(examples) == 1797 - round(1797 * float(split))     # training rows
    assert figures.split(" | ") == overfitting_figures(_digits_mlp(), split)


@pytest.mark.parametrize("name, figures", _remedy_rows())
def test_each_row_of_the_remedies_table(name, figures):
    assert figures.split(" | ") == overfitting_figures(VARIANTS[name](_digits_mlp()), "0.9")
