"""Training acceptance, determinism, gradient accumulation, save/load."""
import json
import os

import numpy as np
import pytest

import nncompile

GATE_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)


def test_xor_learns_with_a_hidden_layer(sample):
    m = nncompile.compile(sample("xor"), device="cpu")
    history = m.fit()
    assert history[-1]["loss"] < 0.02
    assert np.array_equal(m.predict(GATE_X).ravel() > 0.5, [False, True, True, False])


def test_and_gate_is_exact_after_perceptron_training(sample):
    m = nncompile.compile(sample("and_gate"), device="cpu")
    history = m.fit()
    assert history[-1]["loss"] == 0.0
    np.testing.assert_array_equal(m.predict(GATE_X).ravel(), [0, 0, 0, 1])


def test_not_gate_learns_the_weights_the_rule_gives_by_hand(sample):
    """From w = b = 0: x = 0, t = 1 fires nothing, so b += 0.1; x = 1, t = 0 then
    fires (z = 0.1), so w -= 0.1 and b -= 0.1; x = 0 again gives b = 0.1. Now
    z = 0.1 at x = 0 (fires) and z = 0 at x = 1 (does not): w = -0.1, b = 0.1,
    whatever the order the shuffle picks."""
    m = nncompile.compile(sample("not_gate"), device="cpu")
    assert m.fit()[-1]["loss"] == 0.0
    np.testing.assert_array_equal(m.params["w"], np.float32([[-0.1]]))
    np.testing.assert_array_equal(m.params["b"], np.float32([0.1]))
    np.testing.assert_array_equal(m.predict(np.float32([[0], [1]])).ravel(), [1, 0])


def test_perceptron_gradient_step_is_the_perceptron_rule():
    """From w = 0, b = 0 on x = (1, 1), t = 1: y = step(0) = 0, so the rule
    w += lr (t - y) x gives w = (0.1, 0.1) and b = 0.1 after one update."""
    src = open_sample("and_gate").replace("epochs    = 20", "epochs    = 1")
    m = nncompile.compile_source(src, device="cpu")
    m.fit(x=np.array([[1.0, 1.0]]), y=np.array([[1.0]]), epochs=1)
    np.testing.assert_array_equal(m.params["w"].ravel(), np.float32([0.1, 0.1]))
    np.testing.assert_array_equal(m.params["b"], np.float32([0.1]))


def open_sample(name):
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "samples", name + ".nn")
    with open(root) as f:
        return f.read()


@pytest.mark.slow
def test_digits_mlp_reaches_95_percent_held_out(sample):
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    history = m.fit()
    assert history[-1]["test_accuracy"] >= 0.95
    assert history[-1]["train_accuracy"] >= history[-1]["test_accuracy"]


@pytest.mark.parametrize("call, message", [
    (lambda m: m.set_params([1, 2]), "set_params takes a dict of param name -> array, got list"),
    (lambda m: m.fit(optimizer="rmsprop"), "optimizer must be 'sgd' or 'adam', got 'rmsprop'"),
    (lambda m: m.trace(batch=0), "batch must be a whole number of 1 or more, got 0"),
    (lambda m: m.fit(accumulate=-1), "accumulate must be a whole number of 1 or more, got -1"),
    (lambda m: m.fit(seed=-1), "seed must be a whole number of 0 or more, got -1"),
    (lambda m: m.fit(split="a"), "split must be None or a fraction in [0, 1), got 'a'"),
    (lambda m: m.fit(lr=0), "lr must be a positive number, got 0"),
    (lambda m: m.fit(clip=-1.0), "clip must be None or a positive number, got -1.0"),
    (lambda m: m.fit(early_stop=0), "early_stop must be None or a whole number of 1 or more, "
                                    "got 0"),
    (lambda m: m.fit(epochs=2.5), "epochs must be a whole number of 0 or more, got 2.5"),
    (lambda m: nncompile.compile_source(None), "compile_source takes .nn source text, got "
                                               "NoneType"),
    (lambda m: nncompile.compile(3), "compile takes a path or .nn source text, got int"),
    (lambda m: nncompile.compile_source("input x[2]\noutput p = x\n", device="tpu"),
     "unknown device 'tpu'; use 'cpu', 'cuda' or 'auto'"),
    (lambda m: m.fit(epochs=1, device="cuda"),
     "device is chosen when compiling: nncompile.compile(path, device=...)"),
    (lambda m: m.fit(epochs=1, spans={}), "unknown training option(s): spans"),
    (lambda m: nncompile.compile("m.nn", foo=1), "compile() got an unexpected keyword "
                                                  "argument 'foo'"),
    (lambda m: m.fit(epochs=1, data=3), "data must be a built-in set's name or a file path, "
                                        "got int; pass arrays as fit(x=..., y=...)"),
    (lambda m: m.fit(x=np.zeros((4, 2)), y=np.zeros((4, 1)), split=0.5),
     "split applies to the train block's data, not to x and y given: pass x_test and y_test "
     "for held-out data, and normalise the arrays as you need"),
])
def test_wrong_python_usage_is_a_type_or_value_error(sample, call, message):
    m = nncompile.compile(sample("xor"), device="cpu")
    with pytest.raises((TypeError, ValueError)) as e:
        call(m)
    assert str(e.value) == message


