"""The command line: run, check, trace, emit, predict, plot (spec/api.md).

Exit status: 0 success; 1 the model, data or weights are at fault; 2 wrong
usage; 130 interrupted. No traceback reaches the user without --debug.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from .diagnostics import (DataError, Diagnostic, ModelWarning, NNCompileError, did_you_mean,
                          plural)
from .train.config import MAX_INT, shown

# numpy, lark and the compiler are imported inside the commands, after main()
# is ready to catch a Ctrl-C (their imports take about half a second).

EPILOG = "docs: docs/cli.md and docs/language.md; exit status 0 ok, 1 model/data fault, 2 usage"


def _positive_int(text):
    if not re.fullmatch(r"-?[0-9]+", text):     # int() also takes "1_0", " 3", "３"
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number")
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    if value > MAX_INT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_INT}, got {value}")
    return value


# the train settings `run --set` takes: the train block's keys (but device,
# which is --device) and the optimizer's arguments
SET_KEYS = ("data", "split", "normalize", "optimizer", "batch", "accumulate", "epochs",
            "shuffle", "clip", "early_stop", "seed", "lr", "momentum", "beta1", "beta2", "eps")
OPTIMIZER_ARGS = {"sgd": ("lr", "momentum"), "adam": ("lr", "beta1", "beta2", "eps")}


def _setting(text: str) -> dict:
    """--set KEY=VALUE: the fit overrides of one train setting, the value written
    as in the train block (optimizer=adam(lr = 0.001), shuffle=false, clip=none)
    or, for data, a built-in set's name or a file's path from the working folder."""
    from .train.config import CHOICES, LIMITS
    key, eq, value = (part.strip() for part in text.partition("="))
    if not eq or not key or not value:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE, e.g. --set lr=0.1")
    if key == "device":
        raise argparse.ArgumentTypeError("the device is chosen with --device cpu|cuda|auto")
    if key not in SET_KEYS:
        raise argparse.ArgumentTypeError(
            f"unknown train setting '{key}'; " +
            (did_you_mean(key, SET_KEYS) or f"settings: {', '.join(SET_KEYS)}"))

    def number(k, v):
        if v == "none" and k in ("clip", "early_stop", "split"):
            return None
        try:
            x = float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{k} must be a number, got '{v}' (e.g. {LIMITS[k].example})") from None
        lim = LIMITS[k]
        if not lim.allows(x):
            raise argparse.ArgumentTypeError(f"{k} must be {lim.fault(x)}, got {v}")
        return int(x) if lim.whole else x

    if key == "optimizer":
        m = re.fullmatch(r"(\w+)\s*(?:\((.*)\))?", value)
        name = m.group(1) if m else value
        if name not in OPTIMIZER_ARGS:
            raise argparse.ArgumentTypeError(f"'{name}' is not an optimizer; optimizer is "
                                             "sgd(lr, momentum) or adam(lr, beta1, beta2, eps)")
        out = {"optimizer": name}
        if m.group(2) is None:      # only the optimizer changes: lr and the rest stay
            return out
        from .train.config import TrainConfig
        out.update({k: getattr(TrainConfig, k) for k in OPTIMIZER_ARGS[name]})   # defaults
        for part in filter(str.strip, m.group(2).split(",")):
            k, _, v = (s.strip() for s in part.partition("="))
            if k not in OPTIMIZER_ARGS[name] or not v:
                raise argparse.ArgumentTypeError(
                    f"'{part.strip()}' is not an argument of {name}: write "
                    f"{name}({', '.join(a + ' = ...' for a in OPTIMIZER_ARGS[name])})")
            out[k] = number(k, v)
        if "lr" not in [p.partition("=")[0].strip() for p in m.group(2).split(",")]:
            raise argparse.ArgumentTypeError(f"{name} needs a learning rate: "
                                             f"optimizer={name}(lr = 0.01)")
        return out
    if key == "data":        # a built-in set, else a path: _settings tells them apart
        return {"data": value}
    if key in CHOICES:
        if value not in CHOICES[key]:
            raise argparse.ArgumentTypeError(f"{key} is one of: {', '.join(CHOICES[key])}, "
                                             f"got '{value}'")
        return {key: value}
    if key == "shuffle":
        if value not in ("true", "false"):
            raise argparse.ArgumentTypeError(f"shuffle is true or false, got '{value}'")
        return {key: value == "true"}
    return {key: number(key, value)}


def _settings(args) -> dict:
    """The fit overrides of --set, run's --epochs and trace's --batch; a usage
    error (exit 2) for a setting given twice or a data set that is neither
    built in nor a file."""
    out = {}
    for one in args.set or []:
        for k, v in one.items():
            if k in out:
                args.command_parser.error(f"--set gives {k} twice")
            out[k] = v
    data = out.get("data")
    if data is not None:
        from .train.data import BUILTIN
        if data not in BUILTIN and not os.path.exists(data) and re.fullmatch(r"\w+", data):
            args.command_parser.error(
                f"argument --set: '{data}' is neither a built-in data set nor a file; " +
                (did_you_mean(data, BUILTIN) or f"built-in sets: {', '.join(BUILTIN)}"))
    if getattr(args, "epochs", None) is not None:
        if "epochs" in out:
            args.command_parser.error("--epochs and --set epochs= both give the epochs; "
                                      "give one")
        out["epochs"] = args.epochs
    if getattr(args, "batch", None) is not None:        # trace --batch K
        if "batch" in out:
            args.command_parser.error("--batch and --set batch= both give the batch; give one")
        out.update(batch=args.batch, accumulate=1)
    return out


def _apply_settings(model, args, overrides: dict) -> None:
    """The model's train settings become its train block's with overrides in
    their place; seed draws the initial weights again, as seed = k in the file
    does. An optimizer argument the optimizer lacks is a usage error."""
    optimizer = overrides.get("optimizer", model.train_config.optimizer)
    for k in overrides:
        if k in ("momentum", "beta1", "beta2", "eps") and k not in OPTIMIZER_ARGS[optimizer]:
            args.command_parser.error(f"argument --set: {k} is not a setting of {optimizer}, "
                                      "this run's optimizer; it takes "
                                      f"{', '.join(OPTIMIZER_ARGS[optimizer])}")
    if "seed" in overrides:
        model.reset_params(overrides["seed"])
    model.train_config = model.config(**overrides)


def _given(args) -> dict:
    """The settings of --set, as given (a path as written), for headers and histories."""
    return {k: v for one in args.set or [] for k, v in one.items()}


def _same_file(a: str, b: str) -> bool:
    """a and b are one file (a hard link, say); False when either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _count(text):
    value = _positive_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more, got 0")
    return value


