"""The command line through a subprocess: outputs, files, exit statuses 0/1/2,
and never a Python traceback for a user's fault."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nncompile
from nncompile.api import write_atomic
from nncompile.backends.device import cuda_status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "samples")
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


def cli(*args, cwd, module="nncompile.cli", timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def user_fault(result, first_line):
    """Exit 1, the exact first line of the message on stderr, no traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("nncompile: using")]
    assert lines[0] == first_line, result.stderr
    return lines


def usage_error(result, *expect):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("usage: nncompile")
    for text in expect:
        assert text in result.stderr


@pytest.fixture
def work(tmp_path):
    for name in ("xor.nn", "digits_mlp.nn"):
        shutil.copy(os.path.join(SAMPLES, name), tmp_path / name)
    return tmp_path


@pytest.fixture
def trained(work):
    """xor weights written by the API (5 epochs), and the model holding them."""
    model = nncompile.compile(str(work / "xor.nn"), device="cpu")
    model.fit(epochs=5)
    model.save(str(work / "xor.weights.npz"))
    return work, model


# run ---------------------------------------------------------------------------------

def test_run_writes_weights_and_history(work):
    out = work / "out"
    r = cli("run", "xor.nn", "--epochs", "50", "--out", "out", "--device", "cpu", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "nncompile: training xor on xor, 4 examples (cpu, 50 epochs, batch 4)"
    assert sum(ln.startswith("epoch ") for ln in lines) == 50
    assert lines[1].startswith("epoch  1/50  loss ")
    assert lines[-3].startswith("final: loss ")
    assert lines[-2:] == [f"wrote {os.path.join('out', 'xor.weights.npz')}",
                          f"wrote {os.path.join('out', 'xor.history.json')}"]
    assert sorted(os.listdir(out)) == ["xor.history.json", "xor.weights.npz"]   # no temp files

    with np.load(out / "xor.weights.npz", allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    assert {k: v.shape for k, v in weights.items()} == {
        "h.weight": (2, 4), "h.bias": (4,), "p.weight": (4, 1), "p.bias": (1,)}
    assert all(v.dtype == np.float32 for v in weights.values())

    history = json.loads((out / "xor.history.json").read_text())
    assert history["model"] == "xor" and history["device"] == "cpu"
    assert [rec["epoch"] for rec in history["epochs"]] == list(range(1, 51))

    # the same file and seed through the API give the same numbers
    model = nncompile.compile(str(work / "xor.nn"), device="cpu")
    records = model.fit(epochs=50)
    assert [rec["loss"] for rec in records] == [rec["loss"] for rec in history["epochs"]]
    for k, v in model.params.items():
        np.testing.assert_array_equal(weights[k], v)

    # written with the usual permissions, not mkstemp's 0600
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(out / "xor.weights.npz").st_mode & 0o777 == 0o666 & ~mask


def test_run_with_early_stop_reports_and_writes_the_best_epoch(work):
    text = (work / "digits_mlp.nn").read_text()
    (work / "es.nn").write_text(text.replace("epochs    = 30", "epochs    = 60\n  early_stop = 2"))
    r = cli("run", "es.nn", "--device", "cpu", "--out", "out", cwd=work)
    assert r.returncode == 0, r.stderr
    history = json.loads((work / "out" / "es.history.json").read_text())["epochs"]
    best = [rec for rec in history if rec.get("best")]
    last = history[-1]
    assert len(best) == 1 and last["stopped_early"] and len(history) == best[0]["epoch"] + 2
    lines = r.stdout.splitlines()
    assert lines[-5:-2] == [
        f"stopped early after epoch {last['epoch']}: the held-out loss has not improved for "
        "2 epochs (early_stop = 2)",
        f"kept the weights of epoch {best[0]['epoch']}, whose held-out loss "
        f"{best[0]['test_loss']:.6f} is the lowest",
        f"final: loss {best[0]['loss']:.6f}, train accuracy {best[0]['train_accuracy']:.4f}, "
        f"test accuracy {best[0]['test_accuracy']:.4f}, gap "
        f"{best[0]['train_accuracy'] - best[0]['test_accuracy']:+.4f}"]
    model = nncompile.compile(str(work / "digits_mlp.nn"), device="cpu")
    model.fit(epochs=best[0]["epoch"])
    with np.load(work / "out" / "es.weights.npz", allow_pickle=False) as z:
        for k, v in model.params.items():
            np.testing.assert_array_equal(z[k], v)

    (work / "gate.nn").write_text((work / "xor.nn").read_text().replace(
        "seed      = 1", "seed      = 1\n  early_stop = 3"))
    lines = user_fault(cli("run", "gate.nn", "--device", "cpu", cwd=work),
                       "gate.nn:18:16: error: early_stop = 3 watches the held-out loss, but "
                       "this run holds out no data (split = 0)")
    assert lines[-1] == ("hint: set split = 0.2 in the train block to hold out a fifth of the "
                         "data, or remove early_stop")
    assert not (work / "gate.weights.npz").exists()


def _records(test_losses, train_losses):
    return [{"epoch": i + 1, "loss": a, "test_loss": b}
            for i, (a, b) in enumerate(zip(train_losses, test_losses))]


def test_the_overfitting_note_needs_a_rise_late_enough_while_training_improves():
    from nncompile.train.notes import overfitting_note
    train = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05]
    note = overfitting_note(_records([0.9, 0.5, 0.52, 0.54, 0.56, 0.56], train))
    assert note == ("note: overfitting: the held-out loss was lowest at epoch 2 (0.5000) and "
                    "ended 12% higher, while the training loss fell from 0.5000 to 0.0500\n"
                    "  hint: early_stop = 5 in the train block stops there and keeps that "
                    "epoch's weights; more data, weight decay or dropout also help "
                    "(docs/overfitting.md)")
    assert overfitting_note(_records([0.9, 0.5, 0.52, 0.54, 0.56, 0.54], train)) is None
    assert overfitting_note(_records([0.9, 0.8, 0.7, 0.5, 0.6, 0.6], train)) is None  # 2 epochs
    flat = [1.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert overfitting_note(_records([0.9, 0.5, 0.6, 0.6, 0.6, 0.6], flat)) is None
    assert overfitting_note(_records([0.9, 0.5, float("nan"), 0.6, 0.6, 0.6], train)) is None
    assert overfitting_note([{"epoch": i, "loss": 1.0 / i} for i in range(1, 9)]) is None
    # no gap at the end: the training loss is not 1.1 times below the held-out loss
    assert overfitting_note(_records([0.9, 0.5, 0.52, 0.54, 0.56, 0.56],
                                     [1.0, 0.9, 0.8, 0.7, 0.6, 0.51])) is None
    assert overfitting_note(_records([0.9, 0.5, 0.52, 0.54, 0.56, 0.56],
                                     [1.0, 0.9, 0.8, 0.7, 0.6, 0.509])) is not None


def test_a_run_that_learned_nothing_says_so_and_is_no_overfitting(work):
    """digits_mlp on the raw pixels (0 to 16) with lr 0.05: the relus die in
    the first epochs and the loss stays at ln 10, chance for 10 classes. Its
    held-out loss was lowest at epoch 1 and ended higher, but the training
    loss is no lower than it: a note says the network learned nothing, not
    that it overfitted."""
    (work / "raw.nn").write_text((work / "digits_mlp.nn").read_text().replace(
        "normalize = standardize", "normalize = none"))
    r = cli("run", "raw.nn", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    history = json.loads((work / "raw.history.json").read_text())["epochs"]
    assert min(r["test_loss"] for r in history) == history[0]["test_loss"]
    assert history[-1]["test_loss"] > 1.1 * history[0]["test_loss"]
    final = history[-1]["loss"]
    assert 2.2565 < final < 2.35            # 0.98 ln 10 and above
    assert r.stdout.splitlines()[-2:] == [
        f"note: the network learned nothing: its training loss ended at {final:.4f}, what "
        "giving each of the 10 classes the same probability gives (ln 10 = 2.3026)",
        "  hint: `run --grad-rms` shows the gradients that died (relu units a big step turned "
        "off for good) or vanished (deep sigmoid or tanh layers); a smaller lr or "
        "normalize = standardize in the train block, or relu layers, are the usual cures"]
    (work / "small.nn").write_text((work / "raw.nn").read_text().replace("lr = 0.05",
                                                                          "lr = 0.005"))
    r = cli("run", "small.nn", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0 and "learned nothing" not in r.stdout
    assert json.loads((work / "small.history.json").read_text())["epochs"][-1][
        "test_accuracy"] > 0.95


def test_run_notes_that_digits_mlp_overfits(work):
    """digits_mlp's held-out loss is lowest at epoch 9 and ends higher while
    its training loss goes to 0.0015; a run with early_stop prints no note."""
    r = cli("run", "digits_mlp.nn", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    history = json.loads((work / "digits_mlp.history.json").read_text())["epochs"]
    from nncompile.train.notes import overfitting_note
    note = overfitting_note(history)
    assert note.startswith("note: overfitting: the held-out loss was lowest at epoch 9 (")
    assert r.stdout.splitlines()[-2:] == note.splitlines()     # --quiet: no "wrote" lines
    (work / "es.nn").write_text((work / "digits_mlp.nn").read_text().replace(
        "epochs    = 30", "epochs    = 30\n  early_stop = 30"))
    r = cli("run", "es.nn", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0 and "overfitting" not in r.stdout


def test_the_rising_note_needs_a_loss_that_doubled_and_gave_back_a_quarter_of_its_fall():
    from nncompile.train.notes import rising_note

    def note(losses):
        return rising_note([{"epoch": i + 1, "loss": v} for i, v in enumerate(losses)])
    assert note([2.3, 0.05, 0.8]) == (
        "note: the training loss grew: it was lowest at epoch 2 (0.0500) and ended 16 times "
        "higher (0.8000): the steps overshoot\n"
        "  hint: use a smaller lr (smaller batches need smaller ones), or clip = 1.0 in the "
        "train block; `run --grad-rms` shows the gradients growing")
    assert note([2.3, 0.05, 0.6]) is None              # 0.55 < a quarter of 2.25
    assert note([2.3, 0.5, 0.99]) is None              # less than twice 0.5
    assert note([0.3, 0.00001, 0.0002]) is None        # a wobble far below the start
    assert note([1.0, 2.0, 3.0]) is not None           # lowest at epoch 1: grew from the start
    assert note([1.0, float("nan"), 3.0]) is None      # diverged: `run` stops with an error
    assert note([0.1, 0.0, 0.025]) is None             # a lowest of 0 (was a ZeroDivisionError)


def test_a_perceptron_on_xor_is_told_that_the_rule_cannot_converge(work):
    """and_gate.nn's perceptron on XOR: the rule cycles forever; `run` says
    why (with the convergence theorem), not that a loss of 0 grew."""
    shutil.copy(os.path.join(SAMPLES, "and_gate.nn"), work / "and_gate.nn")
    (work / "p.nn").write_text((work / "and_gate.nn").read_text().replace(
        "data      = and", "data      = xor").replace("epochs    = 20", "epochs    = 100"))
    r = cli("run", "p.nn", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    h = json.loads((work / "p.history.json").read_text())["epochs"]
    assert min(e["loss"] for e in h) == 0 and h[-1]["train_accuracy"] == 0.5
    assert r.stdout.splitlines()[-2:] == [
        "note: the perceptron rule did not converge: after 100 epochs it gets 50% of the "
        "training examples right",
        "  hint: when a line (a plane) separates the classes, the rule gets them all right in "
        "finitely many steps (the perceptron convergence theorem): train more epochs; when "
        "none does, as for XOR, no number of epochs will: add a hidden layer (samples/xor.nn)"]
    r = cli("run", "and_gate.nn", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0 and "note" not in r.stdout
    r = cli("run", "and_gate.nn", "--device", "cpu", "--quiet", "--epochs", "1", cwd=work)
    assert "note: the perceptron rule did not converge: after 1 epoch it gets 75%" in r.stdout


def test_the_chance_note_needs_a_loss_within_2_percent_of_ln_k_and_a_chance_accuracy(work):
    import math

    from nncompile.train.notes import chance_note
    model = nncompile.compile(str(work / "digits_mlp.nn"), device="cpu", quiet=True)
    ln10 = math.log(10)
    assert chance_note(model, model.train_config, {"loss": 0.981 * ln10}).startswith("note: the network learned")
    assert chance_note(model, model.train_config, {"loss": 1.019 * ln10, "train_accuracy": 0.2}) is not None
    assert chance_note(model, model.train_config, {"loss": 0.979 * ln10}) is None
    assert chance_note(model, model.train_config, {"loss": 1.021 * ln10}) is None
    assert chance_note(model, model.train_config, {"loss": ln10, "train_accuracy": 0.21}) is None
    sine = nncompile.compile(os.path.join(SAMPLES, "sine.nn"), device="cpu", quiet=True)
    assert chance_note(sine, sine.train_config, {"loss": ln10}) is None


def test_a_run_whose_loss_grows_says_the_steps_overshoot(work):
    """digits_mlp with batch 10 at the lr that suits batch 32: the held-out
    accuracy stays near 95% while the loss grows from 0.91 to 467 (a few
    examples predicted ever more confidently wrong). Neither 'learned
    nothing' nor overfitting, though a cross_entropy far above ln 10."""
    (work / "b10.nn").write_text((work / "digits_mlp.nn").read_text().replace(
        "batch     = 32", "batch     = 10"))
    r = cli("run", "b10.nn", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    h = json.loads((work / "b10.history.json").read_text())["epochs"]
    assert h[-1]["loss"] > 100 * h[0]["loss"] and h[-1]["train_accuracy"] > 0.9
    assert r.stdout.splitlines()[-2] == (
        f"note: the training loss grew: it was lowest at epoch 1 ({h[0]['loss']:.4f}) and "
        f"ended {h[-1]['loss'] / h[0]['loss']:.0f} times higher ({h[-1]['loss']:.4f}): "
        "the steps overshoot")


def test_early_stop_lines_when_no_held_out_loss_was_finite():
    from nncompile.train.notes import early_stop_lines
    from nncompile.train.loop import EarlyStop
    history = [{"epoch": e, "loss": 1.0, "test_loss": float("inf")} for e in (1, 2)]
    stop = EarlyStop(model=None, patience=2)
    for r in history:
        stop.update(r)
    stop.restore(history)                      # nothing kept: no epoch was finite
    assert history[-1]["stopped_early"] and not any(r.get("best") for r in history)
    assert early_stop_lines(history, 2) == [
        "stopped early after epoch 2: the held-out loss has not improved for 2 epochs "
        "(early_stop = 2)"]


def test_run_defaults_to_the_models_folder(work):
    r = cli("run", str(work / "xor.nn"), "--epochs", "2", "--device", "cpu", "--quiet",
            cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (work / "xor.weights.npz").is_file() and (work / "xor.history.json").is_file()
    assert not any(ln.startswith("epoch ") for ln in r.stdout.splitlines())


def test_python_dash_m_nncompile(work):
    r = cli("check", "xor.nn", cwd=work, module="nncompile")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "model xor (xor.nn)"
    r = cli("--version", cwd=work, module="nncompile")
    assert r.returncode == 0 and r.stdout.strip() == f"nncompile {nncompile.__version__}"


# check and emit --------------------------------------------------------------------

def test_check_prints_the_summary_and_ok(work):
    r = cli("check", "xor.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "model xor (xor.nn)"
    assert "h      [N, 4]  value, line 7" in lines
    assert "p.weight  [4, 1]     4  xavier" in lines
    assert "total: 17 params (68 bytes as float32), 17 IR nodes" in lines
    assert "a training step on a batch of 4: 404 FLOP, 55% of it in matrix products " \
           "(dense, @, conv2d)" in lines
    # x [4, 2] and y [4, 1]: 12 floats; the step's buffers: h and d h ([4, 4] each), p,
    # d p and one more [4, 1], two scalars (the loss reuses one), the bias gradients
    # [1] and [4]: 51 floats; the weight and bias updates write into the params
    assert "memory for its values: 252 bytes (inputs and targets included), 9 buffers " \
           "for 10 values" in lines
    (worst,) = [ln for ln in lines if ln.startswith("worst relative error ")]
    assert worst.endswith(": ok") and float(worst.split()[3].rstrip(":")) < 1e-5
    at = lines.index("gradients at the start, on the first update of epoch 1 (4 of the 4 "
                     "training examples of 'xor', seed 1):")
    assert lines[at + 1].split() == ["param", "rms", "grad", "rms", "value", "first", "step"]
    assert [ln.split()[0] for ln in lines[at + 3:]] == ["h.weight", "h.bias", "p.weight",
                                                       "p.bias"]
    assert not any(ln.startswith("note:") for ln in lines)


def test_check_gives_the_line_that_names_each_value(work):
    """`output p = h` names p on line 4, though p is h's value from line 3."""
    (work / "outp.nn").write_text("input x[2]\n\nh = relu(x)\noutput p = h\n"
                                  "output q = relu(h)\n")
    r = cli("check", "outp.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[4:8] == ["x      [N, 2]  input, line 1",
                                          "h      [N, 2]  value, line 3",
                                          "p      [N, 2]  output, line 4",
                                          "q      [N, 2]  output, line 5"]


def _deep(work, init="", clip=""):
    """deep_sigmoid.nn with relu layers: with init = normal(0, 0.5) its first
    sgd step is several times the size of the last layer's weights."""
    text = open(os.path.join(SAMPLES, "deep_sigmoid.nn")).read()
    text = text.replace(", sigmoid)", f", relu{init})")
    text = text.replace("epochs    = 20", "epochs    = 20" + (f"\n  clip      = {clip}" if clip
                                                              else ""))
    (work / "deep.nn").write_text(text)
    return text


def test_check_notes_vanishing_gradients(work):
    shutil.copy(os.path.join(SAMPLES, "deep_sigmoid.nn"), work / "deep_sigmoid.nn")
    r = cli("check", "deep_sigmoid.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    notes = [i for i, ln in enumerate(lines) if ln.startswith("note:")]
    assert len(notes) == 1
    note = lines[notes[0]]
    assert note.startswith("note: vanishing gradients: h1.weight's gradient is ")
    assert note.endswith("x smaller than logits.weight's, so the layers near the input "
                         "barely learn")
    assert int(note.split(" is ")[1].split("x")[0]) > 1000
    assert lines[notes[0] + 1].startswith("  hint: sigmoid and tanh shrink the gradient")


def test_check_notes_a_first_step_too_big_and_clip_cures_it(work):
    _deep(work, init=", init = normal(0, 0.5)")
    r = cli("check", "deep.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stdout.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1
    assert notes[0].startswith("note: the first step changes logits.weight by ")
    assert notes[0].endswith(" times its size, so training is likely to diverge")
    assert float(notes[0].split(" by ")[1].split()[0]) > 2
    _deep(work, init=", init = normal(0, 0.5)", clip="1.0")
    r = cli("check", "deep.nn", cwd=work)
    assert r.returncode == 0 and "note:" not in r.stdout
    _deep(work)                                  # relu with he init: nothing to note
    r = cli("check", "deep.nn", cwd=work)
    assert r.returncode == 0 and "note:" not in r.stdout


def test_check_accepts_early_stop_and_a_model_without_inputs(work):
    text = (work / "digits_mlp.nn").read_text()
    (work / "es.nn").write_text(text.replace("epochs    = 30", "epochs    = 30\n  early_stop = 5"))
    r = cli("check", "es.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "gradients at the start, on the first update of epoch 1" in r.stdout
    (work / "w.nn").write_text("param w[2] = ones\nloss sum(w ^ 2)\n")
    r = cli("check", "w.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == ("no input: there are no examples to show the "
                                         "gradients at the start on")


def test_check_on_a_model_whose_data_is_missing_uses_a_random_batch(work):
    text = open(os.path.join(SAMPLES, "xor.nn")).read().replace("data      = xor",
                                                               'data      = "gone.csv"')
    (work / "gone.nn").write_text(text)
    r = cli("check", "gone.nn", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "gradients at the start, on a random batch of 4 examples (the data did not " \
           "load: gone.csv: no such file or folder):" in r.stdout.splitlines()


def test_a_diverging_run_stops_and_writes_nothing(work):
    (work / "deep.weights.npz").write_bytes(b"weights of an earlier run")
    _deep(work, init=", init = normal(0, 0.5)")
    r = cli("run", "deep.nn", "--device", "cpu", cwd=work)
    lines = user_fault(r, "deep.nn:27:15: error: training diverged: the loss became nan in "
                          "epoch 1 of 20 (exploding gradients), so the run stopped and wrote "
                          "nothing")
    assert lines[1:3] == ["      optimizer = sgd(lr = 0.1)", "                  ^^^"]
    assert lines[3].startswith("hint: use a smaller lr, set clip = 1.0 in the train block")
    assert r.stdout.splitlines()[-1].startswith("epoch  1/20  loss nan")
    assert (work / "deep.weights.npz").read_bytes() == b"weights of an earlier run"
    assert sorted(os.listdir(work)) == ["deep.nn", "deep.weights.npz", "digits_mlp.nn",
                                        "xor.nn"]
    _deep(work, init=", init = normal(0, 0.5)", clip="1.0")
    r = cli("run", "deep.nn", "--device", "cpu", "--epochs", "3", cwd=work)
    assert r.returncode == 0, r.stderr
    losses = [e["loss"] for e in json.loads((work / "deep.history.json").read_text())["epochs"]]
    assert np.isfinite(losses).all() and losses[2] < losses[1] < losses[0]


def test_run_grad_rms_prints_the_table_and_writes_the_gradients(work):
    """xor for 7 epochs: the start and 5 epochs spread over the run (1, 3, 4,
    5, 7), each cell the RMS of d loss / d param on the first update's 4
    examples with the params of that moment; the history file holds them all."""
    r = cli("run", "xor.nn", "--epochs", "7", "--grad-rms", "--quiet", "--device", "cpu",
            cwd=work)
    assert r.returncode == 0, r.stderr
    doc = json.loads((work / "xor.history.json").read_text())
    columns = [doc["grad_rms_start"]] + [doc["epochs"][i]["grad_rms"] for i in (0, 2, 3, 4, 6)]
    model = nncompile.compile(str(work / "xor.nn"), device="cpu")
    y = np.float32([[0], [1], [1], [0]])
    for column, epochs in zip(columns, (0, 1, 3, 4, 5, 7)):
        if epochs:
            model.fit(epochs=epochs)
        grads = model.gradients(XOR_X, y)    # the same 4 examples, in another order
        for k, g in grads.items():
            assert column[k] == pytest.approx(float(np.sqrt(np.mean(g.astype(float) ** 2))),
                                              rel=1e-5)
        model = nncompile.compile(str(work / "xor.nn"), device="cpu")
    lines = r.stdout.splitlines()
    at = lines.index("gradient RMS of each param on a fixed batch, the 4 examples of the first "
                     "update (as `check` shows them at the start):")
    assert lines[at + 1].split() == ["param", "start", "epoch", "1", "epoch", "3", "epoch",
                                     "4", "epoch", "5", "epoch", "7"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[at + 3:at + 7]}
    assert list(rows) == ["h.weight", "h.bias", "p.weight", "p.bias"]
    for k, cells in rows.items():
        assert cells == [f"{c[k]:.1e}" for c in columns]
    spread = [max(c["h.weight"], c["p.weight"]) / min(c["h.weight"], c["p.weight"])
              for c in columns]
    assert lines[at + 7].split() == ["largest", "/", "smallest", "weight"] + \
        [f"{v:.0f}x" for v in spread]
    assert len(lines) == at + 8           # --quiet: no "wrote" lines after the table


def test_run_grad_rms_shows_the_gradients_of_a_diverging_run(work):
    _deep(work, init=", init = normal(0, 0.5)")
    r = cli("run", "deep.nn", "--device", "cpu", "--grad-rms", "--quiet", cwd=work)
    user_fault(r, "deep.nn:27:15: error: training diverged: the loss became nan in epoch 1 "
                  "of 20 (exploding gradients), so the run stopped and wrote nothing")
    lines = r.stdout.splitlines()                  # --quiet: no header, only the table
    assert lines[0].startswith("gradient RMS of each param on a fixed batch, the 32 examples")
    assert lines[1].split() == ["param", "start", "epoch", "1"]
    first = lines[3].split()
    assert first[0] == "h1.weight" and float(first[1]) > 1 and first[2] == "nan"
    assert lines[-1].split()[-1] == "-"         # no spread of gradients that are not finite


@pytest.mark.parametrize("target, first, marker", [
    ("ir", "graph xor", "\noutput p = %p\nloss = %loss\n"),
    ("grad", "graph xor", "update h.weight = "),
    ("fused", "graph xor", "fused[kind=gemm]"),
    ("ast", "model xor    # xor.nn:2:1", "input x[2]    # xor.nn:4:1"),
])
def test_emit(work, target, first, marker):
    r = cli("emit", "xor.nn", "--target", target, cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == first
    assert marker in r.stdout
    assert ("update h.weight" in r.stdout) == (target in ("grad", "fused"))


# predict ---------------------------------------------------------------------------

def _printed(stdout: str) -> np.ndarray:
    lines = stdout.splitlines()
    assert lines[0] == "# p: 4 rows of [1]"
    return np.array([[float(v) for v in ln.split()] for ln in lines[1:]], dtype=np.float64)


def test_run_checks_where_it_writes_before_training_and_keeps_the_old_weights(trained):
    work, _ = trained
    before = (work / "xor.weights.npz").read_bytes()
    (work / "xor.history.json").mkdir()
    r = cli("run", "xor.nn", "--device", "cpu", cwd=work)
    user_fault(r, f"{work / 'xor.history.json'}: error: cannot write here: it is a folder")
    assert "epoch" not in r.stdout                      # it did not train
    assert (work / "xor.weights.npz").read_bytes() == before
    assert not [n for n in os.listdir(work) if n.startswith(".nncompile-")]


def test_predict_faults_found_by_the_audit(trained):
    work, _ = trained
    np.save(work / "x.npy", XOR_X)
    weights = (work / "xor.weights.npz").read_bytes()
    usage_error(cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "x.npy",
                    "--output", "xor.weights.npz", cwd=work),
                "--output xor.weights.npz is also the --weights file")
    usage_error(cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "x.npy",
                    "--output", "./x.npy", cwd=work), "is also the --input file")
    os.symlink("xor.weights.npz", work / "link.npz")          # one file by two names
    os.link(work / "x.npy", work / "hard.npy")
    usage_error(cli("predict", "xor.nn", "--weights", "link.npz", "--input", "x.npy",
                    "--output", "xor.weights.npz", cwd=work), "is also the --weights file")
    usage_error(cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "hard.npy",
                    "--output", "x.npy", cwd=work), "is also the --input file")
    assert (work / "xor.weights.npz").read_bytes() == weights
    usage_error(cli("run", "xor.nn", "--epochs", "2147483648", cwd=work),
                "--epochs: must be at most 2147483647, got 2147483648")
    np.save(work / "none.npy", XOR_X[:0])
    user_fault(cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "none.npy",
                   cwd=work), "none.npy: error: there are no examples: the arrays have 0 rows")
    (work / "blind.nn").write_text("input x[2]\ntarget y[1]\nh = dense(x, 1)\n"
                                   "loss mse(h, y)\n")
    user_fault(cli("predict", "blind.nn", "--weights", "xor.weights.npz", "--input", "x.npy",
                   cwd=work), "blind.nn: error: model blind declares no output, so there is "
                              "nothing to predict")


def test_predict_takes_raw_inputs_of_a_model_trained_on_normalized_data(work):
    """digits_mlp standardizes its data; predict applies the training rows'
    statistics saved with the weights, so on the raw held-out digits it
    scores exactly the held-out accuracy run reported."""
    r = cli("run", "digits_mlp.nn", "--epochs", "3", "--device", "cpu", cwd=work)
    assert r.returncode == 0, r.stderr
    digits = np.load(os.path.join(ROOT, "nncompile", "data", "digits.npz"))
    held = np.sort(np.random.default_rng(0).permutation(len(digits["y"]))[:359])  # split 0.2
    np.save(work / "raw.npy", digits["x"][held].astype(np.float32))
    r = cli("predict", "digits_mlp.nn", "--weights", "digits_mlp.weights.npz", "--input",
            "raw.npy", "--output", "p.npy", cwd=work)
    assert r.returncode == 0, r.stderr
    right = np.mean(np.load(work / "p.npy").argmax(1) == digits["y"][held])
    history = json.loads((work / "digits_mlp.history.json").read_text())
    assert right == pytest.approx(history["epochs"][-1]["test_accuracy"], abs=1e-12)
    assert right > 0.9
    w = dict(np.load(work / "digits_mlp.weights.npz"))
    w["normalize:x:scale"] = -w["normalize:x:scale"]
    np.savez(work / "bad.npz", **w)
    user_fault(cli("predict", "digits_mlp.nn", "--weights", "bad.npz", "--input", "raw.npy",
                   cwd=work),
               "bad.npz: error: the weights file's normalisation of input 'x' is not 64 "
               "shifts and 64 positive scales")


def test_predict_npy_npz_csv_inputs_printed(trained):
    work, model = trained
    expect = model.predict(XOR_X)
    np.save(work / "in.npy", XOR_X)
    np.savez(work / "in.npz", x=XOR_X)
    (work / "in.csv").write_text("a,b\n0,0\n0,1\n1,0\n1,1\n")
    for name in ("in.npy", "in.npz", "in.csv"):
        r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", name, cwd=work)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(_printed(r.stdout), expect, rtol=1e-5, atol=1e-7)


def test_predict_writes_npy_and_csv(trained):
    work, model = trained
    expect = model.predict(XOR_X)
    np.save(work / "in.npy", XOR_X)
    r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "in.npy",
            "--output", "out.npy", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "wrote out.npy"
    got = np.load(work / "out.npy", allow_pickle=False)
    assert got.shape == (4, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expect)

    r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "in.npy",
            "--output", "out.npz", cwd=work)
    assert r.returncode == 0, r.stderr
    with np.load(work / "out.npz", allow_pickle=False) as got:
        assert got.files == ["p"]                  # the output's name in xor.nn
        np.testing.assert_array_equal(got["p"], expect)

    r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "in.npy",
            "--output", "out.csv", cwd=work)
    assert r.returncode == 0, r.stderr
    rows = (work / "out.csv").read_text().splitlines()
    assert len(rows) == 4
    np.testing.assert_allclose(np.array([[float(v)] for v in rows]), expect, rtol=1e-7)


# the user's faults: exit 1, a located message, no traceback --------------------------

def test_broken_model(work):
    (work / "broken.nn").write_text("input x[2]\nh = dense(x, 4 tanh)\n")
    for command in (["check"], ["emit", "--target", "ir"], ["run", "--device", "cpu"]):
        r = cli(command[0], "broken.nn", *command[1:], cwd=work)
        lines = user_fault(r, "broken.nn:2:16: error: unexpected name 'tanh'; expected an "
                              "operator, ')' or ','")
        assert lines[1:] == ["    h = dense(x, 4 tanh)", "                   ^",
                             "hint: is a ',' missing between two arguments?"]


def test_several_errors_all_printed(work):
    (work / "broken.nn").write_text("input x[2]\nh = dense(x, 4, tanhh)\noutput p = q\n")
    r = cli("check", "broken.nn", cwd=work)
    lines = user_fault(r, "broken.nn:2:17: error: 'tanhh' is not an activation")
    assert "broken.nn:3:12: error: unknown name 'q'" in lines


def test_missing_model_file(work):
    r = cli("run", "nope.nn", cwd=work)
    assert user_fault(r, "nope.nn: error: no such model file") == [
        "nope.nn: error: no such model file", "hint: check the path; model files end in .nn"]


def test_model_path_is_never_taken_for_source_text(work):
    # a missing path without .nn once compiled as the text "mymodel" (<string>:1:8: ...)
    r = cli("check", "mymodel", cwd=work)
    user_fault(r, "mymodel: error: no such model file")
    (work / "folder").mkdir()
    r = cli("check", "folder", cwd=work)
    assert user_fault(r, "folder: error: this is a folder, not a model file")[1:] == [
        "hint: give the .nn file itself"]


def test_model_file_that_is_not_utf8(work):
    (work / "latin.nn").write_bytes(b"input x[2]\n# caf\xe9\noutput p = x\n")
    r = cli("check", "latin.nn", cwd=work)
    assert user_fault(r, "latin.nn:2:6: error: the file is not UTF-8 text: byte 0xe9 cannot "
                         "be read")[1:] == ["hint: save the model as UTF-8"]


def test_missing_data_file(work):
    text = (work / "xor.nn").read_text().replace("data      = xor", 'data = "nope.csv"')
    (work / "nodata.nn").write_text(text)
    r = cli("run", "nodata.nn", "--epochs", "1", "--device", "cpu", cwd=work)
    lines = user_fault(r, "nodata.nn:13:10: error: data file 'nope.csv': no such file or "
                          "folder")
    assert lines[1:3] == ['      data = "nope.csv"', "             ^^^^^^^^^^"]
    assert lines[3].startswith(f"hint: looked for {work / 'nope.csv'}; supported: .csv")
    assert not (work / "nodata.weights.npz").exists()
    assert r.stdout == ""          # no "training ..." line for a run that cannot start


def test_a_fault_in_the_labels_file_names_it_beside_the_data(work):
    """data names the images; a truncated labels file next to them is named
    too (it used to be reported as the images file's fault)."""
    from datahelpers import write_idx
    (work / "mnist").mkdir()
    write_idx(work / "mnist" / "train-images-idx3-ubyte", np.zeros((4, 8, 8), np.uint8))
    labels = write_idx(work / "mnist" / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    labels.write_bytes(labels.read_bytes()[:-2])
    text = (work / "digits_mlp.nn").read_text().replace(
        "data      = digits", 'data = "mnist/train-images-idx3-ubyte"')
    (work / "m.nn").write_text(text)
    r = cli("run", "m.nn", "--epochs", "1", "--device", "cpu", cwd=work)
    lines = user_fault(r, "m.nn:14:10: error: data file 'mnist/train-images-idx3-ubyte' "
                          "(mnist/train-labels-idx1-ubyte): truncated idx file: 10 bytes, "
                          "header [4] needs 12")
    assert lines[-1] == "hint: download the file again"


def test_data_that_does_not_fit_the_input(work):
    text = (work / "xor.nn").read_text().replace("data      = xor", "data = digits")
    (work / "wrong.nn").write_text(text)
    r = cli("run", "wrong.nn", "--epochs", "1", "--device", "cpu", cwd=work)
    user_fault(r, "wrong.nn:13:10: error: data set 'digits': each example has 64 values but "
                  "the model's input is [2] (2 values)")
    assert r.stdout == ""


def test_csv_with_a_wrong_column_count_names_the_row(work):
    text = (work / "xor.nn").read_text().replace("data      = xor", 'data = "bad.csv"')
    (work / "sub").mkdir()
    (work / "sub" / "badcsv.nn").write_text(text)
    (work / "sub" / "bad.csv").write_text("0,0,0\n0,1,1\n1,0,1,5\n1,1,0\n")
    r = cli("run", os.path.join("sub", "badcsv.nn"), "--epochs", "1", "--device", "cpu",
            cwd=work)
    user_fault(r, f"{os.path.join('sub', 'bad.csv')}:3: error: row has 4 columns; the model "
                  "needs 3 (2 features + 1 target)")


def test_weights_from_another_model(work):
    digits = nncompile.compile(str(work / "digits_mlp.nn"), device="cpu")
    digits.save(str(work / "digits.weights.npz"))
    np.save(work / "in.npy", XOR_X)
    r = cli("predict", "xor.nn", "--weights", "digits.weights.npz", "--input", "in.npy",
            cwd=work)
    assert user_fault(r, "digits.weights.npz: error: the file lacks param(s) h.weight, h.bias, "
                         "p.weight, p.bias of model xor; it holds h1.weight, h1.bias, "
                         "logits.weight, logits.bias instead") == [
        "digits.weights.npz: error: the file lacks param(s) h.weight, h.bias, p.weight, "
        "p.bias of model xor; it holds h1.weight, h1.bias, logits.weight, logits.bias instead",
        "hint: were these weights trained from another model?"]


@pytest.mark.parametrize("h_weight, lines", [
    (np.zeros((3, 4), np.float32),
     ["w.npz: error: param 'h.weight' has shape [3, 4], the model declares [2, 4]",
      "hint: were these weights trained before the layer's size changed? train again with "
      "`nncompile run`"]),
    (np.full((2, 4), np.nan, np.float32),
     ["w.npz: error: param 'h.weight' holds values that are not finite float32 numbers",
      "hint: training diverged; train again with a smaller lr, or with clip = 1.0 in the "
      "train block"]),
], ids=["wrong_shape", "not_finite"])
def test_weights_that_do_not_fit_the_model(work, h_weight, lines):
    np.savez(work / "w.npz", **{"h.weight": h_weight, "h.bias": np.zeros(4, np.float32),
                                "p.weight": np.zeros((4, 1), np.float32),
                                "p.bias": np.zeros(1, np.float32)})
    np.save(work / "in.npy", XOR_X)
    r = cli("predict", "xor.nn", "--weights", "w.npz", "--input", "in.npy", cwd=work)
    assert user_fault(r, lines[0]) == lines


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04 this is not a zip archive",
     "corrupt.npz: error: not a weights file written by nncompile (File is not a zip file)"),
    (b"", "corrupt.npz: error: not a weights file written by nncompile (No data left in file)"),
    (b"junk", "corrupt.npz: error: not a weights file written by nncompile (not an .npz "
              "archive)"),
    (None, "corrupt.npz: error: not a weights file: it holds one array, not an .npz archive "
           "of params"),
])
def test_corrupt_weights_file(work, content, message):
    if content is None:
        np.save(work / "x.npy", XOR_X)
        os.replace(work / "x.npy", work / "corrupt.npz")
    else:
        (work / "corrupt.npz").write_bytes(content)
    np.save(work / "in.npy", XOR_X)
    r = cli("predict", "xor.nn", "--weights", "corrupt.npz", "--input", "in.npy", cwd=work)
    assert user_fault(r, message)[1:] == ["hint: weights come from `nncompile run` or Model.save"]


def test_missing_weights_and_input_files(trained):
    work, _ = trained
    np.save(work / "in.npy", XOR_X)
    r = cli("predict", "xor.nn", "--weights", "nope.npz", "--input", "in.npy", cwd=work)
    assert user_fault(r, "nope.npz: error: no such weights file")[1:] == [
        "hint: `nncompile run MODEL.nn` writes MODEL.weights.npz; Model.save writes one too"]
    r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "nope.npy", cwd=work)
    assert user_fault(r, "nope.npy: error: no such input file")[1:] == [
        "hint: give a .npy, .npz or .csv file of input examples (or MNIST idx images)"]


def test_input_of_the_wrong_width(trained):
    work, _ = trained
    np.save(work / "wide.npy", np.zeros((4, 3), np.float32))
    r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "wide.npy", cwd=work)
    assert user_fault(r, "wide.npy: error: 'x' expects examples of shape [2] (2 values each), "
                         "got an array of shape [4, 3]")[1:] == [
        "hint: the first axis counts the examples"]
    (work / "wide.csv").write_text("0,0,1\n1,1,0\n")
    r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "wide.csv", cwd=work)
    assert user_fault(r, "wide.csv:1: error: row has 3 columns; the model needs 2 (one input "
                         "example)")[1:] == [
        "hint: the model's input 'x' is [2]: one example of 2 values per row"]


def test_output_into_a_file_instead_of_a_folder(trained):
    work, _ = trained
    np.save(work / "in.npy", XOR_X)
    r = cli("predict", "xor.nn", "--weights", "xor.weights.npz", "--input", "in.npy",
            "--output", os.path.join("xor.nn", "out.npy"), cwd=work)
    assert user_fault(r, f"{os.path.join('xor.nn', 'out.npy')}: error: cannot write here: "
                         "xor.nn is a file, not a folder")[1:] == [
        "hint: choose an output path inside a folder"]
    r = cli("run", "xor.nn", "--epochs", "1", "--device", "cpu", "--out", "xor.nn", cwd=work)
    assert user_fault(r, "xor.nn: error: --out must be a folder")[1:] == [
        "hint: give a folder; run writes xor.weights.npz and xor.history.json into it"]


def test_run_without_a_train_block(work):
    (work / "plain.nn").write_text("input x[2]\noutput p = dense(x, 1)\n")
    r = cli("run", "plain.nn", "--device", "cpu", cwd=work)
    assert user_fault(r, "plain.nn: error: this model has no train block, so `run` has "
                         "nothing to do")[1:] == [
        "hint: add a train { ... } block, or use `nncompile check` / `emit`"]


@pytest.mark.skipif(cuda_status()[0], reason="a CUDA GPU is present")
def test_device_cuda_without_a_gpu(work):
    r = cli("run", "xor.nn", "--device", "cuda", "--epochs", "1", cwd=work)
    lines = user_fault(r, r.stderr.splitlines()[0])
    assert lines[0].startswith("error: device cuda is not available: ")
    assert lines[1].startswith("hint: install the cuda extra")
    assert "pip install 'nncompile[cuda]'" in lines[1]
    assert not (work / "xor.weights.npz").exists()


@pytest.mark.skipif(cuda_status()[0], reason="a CUDA GPU is present")
def test_device_cuda_in_the_train_block_without_a_gpu(work):
    text = (work / "xor.nn").read_text().replace("  seed      = 1\n",
                                                 "  seed      = 1\n  device    = cuda\n")
    (work / "gpu.nn").write_text(text)
    r = cli("run", "gpu.nn", "--epochs", "1", cwd=work)
    lines = user_fault(r, r.stderr.splitlines()[0])
    assert lines[0].startswith("gpu.nn:18:15: error: device cuda is not available: ")
    assert lines[1:3] == ["      device    = cuda", "                  ^^^^"]
    assert lines[3].startswith("hint: install the cuda extra")
    # --device overrides the file, auto too (the CPU, saying so in one line)
    r = cli("run", "gpu.nn", "--epochs", "1", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    r = cli("run", "gpu.nn", "--epochs", "1", "--device", "auto", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("nncompile: using the CPU (") and r.stderr.count("\n") == 1
    r = cli("run", "gpu.nn", "--epochs", "1", "--device", "auto", "--quiet", cwd=work)
    assert (r.returncode, r.stderr) == (0, "")          # --quiet: not even that line
    assert nncompile.compile(str(work / "gpu.nn"), device="auto", quiet=True).device == "cpu"


# usage errors: exit 2 ------------------------------------------------------------------

def test_usage_errors(work):
    usage_error(cli(cwd=work), "the following arguments are required: COMMAND")
    usage_error(cli("frobnicate", cwd=work), "invalid choice: 'frobnicate'")
    usage_error(cli("predict", "xor.nn", "--input", "in.npy", cwd=work),
                "the following arguments are required: --weights")
    usage_error(cli("run", "xor.nn", "--epochs", "many", cwd=work),
                "argument --epochs: 'many' is not a whole number")
    usage_error(cli("run", "xor.nn", "--epochs", "-3", cwd=work),
                "argument --epochs: must be 0 or more, got -3")
    usage_error(cli("emit", "xor.nn", "--target", "llvm", cwd=work),
                "argument --target: invalid choice: 'llvm'")
    usage_error(cli("run", cwd=work), "the following arguments are required: MODEL.nn")
    assert not (work / "xor.weights.npz").exists()


# interrupted runs and atomic writes ------------------------------------------------------

def test_write_atomic_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "w.npz"
    write_atomic(str(path), lambda f: f.write(b"old contents"))
    assert path.read_bytes() == b"old contents"

    def failing(f):
        f.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(nncompile.DataError) as e:
        write_atomic(str(path), failing)
    assert str(e.value) == (f"{path}: error: cannot write the file (disk full)\n"
                            "hint: check the free space and that you may write there")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["w.npz"]

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(str(path), interrupted)
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["w.npz"]

    write_atomic(str(path), lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["w.npz"]


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_atomic(str(tmp_path / "new.npz"), lambda f: (_ for _ in ()).throw(ValueError()))
    assert os.listdir(tmp_path) == []


def test_ctrl_c_during_training_writes_nothing(work):
    (work / "xor.weights.npz").write_bytes(b"weights of an earlier run")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "nncompile.cli", "run", "xor.nn", "--epochs",
                             "1000000", "--device", "cpu"], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith("nncompile: training xor")
        assert proc.stdout.readline().startswith("epoch ")   # training is under way
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("nncompile: interrupted after ")
    assert err.strip().endswith("epochs; nothing was written")
    assert (work / "xor.weights.npz").read_bytes() == b"weights of an earlier run"
    assert sorted(os.listdir(work)) == ["digits_mlp.nn", "xor.nn", "xor.weights.npz"]


def test_check_of_a_loss_that_is_not_finite_fails_and_says_why(work):
    """sqrt(p - 100) is nan at every checked point: the gradient check cannot
    pass (it used to read nan as an error of 0), and the start notes say so."""
    (work / "nan.nn").write_text("input x[2]\ntarget t[1]\np = dense(x, 1)\n"
                                 "loss mean(sqrt(p - 100))\ntrain {\n  data = xor\n}\n")
    r = cli("check", "nan.nn", cwd=work)
    assert r.returncode == 1 and r.stderr == ""
    lines = r.stdout.splitlines()
    at = lines.index("worst relative error nan: FAILED")
    assert lines[at - 2:at] == ["  p.weight    2 of 2      entries  max rel error nan",
                                "  p.bias      1 of 1      entries  max rel error nan"]
    assert lines[at + 1].startswith("  hint: the loss or a gradient is not a finite number")
    notes = [ln for ln in lines if ln.startswith("note:")]
    assert notes == ["note: the loss at the start is nan, not a finite number"]


# run's edges: --quiet, 0 epochs, --out, Ctrl-C while writing ----------------------------

def test_run_quiet_prints_only_the_summary(work):
    r = cli("run", "xor.nn", "--epochs", "3", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    history = json.loads((work / "xor.history.json").read_text())["epochs"]
    last = history[-1]
    assert r.stdout == (f"final: loss {last['loss']:.6f}, train accuracy "
                        f"{last['train_accuracy']:.4f}\n")


def test_run_with_0_epochs_keeps_the_weights_a_run_wrote(work):
    r = cli("run", "xor.nn", "--epochs", "3", "--device", "cpu", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    before = {f: (work / f).read_bytes() for f in ("xor.weights.npz", "xor.history.json")}
    r = cli("run", "xor.nn", "--epochs", "0", "--device", "cpu", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nncompile: xor: 0 epochs, nothing to train; nothing was written\n"
    assert {f: (work / f).read_bytes() for f in before} == before
    (work / "zero.nn").write_text((work / "xor.nn").read_text().replace(
        "epochs    = 2000", "epochs    = 0"))
    assert "epochs    = 0" in (work / "zero.nn").read_text()
    r = cli("run", "zero.nn", "--device", "cpu", cwd=work)
    assert r.returncode == 0 and "0 epochs, nothing to train" in r.stdout
    assert not (work / "zero.weights.npz").exists()


def test_run_makes_the_out_folder_only_when_it_writes(work):
    (work / "bad.nn").write_text((work / "xor.nn").read_text().replace(
        "data      = xor", 'data      = "missing.csv"'))
    r = cli("run", "bad.nn", "--device", "cpu", "--out", "new/dir", cwd=work)
    assert r.returncode == 1 and "missing.csv" in r.stderr
    assert not (work / "new").exists()
    (work / "file").write_text("")
    lines = user_fault(cli("run", "xor.nn", "--device", "cpu", "--out", "file/sub", cwd=work),
                       f"{os.path.join('file', 'sub', 'xor.weights.npz')}: error: cannot write "
                       f"here: {work / 'file'} is a file, not a folder")
    assert lines[1] == "hint: choose an output path inside a folder"
    r = cli("run", "xor.nn", "--epochs", "1", "--device", "cpu", "--out", "new/dir", cwd=work)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(work / "new" / "dir")) == ["xor.history.json", "xor.weights.npz"]


def test_ctrl_c_while_writing_waits_until_every_file_is_written(tmp_path):
    from nncompile.api import write_files
    (tmp_path / "a").write_bytes(b"old a")
    (tmp_path / "b").write_bytes(b"old b")

    def first(f):
        os.kill(os.getpid(), signal.SIGINT)     # Ctrl-C while the first file is written
        f.write(b"new a")

    with pytest.raises(KeyboardInterrupt):
        write_files([(str(tmp_path / "a"), first),
                     (str(tmp_path / "b"), lambda f: f.write(b"new b"))])
    assert (tmp_path / "a").read_bytes() == b"new a"
    assert (tmp_path / "b").read_bytes() == b"new b"
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_after_writing_says_what_was_written(work, monkeypatch, capsys):
    from nncompile import cli as cli_module

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "summarize", interrupted)
    path = str(work / "xor.nn")
    assert cli_module.main(["run", path, "--epochs", "2", "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert err == (f"nncompile: interrupted; wrote {work / 'xor.weights.npz'} and "
                   f"{work / 'xor.history.json'}\n")
    assert len(json.loads((work / "xor.history.json").read_text())["epochs"]) == 2


def test_the_command_line_imports_neither_numpy_nor_lark_before_main():
    """A Ctrl-C while numpy and lark load (about half a second) is then caught
    by main() (exit 130, one line) rather than shown as a traceback."""
    r = subprocess.run([sys.executable, "-c", "import sys, nncompile.cli; "
                        "print(sorted(k for k in ('numpy', 'lark') if k in sys.modules))"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "[]\n", r.stderr


def test_stray_arguments_and_odd_numbers_are_usage_errors(work):
    r = cli("check", "xor.nn", "extra", cwd=work)
    usage_error(r, "nncompile check: error: unrecognized arguments: extra")
    assert r.stderr.startswith("usage: nncompile check ")
    r = cli("run", "xor.nn", "--frob", cwd=work)
    usage_error(r, "nncompile run: error: unrecognized arguments: --frob")
    for text in ("1_0", "\uff13", " 3", "+3"):
        usage_error(cli("run", "xor.nn", "--epochs", text, cwd=work),
                    f"argument --epochs: '{text}' is not a whole number")
    lines = user_fault(cli("run", "", cwd=work), "error: the model file's name is empty")
    assert lines[1] == "hint: give the path of a .nn file"


@pytest.mark.parametrize("args", [["check", "mnist_lenet.nn"],
                                  ["run", "digits_mlp.nn", "--out", "OUT"]])
def test_a_reader_that_closes_the_pipe_stops_the_command_quietly(args, tmp_path):
    """As `nncompile check m.nn | head -1`: exit 141 (128 + SIGPIPE, as a shell
    reports a tool the closed pipe stopped), no error line, nothing written."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "nncompile.cli", *args], cwd=SAMPLES,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()                       # the reader has what it wanted
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert first.startswith(("model mnist_lenet", "nncompile: training digits_mlp"))
    assert [ln for ln in err.splitlines() if not ln.startswith("nncompile: using")] == []
    assert not os.path.exists(tmp_path / "out")


def test_quiet_leaves_out_the_device_line(tmp_path):
    r = cli("run", os.path.join(SAMPLES, "xor.nn"), "--epochs", "1", "--quiet", "--out",
            str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("final: loss ")


def _untimed(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


def _edited(text, **lines):
    """The train block with each KEY's line replaced by KEY = VALUE, or added."""
    import re
    for key, value in lines.items():
        text, n = re.subn(rf"^(  {key}\s*=\s*)\S.*$", rf"\g<1>{value}", text, flags=re.M)
        if n == 0:
            text = text.replace("  epochs", f"  {key} = {value}\n  epochs")
    return text


def test_run_set_is_the_run_of_the_file_with_those_lines(work):
    r = cli("run", "digits_mlp.nn", "--device", "cpu", "--epochs", "3", "--set", "split=0.9",
            "--set", "seed=3", "--set", "optimizer=sgd(lr = 0.1)", "--set", "shuffle=false",
            cwd=work)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [
        "nncompile: training digits_mlp on digits, 180 examples + 1617 held out (cpu, 3 "
        "epochs, batch 32)",
        "  with --set split = 0.9, seed = 3, optimizer = sgd, lr = 0.1, momentum = 0.0, "
        "shuffle = false"]
    history = json.loads((work / "digits_mlp.history.json").read_text())
    assert history["set"] == {"split": 0.9, "seed": 3, "optimizer": "sgd", "lr": 0.1,
                              "momentum": 0.0, "shuffle": False}
    text = _edited((work / "digits_mlp.nn").read_text(), split="0.9", seed="3",
                   optimizer="sgd(lr = 0.1)", shuffle="false", epochs="3")
    model = nncompile.compile_source(text, device="cpu", quiet=True)
    assert _untimed(model.fit()) == _untimed(history["epochs"])   # init, held-out rows, steps
    with np.load(work / "digits_mlp.weights.npz", allow_pickle=False) as z:
        for k, v in model.params.items():
            np.testing.assert_array_equal(z[k], v)


def test_run_set_lr_changes_only_the_lr(work):
    r = cli("run", "digits_mlp.nn", "--device", "cpu", "--set", "lr=0.02", "--set",
            "epochs=2", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    history = json.loads((work / "digits_mlp.history.json").read_text())
    text = _edited((work / "digits_mlp.nn").read_text(),
                   optimizer="sgd(lr = 0.02, momentum = 0.9)", epochs="2")
    model = nncompile.compile_source(text, device="cpu", quiet=True)
    assert _untimed(model.fit()) == _untimed(history["epochs"])


@pytest.mark.parametrize("settings, message", [
    (["lrr=0.1"], "argument --set: unknown train setting 'lrr'; did you mean 'lr'?"),
    (["lr"], "argument --set: 'lr' is not KEY=VALUE, e.g. --set lr=0.1"),
    (["lr=-1"], "argument --set: lr must be positive, got -1"),
    (["lr=fast"], "argument --set: lr must be a number, got 'fast' (e.g. sgd(lr = 0.01))"),
    (["batch=2.5"], "argument --set: batch must be a whole number of 1 or more, got 2.5"),
    (["split=1"], "argument --set: split must be below 1, got 1"),
    (["device=cuda"], "argument --set: the device is chosen with --device cpu|cuda|auto"),
    (["normalize=zscore"], "argument --set: normalize is one of: none, minmax, standardize, "
                           "got 'zscore'"),
    (["shuffle=yes"], "argument --set: shuffle is true or false, got 'yes'"),
    (["optimizer=rmsprop(lr = 0.1)"], "argument --set: 'rmsprop' is not an optimizer"),
    (["optimizer=adam(beta1 = 0.8)"], "argument --set: adam needs a learning rate: "
                                      "optimizer=adam(lr = 0.01)"),
    (["optimizer=sgd(lr = 0.1, nesterov = 1)"], "argument --set: 'nesterov = 1' is not an "
                                                "argument of sgd"),
    (["optimizer=adam", "momentum=0.5"], "argument --set: momentum is not a setting of adam, "
                                         "this run's optimizer; it takes lr, beta1, beta2, eps"),
    (["seed=1", "seed=2"], "--set gives seed twice"),
    (["epochs=3", "--epochs", "4"], "--epochs and --set epochs= both give the epochs"),
    (["data=digit"], "argument --set: 'digit' is neither a built-in data set nor a file; "
                     "did you mean 'digits'?"),
])
def test_run_set_faults_are_usage_errors_that_write_nothing(work, settings, message):
    args = [a if a.startswith("--") or a.isdigit() else f"--set={a}" for a in settings]
    r = cli("run", "digits_mlp.nn", "--device", "cpu", *args, cwd=work)
    usage_error(r, message)
    assert sorted(os.listdir(work)) == ["digits_mlp.nn", "xor.nn"]


def test_run_set_data_is_a_path_from_the_working_folder(work):
    (work / "sub").mkdir()
    (work / "sub" / "gates.csv").write_text("0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    r = cli("run", "../xor.nn", "--device", "cpu", "--set", "data=gates.csv", "--epochs", "2",
            cwd=work / "sub")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("nncompile: training xor on gates.csv, 3 examples + 1 held out")
    (work / "sub" / "bad.csv").write_text("0,0,0\n0,1,x\n")
    before = (work / "xor.weights.npz").read_bytes()
    r = cli("run", "../xor.nn", "--device", "cpu", "--set", "data=bad.csv", cwd=work / "sub")
    user_fault(r, f"{work / 'sub' / 'bad.csv'}:2: error: column 3: 'x' is not a finite number")
    assert (work / "xor.weights.npz").read_bytes() == before


def test_run_weights_trains_on_from_a_run_before(work):
    assert cli("run", "xor.nn", "--device", "cpu", "--epochs", "20", "--quiet",
               cwd=work).returncode == 0
    os.rename(work / "xor.weights.npz", work / "first.npz")
    r = cli("run", "xor.nn", "--device", "cpu", "--epochs", "5", "--weights", "first.npz",
            cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "  starting from the weights in first.npz"
    history = json.loads((work / "xor.history.json").read_text())
    assert history["weights_from"] == "first.npz"
    model = nncompile.compile(str(work / "xor.nn"), device="cpu", quiet=True)
    model.load(str(work / "first.npz"))
    assert _untimed(model.fit(epochs=5)) == _untimed(history["epochs"])

    r = cli("run", "xor.nn", "--device", "cpu", "--weights", "none.npz", cwd=work)
    user_fault(r, "none.npz: error: no such weights file")
    assert json.loads((work / "xor.history.json").read_text()) == history    # untouched


def test_check_and_trace_take_set_as_run_does(work):
    def first_step(*args):
        r = cli("check", "digits_mlp.nn", *args, cwd=work)
        assert r.returncode == 0, r.stderr
        row = [ln for ln in r.stdout.splitlines() if ln.startswith("  logits.weight")][-1]
        return float(row.split()[-1])
    # the first step is lr times the gradient (momentum has nothing yet)
    assert first_step("--set", "lr=0.5") == pytest.approx(10 * first_step(), rel=0.02)
    r = cli("trace", "xor.nn", "--set", "seed=5", "--set", "lr=1", cwd=work)
    assert r.returncode == 0, r.stderr
    model = nncompile.compile(str(work / "xor.nn"), device="cpu", quiet=True)
    model.reset_params(5)
    assert r.stdout == str(model.trace(seed=5, lr=1.0))
    usage_error(cli("trace", "xor.nn", "--batch", "2", "--set", "batch=3", cwd=work),
                "--batch and --set batch= both give the batch; give one")
    usage_error(cli("check", "xor.nn", "--set", "momentum=0.9", "--set", "optimizer=adam",
                    cwd=work), "momentum is not a setting of adam")
