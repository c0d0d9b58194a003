"""`nncompile trace` and Model.trace: one training step value by value. The
values, d loss / d each and the update are checked against the chain rule
worked by hand in numpy, the formulas printed beside them against the
numbers, and the update against fit's own first step."""
from __future__ import annotations

import os
import shutil
import re

import numpy as np
import pytest

import nncompile
from nncompile.train.loop import load_data
from test_cli import SAMPLES, cli, usage_error, user_fault, work  # noqa: F401 (a fixture)

ROOT = os.path.dirname(SAMPLES)


def sample(name: str) -> str:
    return os.path.join(SAMPLES, f"{name}.nn")


def rows(t) -> dict:
    return {r.name: r for r in t.rows}


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=rtol, atol=atol)


def test_xor_trace_is_the_chain_rule_worked_by_hand():
    m = nncompile.compile(sample("xor"), device="cpu")
    t = m.trace()
    r = rows(t)
    # the examples of run's first update: epoch 1's permutation of the 4 rows
    xs, ys, _, _, _ = load_data(m, m.train_config)
    order = np.random.default_rng([1, 1]).permutation(4)
    x, y = xs["x"][order].astype(np.float64), ys["y"][order].astype(np.float64)
    assert np.array_equal(r["x"].value, x) and np.array_equal(r["y"].value, y)
    P = {k: v.astype(np.float64) for k, v in m.params.items()}
    z1 = x @ P["h.weight"] + P["h.bias"]
    h = np.tanh(z1)
    z2 = h @ P["p.weight"] + P["p.bias"]
    p = 1 / (1 + np.exp(-z2))
    loss = np.mean((p - y) ** 2)
    dp = 2 * (p - y) / 4
    dz2 = dp * p * (1 - p)
    dh = dz2 @ P["p.weight"].T
    dz1 = dh * (1 - h ** 2)
    grads = {"h.weight": x.T @ dz1, "h.bias": dz1.sum(0), "p.weight": h.T @ dz2,
             "p.bias": dz2.sum(0)}
    for name, value, grad in (("h before tanh", z1, dz1), ("h", h, dh),
                              ("p before sigmoid", z2, dz2), ("p", p, dp)):
        close(r[name].value, value)
        close(r[name].grad, grad)
    assert r["x"].grad is None and r["y"].grad is None
    close(t.loss, loss)
    for k, g in grads.items():
        close(t.before[k], P[k])
        close(t.grads[k], g)
        close(t.after[k], P[k] - 0.5 * g)
    text = str(t)
    for line in ("  d loss/d p                 [4, 1]        = 2 * (p - y) / 4   (mse')",
                 "  d loss/d p before sigmoid  [4, 1]        = d loss/d p * p * (1 - p)   "
                 "(sigmoid')",
                 "  d loss/d h                 [4, 4]        = d loss/d (p before sigmoid) @ "
                 "transpose(p.weight)",
                 "  d loss/d h before tanh     [4, 4]        = d loss/d h * (1 - h^2)   (tanh')",
                 "  h.weight  [2, 4]   gradient = transpose(x) @ d loss/d (h before tanh)",
                 "  h.bias  [4]   gradient = d loss/d (h before tanh), summed over the batch's "
                 "examples",
                 "update: sgd(lr = 0.5): param - 0.5 * gradient"):
        assert line in text.splitlines(), line
    assert text.startswith("trace of xor: one training step on the first update of epoch 1 "
                           "(4 of the 4 training examples of 'xor', seed 1)\n")


EVERY_SAMPLE = sorted(f[:-3] for f in os.listdir(SAMPLES)
                      if f.endswith(".nn") and f != "mnist_lenet.nn")   # its data is not here


@pytest.mark.parametrize("name, overrides", [(name, {}) for name in EVERY_SAMPLE] + [
    ("digits_mlp", {"clip": 0.05}),                 # the clip scales the step
    ("sine", {"batch": 7, "accumulate": 3}),
])
def test_the_traced_update_is_fits_first_update(name, overrides):
    t = nncompile.compile(sample(name), device="cpu").trace(**overrides)
    fitted = nncompile.compile(sample(name), device="cpu")
    cfg = fitted.config(**overrides)
    r = rows(t)
    x = {k: r[k].value for k in fitted.inputs}
    y = {k: r[k].value for k in fitted.targets}
    assert len(next(iter(x.values()))) == cfg.batch * cfg.accumulate
    history = fitted.fit(x=x, y=y, epochs=1, shuffle=False, **overrides)
    for k, after in fitted.params.items():
        close(t.after[k], after, rtol=2e-5, atol=2e-6)
    # the loss fit reports is the mean over the update's examples
    close(history[0]["loss"], t.loss, rtol=2e-5)
    if overrides.get("clip"):
        assert "so every gradient was scaled by" in t.rule
        norm = np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in t.grads.values()))
        close(norm, 0.05)