def _add_set(p) -> None:
    p.add_argument("--set", action="append", type=_setting, metavar="KEY=VALUE",
                   help="a train setting in place of the train block's, written as there "
                        "(split=0.9, seed=3, lr=0.1, 'optimizer=adam(lr = 0.001)', "
                        "data=my.csv); may be repeated")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nncompile", epilog=EPILOG,
                                description="Compile, train and run neural networks "
                                            "written in the .nn language.")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", help="compile and train as the train block says",
                       epilog=EPILOG)
    r.add_argument("model", metavar="MODEL.nn")
    r.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                   help="where to train (default: the file's device, else auto)")
    r.add_argument("--epochs", type=_positive_int, help="override the train block's epochs")
    r.add_argument("--out", metavar="DIR",
                   help="folder for MODEL.weights.npz and MODEL.history.json "
                        "(default: beside the model)")
    _add_set(r)
    r.add_argument("--weights", metavar="FILE",
                   help="start from weights written by `nncompile run` instead of the "
                        "initialisers (to train on, or fine-tune)")
    r.add_argument("--quiet", action="store_true", help="print only the final summary")
    r.add_argument("--grad-rms", action="store_true",
                   help="measure each param's RMS gradient on a fixed batch after every "
                        "epoch (vanishing and exploding gradients) and print a table")

    c = sub.add_parser("check", help="check names and shapes, print a summary and "
                                     "verify gradients against finite differences")
    c.add_argument("model", metavar="MODEL.nn")
    _add_set(c)

    t = sub.add_parser("trace", help="show one training step value by value: forward, "
                                     "the chain rule backward, the update", epilog=EPILOG)
    t.add_argument("model", metavar="MODEL.nn")
    t.add_argument("--batch", type=_count, metavar="K",
                   help="trace K examples (default: the train block's first update)")
    t.add_argument("--weights", metavar="FILE",
                   help="start from weights written by `nncompile run` (default: the init)")
    t.add_argument("--full", action="store_true", help="print every array in full")
    _add_set(t)

    e = sub.add_parser("emit", help="print a compiled stage")
    e.add_argument("model", metavar="MODEL.nn")
    e.add_argument("--target", default="ir", choices=("ast", "ir", "grad", "fused", "cuda"),
                   help="ast, ir (forward), grad (with the backward pass and update), "
                        "fused (kernels and memory plan), cuda (generated source)")

    d = sub.add_parser("predict", help="run a trained model on new data")
    d.add_argument("model", metavar="MODEL.nn")
    d.add_argument("--weights", required=True, metavar="FILE",
                   help="weights written by `nncompile run` (.npz)")
    d.add_argument("--input", required=True, metavar="FILE",
                   help=".npy, .npz, .csv, or MNIST idx images")
    d.add_argument("--output", metavar="FILE", help="write outputs to .npy, .npz or .csv "
                                                    "instead of printing them")
    d.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")

    g = sub.add_parser("plot", help="draw the training curves of one or more runs "
                                    "(needs the plot extra)", epilog=EPILOG)
    g.add_argument("histories", nargs="+", metavar="HISTORY",
                   help="MODEL.history.json written by run, or MODEL.nn for the one "
                        "beside it")
    g.add_argument("--output", metavar="FILE", help=".png, .svg or .pdf (default: the "
                                                    "first history's name, ending .png)")
    for sp in sub.choices.values():     # a stray argument gets the command's usage
        sp.set_defaults(command_parser=sp)
    return p


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit cannot raise
    BrokenPipeError again (Python's documented way out of a closed pipe)."""
    try:
        sys.stdout.flush()
    except OSError:
        pass
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):   # no file descriptor (tests' capture)
        pass


