"""Faults a language audit found: '^' groups
from the right, a train block may open on the next line, initialisers'
names are not user names, a train block without data is reported at its
line, and the train block and Model.fit check one table of ranges."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile import CompileError, DataError
from nncompile.cli import main
from nncompile.train import config
from nncompile.train.config import LIMITS, Limit

MODEL = ("input x[2]\ntarget y[1]\nh = dense(x, 4, tanh)\noutput p = dense(h, 1, sigmoid)\n"
         "loss mse(p, y)\n")
SETTINGS = "  data = xor\n  optimizer = sgd(lr = 0.5)\n  batch = 4\n  epochs = 5\n  seed = 1\n}\n"


@pytest.mark.parametrize("expr", ["x ^ 2 ^ 3", "2 ^ 3 ^ 2 * x", "-x ^ 2", "x ^ -2",
                                  "x ^ -2 ^ 2", "-x ^ 2 ^ 0.5", "x ^ (1 / 2)", "x ^ (2 ^ -1)",
                                  "x * 2 ^ 2", "(-x) ^ 2"])
def test_power_groups_from_the_right_and_binds_tighter_than_minus_as_python(expr):
    m = nncompile.compile_source(f"input x[2]\noutput p = {expr}\n", device="cpu")
    x = np.float32([[1.5, 2.0], [0.25, 3.0]])
    want = eval(expr.replace("^", "**"), {"x": x.astype(np.float64)})
    np.testing.assert_allclose(m.predict(x), want, rtol=1e-5)


def test_an_exponent_of_numbers_is_worked_out_when_compiling():
    m = nncompile.compile_source("input x[2]\noutput p = x ^ 2 ^ 3\n", device="cpu")
    assert "pow[k=8" in m.emit("ir")


@pytest.mark.parametrize("opening", ["train\n{\n", "train\n\n  # the settings\n{\n",
                                     "train  # a comment\n{"])
def test_a_train_block_may_open_on_the_next_line(opening):
    same_line = nncompile.compile_source(MODEL + "train {\n" + SETTINGS, device="cpu")
    next_line = nncompile.compile_source(MODEL + opening + SETTINGS, device="cpu")
    skip = {"spans"}
    assert {k: v for k, v in vars(next_line.train_config).items() if k not in skip} == \
        {k: v for k, v in vars(same_line.train_config).items() if k not in skip}
    assert next_line.train_config.spans["train"].line == 6
    assert [r["loss"] for r in next_line.fit()] == [r["loss"] for r in same_line.fit()]


def test_a_value_named_like_an_initialiser_is_an_error_at_its_definition():
    with pytest.raises(CompileError) as e:
        nncompile.compile_source("input x[3]\nzeros = x * 2\nparam w[3] = zeros\n"
                                 "output p = zeros * w\n", file="m.nn", device="cpu")
    assert str(e.value) == (
        "m.nn:2:1: error: 'zeros' is the name of an initialiser\n"
        "    zeros = x * 2\n"
        "    ^^^^^\n"
        "hint: choose another name: after 'param w[3] =', 'zeros' always means the "
        "initialiser")


NODATA = MODEL + "train {\n  epochs = 3\n}\n"


def test_a_train_block_without_data_is_a_data_error_at_the_train_line():
    m = nncompile.compile_source(NODATA, file="m.nn", device="cpu")
    with pytest.raises(DataError) as e:
        m.fit()
    assert str(e.value) == ("m.nn:6:1: error: the train block names no data\n"
                            "    train {\n"
                            "    ^\n"
                            "hint: add e.g. data = xor to the train block")
    err = e.value
    assert (err.message, err.file, err.row, err.hint) == (
        "the train block names no data", "m.nn", None, "add e.g. data = xor to the train block")
    assert (err.span.line, err.span.column) == (6, 1)


def test_run_reports_a_train_block_without_data_at_its_line_and_check_still_runs(
        tmp_path, capsys):
    path = tmp_path / "nodata.nn"
    path.write_text(NODATA)
    assert main(["run", str(path), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{path}:6:1: error: the train block names no data\n    train {{\n    ^\n" in err
    assert "hint: add e.g. data = xor to the train block" in err
    assert "Traceback" not in err
    # check and trace fall back to a random batch, as for any DataError
    assert main(["check", str(path)]) == 0
    assert "a random batch of 4 examples (the train block names no data)" in \
        capsys.readouterr().out


def test_a_data_error_without_a_span_reads_as_before():
    assert str(DataError("column 2: 'x' is not a number", file="d.csv", row=3,
                         hint="fix the cell")) == \
        "d.csv:3: error: column 2: 'x' is not a number\nhint: fix the cell"
    assert str(DataError("no such file", file="d.csv")) == "d.csv: error: no such file"


def _train_block(key: str, value: str) -> str:
    if key in ("lr", "momentum"):
        setting = f"optimizer = sgd(lr = {'0.1' if key != 'lr' else value}, momentum = " \
                  f"{value if key == 'momentum' else '0'})"
    elif key in ("beta1", "beta2", "eps"):
        setting = f"optimizer = adam(lr = 0.1, {key} = {value})"
    else:
        setting = f"{key} = {value}"
    return MODEL + f"train {{\n  data = xor\n  {setting}\n}}\n"


def _outside(limit: Limit) -> list:
    """Values just outside limit's range, and a fraction where it wants whole numbers."""
    values = [limit.low if limit.open_low else limit.low - 1]
    if limit.high != float("inf"):
        values.append(limit.high if limit.open_high else limit.high + 1)
    if limit.whole:
        values.append(limit.low + 1.5)
    return values