def test_the_first_update_takes_fits_shuffled_rows():
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    t = m.trace()
    xs, ys, _, _, _ = load_data(m, m.train_config)
    idx = np.random.default_rng([0, 1]).permutation(len(xs["x"]))[:32]
    assert np.array_equal(rows(t)["x"].value, xs["x"][idx])
    assert np.array_equal(rows(t)["y"].value, ys["y"][idx])
    assert "(32 of the 1438 training examples of 'digits', seed 0)" in t.examples


@pytest.mark.parametrize("name, pred, formula", [
    ("xor", "p", lambda a, t, n: 2 * (a - t) / n),
    ("sine_mae", "p", lambda a, t, n: np.sign(a - t) / n),
    ("circles", "z", lambda a, t, n: (1 / (1 + np.exp(-a)) - t) / n),
    ("digits_mlp", "logits",
     lambda a, t, n: (np.exp(a) / np.exp(a).sum(1, keepdims=True) - t) / len(a)),
    ("and_gate", "z", lambda a, t, n: ((a > 0) - t) / len(a)),
])
def test_the_printed_loss_derivative_is_the_number_shown(name, pred, formula):
    m = nncompile.compile(sample(name), device="cpu")
    t = m.trace(batch=4)
    r = rows(t)
    target, = m.targets
    a, tv = r[pred].value.astype(np.float64), r[target].value.astype(np.float64)
    close(r[pred].grad, formula(a, tv, a.size), rtol=1e-5, atol=1e-7)
    func = re.search(r"^loss (\w+)\(", open(sample(name)).read(), re.M)[1]
    assert r[pred].chain.endswith(f"   ({func}')")
    assert f"  d loss/d {pred}" in str(t) and f"= {r[pred].chain}" in str(t)


