"""Training curves (`nncompile plot`, nncompile.plot): the lines hold the
history's numbers, files are written whole, and every bad input is a clear
error."""
import json
import os
import shutil
import sys

import pytest

from nncompile import plot
from nncompile.diagnostics import DataError

from test_cli import SAMPLES, cli, user_fault

pytest.importorskip("matplotlib", reason="the plot extra (installed by the test extra)")

CLASSES = [{"epoch": 1, "loss": 1.5, "train_accuracy": 0.5, "test_loss": 1.7,
            "test_accuracy": 0.45},
           {"epoch": 2, "loss": 0.25, "train_accuracy": 0.9, "test_loss": 0.5,
            "test_accuracy": 0.8},
           {"epoch": 3, "loss": 0.125, "train_accuracy": 0.97, "test_loss": 0.45,
            "test_accuracy": 0.82}]
REGRESSION = [{"epoch": 1, "loss": 4.0}, {"epoch": 2, "loss": 2.0}, {"epoch": 3, "loss": 0.5}]


def lines(ax):
    return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()), ln.get_linestyle(),
                             ln.get_color()) for ln in ax.get_lines()}


def test_the_lines_hold_the_history():
    fig = plot.figure({"a": CLASSES, "b": REGRESSION})
    loss_ax, acc_ax = fig.axes
    loss = lines(loss_ax)
    assert loss == {"a, training": ([1, 2, 3], [1.5, 0.25, 0.125], "-", "C0"),
                    "a, held-out": ([1, 2, 3], [1.7, 0.5, 0.45], "--", "C0"),
                    "b, training": ([1, 2, 3], [4.0, 2.0, 0.5], "-", "C1")}
    assert lines(acc_ax) == {"a, training": ([1, 2, 3], [0.5, 0.9, 0.97], "-", "C0"),
                             "a, held-out": ([1, 2, 3], [0.45, 0.8, 0.82], "--", "C0")}
    assert (loss_ax.get_ylabel(), acc_ax.get_ylabel()) == ("loss", "accuracy")
    assert loss_ax.get_yscale() == "linear"       # 4.0 / 0.125 = 32: within LOG_SPAN


def test_the_kept_epoch_of_an_early_stopped_run_is_marked():
    stopped = [dict(r) for r in CLASSES]
    stopped[1]["best"], stopped[2]["stopped_early"] = True, True
    loss_ax, acc_ax = plot.figure({"a": stopped, "b": REGRESSION}).axes
    kept = lines(loss_ax)["a, kept (best held-out loss)"]
    assert (kept[0], kept[2], kept[3]) == ([2, 2], ":", "C0")
    assert [ln.get_xdata()[0] for ln in acc_ax.get_lines() if ln.get_linestyle() == ":"] == [2]
    assert loss_ax.get_yscale() == "linear"      # the marker is not read as a loss of 0..1


def test_a_loss_spanning_more_than_a_hundredfold_is_log_scaled_and_no_accuracy_no_panel():
    history = REGRESSION + [{"epoch": 4, "loss": 0.03}]
    fig = plot.figure({"sine": history})
    assert len(fig.axes) == 1
    assert fig.axes[0].get_yscale() == "log"
    assert plot.figure({"sine": history[:3]}).axes[0].get_yscale() == "linear"


GRADS = [{"epoch": 1, "loss": 2.0, "grad_rms": {"h.weight": 1e-5, "h.bias": 2e-5,
                                                "out.weight": 1e-2, "out.bias": 3e-2}},
         {"epoch": 2, "loss": 1.0, "grad_rms": {"h.weight": 2e-5, "h.bias": 4e-5,
                                                "out.weight": 5e-3, "out.bias": 1e-2}}]
START = {"h.weight": 4e-5, "h.bias": 1e-4, "out.weight": 2e-2, "out.bias": 5e-2}


