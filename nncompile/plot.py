"""Training curves: the loss and accuracy of one or more histories, per epoch.

Drawn with matplotlib (the `plot` extra) through its object interface
(matplotlib.figure.Figure), so it never picks or changes pyplot's backend: it
works the same in a script, a terminal without a display and a notebook.
"""
from __future__ import annotations

import json
import os

from .diagnostics import DataError

FORMATS = (".png", ".svg", ".pdf")
HINT_RUN = "`nncompile run MODEL.nn` writes MODEL.history.json; plot that file"
CURVES = ("loss", "test_loss", "train_accuracy", "test_accuracy")
LOG_SPAN = 100.0     # a loss axis spanning more than this factor is drawn log-scaled


def history_path(path: str) -> str:
    """A model file stands for the history that `run` writes beside it."""
    return path[:-3] + ".history.json" if path.endswith(".nn") else path


def read_history(path: str) -> tuple[str, list]:
    """(model name, per-epoch records) from a history file written by `run`."""
    if not os.path.isfile(path):
        what = "a folder, not a history file" if os.path.isdir(path) else "no such history file"
        raise DataError(what, file=path, hint=HINT_RUN)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"not a JSON file ({e})", file=path, hint=HINT_RUN) from None
    records = doc.get("epochs") if isinstance(doc, dict) else None
    if not isinstance(records, list) or not records:
        raise DataError("not a training history: it has no list of epochs", file=path,
                        hint=HINT_RUN)
    for i, r in enumerate(records):
        if not (isinstance(r, dict) and _number(r.get("epoch")) and _number(r.get("loss"))):
            raise DataError(f"epoch record {i + 1} has no number for 'epoch' and 'loss'",
                            file=path, hint=HINT_RUN)
        for key in CURVES:
            if key in r and not _number(r[key]):
                raise DataError(f"epoch record {i + 1} has {r[key]!r} for '{key}', not a "
                                "number", file=path, hint=HINT_RUN)
    return str(doc.get("model", os.path.basename(path))), records


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def figure(histories: dict):
    """A matplotlib Figure of {label: records}: loss per epoch (training solid,
    held-out dashed), and beside it accuracy the same way when any history
    has it. Each label keeps one colour in both panels. A run that kept its
    best epoch (early_stop) gets a dotted vertical line there."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as e:
        raise DataError(f"plotting needs matplotlib, which cannot be imported ({e})",
                        hint="pip install 'nncompile[plot]'") from None
    with_acc = any("train_accuracy" in r or "test_accuracy" in r
                   for records in histories.values() for r in records)
    fig = Figure(figsize=(11 if with_acc else 6, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if with_acc else 1, squeeze=False)[0]
    panels = [(axes[0], "loss", ("loss", "test_loss"))]
    if with_acc:
        panels.append((axes[1], "accuracy", ("train_accuracy", "test_accuracy")))
    for i, (label, records) in enumerate(histories.items()):
        colour = f"C{i % 10}"
        epochs = [r["epoch"] for r in records]
        for ax, _, (train_key, test_key) in panels:
            for key, style, part in ((train_key, "-", "training"), (test_key, "--", "held-out")):
                if any(key in r for r in records):
                    ax.plot(epochs, [r.get(key, float("nan")) for r in records], style,
                            color=colour, label=f"{label}, {part}")
    losses = [y for line in axes[0].get_lines() for y in line.get_ydata() if y == y]
    if losses and min(losses) > 0 and max(losses) > LOG_SPAN * min(losses):
        axes[0].set_yscale("log")
    for i, (label, records) in enumerate(histories.items()):
        best = next((r["epoch"] for r in records if r.get("best") is True), None)
        for ax, _, _ in panels if best is not None else ():
            ax.axvline(best, linestyle=":", color=f"C{i % 10}",
                       label=f"{label}, kept (best held-out loss)" if ax is axes[0] else None)
    for ax, name, _ in panels:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def save(fig, path: str) -> None:
    """Write the figure to path (.png, .svg or .pdf), atomically."""
    from .api import check_output_folder, write_atomic
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise DataError(f"cannot write a plot as '{ext or path}'", file=path,
                        hint="end the output's name in .png, .svg or .pdf")
    check_output_folder(path)
    write_atomic(path, lambda f: fig.savefig(f, format=ext[1:], dpi=100))