def _version() -> str:
    from . import __version__
    return f"nncompile {__version__}"


def main(argv=None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra:
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "predict" and args.output is not None:
        for flag in ("weights", "input"):
            if os.path.realpath(args.output) == os.path.realpath(getattr(args, flag)) or \
                    _same_file(args.output, getattr(args, flag)):
                args.command_parser.error(f"--output {args.output} is also the --{flag} "
                                          "file; writing it would lose what it holds: "
                                          "choose another name")
    try:
        return COMMANDS[args.command](args)
    except NNCompileError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nncompile: interrupted; nothing was written", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print("error: out of memory: the model's params, or one batch of values, do not fit",
              file=sys.stderr)
        print("hint: use smaller layers or a smaller batch", file=sys.stderr)
        return 1
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly, as Unix tools do
        _silence_stdout()
        return 141           # 128 + SIGPIPE, what a shell reports for such a tool
    except OSError as e:     # a file the user named cannot be read or written
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"{where}error: {e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:   # a compiler bug: say so plainly
        if args.debug:
            raise
        print(f"nncompile: internal error: {e.__class__.__name__}: {e}\n"
              "hint: this is a bug in nncompile; run again with --debug for the traceback "
              "and report it", file=sys.stderr)
        return 1


def _compile(path: str, **options):
    """The model at path: always a file here, never source text."""
    from . import api
    if not path:
        raise DataError("the model file's name is empty", hint="give the path of a .nn file")
    if os.path.isdir(path):
        raise DataError("this is a folder, not a model file", file=path,
                        hint="give the .nn file itself")
    if not os.path.isfile(path):
        raise DataError("no such model file", file=path,
                        hint="check the path; model files end in .nn")
    import warnings
    with warnings.catch_warnings():        # printed below as a compiler prints them
        warnings.simplefilter("ignore", ModelWarning)
        model = api.compile(path, **options)
    for text in model.warnings:
        print(text, file=sys.stderr)
    return model


# run -------------------------------------------------------------------------

def _fmt(record: dict, epochs: int) -> str:
    width = len(str(epochs))
    parts = [f"epoch {record['epoch']:>{width}}/{epochs}", f"loss {record['loss']:.6f}"]
    for key, label in (("train_accuracy", "train acc"), ("test_loss", "test loss"),
                       ("test_accuracy", "test acc")):
        if key in record:
            parts.append(f"{label} {record[key]:.4f}")
    parts.append(f"{record['time'] * 1000:.0f} ms")
    return "  ".join(parts)