def test_same_file_and_seed_give_bit_identical_histories(sample):
    runs = []
    for _ in range(2):
        m = nncompile.compile(sample("digits_mlp"), device="cpu")
        h = m.fit(epochs=3)
        runs.append(([{k: v for k, v in r.items() if k != "time"} for r in h], m.params))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


@pytest.mark.parametrize("name,options", [("digits_dropout", {}),
                                          ("digits_mlp", {"accumulate": 2})])
def test_a_second_fit_starts_afresh_on_the_programs_already_built(sample, name, options):
    """fit() resets the optimizer state (and the dropout masks' stream) in
    place and keeps the compiled programs; other optimizer settings rebuild."""
    def without_time(h):
        return [{k: v for k, v in r.items() if k != "time"} for r in h]

    m = nncompile.compile(sample(name), device="cpu")
    init = m.params
    first = without_time(m.fit(epochs=2, **options))
    after_first = m.params
    programs = dict(m._programs)
    m.set_params(init)
    assert without_time(m.fit(epochs=2, **options)) == first
    for k, v in after_first.items():
        np.testing.assert_array_equal(m.params[k], v)
    assert all(m._programs[k] is p for k, p in programs.items())
    m.set_params(init)
    other = without_time(m.fit(epochs=2, lr=0.02, **options))
    fresh = nncompile.compile(sample(name), device="cpu")
    assert other == without_time(fresh.fit(epochs=2, lr=0.02, **options)) != first
    m.set_params(init)              # another optimizer, then back: no stale buffers
    m.fit(epochs=1, optimizer="sgd", momentum=0.5, **options)
    m.set_params(init)
    assert without_time(m.fit(epochs=2, **options)) == first


def test_another_seed_gives_other_weights(sample):
    a = nncompile.compile(sample("digits_mlp"), device="cpu").params
    src = open_sample("digits_mlp").replace("epochs    = 30", "epochs    = 30\n  seed = 7")
    b = nncompile.compile_source(src, device="cpu").params
    assert not np.array_equal(a["h1.weight"], b["h1.weight"])


ACC_MODEL = """
input x[6]
target y[3]
h = dense(x, 5, tanh)
z = dense(h, 3)
loss cross_entropy(z, y)
train {
  optimizer = OPT
  shuffle = false
  epochs = 1
}
"""


@pytest.mark.parametrize("opt", ["sgd(lr = 0.1)", "sgd(lr = 0.1, momentum = 0.9)",
                                 "adam(lr = 0.01)"])
def test_accumulation_equals_one_big_batch(opt):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]
    src = ACC_MODEL.replace("OPT", opt)
    big = nncompile.compile_source(src, device="cpu")
    big.fit(x=x, y=y, batch=32, accumulate=1)
    small = nncompile.compile_source(src, device="cpu")
    small.fit(x=x, y=y, batch=8, accumulate=4)
    for k, v in big.params.items():
        np.testing.assert_allclose(small.params[k], v, atol=1e-5, rtol=0)
    start = nncompile.compile_source(src, device="cpu").params
    assert not np.allclose(start["z.weight"], big.params["z.weight"])


def test_accumulation_weights_a_partial_last_batch_by_its_size():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 20)]
    src = ACC_MODEL.replace("OPT", "sgd(lr = 0.1)")
    big = nncompile.compile_source(src, device="cpu")
    big.fit(x=x, y=y, batch=20)
    small = nncompile.compile_source(src, device="cpu")
    small.fit(x=x, y=y, batch=8, accumulate=3)      # batches of 8, 8 and 4
    for k, v in big.params.items():
        np.testing.assert_allclose(small.params[k], v, atol=1e-6, rtol=0)


def test_clip_bounds_the_update_by_the_global_norm():
    src = ACC_MODEL.replace("OPT", "sgd(lr = 1.0)").replace("epochs = 1", "epochs = 1\n  clip = 0.01")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 6)).astype(np.float32) * 10
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    m = nncompile.compile_source(src, device="cpu")
    before = m.params
    grads = m.gradients(x, y)
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    assert norm > 0.01
    m.fit(x=x, y=y, batch=8)
    step = np.sqrt(sum(float(np.sum((m.params[k] - before[k]).astype(np.float64) ** 2))
                       for k in before))
    assert step == pytest.approx(0.01, rel=1e-4)


# params whose gradients are one value after common subexpressions merge:
# two branches on one input, two biases, a @ w + a @ v, two inputs' branches
SHARED_GRADIENTS = {
    "two_branches": "input a[3]\ntarget y[2]\nh = dense(a, 2) + dense(a, 2)\n"
                    "loss mse(tanh(h), y)\n",
    "two_biases": "input a[3]\ntarget y[2]\nparam w[3, 2] = 0.1\nparam c[2] = 0.5\n"
                  "param d[2] = -0.5\nloss mse(a @ w + c + d, y)\n",
    "two_products": "input a[3]\ntarget y[2]\nparam w[3, 2] = 0.1\nparam v[3, 2] = -0.2\n"
                    "loss mse(a @ w + a @ v, y)\n",
    "two_inputs": "input a[3]\ninput b[3]\ntarget y[2]\nh = dense(a, 2) + dense(b, 2)\n"
                  "loss mse(h, y)\n",
}