def test_pooling_dropout_and_conv_steps_say_what_they_did():
    t = nncompile.compile(sample("lenet"), device="cpu").trace(batch=3, accumulate=1)
    r = rows(t)
    # maxpool sends each window's gradient to its largest entry, and nowhere else
    c2, dc2, dp2 = r["c2"].value, r["c2"].grad, r["p2"].grad
    win = dc2.reshape(3, 16, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(3, 16, 2, 2, 4)
    vals = c2.reshape(3, 16, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(3, 16, 2, 2, 4)
    first_max = np.argmax(vals, axis=-1)
    expect = np.zeros_like(win)
    np.put_along_axis(expect, first_max[..., None], dp2[..., None], axis=-1)
    close(win, expect)
    assert r["c2"].chain == ("d loss/d p2, sent back to the largest entry of each 2x2 window "
                             "(maxpool')")
    assert r["p1"].chain == ("d loss/d (c2 before relu) run back through c2.weight (conv2d's "
                             "input gradient: the transposed convolution)")
    assert r["p2"].chain == ("d loss/d (h before relu) @ transpose(h.weight), reshaped back "
                             "to [16, 2, 2]")
    close(r["p2"].grad.reshape(3, 64), r["h before relu"].grad @ t.before["h.weight"].T)
    # the conv's bias gradient: the summed gradient of its sum
    close(t.grads["c1.bias"].reshape(-1), r["c1 before relu"].grad.sum(axis=(0, 2, 3)),
          rtol=1e-4)
    text = str(t)
    assert ("  c1.weight  [8, 1, 3, 3]   gradient = d loss/d (c1 before relu) correlated "
            "with x over every position (conv2d's weight gradient)") in text

    d = nncompile.compile(sample("digits_dropout"), device="cpu").trace(batch=5)
    r = rows(d)
    mask = np.divide(r["d1"].value, r["h1"].value, out=np.zeros_like(r["d1"].value),
                     where=r["h1"].value != 0)
    kept = r["h1"].value != 0
    assert set(np.round(mask[kept], 5)) <= {0.0, 2.0} and 0 < np.mean(mask[kept] == 2) < 1
    close(r["h1"].grad[kept], (r["d1"].grad * mask)[kept])
    assert r["h1"].chain == "d loss/d d1 * the same dropout mask (0, or 1 / (1 - 0.5) = 2)"


def test_avgpool_spreads_the_gradient_evenly():
    t = nncompile.compile_source("""
input x[1, 4, 4]
target y[2]
c = conv2d(x, 2, 3, tanh, padding = 1)
s = avgpool(c, 2)
logits = dense(flatten(s), 2)
loss cross_entropy(logits, y)
""", device="cpu").trace(x=np.random.default_rng(0).normal(size=(3, 1, 4, 4)),
                         y=np.eye(2)[[0, 1, 1]])
    r = rows(t)
    ds = r["s"].grad
    close(r["c"].grad, np.repeat(np.repeat(ds, 2, axis=2), 2, axis=3) / 4)
    assert r["c"].chain == "d loss/d s / 4, spread over each 2x2 window (avgpool')"
    assert t.examples == "the 3 examples given"


def test_the_perceptron_trace_is_the_perceptron_rule():
    t = nncompile.compile(sample("and_gate"), device="cpu").trace(batch=4)
    r = rows(t)
    x, target, y = r["x"].value, r["t"].value, r["y"].value
    rule = t.before["w"] + 0.1 * x.T @ (target - y) / 4
    close(t.after["w"], rule)
    close(t.after["b"], t.before["b"] + 0.1 * (target - y).sum(0) / 4)
    assert "that is the perceptron rule w + 0.1 * (t - y) * x, averaged over the batch" \
        in t.rule
    # step passes no gradient: z's comes from the loss alone
    assert r["z"].via == ["loss"] and r["y"].grad is None


def test_a_model_without_a_loss_shows_its_forward_pass_once_per_value():
    m = nncompile.compile_source("input x[3]\nh = dense(x, 2, relu)\noutput o = h\n",
                                 device="cpu")
    t = m.trace(x=np.arange(6, dtype=np.float32).reshape(2, 3))
    assert [r.name for r in t.rows] == ["x", "h before relu", "h"]
    close(rows(t)["h"].value, m.predict(np.arange(6).reshape(2, 3)))
    text = str(t)
    assert text.startswith("trace of model (no loss): the forward pass on the 2 examples given")
    assert "backward" not in text and "update" not in text


def test_trace_needs_both_x_and_y():
    m = nncompile.compile(sample("xor"), device="cpu")
    with pytest.raises(nncompile.DataError, match="trace needs both x and y"):
        m.trace(x=np.zeros((2, 2)))
    with pytest.raises(nncompile.DataError, match="'x' expects examples of shape \\[2\\]"):
        m.trace(x=np.zeros((2, 3)), y=np.zeros((2, 1)))


def test_large_arrays_are_summarised_unless_full():
    t = nncompile.compile(sample("digits_mlp"), device="cpu").trace(batch=2)
    text = str(t)
    h1 = rows(t)["h1"].value.astype(np.float64)
    assert (f"      mean {h1.mean():.4g}  rms {np.sqrt(np.mean(h1 * h1)):.4g}  min "
            f"{h1.min():.4g}  max {h1.max():.4g}  (128 entries; --full prints them)") in text
    t.full = True
    assert "--full prints them" not in str(t)


# the command line ---------------------------------------------------------------

def test_cli_trace(work):
    r = cli("trace", "xor.nn", "--batch", "1", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("trace of xor: one training step on the first update of epoch 1 "
                               "(1 of the 4 training examples of 'xor', seed 1)")
    for heading in ("\nforward: ", "\nbackward: ", "\nupdate: sgd(lr = 0.5)"):
        assert heading in r.stdout
    assert r.stderr == ""


def test_cli_trace_from_trained_weights(work):
    m = nncompile.compile(str(work / "xor.nn"), device="cpu")
    m.fit(epochs=3)
    m.save(str(work / "w.npz"))
    r = cli("trace", "xor.nn", "--weights", "w.npz", "--full", cwd=work)
    assert r.returncode == 0, r.stderr
    t = m.trace()
    t.full = True
    assert r.stdout == str(t) + "(params from w.npz)\n"
    expect = np.array2string(m.params["h.weight"], precision=4, suppress_small=True,
                             max_line_width=100, floatmode="maxprec").splitlines()[0]
    assert f"    before    {expect}" in r.stdout


def test_cli_trace_faults(work):
    usage_error(cli("trace", "xor.nn", "--batch", "0", cwd=work), "must be 1 or more")
    usage_error(cli("trace", "xor.nn", "--batch", "two", cwd=work), "is not a whole number")
    user_fault(cli("trace", "xor.nn", "--weights", "none.npz", cwd=work),
               "none.npz: error: no such weights file")
    user_fault(cli("trace", "nothere.nn", cwd=work), "nothere.nn: error: no such model file")
    (work / "bad.nn").write_text((work / "xor.nn").read_text().replace('data      = xor',
                                                                        'data = "gone.csv"'))
    r = cli("trace", "bad.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == (
        "trace of xor: one training step on a random batch of 4 examples (the data did "
        "not load: gone.csv: no such file or folder)")


def test_docs_backprop_shows_what_trace_and_run_print(tmp_path, capsys):
    """Every line of the trace excerpts in docs/backprop.md is printed by
    trace, and of its run excerpt by `run` (and_gate.nn's perceptron on XOR)."""
    from nncompile.cli import main
    with open(os.path.join(ROOT, "docs", "backprop.md")) as f:
        blocks = f.read().split("```")[1::2]
    printed = {name: str(nncompile.compile(sample(name), device="cpu").trace()).splitlines()
               for name in ("xor", "and_gate", "lenet")}
    shutil.copy(sample("and_gate"), tmp_path / "and_gate.nn")   # run writes beside it
    capsys.readouterr()
    assert main(["run", str(tmp_path / "and_gate.nn"), "--set", "data=xor", "--epochs", "100",
                 "--device", "cpu"]) == 0
    printed["run"] = capsys.readouterr().out.splitlines()
    assert len(blocks) == 6
    for block, name in zip(blocks, ("xor", "xor", "xor", "and_gate", "run", "lenet")):
        for line in block.strip("\n").splitlines():
            assert line in printed[name], (name, line)


@pytest.mark.parametrize("accumulate", [1, 3])
def test_two_dropout_layers_get_fits_masks(accumulate):
    """With accumulate = 3 fit draws both layers' masks for each mini-batch
    of 8 in turn; the trace of its first update draws them the same way."""
    src = """input x[64]
target y[10]
h1 = dense(x, 32, relu)
d1 = dropout(h1, 0.3)
h2 = dense(d1, 32, relu)
d2 = dropout(h2, 0.5)
logits = dense(d2, 10)
loss cross_entropy(logits, y)
train {
  data = digits
  optimizer = sgd(lr = 0.1)
  batch = 8
}
""".replace("batch = 8", f"batch = 8\n  accumulate = {accumulate}")
    t = nncompile.compile_source(src, device="cpu").trace()
    assert len(t.rows[0].value) == 8 * accumulate
    fitted = nncompile.compile_source(src, device="cpu")
    r = rows(t)
    fitted.fit(x=r["x"].value, y=r["y"].value, epochs=1, shuffle=False)
    for k, v in fitted.params.items():
        close(t.after[k], v)
    assert r["h2"].chain == "d loss/d d2 * the same dropout mask (0, or 1 / (1 - 0.5) = 2)"


def test_a_model_still_being_written_traces_or_says_why_not():
    """A target but no loss yet: the forward pass, without the target when
    none is given; no input at all: a DataError naming the file."""
    m = nncompile.compile_source("input x[2]\ntarget y[1]\noutput p = dense(x, 1)\n",
                                 device="cpu", file="w.nn")
    t = m.trace(np.float32([[1, 2]]))
    assert [r.name for r in t.rows] == ["x", "p"]
    close(rows(t)["p"].value, np.float32([[1, 2]]) @ m.params["p.weight"] + m.params["p.bias"])
    assert [r.name for r in m.trace().rows] == ["x", "y", "p"]     # a random batch: y too
    with pytest.raises(nncompile.DataError) as e:
        m.trace(np.float32([[1, 2]]), np.float32([[1], [0]]))
    assert "hold different numbers of examples: x 1, y 2" in str(e.value)
    with pytest.raises(nncompile.DataError, match="there are no examples: the arrays have 0"):
        m.trace(np.zeros((0, 2), np.float32))
    params_only = nncompile.compile_source("param w[2] = ones\nloss sum(w ^ 2)\n",
                                           device="cpu", file="w.nn")
    with pytest.raises(nncompile.DataError) as e:
        params_only.trace()
    assert str(e.value) == ("w.nn: error: trace feeds examples through the model's inputs, "
                            "and this model declares none\n"
                            "hint: declare one, e.g. input x[2], and compute from it")