def _should_print(epoch: int, epochs: int) -> bool:
    """Every epoch up to 50; beyond that about 20 lines, and always the last."""
    if epochs <= 50 or epoch == epochs or epoch == 1:
        return True
    return epoch % max(1, epochs // 20) == 0


class _Diverged(Exception):
    """Raised from the epoch report to stop a run whose loss is no longer finite
    (as Keras' TerminateOnNaN): its weights would be useless, so none are written."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"diverged in epoch {epoch}")
        self.epoch, self.loss = epoch, loss


def cmd_run(args) -> int:
    from .train.loop import Interrupted
    overrides = _settings(args)
    model = _compile(args.model, device=args.device,    # None: the file's device
                     quiet=args.quiet)                   # quiet: no "using the CPU" line
    if not model.train_config.present:
        raise DataError("this model has no train block, so `run` has nothing to do",
                        file=args.model, hint="add a train { ... } block, or use "
                                              "`nncompile check` / `emit`")
    _apply_settings(model, args, overrides)
    cfg = model.train_config
    epochs = cfg.epochs
    stem = os.path.basename(args.model)
    stem = stem[:-3] if stem.endswith(".nn") else stem
    folder = args.out if args.out is not None else os.path.dirname(os.path.abspath(args.model))
    weights = os.path.join(folder, f"{stem}.weights.npz")
    history_path = os.path.join(folder, f"{stem}.history.json")
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise DataError("--out must be a folder", file=args.out,
                        hint=f"give a folder; run writes {stem}.weights.npz and "
                             f"{stem}.history.json into it")
    from .api import writable, write_files
    for path in (weights, history_path):      # before training, not after it; a missing
        writable(path, make=False)            # --out folder is made only when writing
    if epochs == 0:      # nothing trained: keep any weights a run before wrote
        print(f"nncompile: {model.name}: 0 epochs, nothing to train; nothing was written")
        return 0
    if args.weights is not None:
        model.load(args.weights)
    given = _given(args)

    start = {}

    def header(rows):
        start.update(rows)
        if args.quiet:
            return
        held = f" + {rows['test']} held out" if rows["test"] else ""
        print(f"nncompile: training {model.name} on {given.get('data', cfg.data)}, "
              f"{plural(rows['train'], 'example')}{held} "
              f"({model.device}, {epochs} epoch{'' if epochs == 1 else 's'}, "
              f"batch {cfg.batch}" + (f" x {cfg.accumulate} accumulated" if cfg.accumulate > 1
                                      else "") + ")", flush=True)
        if given:
            print("  with --set " + ", ".join(f"{k} = {shown(v)}" for k, v in given.items()))
        if args.weights is not None:
            print(f"  starting from the weights in {args.weights}")

    seen = []

    def report(record):
        seen.append(record)
        if not args.quiet and (_should_print(record["epoch"], epochs) or
                               record.get("diverged") or record.get("stopped_early")):
            print(_fmt(record, epochs), flush=True)
        if record.get("diverged"):
            raise _Diverged(record["epoch"], record["loss"])

    try:
        history = model.fit(on_epoch=report, on_start=header, grad_rms=args.grad_rms)
    except Interrupted as e:
        print(f"nncompile: interrupted after {len(e.history)} of {epochs} epochs; "
              "nothing was written", file=sys.stderr)
        return 130
    except DataError as e:
        raise (e if "data" in overrides else _at_data_line(model, e)) from None
    except _Diverged as e:
        if args.grad_rms:
            print("\n".join(grad_rms_lines(model, cfg, start["grad_rms"], seen,
                                            start["train"])))
        span = cfg.span("optimizer")
        step = [f"{k} = {shown(v)}" for k, v in given.items()
                if k in ("optimizer", "lr", "clip", "batch", "accumulate")]
        raise NNCompileError(Diagnostic(
            span, f"training diverged: the loss became {e.loss} in epoch {e.epoch} of "
                  f"{epochs} (exploding gradients), so the run stopped and wrote nothing" +
                  (f" (with --set {', '.join(step)})" if step else ""),
            "use a smaller lr, set clip = 1.0 in the train block, or start from smaller "
            "weights; `nncompile check` shows how far the first step moves each param"
        ).render(model.source)) from None
    doc = {"model": model.name, "file": args.model, "device": model.device}
    if given:
        doc["set"] = given
    if args.weights is not None:
        doc["weights_from"] = args.weights
    if "grad_rms" in start:
        doc["grad_rms_start"] = start["grad_rms"]
    text = json.dumps({**doc, "epochs": history}, indent=1)
    try:     # a Ctrl-C while writing waits until both files are written (write_files)
        write_files([(weights, model.write_params),
                     (history_path, lambda f: f.write(text.encode()))])
        summarize(model, cfg, history, start, args)
    except KeyboardInterrupt:
        print(f"nncompile: interrupted; wrote {weights} and {history_path}", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"wrote {weights}\nwrote {history_path}")
    return 0


def summarize(model, cfg, history: list, start: dict, args) -> None:
    """What `run` prints after training: early stopping, the final losses and
    accuracies (of the kept epoch), a note (train/notes.py), the --grad-rms
    table. history has one epoch or more: `run` stops before training 0 epochs."""
    from .train import notes
    best = next((r for r in history if r.get("best")), None)
    for line in notes.early_stop_lines(history, cfg.early_stop):
        print(line)
    last = best or history[-1]
    summary = [f"loss {last['loss']:.6f}"]
    for key, label in (("train_accuracy", "train accuracy"),
                       ("test_accuracy", "test accuracy")):
        if key in last:
            summary.append(f"{label} {last[key]:.4f}")
    if "train_accuracy" in last and "test_accuracy" in last:
        summary.append(f"gap {last['train_accuracy'] - last['test_accuracy']:+.4f}")
    print("final: " + ", ".join(summary))
    note = notes.note(model, cfg, history)
    if note:
        print(note)
    if args.grad_rms:
        print("\n".join(grad_rms_lines(model, cfg, start["grad_rms"], history,
                                        start["train"])))


GRAD_COLUMNS = 5        # epochs shown in run --grad-rms's table, besides the start


def grad_rms_lines(model, cfg, start: dict, history: list, examples: int) -> list:
    """run --grad-rms's table: each param's RMS gradient on the probe batch at
    the start and after up to GRAD_COLUMNS epochs spread over the run, and,
    for two or more weights (params of two or more axes), how many times the
    largest weight gradient is the smallest: a ratio of 100 or more that
    stays is vanishing gradients."""
    import numpy as np

    from .check import _table
    picks = sorted({int(round(i)) for i in np.linspace(0, len(history) - 1, GRAD_COLUMNS)})
    columns = [("start", start)] + [(f"epoch {history[i]['epoch']}", history[i]["grad_rms"])
                                    for i in picks]
    rows = [("param",) + tuple(c for c, _ in columns)]
    rows += [(k,) + tuple(f"{g[k]:.1e}" for _, g in columns) for k in model.graph.params]
    weights = [k for k, p in model.graph.params.items() if len(p.shape) >= 2]
    if len(weights) >= 2:
        def spread(g):
            sizes = [g[k] for k in weights]
            if not all(np.isfinite(sizes)) or min(sizes) <= 0:
                return "-"
            return f"{max(sizes) / min(sizes):.0f}x"
        rows.append(("largest / smallest weight",) + tuple(spread(g) for _, g in columns))
    rows_used = min(cfg.batch * cfg.accumulate, examples)
    return [f"gradient RMS of each param on a fixed batch, the "
            f"{plural(rows_used, 'example')} of the first update (as `check` shows them at "
            "the start):"] + \
        ["  " + line for line in _table(rows, right=range(1, len(columns) + 1))]


def _at_data_line(model, e: DataError) -> NNCompileError:
    """A fault of the data as a whole (missing file, wrong example size) is shown
    where the model names the data: MODEL:LINE:COL at `data = ...`. Faults in one
    row keep the data file's own FILE:ROW."""
    cfg = model.train_config
    span = cfg.spans.get("data")
    if e.row is not None or span is None or e.file == model.file:
        return e
    what = f"data file '{cfg.data}'" if cfg.data_is_path else f"data set '{cfg.data}'"
    if cfg.data_is_path and e.file is not None:
        named = os.path.join(os.path.dirname(model.file), cfg.data)
        if os.path.abspath(e.file) != os.path.abspath(named):   # a file it leads to
            what += f" ({e.file})"                                # (idx labels, a folder's)
    return NNCompileError(Diagnostic(span, f"{what}: {e.message}", e.hint).render(model.source))


# check -----------------------------------------------------------------------

def cmd_check(args) -> int:
    import numpy as np

    from .check import gradient_check, gradient_sizes, summary
    overrides = _settings(args)
    model = _compile(args.model, device="cpu", quiet=True)
    _apply_settings(model, args, overrides)
    print(summary(model))
    if model.graph.loss is None:
        print("no loss: nothing to differentiate")
        return 0
    rows, worst, ok = gradient_check(model)
    print("\ngradient check (float64, central differences):")
    for row in rows:
        print(row)
    print(f"worst relative error {worst:.2e}: {'ok' if ok else 'FAILED'}")
    if not np.isfinite(worst):
        print("  hint: the loss or a gradient is not a finite number at the checked point "
              "(inputs ~ N(0, 1), params as initialised plus noise): a log or sqrt of a "
              "value that can be negative or zero?")
    if not model.graph.inputs:
        print("\nno input: there are no examples to show the gradients at the start on")
        return 0 if ok else 1
    heading, table, notes = gradient_sizes(model)
    print(f"\n{heading}")
    for row in table:
        print(f"  {row}")
    for message, hint in notes:
        print(f"note: {message}\n  hint: {hint}")
    return 0 if ok else 1


# trace -----------------------------------------------------------------------

def cmd_trace(args) -> int:
    overrides = _settings(args)
    model = _compile(args.model, device="cpu", quiet=True)
    _apply_settings(model, args, overrides)
    if args.weights:
        model.load(args.weights)
    cfg = model.train_config
    try:
        t = model.trace()
    except DataError as e:
        raise (e if "data" in overrides else _at_data_line(model, e)) from None
    t.full = args.full
    sys.stdout.write(str(t))
    if args.weights:
        print(f"(params from {args.weights})")
    elif not cfg.present and t.loss is not None:
        print("(no train block: the update uses the defaults, sgd(lr = 0.01))")
    return 0


# emit ------------------------------------------------------------------------

def cmd_emit(args) -> int:
    model = _compile(args.model, device="cpu", quiet=True)
    sys.stdout.write(model.emit(args.target))
    return 0


# predict ---------------------------------------------------------------------

def read_input(path: str, model) -> object:
    """An input file as an array (one input) or a dict keyed by input names.
    An .npy or .npz must be one by its first bytes, a .csv must not."""
    import numpy as np

    from .train.data import is_idx, read_images
    anything = "give a .npy, .npz or .csv file of input examples (or MNIST idx images)"
    if not os.path.exists(path):
        raise DataError("no such input file", file=path, hint=anything)
    if os.path.isdir(path):
        raise DataError("this is a folder, not an input file", file=path, hint=anything)
    names = list(model.inputs)
    several = f"an .npz with arrays {', '.join(names)}"
    if is_idx(path):
        if len(names) > 1:
            raise DataError(f"an idx file holds one array, but the model has inputs "
                            f"{', '.join(names)}", file=path, hint=f"give {several}")
        return read_images(path)
    low = path.lower()
    ext = next((e for e in (".npy", ".npz", ".csv") if low.endswith(e)), None)
    if ext is None:
        raise DataError("unsupported input file", file=path,
                        hint="use .npy, .npz or .csv (or an MNIST idx images file, "
                             "...-images-idx3-ubyte[.gz])")
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror})", file=path,
                        hint="check that the file is readable") from None
    kind = ".npy" if head == b"\x93NUMPY" else \
        ".npz" if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") else None
    what = {".npy": "an .npy file", ".npz": "an .npz archive", ".csv": "csv text"}
    if kind and kind != ext:
        raise DataError(f"the file is {what[kind]}, not {what[ext]}", file=path,
                        hint=f"rename it to {path[:-4]}{kind}")
    if kind is None and ext != ".csv":
        raise DataError(f"the file is not {what[ext]}: it does not start as numpy writes one",
                        file=path, hint=("np.save(path, array) writes an .npy" if ext == ".npy"
                                         else "np.savez(path, x=array) writes an .npz") +
                        "; a text file of numbers is a .csv")
    if ext == ".npy" and len(names) > 1:
        raise DataError(f"an .npy holds one array, but the model has inputs {', '.join(names)}",
                        file=path, hint=f"give {several}")
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if all(n in z.files for n in names):
                    return {n: z[n] for n in names} if len(names) > 1 else z[names[0]]
                if len(names) == 1 and "x" in z.files:
                    return z["x"]
                raise DataError(f"the file has arrays {', '.join(z.files) or 'none'}; the "
                                f"model's inputs are {', '.join(names)}", file=path,
                                hint="name the arrays after the inputs (or 'x' for one input)")
    except DataError:
        raise
    except Exception as e:
        what = "the array holds Python objects, not numbers" if "allow_pickle" in str(e) \
            else f"cannot read the file: it is cut short or damaged ({e})"
        from .train.data import damaged_numpy_file
        raise damaged_numpy_file(path) or DataError(
            what, file=path, hint="save numeric inputs with np.save (one array) or np.savez (an "
                                  "array per input)") from None
    from .train.data import load_file
    if len(names) != 1:
        raise DataError("a .csv feeds a model with one input", file=path,
                        hint=f"give {several}")
    shape = model.inputs[names[0]]
    size = int(np.prod(shape))
    try:
        return load_file(path, size, 0).x
    except DataError as e:
        if e.row is None or e.hint is not None:
            raise
        raise DataError(e.message, file=e.file, row=e.row,
                        hint=f"the model's input '{names[0]}' is {list(shape)}: one "
                             f"example of {size} values per row") from None