def test_the_gradient_panel_draws_each_weight_from_the_start_log_scaled():
    loss_ax, grad_ax = plot.figure({"m": GRADS}, {"m": START}).axes
    drawn = lines(grad_ax)
    assert list(drawn) == ["h.weight", "out.weight"]          # the biases are left out
    assert drawn["h.weight"][:3] == ([0, 1, 2], [4e-5, 1e-5, 2e-5], "-")
    assert drawn["out.weight"][:3] == ([0, 1, 2], [2e-2, 1e-2, 5e-3], "-")
    assert drawn["h.weight"][3] != drawn["out.weight"][3]     # a colour per weight
    assert grad_ax.get_yscale() == "log"
    assert grad_ax.get_ylabel() == "RMS gradient (probe batch)"
    assert [t.get_text() for t in grad_ax.get_legend().get_texts()] == ["h.weight",
                                                                        "out.weight"]
    assert list(lines(loss_ax)) == ["m, training"]
    only = plot.figure({"m": [{"epoch": 1, "loss": 1.0, "grad_rms": {"b": 0.5}}]}).axes[1]
    assert lines(only)["b"][:2] == ([1], [0.5])              # no start; a lone param is drawn


def test_several_histories_share_a_weights_colour_and_differ_in_line_style():
    other = [dict(r, grad_rms={k: 10 * v for k, v in r["grad_rms"].items()}) for r in GRADS]
    grad_ax = plot.figure({"a": GRADS, "b": other, "c": REGRESSION}, {"b": START}).axes[1]
    drawn = lines(grad_ax)
    assert list(drawn) == ["a, h.weight", "a, out.weight", "b, h.weight", "b, out.weight"]
    assert drawn["a, h.weight"][0] == [1, 2] and drawn["b, h.weight"][0] == [0, 1, 2]
    assert drawn["b, out.weight"][1] == [2e-2, 0.1, 5e-2]
    assert (drawn["a, h.weight"][2], drawn["b, h.weight"][2]) == ("-", "--")
    assert drawn["a, h.weight"][3] == drawn["b, h.weight"][3]
    legend = [t.get_text() for t in grad_ax.get_legend().get_texts()]
    assert legend == ["h.weight", "out.weight", "a", "b"]


