"""Losses given probabilities where they take raw scores: softmax or sigmoid
applied twice is a warning at the loss's argument (the model still trains),
cross_entropy over one class (always 0) is an error. The API raises the
warnings as ModelWarning; the command line prints them as a compiler does."""
from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pytest

import nncompile
from nncompile import CompileError, ModelWarning
from nncompile.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = "input x[4]\ntarget y[3]\nh = dense(x, 5, relu)\n"


def warned(source: str) -> list:
    return nncompile.compile_source(source, device="cpu", quiet=True).warnings


def test_cross_entropy_of_a_softmax_output_warns_at_the_argument_and_names_the_logits():
    src = HEAD + "logits = dense(h, 3)\noutput p = softmax(logits)\nloss cross_entropy(p, y)\n"
    assert warned(src) == [
        "<string>:6:20: warning: cross_entropy takes raw scores (logits), but 'p' on line 5 "
        "is already a softmax output: the loss applies softmax a second time, which squeezes "
        "the scores into (0, 1) and slows learning\n"
        "    loss cross_entropy(p, y)\n"
        "                       ^\n"
        "hint: pass the values before the softmax: cross_entropy(logits, y)"]


def test_a_dense_layer_with_a_softmax_activation_gets_the_hint_to_name_the_layer():
    [w] = warned(HEAD + "output p = dense(h, 3, softmax)\nloss cross_entropy(p, y)\n")
    assert w.startswith("<string>:5:20: warning: cross_entropy takes raw scores (logits), "
                        "but 'p' on line 4 is already a softmax output")
    assert w.endswith("hint: name the layer without its activation (z = dense(h, 10) instead "
                      "of dense(h, 10, softmax)), pass z to cross_entropy, and apply the "
                      "softmax to z for the output")


@pytest.mark.parametrize("loss, what", [("binary_cross_entropy", "sigmoid"),
                                        ("cross_entropy", "sigmoid"),
                                        ("binary_cross_entropy", "softmax")])
def test_either_cross_entropy_warns_on_either_squashing(loss, what):
    [w] = warned(HEAD + f"z = dense(h, 3)\noutput p = {what}(z)\nloss {loss}(p, y)\n")
    assert f"{loss} takes raw scores (logits), but 'p' on line 5 is already a {what} " \
           "output" in w
    assert w.endswith(f"hint: pass the values before the {what}: {loss}(z, y)")


def test_the_perceptron_criterion_on_a_sigmoid_output_warns_that_it_never_goes_below_0():
    [w] = warned("input x[2]\ntarget t[1]\np = dense(x, 1, sigmoid)\nloss perceptron(p, t)\n")
    assert "a sigmoid's output is above 0 for every input, so the perceptron never sees " \
           "a negative score" in w


@pytest.mark.parametrize("loss", ["cross_entropy(logits, y)", "cross_entropy(log_softmax("
                                  "logits), y)", "binary_cross_entropy(logits, y)",
                                  "mse(softmax(logits), y)", "mae(sigmoid(logits), y)",
                                  "cross_entropy(2 * softmax(logits), y)"])
def test_scores_and_losses_that_take_probabilities_give_no_warning(loss):
    # log_softmax(log_softmax(z)) is log_softmax(z): no harm done there
    assert warned(HEAD + f"logits = dense(h, 3)\nloss {loss}\n") == []


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "samples", "*.nn"))))
def test_no_sample_warns(path):
    assert nncompile.compile(path, device="cpu", quiet=True).warnings == []


def test_cross_entropy_over_one_class_is_an_error_with_the_binary_loss_as_hint():
    src = "input x[2]\ntarget y[1]\nlogits = dense(x, 1)\nloss cross_entropy(logits, y)\n"
    with pytest.raises(CompileError) as e:
        nncompile.compile_source(src, device="cpu")
    assert str(e.value) == (
        "<string>:4:20: error: cross_entropy over one class is always 0: the softmax of "
        "'logits' on line 3, one number per example, is 1 whatever it is, so nothing would "
        "train\n"
        "    loss cross_entropy(logits, y)\n"
        "                       ^^^^^^\n"
        "hint: for a yes/no target y[1] use binary_cross_entropy(logits, y) (sigmoid and "
        "cross-entropy); for classes, one column per class")


def test_the_api_raises_model_warnings_at_the_callers_line_unless_quiet():
    src = HEAD + "output p = dense(h, 3, softmax)\nloss cross_entropy(p, y)\n"
    with pytest.warns(ModelWarning) as rec:
        model = nncompile.compile_source(src, device="cpu")
    assert [str(w.message) for w in rec] == model.warnings
    assert rec[0].filename == os.path.abspath(__file__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(nncompile.compile_source(src, device="cpu", quiet=True).warnings) == 1


def test_the_command_line_prints_the_warning_once_as_a_compiler_and_still_runs(tmp_path, capsys):
    model = tmp_path / "m.nn"
    model.write_text(HEAD + "output p = dense(h, 3, softmax)\nloss cross_entropy(p, y)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # a Python warning would fail here
        assert main(["check", str(model)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "ModelWarning" not in err
    assert err.startswith(f"{model}:5:20: warning: cross_entropy takes raw scores")


def test_a_hidden_step_layer_warns_that_its_params_never_change():
    src = "input x[2]\ntarget y[1]\nh = dense(x, 4, step)\noutput p = dense(h, 1, sigmoid)\n" \
          "loss mse(p, y)\n"
    assert warned(src) == [
        "<string>:3:5: warning: step's gradient is 0 wherever it has one, so the loss's "
        "gradient stops at 'h' on line 3: gradient descent never changes h.weight and h.bias\n"
        "    h = dense(x, 4, step)\n"
        "        ^^^^^\n"
        "hint: use sigmoid, step's smooth version, or tanh in layers trained by "
        "backpropagation; step suits a perceptron's output, trained with loss perceptron(z, "
        "t) on its scores z"]
    # and so it is: training leaves them where they started
    model = nncompile.compile_source(src + "train {\n  data = xor\n  optimizer = sgd(lr = 0.5)\n"
                                     "  batch = 4\n  epochs = 20\n}\n", device="cpu", quiet=True)
    start = model.params
    model.fit()
    after = model.params
    for k in ("h.weight", "h.bias"):
        np.testing.assert_array_equal(after[k], start[k])
    assert not np.array_equal(after["p.weight"], start["p.weight"])


def test_a_step_warning_names_only_the_params_no_other_path_reaches():
    src = "input x[2]\ntarget y[1]\nparam w[2, 1] = xavier\nparam v[2, 1] = xavier\n" \
          "param u[2, 1] = xavier\np = sigmoid(step(x @ w) + x @ v + step(x @ u) * (x @ u))\n" \
          "loss mse(p, y)\n"
    [w] = warned(src)
    assert w.startswith("<string>:6:13: warning: step's gradient is 0 wherever it has one, so "
                        "the loss's gradient stops here: gradient descent never changes w\n")


@pytest.mark.parametrize("sample", ["and_gate", "or_gate", "not_gate"])
def test_the_perceptron_samples_step_only_their_output_and_do_not_warn(sample):
    model = nncompile.compile(os.path.join(ROOT, "samples", f"{sample}.nn"), device="cpu",
                              quiet=True)
    assert "step" in model.source and model.warnings == []