@pytest.mark.parametrize("opt", ["sgd(lr = 0.1)", "sgd(lr = 0.1, momentum = 0.9)",
                                 "adam(lr = 0.01)"])
@pytest.mark.parametrize("name", SHARED_GRADIENTS)
def test_one_step_moves_every_param_by_its_own_gradient(name, opt):
    """The first update is p - lr g with sgd and momentum, p - lr g / (|g| + eps)
    with adam, for every param, also where two params' gradients are one value."""
    src = SHARED_GRADIENTS[name] + f"train {{\n  optimizer = {opt}\n  shuffle = false\n}}\n"
    m = nncompile.compile_source(src, device="cpu")
    rng = np.random.default_rng(3)
    x = {k: rng.normal(size=(8, 3)).astype(np.float32) for k in m.inputs}
    y = rng.normal(size=(8, 2)).astype(np.float32)
    before, grads = m.params, m.gradients(x, {"y": y})
    m.fit(x=x, y={"y": y}, batch=8, epochs=1)
    for k, g in grads.items():
        assert np.abs(g).max() > 1e-3, k
        step = 0.01 * g / (np.abs(g) + 1e-8) if opt.startswith("adam") else 0.1 * g
        np.testing.assert_allclose(m.params[k], before[k] - step, rtol=1e-5, atol=1e-6,
                                   err_msg=k)


ROOT_MSE = """input x[2]
target y[1]
param w[2, 1] = 1
p = x @ w
loss LOSS
train {
  optimizer = sgd(lr = 0.01)
}
"""


@pytest.mark.parametrize("loss,chunked", [("sqrt(mse(p, y))", False), ("mse(p, y) ^ 2", False),
                                          ("mse(p, y) + 0.1 * sum(w ^ 2)", True),
                                          ("2 * mae(p, y) / sum(w)", True)])
def test_loss_of_many_rows_is_the_loss_of_the_whole_batch(loss, chunked):
    """Over 1024 rows, loss() and the held-out loss evaluate in chunks only
    when the chunks' losses average to the whole batch's: a mean over the
    batch plus or times terms without the batch; else in one call."""
    from nncompile.train.metrics import rows_per_call
    m = nncompile.compile_source(ROOT_MSE.replace("LOSS", loss), device="cpu")
    assert rows_per_call(m.graph, 1100) == (1024 if chunked else 1100)
    x = np.zeros((1100, 2), np.float32)
    y = np.zeros((1100, 1), np.float32)
    y[1024:] = 10                       # the last 76 rows are off by 10, the rest exact
    mse, mae = 76 * 100 / 1100, 76 * 10 / 1100
    want = {"sqrt(mse(p, y))": np.sqrt(mse), "mse(p, y) ^ 2": mse ** 2,
            "mse(p, y) + 0.1 * sum(w ^ 2)": mse + 0.2, "2 * mae(p, y) / sum(w)": mae}[loss]
    assert m.loss(x, y) == pytest.approx(want, rel=1e-6)
    history = m.fit(x=x[1020:1030], y=y[1020:1030], x_test=x, y_test=y, epochs=1, lr=1e-30)
    assert history[0]["test_loss"] == pytest.approx(want, rel=1e-6)


NORMALIZED = """input x[3]
target y[2]
output logits = dense(x, 2)
loss cross_entropy(logits, y)
train {
  data = "d.csv"
  split = 0.25
  normalize = KIND
  epochs = 2
}
"""


@pytest.mark.parametrize("kind", ["standardize", "minmax"])
def test_predict_normalizes_inputs_as_the_training_data_was(kind, tmp_path):
    """After a fit on the train block's data, predict, loss and gradients
    take inputs in the data's units: the training rows' statistics travel
    with the weights (save, load); a fit on arrays given clears them."""
    rng = np.random.default_rng(4)
    x = rng.normal(50, 10, size=(40, 3))
    x[:, 2] = 7.0                                  # a constant feature
    labels = (x[:, 0] > 50).astype(int)
    np.savetxt(tmp_path / "d.csv", np.column_stack([x, labels]), delimiter=",", fmt="%.6g")
    m = nncompile.compile_source(NORMALIZED.replace("KIND", kind), device="cpu",
                                 file=str(tmp_path / "m.nn"))
    assert m.normalization is None
    m.fit()
    (shift, scale), = m.normalization.values()
    train = np.sort(np.random.default_rng(0).permutation(40)[10:])     # split 0.25, seed 0
    xt = np.loadtxt(tmp_path / "d.csv", delimiter=",", dtype=np.float32)[train, :3]
    if kind == "standardize":
        np.testing.assert_allclose(shift, xt.mean(0), rtol=1e-6)
        np.testing.assert_allclose(scale[:2], xt.std(0)[:2], rtol=1e-5)
        assert scale[2] == 1
    else:
        np.testing.assert_array_equal(shift, xt.min(0))
        np.testing.assert_array_equal(scale[:2], (xt.max(0) - xt.min(0))[:2])
        assert scale[2] == np.inf
    new = np.float32([[60, 40, 7], [35, 55, 9]])   # 9: the constant feature moved
    seen = (new - shift) / scale
    assert seen[1, 2] == (0 if kind == "minmax" else 2)
    raw = m.predict(new)
    stats, m.normalization = m.normalization, None
    np.testing.assert_array_equal(raw, m.predict(seen))
    y = np.float32([[0, 1], [1, 0]])
    loss, grads = m.loss(seen, y), m.gradients(seen, y)
    m.normalization = stats
    assert m.loss(new, y) == loss
    np.testing.assert_array_equal(m.gradients(new, y)["logits.weight"], grads["logits.weight"])
    m.save(str(tmp_path / "w.npz"))
    again = nncompile.compile_source(NORMALIZED.replace("KIND", kind), device="cpu")
    again.load(str(tmp_path / "w.npz"))
    np.testing.assert_array_equal(again.predict(new), raw)
    m.fit(x=seen, y=y, epochs=1)
    assert m.normalization is None


