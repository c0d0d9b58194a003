"""Training curves: the loss and accuracy of one or more histories, per epoch.

Drawn with matplotlib (the `plot` extra) through its object interface
(matplotlib.figure.Figure), so it never picks or changes pyplot's backend: it
works the same in a script, a terminal without a display and a notebook.
"""
from __future__ import annotations

import json
import os

from .diagnostics import DataError
from .train.config import shown

FORMATS = (".png", ".svg", ".pdf")
HINT_RUN = "`nncompile run MODEL.nn` writes MODEL.history.json; plot that file"
CURVES = ("loss", "test_loss", "train_accuracy", "test_accuracy")
LOG_SPAN = 100.0     # a loss axis spanning more than this factor is drawn log-scaled


def history_path(path: str) -> str:
    """A model file stands for the history that `run` writes beside it."""
    return path[:-3] + ".history.json" if path.endswith(".nn") else path


def read_history(path: str) -> tuple[str, list, dict | None, str]:
    """(model name, per-epoch records, the RMS gradients at the start or None,
    the settings of `run --set` as text or "") from a history file written by
    `run` (`run --grad-rms` adds the gradients: "grad_rms_start" and each
    record's "grad_rms")."""
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
        if not isinstance(r, dict):
            raise DataError(f"epoch record {i + 1} is {r!r}, not a record of numbers",
                            file=path, hint=HINT_RUN)
        missing = [k for k in ("epoch", "loss") if not _number(r.get(k))]
        if missing:
            raise DataError(f"epoch record {i + 1} has no number for "
                            f"{' and '.join(repr(k) for k in missing)}", file=path,
                            hint=HINT_RUN)
        for key in CURVES:
            if key in r and not _number(r[key]):
                raise DataError(f"epoch record {i + 1} has {r[key]!r} for '{key}', not a "
                                "number", file=path, hint=HINT_RUN)
        if "grad_rms" in r and not _numbers(r["grad_rms"]):
            raise DataError(f"epoch record {i + 1} has {r['grad_rms']!r} for 'grad_rms', "
                            "not a table of param names and numbers", file=path, hint=HINT_RUN)
    start = doc.get("grad_rms_start")
    if start is not None and not _numbers(start):
        raise DataError(f"'grad_rms_start' is {start!r}, not a table of param names and "
                        "numbers", file=path, hint=HINT_RUN)
    given = doc.get("set")
    settings = ", ".join(f"{k} = {shown(v)}" for k, v in given.items()) \
        if isinstance(given, dict) else ""
    return str(doc.get("model", os.path.basename(path))), records, start, settings



def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(table) -> bool:
    return isinstance(table, dict) and all(_number(v) for v in table.values())


def _watched(names: list) -> list:
    """The params whose gradients the plot draws: all but the biases (names
    ending in .bias), which follow their weights, unless nothing else is left."""
    weights = [k for k in names if not k.endswith(".bias")]
    return weights or names


def figure(histories: dict, grad_starts: dict | None = None):
    """A matplotlib Figure of {label: records}: loss per epoch (training solid,
    held-out dashed), and beside it accuracy the same way when any history
    has it. Each label keeps one colour in both panels. A run that kept its
    best epoch (early_stop) gets a dotted vertical line there. Histories with
    gradients (run --grad-rms) get a third panel, log-scaled: each weight's
    RMS gradient per epoch, from epoch 0 (the start, grad_starts[label]) when
    given; colours go from the input's side (dark) to the loss's (light),
    and each history has its own line style."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as e:
        raise DataError(f"plotting needs matplotlib, which cannot be imported ({e})",
                        hint="pip install 'nncompile[plot]'") from None
    with_acc = any("train_accuracy" in r or "test_accuracy" in r
                   for records in histories.values() for r in records)
    with_grads = any("grad_rms" in r for records in histories.values() for r in records)
    count = 1 + with_acc + with_grads
    fig = Figure(figsize=(6 + 5 * (count - 1), 4.2), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
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
    if with_grads:
        ax = axes[-1]
        _gradient_lines(ax, histories, grad_starts or {})
        panels.append((ax, "RMS gradient (probe batch)", None))
    for ax, name, curves in panels:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if curves is not None:
            ax.legend(fontsize="small")
    return fig


def _gradient_lines(ax, histories: dict, grad_starts: dict) -> None:
    """Each history's weights' RMS gradients, one colour per weight (by depth)
    and one line style per history, and a legend that names each once."""
    from matplotlib.lines import Line2D
    styles = ("-", "--", ":", "-.")
    drawn = {}
    for i, (label, records) in enumerate(histories.items()):
        kept = [r for r in records if "grad_rms" in r]
        if not kept:
            continue
        points = ([(0, grad_starts[label])] if label in grad_starts else []) + \
            [(r["epoch"], r["grad_rms"]) for r in kept]
        names = _watched(list(points[-1][1]))
        drawn[label] = (styles[i % len(styles)], names)
        for j, k in enumerate(names):
            ax.plot([e for e, _ in points], [g.get(k, float("nan")) for _, g in points],
                    styles[i % len(styles)], color=_shade(j, len(names)),
                    label=k if len(histories) == 1 else f"{label}, {k}")
    if any(y > 0 for line in ax.get_lines() for y in line.get_ydata()):
        ax.set_yscale("log")
    name_lists = [names for _, names in drawn.values()]
    if len(drawn) > 1 and all(n == name_lists[0] for n in name_lists):
        handles = [Line2D([], [], color=_shade(j, len(name_lists[0])), label=k)
                   for j, k in enumerate(name_lists[0])]
        handles += [Line2D([], [], linestyle=style, color="0.4", label=label)
                    for label, (style, _) in drawn.items()]
        ax.legend(handles=handles, fontsize="x-small", ncols=2)
    else:
        ax.legend(fontsize="x-small", ncols=2 if len(ax.get_lines()) > 8 else 1)


def _shade(j: int, count: int):
    from matplotlib import colormaps
    return colormaps["viridis"](0.85 * j / max(1, count - 1))


def save(fig, path: str) -> None:
    """Write the figure to path (.png, .svg or .pdf), atomically."""
    from .api import write_atomic
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise DataError(f"cannot write a plot as '{ext or path}'", file=path,
                        hint="end the output's name in .png, .svg or .pdf")
    write_atomic(path, lambda f: fig.savefig(f, format=ext[1:], dpi=100))