def output_format(path: str, several: bool) -> str:
    """.npy, .npz or .csv: the format predict writes path in; a DataError
    for another, or for several outputs in anything but an .npz."""
    low = path.lower()
    ext = next((e for e in (".npy", ".npz", ".csv") if low.endswith(e)), None)
    if ext is None:
        raise DataError("unsupported output file", file=path, hint="use .npy, .npz or .csv")
    if several and ext != ".npz":
        raise DataError("this model has several outputs; write them to an .npz", file=path,
                        hint="--output FILE.npz holds one array per output")
    return ext


def write_output(path: str, outputs: dict) -> None:
    """The outputs (name -> array) into path: an .npz holds each under its
    name; an .npy or a .csv holds the one output of a model with one."""
    import numpy as np

    from .api import write_atomic
    ext = output_format(path, len(outputs) > 1)
    if ext == ".npz":
        write_atomic(path, lambda f: np.savez(f, **outputs))
        return
    (only,) = outputs.values()
    if ext == ".npy":
        write_atomic(path, lambda f: np.save(f, only))
    else:
        flat = only.reshape(len(only), -1)
        text = "\n".join(",".join(f"{v:.8g}" for v in row) for row in flat) + "\n"
        write_atomic(path, lambda f: f.write(text.encode()))


def cmd_predict(args) -> int:
    import numpy as np
    model = _compile(args.model, device=args.device, quiet=True)
    if not model.graph.outputs:
        raise DataError(f"model {model.name} declares no output, so there is nothing to "
                        "predict", file=args.model, hint="add 'output NAME = ...' to the model")
    if args.output:
        from .api import writable
        output_format(args.output, several=len(model.graph.outputs) > 1)
        writable(args.output)
    model.load(args.weights)
    x = read_input(args.input, model)
    try:
        out = model.predict(x)
    except DataError as e:
        raise DataError(str(e).split("error: ", 1)[-1], file=args.input) from None
    named = out if isinstance(out, dict) else {next(iter(model.outputs)): out}
    if args.output:
        write_output(args.output, named)
        print(f"wrote {args.output}")
        return 0
    items = named.items()
    with np.printoptions(precision=6, suppress=True, linewidth=120, threshold=sys.maxsize):
        for name, arr in items:
            print(f"# {name}: {plural(arr.shape[0], 'row')} of {list(arr.shape[1:])}")
            for row in arr.reshape(len(arr), -1):
                print(" ".join(f"{v:.6g}" for v in row))
    return 0


# plot ------------------------------------------------------------------------

def cmd_plot(args) -> int:
    from . import plot
    paths = [plot.history_path(h) for h in args.histories]
    read = [plot.read_history(p) for p in paths]
    stems = [os.path.basename(p).removesuffix(".json").removesuffix(".history")
             for p in paths]
    labels = [name for name, *_ in read] if len(read) == 1 else stems
    histories, starts = {}, {}
    for i, (label, (_, records, start, settings)) in enumerate(zip(labels, read)):
        label = f"{label} ({settings})" if settings else label      # run --set's
        label = label if label not in histories else f"{label} ({i + 1})"
        histories[label] = records
        if start is not None:
            starts[label] = start
    out = args.output or (paths[0].removesuffix(".json") + ".png")
    plot.save(plot.figure(histories, starts), out)
    print(f"wrote {out}")
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "trace": cmd_trace, "emit": cmd_emit,
            "predict": cmd_predict, "plot": cmd_plot}

if __name__ == "__main__":
    sys.exit(main())