def test_api_faults_found_by_the_cli_audit(sample, tmp_path):
    """A ragged list is a DataError; held-out arrays without training arrays
    are refused, not dropped; a diverged model is not saved over good weights;
    Ctrl-C in fit stays a KeyboardInterrupt."""
    from nncompile.train.loop import Interrupted
    m = nncompile.compile(sample("xor"), device="cpu")
    with pytest.raises(nncompile.DataError, match="'x' is not an array of numbers"):
        m.predict([[0, 1], [1]])
    with pytest.raises(nncompile.DataError, match="fit got x_test and y_test but no x and y"):
        m.fit(epochs=1, x_test=np.zeros((4, 2)), y_test=np.zeros((4, 1)))
    sine = nncompile.compile(sample("sine"), device="cpu")
    sine.save(str(tmp_path / "w.npz"))
    good = (tmp_path / "w.npz").read_bytes()
    assert sine.fit(epochs=3, optimizer="sgd", lr=10.0, momentum=0.0)[-1]["diverged"]
    with pytest.raises(nncompile.DataError, match="holds values that are not finite"):
        sine.save(str(tmp_path / "w.npz"))
    assert (tmp_path / "w.npz").read_bytes() == good
    assert issubclass(Interrupted, KeyboardInterrupt)

    def stop(record):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt) as e:
        m.fit(epochs=3, on_epoch=stop)
    assert len(e.value.history) == 1


def test_compile_tells_a_path_from_source_text(tmp_path, monkeypatch):
    """One line that names a file, ends in .nn or has no space is a path:
    a missing one is 'no such model file', not a syntax error."""
    monkeypatch.chdir(tmp_path)
    for name in ("nofile", "m.nn", "sub/model"):
        with pytest.raises(nncompile.DataError) as e:
            nncompile.compile(name)
        assert str(e.value) == (f"{name}: error: no such model file\n"
                                "hint: check the path; model files end in .nn")
    (tmp_path / "sub").mkdir()
    with pytest.raises(nncompile.DataError) as e:
        nncompile.compile("sub")
    assert str(e.value) == "sub: error: this is a folder, not a model file\n" \
                           "hint: give the .nn file itself"
    (tmp_path / "plain").write_text("input x[2]\noutput y = x * 2\n")
    assert nncompile.compile("plain").file == "plain"
    m = nncompile.compile("input x[2]")             # one line with a space: source text
    assert m.file == "<string>" and list(m.inputs) == ["x"]


def test_set_params_names_text_as_text(sample):
    m = nncompile.compile(sample("xor"), device="cpu")
    with pytest.raises(nncompile.DataError) as e:
        m.set_params({"h.weight": "abc"})
    assert str(e.value) == ("params: error: param 'h.weight' holds text, not real numbers\n"
                            "hint: weights come from `nncompile run` or Model.save")


def test_fit_reads_a_data_file_named_from_python(sample, tmp_path, monkeypatch):
    """fit(data=...) takes a built-in set's name or a file path, relative to
    the working folder; the file trains as the same rows given as arrays."""
    rows = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]] * 4, np.float32)
    (tmp_path / "gates.csv").write_text("\n".join(",".join(f"{v:g}" for v in r) for r in rows))
    monkeypatch.chdir(tmp_path)
    by_file = nncompile.compile(sample("xor"), device="cpu")
    h_file = by_file.fit(data="gates.csv", epochs=5, split=0.0, shuffle=False)
    by_array = nncompile.compile(sample("xor"), device="cpu")
    h_array = by_array.fit(x=rows[:, :2], y=rows[:, 2:], epochs=5, shuffle=False)
    assert [r["loss"] for r in h_file] == [r["loss"] for r in h_array]
    builtin = nncompile.compile(sample("xor"), device="cpu").fit(data="xor", epochs=2)
    assert len(builtin) == 2
    with pytest.raises(nncompile.DataError) as e:
        by_file.fit(data="missing.csv", epochs=1)
    assert str(tmp_path / "missing.csv") in str(e.value)