@pytest.fixture
def runs(tmp_path):
    for name in ("xor.nn", "sine.nn"):
        shutil.copy(os.path.join(SAMPLES, name), tmp_path / name)
    for name in ("xor", "sine"):
        r = cli("run", f"{name}.nn", "--epochs", "3", "--device", "cpu", "--quiet",
                cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    return tmp_path


def test_cli_plots_a_run_beside_its_history(runs):
    r = cli("plot", "xor.nn", cwd=runs)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "wrote xor.history.png\n"
    from matplotlib.image import imread
    image = imread(str(runs / "xor.history.png"))
    assert image.shape[:2] == (420, 1100)     # loss and accuracy (0/1 targets) side by side
    assert image.std() > 0.05                 # something is drawn
    assert cli("plot", "sine.nn", cwd=runs).returncode == 0
    assert imread(str(runs / "sine.history.png")).shape[:2] == (420, 600)   # regression: loss
    r = cli("run", "xor.nn", "--epochs", "3", "--device", "cpu", "--quiet", "--grad-rms",
            cwd=runs)
    assert r.returncode == 0, r.stderr
    assert cli("plot", "xor.nn", cwd=runs).returncode == 0
    assert imread(str(runs / "xor.history.png")).shape[:2] == (420, 1600)   # and gradients


def test_cli_plots_several_runs_to_svg(runs):
    r = cli("plot", "xor.history.json", "sine.history.json", "--output", "both.svg", cwd=runs)
    assert r.returncode == 0, r.stderr
    text = (runs / "both.svg").read_text()
    assert text.startswith("<?xml") and text.rstrip().endswith("</svg>")
    assert "xor, training" in text and "sine, held-out" in text


def test_runs_with_other_settings_are_labelled_by_them(runs):
    for lr in ("0.1", "0.5"):
        r = cli("run", "xor.nn", "--epochs", "3", "--device", "cpu", "--quiet", "--set",
                f"lr={lr}", "--set", "shuffle=false", "--out", f"lr{lr}", cwd=runs)
        assert r.returncode == 0, r.stderr
    r = cli("plot", "lr0.1/xor.history.json", "lr0.5/xor.history.json", "xor.history.json",
            "--output", "lrs.svg", cwd=runs)
    assert r.returncode == 0, r.stderr
    text = (runs / "lrs.svg").read_text()
    for label in ("xor (lr = 0.1, shuffle = false), training",
                  "xor (lr = 0.5, shuffle = false), training", "xor, training"):
        assert label in text, label
    assert plot.read_history(str(runs / "lr0.5" / "xor.history.json"))[3] == \
        "lr = 0.5, shuffle = false"


@pytest.mark.parametrize("content, message", [
    (None, "no such history file"),
    ("folder", "a folder, not a history file"),
    ("{", "not a JSON file (Expecting property name enclosed in double quotes: line 1 column "
          "2 (char 1))"),
    ('{"model": "m", "epochs": []}', "not a training history: it has no list of epochs"),
    ('[1, 2]', "not a training history: it has no list of epochs"),
    ('{"epochs": [{"epoch": 1, "loss": 0.5}, {"epoch": 2}]}',
     "epoch record 2 has no number for 'loss'"),
    ('{"epochs": [{"epoch": 1, "loss": 0.5}, {"loss": 2, "epoch": "2"}]}',
     "epoch record 2 has no number for 'epoch'"),
    ('{"epochs": [{}]}', "epoch record 1 has no number for 'epoch' and 'loss'"),
    ('{"epochs": [{"epoch": 1, "loss": 0.5}, 3]}',
     "epoch record 2 is 3, not a record of numbers"),
    ('{"epochs": [{"epoch": 1, "loss": 0.5, "test_accuracy": "high"}]}',
     "epoch record 1 has 'high' for 'test_accuracy', not a number"),
    ('{"epochs": [{"epoch": 1, "loss": 0.5, "grad_rms": [1, 2]}]}',
     "epoch record 1 has [1, 2] for 'grad_rms', not a table of param names and numbers"),
    ('{"grad_rms_start": {"w": "big"}, "epochs": [{"epoch": 1, "loss": 0.5}]}',
     "'grad_rms_start' is {'w': 'big'}, not a table of param names and numbers"),
])
def test_bad_histories(tmp_path, content, message):
    path = tmp_path / "h.json"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    lines = user_fault(cli("plot", "h.json", cwd=tmp_path), f"h.json: error: {message}")
    assert lines[1] == "hint: `nncompile run MODEL.nn` writes MODEL.history.json; plot that file"
    assert not (tmp_path / "h.png").exists()


def test_bad_outputs_write_nothing_and_keep_what_was_there(runs):
    (runs / "plot.png").write_bytes(b"an earlier plot")
    lines = user_fault(cli("plot", "xor.nn", "--output", "plot.jpg", cwd=runs),
                       "plot.jpg: error: cannot write a plot as '.jpg'")
    assert lines[1] == "hint: end the output's name in .png, .svg or .pdf"
    lines = user_fault(cli("plot", "xor.nn", "--output", "xor.nn/p.png", cwd=runs),
                       "xor.nn/p.png: error: cannot write here: xor.nn is a file, not a folder")
    assert (runs / "plot.png").read_bytes() == b"an earlier plot"
    assert not any(n.endswith(".jpg") or n.startswith(".nncompile-") for n in os.listdir(runs))


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(DataError) as e:
        plot.figure({"a": REGRESSION})
    assert str(e.value).startswith("error: plotting needs matplotlib, which cannot be imported")
    assert str(e.value).endswith("hint: pip install 'nncompile[plot]'")


def test_history_path_maps_a_model_to_its_history():
    assert plot.history_path("runs/m.nn") == "runs/m.history.json"
    assert plot.history_path("runs/m.history.json") == "runs/m.history.json"