@pytest.mark.parametrize("key", sorted(LIMITS))
def test_the_train_block_and_fit_refuse_the_same_values_with_a_hint(key):
    limit = LIMITS[key]
    m = nncompile.compile_source(MODEL, device="cpu")
    for value in _outside(limit):
        written = f"{value:g}" if value != int(value) else str(int(value))
        with pytest.raises(CompileError) as e:
            nncompile.compile_source(_train_block(key, written), file="m.nn", device="cpu")
        hint = e.value.diagnostics[0].hint
        assert f"{limit.text()}, e.g. {limit.example}" in hint, (key, value, hint)
        assert f"got {written}" in e.value.diagnostics[0].message
        python_value = int(value) if limit.whole and value == int(value) else value
        with pytest.raises(ValueError, match=f"^{key} must be "):
            m.config(**{key: python_value})
    inside = limit.low + (0.5 if limit.open_high else 1 if limit.open_low else 0)
    inside = int(inside) if limit.whole else float(inside)
    nncompile.compile_source(_train_block(key, str(inside)), device="cpu")
    m.config(**{key: inside})


def test_one_table_of_ranges_drives_both_checks(monkeypatch):
    monkeypatch.setitem(config.LIMITS, "epochs", Limit(0, 5, whole=True, example="epochs = 3"))
    with pytest.raises(CompileError) as e:
        nncompile.compile_source(MODEL + "train {\n  data = xor\n  epochs = 6\n}\n",
                                 file="m.nn", device="cpu")
    assert (e.value.diagnostics[0].message, e.value.diagnostics[0].hint) == (
        "epochs must be at most 5, got 6", "epochs is a whole number from 0 to 5, e.g. epochs = 3")
    m = nncompile.compile_source(MODEL, device="cpu")
    with pytest.raises(ValueError, match=r"^epochs must be at most 5, got 6$"):
        m.fit(epochs=6)


def test_fit_says_at_most_for_a_count_above_the_limit():
    m = nncompile.compile_source(MODEL, device="cpu")
    with pytest.raises(ValueError, match=r"^batch must be at most 2147483647, got 2147483648$"):
        m.fit(batch=2 ** 31)



SKIPPED = ("input x[2]\ntarget y[3]\nh1 = dense(x, 4, relu)\nparam w[2] = zeros\n"
           "logits = dense(x, 3)\noutput p = softmax(logits)\noutput q = dense(x, 2)\n"
           "loss cross_entropy(logits, y)\n")


def test_params_the_loss_does_not_depend_on_are_warned_about():
    """A fuzzer's mutant: `logits = dense(x, 10)` where `dense(h1, 10)` was meant
    trained as if h1 were not there, silently; an output's own layer is never
    trained either."""
    m = nncompile.compile_source(SKIPPED, file="m.nn", device="cpu", quiet=True)
    assert m.warnings == [
        "m.nn:3:6: warning: the loss does not depend on h1.weight and h1.bias, so training "
        "never changes them\n"
        "    h1 = dense(x, 4, relu)\n"
        "         ^^^^^\n"
        "hint: use the value this statement makes (as the next layer's input), or delete "
        "the statement",
        "m.nn:4:7: warning: the loss does not depend on w, so training never changes it\n"
        "    param w[2] = zeros\n"
        "          ^\n"
        "hint: use w on the way to the loss, or delete its declaration",
        "m.nn:7:12: warning: the loss does not depend on q.weight and q.bias, so training "
        "never changes them\n"
        "    output q = dense(x, 2)\n"
        "               ^^^^^\n"
        "hint: use the value this statement makes (as the next layer's input), or delete "
        "the statement"]


def test_cli_prints_the_warning_and_goes_on(tmp_path, capsys):
    path = tmp_path / "m.nn"
    path.write_text(SKIPPED)
    assert main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:3:6: warning: the loss does not depend on h1.weight and h1.bias" in err