def test_save_and_load_round_trip(tmp_path, sample):
    m = nncompile.compile(sample("xor"), device="cpu")
    m.fit(epochs=30)
    path = tmp_path / "w.npz"
    m.save(str(path))
    fresh = nncompile.compile(sample("xor"), device="cpu")
    fresh.load(str(path))
    for k, v in m.params.items():
        np.testing.assert_array_equal(fresh.params[k], v)
    np.testing.assert_array_equal(fresh.predict(GATE_X), m.predict(GATE_X))
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(m.params)


def test_loss_and_gradients_api_agree_with_predict(sample):
    m = nncompile.compile(sample("xor"), device="cpu")
    y = np.array([[0], [1], [1], [0]], np.float32)
    p = m.predict(GATE_X).astype(np.float64)
    assert m.loss(GATE_X, y) == pytest.approx(float(np.mean((p - y) ** 2)), rel=1e-6)
    g = m.gradients(GATE_X, y)
    assert set(g) == set(m.params) and all(g[k].shape == m.params[k].shape for k in g)


def test_params_are_copies_and_set_params_writes_through(sample):
    m = nncompile.compile(sample("xor"), device="cpu")
    p = m.params
    p["h.bias"][:] = 5
    assert not np.any(m.params["h.bias"] == 5)
    m.set_params({"h.bias": np.full(4, 2.0)})
    np.testing.assert_array_equal(m.params["h.bias"], np.full(4, 2.0, np.float32))
    with pytest.raises(nncompile.DataError, match=r"shape \[3\], the model declares \[4\]"):
        m.set_params({"h.bias": np.zeros(3)})
    assert m.inputs == {"x": (2,)} and m.targets == {"y": (1,)}


def test_several_inputs_take_dicts():
    src = """
input a[2]
input b[3]
target t[1]
param wa[2, 1] = ones
param wb[3, 1] = ones
output s = a @ wa + b @ wb
loss mse(s, t)
"""
    m = nncompile.compile_source(src, device="cpu")
    out = m.predict({"a": np.ones((4, 2)), "b": np.ones((4, 3))})
    np.testing.assert_array_equal(out, np.full((4, 1), 5.0, np.float32))
    assert m.loss({"a": np.ones((4, 2)), "b": np.ones((4, 3))}, np.zeros((4, 1))) == 25.0


def test_history_reports_the_overfitting_gap(sample):
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    h = m.fit(epochs=2)
    assert set(h[0]) >= {"epoch", "loss", "train_accuracy", "test_accuracy", "test_loss", "time"}
    json.dumps(h)


def test_api_data_faults_have_hints():
    """Faults of the data passed to the Python API end in a hint too."""
    m = nncompile.compile_source("input x[2]\ntarget y[1]\noutput p = dense(x, 1)\n"
                                 "loss mse(p, y)\n", device="cpu")
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    cases = [(lambda: m.predict({"z": x}), "key the dict by the input names"),
             (lambda: m.predict(np.array([["a", "b"]])), "convert it with np.asarray"),
             (lambda: m.loss(x, y[:3]), "give one row per example in each"),
             (lambda: m.fit(x=x), "or neither"),
             (lambda: m.fit(x=x[:0], y=y[:0]), "at least one row"),
             (lambda: m.predict(x[:0]), "give at least one example"),
             (lambda: m.loss(x[:0], y[:0]), "give at least one example"),
             (lambda: m.fit(x=x, y=y, x_test=x, y_test=y[:2]), "one row per example"),
             (lambda: m.fit(x=x, y=y, x_test=x), "need their targets"),
             (lambda: m.save(str(os.path.dirname(__file__))), "rename or remove that folder")]
    for call, hint in cases:
        with pytest.raises(nncompile.DataError) as info:
            call()
        assert hint in info.value.hint, (hint, str(info.value))
    two = nncompile.compile_source("input a[2]\ninput b[3]\noutput p = dense(a, 1) + "
                                   "dense(b, 1)\n", device="cpu")
    with pytest.raises(nncompile.DataError, match="different numbers of examples: a 3, b 2"):
        two.predict({"a": np.ones((3, 2)), "b": np.ones((2, 3))})
    plain = nncompile.compile_source("input x[2]\ntarget y[1]\noutput p = dense(x, 1)\n",
                                     device="cpu")
    with pytest.raises(nncompile.DataError, match="e.g. loss mse"):
        plain.loss(x, y)


def _weight_gradient_spread(model):
    """RMS gradient of each weight matrix on the first update's examples, first layer first."""
    from nncompile.check import start_batch
    x, y, _ = start_batch(model)
    grads = model.gradients(x, y)
    return [float(np.sqrt(np.mean(np.square(grads[k], dtype=np.float64))))
            for k in model.graph.params if k.endswith(".weight")]


