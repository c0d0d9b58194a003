"""docs/normalize.md's table is what training digits_mlp.nn with each
`normalize` and learning rate gives, to the digits it prints."""
from __future__ import annotations

import os
import re

import pytest

import nncompile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"^\| (0\.05|0\.005) \| (none|minmax|standardize) \| (.+) \|$", re.M)


def _rows():
    with open(os.path.join(ROOT, "docs", "normalize.md")) as f:
        return ROW.findall(f.read())


def test_the_doc_has_all_six_rows():
    assert [(lr, n) for lr, n, _ in _rows()] == [
        (lr, n) for lr in ("0.05", "0.005") for n in ("none", "minmax", "standardize")]


@pytest.mark.parametrize("lr, normalize, figures", _rows())
def test_each_row_of_the_normalize_table(lr, normalize, figures):
    with open(os.path.join(ROOT, "samples", "digits_mlp.nn")) as f:
        text = f.read().replace("normalize = standardize", f"normalize = {normalize}")
    model = nncompile.compile_source(text.replace("lr = 0.05", f"lr = {lr}"), device="cpu",
                                     quiet=True)
    h = model.fit()
    got = [f"{h[0]['loss']:.3f}", f"{h[0]['test_accuracy']:.4f}", f"{h[-1]['loss']:.4f}",
           f"{h[-1]['test_accuracy']:.4f}"]
    assert figures.split(" | ") == got
