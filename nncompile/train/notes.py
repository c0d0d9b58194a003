"""The notes `run` prints after training, each a diagnosis a course teaches
from a loss curve: a network that learned nothing, a perceptron on classes
no line separates, steps that overshoot, overfitting; and what early
stopping did. Each function reads the history `fit` returns (one record per
epoch) and returns its text, or None when its rule does not hold."""
from __future__ import annotations

import math

import numpy as np

from ..diagnostics import plural


def note(model, cfg, history: list) -> str | None:
    """The one note `run` prints after the final line, the first that holds of:
    chance, perceptron, rising, overfitting (not with early_stop, which acted
    on it). cfg: the train settings the run used; history has one epoch or more."""
    best = next((r for r in history if r.get("best")), None)
    return chance_note(model, cfg, best or history[-1]) or \
        perceptron_note(model, history) or rising_note(history) or \
        (None if cfg.early_stop else overfitting_note(history))


def early_stop_lines(history: list, patience) -> list:
    """What `run` says of early stopping: where it stopped, and whose weights
    it kept (none when no epoch had a finite held-out loss)."""
    best = next((r for r in history if r.get("best")), None)
    last, lines = history[-1], []
    if last.get("stopped_early"):
        since = best["epoch"] if best else 0
        lines.append(f"stopped early after epoch {last['epoch']}: the held-out loss has not "
                     f"improved for {last['epoch'] - since} epochs (early_stop = {patience})")
    if best is not None and best is not last:
        lines.append(f"kept the weights of epoch {best['epoch']}, whose held-out loss "
                     f"{best['test_loss']:.6f} is the lowest")
    return lines


OVERFIT_RISE = 1.1      # a held-out loss this much above its lowest, at the end
OVERFIT_AFTER = 3       # epochs between the lowest held-out loss and the end, at least


def overfitting_note(history: list) -> str | None:
    """A note when the run overfitted: the held-out loss ended OVERFIT_RISE
    times above its lowest, reached OVERFIT_AFTER or more epochs before the
    end, while the training loss went on falling and ended OVERFIT_RISE times
    below the held-out loss (without that gap, a held-out loss that rose is
    no overfitting: a network that learned nothing has it too)."""
    losses = [r.get("test_loss") for r in history]
    if len(history) <= OVERFIT_AFTER or any(v is None or not np.isfinite(v) for v in losses):
        return None
    b = min(range(len(losses)), key=losses.__getitem__)
    best, last = history[b], history[-1]
    if len(history) - 1 - b < OVERFIT_AFTER or not losses[-1] >= OVERFIT_RISE * losses[b] \
            or not last["loss"] < best["loss"] or not OVERFIT_RISE * last["loss"] <= losses[-1]:
        return None
    rise = f"{100 * (losses[-1] / losses[b] - 1):.0f}% higher" if losses[b] > 0 else \
        f"at {losses[-1]:.4f}"       # a lowest of 0 (the perceptron's criterion)
    return (f"note: overfitting: the held-out loss was lowest at epoch {best['epoch']} "
            f"({losses[b]:.4f}) and ended {rise}, "
            f"while the training loss fell from {best['loss']:.4f} to {last['loss']:.4f}\n"
            f"  hint: early_stop = {OVERFIT_AFTER + 2} in the train block stops there and keeps "
            "that epoch's weights; more data, weight decay or dropout also help "
            "(docs/overfitting.md)")


CHANCE = 0.02           # a cross-entropy within 2% of log(classes) learned nothing


def chance_note(model, cfg, last: dict) -> str | None:
    """A note when a `cross_entropy` over K classes ended within CHANCE of
    ln K, what predicting 1/K for every class gives, at a training accuracy
    (if known) of at most 2/K: the network learned nothing (dead relus after
    a too large first step, unscaled inputs, vanishing gradients)."""
    if len(model.graph.target_losses) != 1:
        return None
    (name, (loss, _)), = model.graph.target_losses.items()
    classes = math.prod(model.graph.targets[name].shape[1:])
    if loss != "cross_entropy" or classes < 2 or \
            not abs(last["loss"] / math.log(classes) - 1) <= CHANCE or \
            last.get("train_accuracy", 0) > 2 / classes:
        return None
    cures = ["a smaller lr"]
    if cfg.normalize == "none":
        cures.append("normalize = standardize")
    return (f"note: the network learned nothing: its training loss ended at "
            f"{last['loss']:.4f}, what giving each of the {classes} classes the same "
            f"probability gives (ln {classes} = {math.log(classes):.4f})\n"
            "  hint: `run --grad-rms` shows the gradients that died (relu units a big step "
            "turned off for good) or vanished (deep sigmoid or tanh layers); "
            f"{' or '.join(cures)} in the train block, or relu layers, are the usual cures")


def perceptron_note(model, history: list) -> str | None:
    """A note when a model trained with the `perceptron` criterion ended with
    training examples it gets wrong: the rule converges on classes a line
    (a plane) separates, in finitely many steps, and never on others (XOR)."""
    last = history[-1]
    if "perceptron" not in {loss for loss, _ in model.graph.target_losses.values()} or \
            last.get("train_accuracy", 1) >= 1:
        return None
    return (f"note: the perceptron rule did not converge: after {plural(len(history), 'epoch')} "
            f"it gets {100 * last['train_accuracy']:.0f}% of the training examples right\n"
            "  hint: when a line (a plane) separates the classes, the rule gets them all right "
            "in finitely many steps (the perceptron convergence theorem): train more epochs; "
            "when none does, as for XOR, no number of epochs will: add a hidden layer "
            "(samples/xor.nn)")


GREW = 2.0              # a training loss this many times its lowest, at the end,
REGAINED = 0.25         # having lost this much of the fall from epoch 1 to the lowest


def rising_note(history: list) -> str | None:
    """A note when the training loss ended GREW times above its lowest and
    REGAINED or more of its fall from epoch 1 to there: the steps overshoot
    (too large an lr for the batch, exploding gradients). A loss that wobbles
    far below where it began (adam near a minimum) gets none."""
    losses = [r["loss"] for r in history]
    if not all(np.isfinite(losses)):
        return None
    b = min(range(len(losses)), key=losses.__getitem__)
    if not losses[b] > 0 or not losses[-1] >= GREW * losses[b] or \
            not losses[-1] - losses[b] >= REGAINED * (losses[0] - losses[b]):
        return None
    return (f"note: the training loss grew: it was lowest at epoch {history[b]['epoch']} "
            f"({losses[b]:.4f}) and ended {losses[-1] / losses[b]:.0f} times higher "
            f"({losses[-1]:.4f}): the steps overshoot\n"
            "  hint: use a smaller lr (smaller batches need smaller ones), or clip = 1.0 in "
            "the train block; `run --grad-rms` shows the gradients growing")