@pytest.mark.slow
def test_gradients_vanish_through_deep_sigmoid_layers_and_not_through_relu():
    """deep_sigmoid.nn: the first layer's gradient is thousands of times smaller
    than the last's and 20 epochs stay near chance; the same net with relu (he
    init) has gradients within 3x of each other and reaches 90%."""
    text = open_sample("deep_sigmoid")
    sigmoid = nncompile.compile_source(text, device="cpu")
    spread = _weight_gradient_spread(sigmoid)
    assert spread[-1] / spread[0] > 1000
    assert all(a < b for a, b in zip(spread, spread[1:]))      # shrinking at every layer
    assert sigmoid.fit()[-1]["test_accuracy"] < 0.2

    relu = nncompile.compile_source(text.replace("sigmoid)", "relu)"), device="cpu")
    spread = _weight_gradient_spread(relu)
    assert max(spread) / min(spread) < 3
    assert relu.fit()[-1]["test_accuracy"] >= 0.9


def test_gradient_sizes_report_the_first_sgd_step_and_leave_the_params(sample):
    """xor trains with plain sgd(lr = 0.5) on all 4 examples at once, so the
    first step moves each param by exactly 0.5 * its gradient."""
    from nncompile.check import gradient_sizes
    m = nncompile.compile(sample("xor"), device="cpu")
    before = m.params
    heading, table, notes = gradient_sizes(m)
    assert heading == "gradients at the start, on the first update of epoch 1 (4 of the 4 " \
                      "training examples of 'xor', seed 1):"
    assert notes == []
    for k, v in m.params.items():
        np.testing.assert_array_equal(v, before[k])
    grads = m.gradients(GATE_X, np.float32([[0], [1], [1], [0]]))
    rows = {r.split()[0]: r.split()[1:] for r in table[2:]}
    assert list(rows) == ["h.weight", "h.bias", "p.weight", "p.bias"]
    for k, (grad, value, step) in rows.items():
        rms_g = np.sqrt(np.mean(np.square(grads[k], dtype=np.float64)))
        rms_v = np.sqrt(np.mean(np.square(before[k], dtype=np.float64)))
        assert grad == f"{rms_g:.1e}" and value == f"{rms_v:.1e}"
        assert step == ("-" if rms_v == 0 else f"{0.5 * rms_g / rms_v:.1e}")


# early stopping -----------------------------------------------------------------

OVERFIT = """model overfit
input  x[64]
target y[10]
h1     = dense(x, 256, relu)
logits = dense(h1, 10)
loss cross_entropy(logits, y)
train {
  data      = digits
  split     = 0.8
  normalize = standardize
  optimizer = adam(lr = 0.01)
  batch     = 16
  epochs    = 100
  early_stop = 5
}
"""


def test_early_stop_keeps_the_weights_of_the_lowest_held_out_loss():
    """A 256-unit net on 359 digits: training loss heads to 0 while the held-out
    loss turns up; training stops 5 epochs after its lowest point and the
    params are that epoch's, bit for bit (the same run cut there)."""
    m = nncompile.compile_source(OVERFIT, device="cpu")
    history = m.fit()
    best = [r for r in history if r.get("best")]
    assert len(best) == 1 and best[0]["test_loss"] == min(r["test_loss"] for r in history)
    b = best[0]["epoch"]
    assert len(history) == b + 5 < 100
    assert history[-1]["stopped_early"] is True
    assert [r for r in history if r.get("stopped_early")] == [history[-1]]
    assert all(r["test_loss"] >= best[0]["test_loss"] for r in history[b:])
    cut = nncompile.compile_source(OVERFIT, device="cpu")
    plain = cut.fit(epochs=b, early_stop=None)
    for k, v in cut.params.items():
        np.testing.assert_array_equal(m.params[k], v)
    assert [r["test_loss"] for r in plain] == [r["test_loss"] for r in history[:b]]


def test_early_stop_that_never_triggers_still_keeps_the_best_epoch():
    m = nncompile.compile_source(OVERFIT, device="cpu")
    history = m.fit(epochs=12, early_stop=50)
    assert len(history) == 12 and not any(r.get("stopped_early") for r in history)
    b = next(r["epoch"] for r in history if r.get("best"))
    cut = nncompile.compile_source(OVERFIT, device="cpu")
    cut.fit(epochs=b, early_stop=None)
    for k, v in cut.params.items():
        np.testing.assert_array_equal(m.params[k], v)


def test_early_stop_needs_held_out_data():
    src = OVERFIT.replace("split     = 0.8", "split     = 0")
    m = nncompile.compile_source(src, device="cpu", file="o.nn")
    with pytest.raises(nncompile.CompileError) as e:
        m.fit()
    assert str(e.value).splitlines()[0] == (
        "o.nn:14:16: error: early_stop = 5 watches the held-out loss, but this run holds out "
        "no data (split = 0)")
    assert "hint: set split = 0.2 in the train block" in str(e.value)
    x = np.zeros((4, 64), np.float32)
    y = np.eye(10, dtype=np.float32)[[0, 1, 2, 3]]
    with pytest.raises(nncompile.DataError, match="pass x_test and y_test to fit"):
        m.fit(x=x, y=y)
    # with held-out data passed in, it watches that
    h = m.fit(x=x, y=y, x_test=x, y_test=y, epochs=3)
    assert sum(bool(r.get("best")) for r in h) == 1


