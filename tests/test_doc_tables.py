"""The tables of docs/normalize.md and docs/batches.md are what training
digits_mlp.nn with their settings gives, to the digits they print."""
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


def _fit(**settings):
    """digits_mlp.nn with some of its train block's lines changed, fitted."""
    with open(os.path.join(ROOT, "samples", "digits_mlp.nn")) as f:
        text = f.read()
    for key, value in settings.items():
        text, n = re.subn(rf"^(  {key}\s*=\s*)\S.*$", rf"\g<1>{value}", text, flags=re.M)
        assert n == 1 or key == "accumulate"
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