# watching the gradients through training ------------------------------------------

def _rms_of(grads):
    return {k: float(np.sqrt(np.mean(np.square(g, dtype=np.float64)))) for k, g in grads.items()}


def _without(history, *keys):
    return [{k: v for k, v in r.items() if k not in keys} for r in history]


@pytest.mark.parametrize("options", [{}, {"accumulate": 2}], ids=["plain", "accumulate"])
def test_grad_rms_is_each_params_rms_gradient_on_the_first_updates_examples(sample, options):
    """digits_dropout (dropout 0.5, adam): the start and each epoch's record
    hold the RMS of model.gradients on the first update's examples, with the
    first dropout masks of the seed, for the params of that moment; and the
    training itself is bit for bit the one without grad_rms (the probe draws
    no mask from training's stream)."""
    from nncompile.trace import first_update
    m = nncompile.compile(sample("digits_dropout"), device="cpu")
    starts = []
    history = m.fit(epochs=2, grad_rms=True, on_start=starts.append, **options)
    x, y, _ = first_update(m, m.config(**options))
    assert len(next(iter(x.values()))) == 32 * options.get("accumulate", 1)
    for epochs, measured in [(0, starts[0]["grad_rms"]), (1, history[0]["grad_rms"]),
                             (2, history[1]["grad_rms"])]:
        trained = nncompile.compile(sample("digits_dropout"), device="cpu")
        if epochs:
            trained.fit(epochs=epochs, **options)
        fresh = nncompile.compile(sample("digits_dropout"), device="cpu")
        fresh.set_params(trained.params)
        expected = _rms_of(fresh.gradients(x, y))      # a new program: the first masks
        assert list(measured) == list(m.graph.params)
        assert measured == pytest.approx(expected, rel=1e-6)
    plain = nncompile.compile(sample("digits_dropout"), device="cpu")
    assert _without(plain.fit(epochs=2, **options), "time") == \
        _without(history, "time", "grad_rms")
    for k, v in plain.params.items():
        np.testing.assert_array_equal(m.params[k], v)


def test_grad_rms_shows_deep_sigmoid_gradients_staying_vanished(sample):
    """Through 3 epochs of deep_sigmoid the first layer's gradient stays over
    1000x below the last layer's, while a relu net's stay within 5x."""
    text = open_sample("deep_sigmoid")
    for act, low, high in (("sigmoid", 1000, np.inf), ("relu", 1, 5)):
        m = nncompile.compile_source(text.replace("sigmoid)", act + ")"), device="cpu")
        for r in m.fit(epochs=3, grad_rms=True):
            g = r["grad_rms"]
            weights = [g[k] for k in g if k.endswith(".weight")]
            assert low <= max(weights) / min(weights) < high, (act, r["epoch"])
            if act == "sigmoid":
                assert g["h1.weight"] < g["h2.weight"] < g["logits.weight"]


def test_fit_takes_class_labels_as_the_one_hot_rows_they_stand_for(sample):
    """A 1-D integer y for a target of K > 1 entries is class labels (as a data
    file's, and as PyTorch's CrossEntropyLoss takes): the same run as one-hot rows."""
    rng = np.random.default_rng(3)
    x, xt = rng.random((60, 64), np.float32), rng.random((20, 64), np.float32)
    labels, test_labels = rng.integers(0, 10, 60), rng.integers(0, 10, 20)
    runs = []
    for y, yt in ((labels, test_labels), (np.eye(10)[labels], np.eye(10)[test_labels])):
        m = nncompile.compile(sample("digits_mlp"), device="cpu")
        runs.append((m.fit(x=x, y=y, x_test=xt, y_test=yt, epochs=2), m.params))
    (h1, p1), (h2, p2) = runs
    assert [{k: v for k, v in r.items() if k != "time"} for r in h1] == \
        [{k: v for k, v in r.items() if k != "time"} for r in h2]
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    m = nncompile.compile(sample("digits_mlp"), device="cpu")
    with pytest.raises(nncompile.DataError, match=r"^error: class label 10 of example 0 "
                       r"\(counting from 0\) is outside 0\.\.9 for the target \[10\]\n"):
        m.fit(x=x[:2], y=np.array([10, 1]), epochs=1)
    with pytest.raises(nncompile.DataError, match="^error: 'y' is not an array of numbers"):
        m.fit(x=x[:2], y=[[1, 2], [3]], epochs=1)         # ragged: no ValueError from numpy


MODELS = {   # loss -> a model whose target t that loss takes
    "perceptron": "input x[2]\ntarget t[1]\nz = dense(x, 1)\nloss perceptron(z, t)\n",
    "binary_cross_entropy": "input x[2]\ntarget t[1]\nz = dense(x, 1)\n"
                            "loss binary_cross_entropy(z, t)\n",
    "cross_entropy": "input x[2]\ntarget t[3]\nz = dense(x, 3)\nloss cross_entropy(z, t)\n",
}


@pytest.mark.parametrize("loss, t, message", [
    ("perceptron", [[0], [1], [-1]], "'t' example 2 (counting from 0) holds -1, but perceptron "
     "at <string>:4:6 takes targets 0 or 1"),
    ("binary_cross_entropy", [[0], [3], [1]], "'t' example 1 (counting from 0) holds 3, but "
     "binary_cross_entropy at <string>:4:6 takes targets from 0 to 1"),
    ("cross_entropy", [[0, 1, 0], [1, 1, 0], [0, 0, 1]], "'t' example 1 (counting from 0) sums "
     "to 2, but cross_entropy at <string>:4:6 takes one-hot rows or probabilities that sum "
     "to 1"),
    ("cross_entropy", [[0, 1, 0], [0.5, 1, -0.5], [0, 0, 1]], "'t' example 1 (counting from 0) "
     "holds -0.5, but cross_entropy at <string>:4:6 takes one-hot rows or probabilities that "
     "sum to 1")])
def test_targets_a_loss_cannot_take_are_a_data_error_at_the_first_example(loss, t, message):
    m = nncompile.compile_source(MODELS[loss], device="cpu")
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(nncompile.DataError) as e:
        m.fit(x=x, y=np.array(t, np.float32), epochs=1)
    assert e.value.message == message and e.value.hint
    with pytest.raises(nncompile.DataError):                 # held-out targets too
        m.fit(x=x[:1], y=np.array(t[:1], np.float32), x_test=x, y_test=np.array(t, np.float32))


def test_targets_each_loss_takes_train(tmp_path):
    x = np.zeros((2, 2), np.float32)
    for loss, t in [("perceptron", [[0], [1]]), ("binary_cross_entropy", [[0.25], [1]]),
                    ("cross_entropy", [[0.2, 0.3, 0.5], [0, 0, 1]])]:
        m = nncompile.compile_source(MODELS[loss], device="cpu")
        assert len(m.fit(x=x, y=np.array(t, np.float32), epochs=1)) == 1


def test_a_data_files_bad_target_is_named_at_its_csv_line_or_npz_example(tmp_path):
    model = tmp_path / "m.nn"
    model.write_text(MODELS["perceptron"] + 'train {\n  data = "d.csv"\n  optimizer = sgd(lr = '
                     '0.1)\n  batch = 1\n  epochs = 1\n}\n')
    (tmp_path / "d.csv").write_text("a,b,t\n0,0,0\n\n0,1,-1\n1,1,1\n")
    m = nncompile.compile(str(model), device="cpu")
    with pytest.raises(nncompile.DataError) as e:
        m.fit()
    assert str(e.value) == (
        f"{tmp_path / 'd.csv'}:4: error: its target holds -1, but perceptron at "
        f"{model}:4:6 takes targets 0 or 1\n"
        "hint: this perceptron rule takes 0/1 targets (step's outputs): write -1 targets as 0")
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.array([[1.0], [0.0], [2.0]]))
    with pytest.raises(nncompile.DataError) as e:
        m.fit(data=str(tmp_path / "d.npz"))
    assert e.value.message.startswith("example 2 (counting from 0): its target holds 2, but ")


def test_a_model_prints_as_what_it_declares(sample):
    m = nncompile.compile(sample("lenet"), device="cpu", quiet=True)
    assert repr(m) == (f"<nncompile.Model lenet from {sample('lenet')} on cpu: inputs "
                       "x[1, 8, 8]; targets y[10]; outputs p[10]; 8 params of 6058 numbers>")
    m = nncompile.compile_source("input x[2]\noutput y = relu(x)\n", device="cpu")
    assert repr(m) == ("<nncompile.Model model from <string> on cpu: inputs x[2]; targets "
                       "none; outputs y[2]; 0 params of 0 numbers>")


def test_loss_and_gradients_of_a_model_without_a_loss_are_a_data_error():
    m = nncompile.compile_source("input x[2]\noutput y = relu(x)\n", device="cpu",
                                 file="f.nn")
    for call in (m.loss, m.gradients):
        with pytest.raises(nncompile.DataError) as e:
            call([[1, 2]], [[1]])
        assert str(e.value) == ("f.nn: error: the model has no loss statement, so there is no "
                                "loss or gradient to compute\n"
                                "hint: add a 'loss' statement, e.g. loss mse(p, y)")


def test_reset_params_draws_the_initial_values_of_a_seed_again():
    with open(os.path.join(os.path.dirname(__file__), "..", "samples", "xor.nn")) as f:
        text = f.read()
    model = nncompile.compile_source(text, device="cpu", quiet=True)
    start = model.params
    model.fit(epochs=5)
    model.reset_params()                     # the train block's seed (1)
    for k, v in start.items():
        np.testing.assert_array_equal(model.params[k], v)
    other = nncompile.compile_source(text.replace("seed      = 1", "seed = 7"), device="cpu",
                                     quiet=True)
    model.reset_params(7)
    for k, v in other.params.items():
        np.testing.assert_array_equal(model.params[k], v)
    assert not np.array_equal(model.params["h.weight"], start["h.weight"])
    with pytest.raises(ValueError, match="seed must be a whole number of 0 or more, got -1"):
        model.reset_params(-1)
