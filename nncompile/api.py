"""The Model object the user holds (spec/api.md)."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import tempfile
import threading
import warnings

import numpy as np

from .backends.device import (DeviceError, make_program, make_storage, resolve_device,
                              store_family)
from .backends.device import physical_memory as _physical_memory   # tests replace it here
from .diagnostics import CompileError, DataError, Diagnostic, ModelWarning, Span, plural
from .frontend.ast import dump
from .frontend.parse import parse
from .ir.graph import N, fmt_shape
from .ops.init import initial_value
from .passes import pipeline
from .passes.schedule import params_too_large
from .train.config import CHOICES, LIMITS, TrainConfig
from .train.metrics import rows_per_call

CHUNK = 1024        # rows per call when predicting or evaluating many examples
NORMALIZE_KEY = "normalize:{}:{}"   # weights-file key of an input's shift or scale


def _read_model(path_or_source: str) -> tuple[str, str]:
    """(source, file name) from a path or from the source text itself: one
    line that names a file, ends in .nn, or has no space is a path."""
    one_line = "\n" not in path_or_source and path_or_source.strip() != ""
    looks_like_path = one_line and (path_or_source.strip().endswith(".nn") or
                                    not path_or_source.split(maxsplit=1)[1:] or
                                    os.path.exists(path_or_source))
    if looks_like_path and os.path.isdir(path_or_source):
        raise DataError("this is a folder, not a model file", file=path_or_source,
                        hint="give the .nn file itself")
    if looks_like_path:
        try:
            with open(path_or_source, encoding="utf-8", newline="") as f:
                return f.read(), path_or_source
        except FileNotFoundError:
            raise DataError("no such model file", file=path_or_source,
                            hint="check the path; model files end in .nn") from None
        except UnicodeDecodeError as e:
            before = e.object[:e.start]
            line = before.count(b"\n") + 1
            col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
            diag = Diagnostic(Span(path_or_source, line, col),
                              f"the file is not UTF-8 text: byte 0x{e.object[e.start]:02x} "
                              "cannot be read", "save the model as UTF-8")
            raise CompileError([diag]) from None
        except OSError as e:
            raise DataError(f"cannot read the model file ({e.strerror or e})",
                            file=path_or_source,
                            hint="check that the file exists and that you may read it") from None
    return path_or_source, "<string>"


def compile(path_or_source: str, device: str | None = None, quiet: bool = False) -> "Model":
    """Compile a .nn file (a path) or .nn source text (see _read_model)."""
    if not isinstance(path_or_source, (str, os.PathLike)):
        raise TypeError(f"compile takes a path or .nn source text, got "
                        f"{type(path_or_source).__name__}")
    source, file = _read_model(os.fspath(path_or_source))
    return _warned(_build(source, device, file, quiet), quiet)


def compile_source(text: str, device: str | None = None, file: str = "<string>",
                   quiet: bool = False) -> "Model":
    if not isinstance(text, str):
        raise TypeError(f"compile_source takes .nn source text, got {type(text).__name__}")
    return _warned(_build(text, device, file, quiet), quiet)


def _build(text: str, device, file: str, quiet: bool) -> "Model":
    graph, train = pipeline.front_end(text, file)
    return Model(graph, train, text, file, device, quiet)


def _warned(model: "Model", quiet: bool) -> "Model":
    """model, after raising its warnings as ModelWarning at the caller's
    line (unless quiet; they stay in model.warnings either way)."""
    if not quiet:
        for text in model.warnings:
            warnings.warn(ModelWarning(text), stacklevel=3)
    return model


def _initial_params(graph, seed: int) -> dict:
    """name -> each param's initial value. Params that cannot fit in memory
    (more float32 bytes than the machine has, or an allocation that fails)
    are an error at the statement that declares the largest of them."""
    sizes = {name: 4.0 * np.prod(p.shape, dtype=np.float64) for name, p in graph.params.items()}
    if sum(sizes.values()) <= _physical_memory():
        try:
            return {name: initial_value(p.attrs["init"], p.shape, seed, name)
                    for name, p in graph.params.items()}
        except MemoryError:
            pass
    raise params_too_large(graph, "in memory")


def _optimizer_settings(cfg) -> tuple | None:
    """What a step or update program bakes in from the train block."""
    if cfg is None:
        return None
    return tuple(getattr(cfg, k, None) for k in ("optimizer", "lr", "momentum", "beta1", "beta2",
                                                 "eps", "clip", "accumulate", "seed"))


def _families(arrays: dict, params: dict) -> list:
    """New optimizer state arrays grouped into families: one per naming
    pattern over every param (PARAM.velocity, grad/PARAM, ...) in the params'
    order; any other array is a family of its own."""
    families, rest = {}, dict(arrays)
    for p in params:
        for name in arrays:
            if name.startswith(p + ".") or name == "grad/" + p:
                families.setdefault(name.replace(p, "*", 1), {})[name] = arrays[name]
    whole = [f for f in families.values() if len(f) == len(params)]
    for f in whole:
        for name in f:
            rest.pop(name, None)
    return whole + [{name: a} for name, a in rest.items()]


class Model:
    """A compiled model: params, predict, loss, gradients, fit, save and load."""

    def __init__(self, graph, train, source, file, device=None, quiet=False):
        # device: "cpu", "cuda" or "auto"; None: the file's device, else auto
        self.graph = graph
        self.train_config = train
        self.source = source
        self.file = file
        self.warnings = [d.render(source) for d in graph.warnings]   # FILE:LINE:COL: warning
        try:
            self.device = resolve_device(device if device is not None else train.device, quiet)
        except DeviceError as e:
            span = train.spans.get("device")
            if device is not None or span is None:
                raise
            # the file asked for it: point at its 'device = ...'
            what, _, hint = str(e).removeprefix("error: ").partition("\nhint: ")
            raise DeviceError(Diagnostic(span, what, hint or None).render(source)) from None
        self._storage = make_storage(self.device)
        store_family(self._storage, _initial_params(graph, train.seed))
        self._programs = {}
        self._built_for = {}       # "step"/"update" -> the optimizer settings built in
        # {input name: (shift, scale)}: the train block's normalize, as the last
        # fit on its data (or a weights file) measured it; None: inputs as given
        self.normalization = None

    def __repr__(self) -> str:
        def shapes(d):
            return ", ".join(f"{k}[{', '.join(map(str, v))}]" for k, v in d.items()) or "none"
        count = sum(int(np.prod(p.shape)) for p in self.graph.params.values())
        return (f"<nncompile.Model {self.name} from {self.file} on {self.device}: "
                f"inputs {shapes(self.inputs)}; targets {shapes(self.targets)}; "
                f"outputs {shapes(self.outputs)}; {len(self.graph.params)} params of "
                f"{count} numbers>")

    # what the model declares -------------------------------------------------
    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def inputs(self) -> dict:
        return {k: tuple(v.shape[1:]) for k, v in self.graph.inputs.items()}

    @property
    def targets(self) -> dict:
        return {k: tuple(v.shape[1:]) for k, v in self.graph.targets.items()}

    @property
    def outputs(self) -> dict:
        return {k: tuple(v.shape[1:]) for k, v in self.graph.outputs.items()}

    @property
    def params(self) -> dict:
        return {k: self._storage[k].copy() for k in self.graph.params}

    @property
    def ir(self):
        return self.graph

    def reset_params(self, seed: int | None = None) -> None:
        """Every param back to a fresh draw of its initialiser, from seed (default:
        the train block's): what compiling the file with `seed = k` gives, so
        reset_params(k) then fit(seed=k) is the run of that file."""
        if seed is None:
            seed = self.train_config.seed
        _check_option("seed", seed)
        self.set_params(_initial_params(self.graph, int(seed)))

    def set_params(self, values: dict, source: str = "params") -> None:
        if not isinstance(values, dict):
            raise TypeError(f"set_params takes a dict of param name -> array, got "
                            f"{type(values).__name__}")
        for k, v in values.items():
            if k not in self.graph.params:
                raise DataError(f"'{k}' is not a param of model {self.name}", file=source,
                                hint="params: " + ", ".join(self.graph.params))
            v = np.asarray(v)
            want = self.graph.params[k].shape
            if np.iscomplexobj(v) or not np.issubdtype(v.dtype, np.number) or v.dtype == bool:
                what = "text" if v.dtype.kind in "US" else f"{v.dtype} values"
                raise DataError(f"param '{k}' holds {what}, not real numbers", file=source,
                                hint="weights come from `nncompile run` or Model.save")
            if v.shape != want:
                raise DataError(f"param '{k}' has shape {fmt_shape(v.shape)}, the model "
                                f"declares {fmt_shape(want)}", file=source,
                                hint="were these weights trained before the layer's size "
                                     "changed? train again with `nncompile run`")
            with np.errstate(over="ignore", invalid="ignore"):
                finite = np.all(np.isfinite(v.astype(np.float32)))
            if not finite:
                raise DataError(f"param '{k}' holds values that are not finite float32 numbers",
                                file=source,
                                hint="training diverged; train again with a smaller lr, or "
                                     "with clip = 1.0 in the train block")
        for k, v in values.items():
            np.copyto(self._storage[k], np.asarray(v), casting="unsafe")

    # programs -------------------------------------------------------------
    def _program(self, key: str, cfg=None):
        """The program for one job, built on first use; a step or update built
        for other optimizer settings is rebuilt."""
        prog = self._programs.get(key)
        if prog is not None and key in ("step", "update") and \
                self._built_for.get(key) != _optimizer_settings(cfg):
            prog = None
        if prog is None:
            self._built_for[key] = _optimizer_settings(cfg)
            roles = {"predict": dict(outputs=True), "loss": dict(loss=True),
                     "evaluate": dict(outputs=True, loss=True),
                     "gradients": dict(grads=True), "probe": dict(grads=True)}.get(key)
            if key == "step":
                sched = pipeline.program(self.graph, updates=True, cfg=cfg)
            elif key == "update":
                sched = pipeline.schedule(pipeline.optimize(pipeline.update_graph(self.graph,
                                                                                  cfg)))
            else:
                sched = pipeline.program(self.graph, cfg=self.train_config, **roles)
            new = {}
            for node in (n for n in sched.graph.nodes if n.op == "state"):
                name, value = node.attrs["name"], node.attrs["value"]
                # optimizer buffers, accumulated grads; one left by an earlier
                # program starts fresh again
                if name in self._storage:
                    self._storage[name].fill(value)
                else:
                    new[name] = np.full(node.shape, value, np.float32)
            for family in _families(new, self.graph.params):
                store_family(self._storage, family)
            prog = self._programs[key] = make_program(self.device, sched, self._storage)
        return prog

    def _reset_optimizer(self):
        """Fresh optimizer state for a new fit(): on the CPU, every optimizer
        buffer back to its initial value in place and the dropout masks' stream
        restarted, so the programs already built are kept; on the GPU both are
        dropped and rebuilt."""
        if isinstance(self._storage, dict):
            for node in self._state_nodes():
                self._storage[node.attrs["name"]].fill(node.attrs["value"])
            for prog in self._programs.values():
                prog.restart()
            return
        for k in list(self._storage):
            if k not in self.graph.params:
                del self._storage[k]
        for k in ("step", "update"):
            self._programs.pop(k, None)

    def _state_nodes(self) -> list:
        """The optimizer buffers of the programs built so far (state leaves)."""
        seen = {}
        for prog in self._programs.values():
            for node in prog.schedule.graph.nodes:
                if node.op == "state":
                    seen.setdefault(node.attrs["name"], node)
        return list(seen.values())

    # feeding data -------------------------------------------------------------
    def _as_dict(self, x, role: str) -> dict:
        decl = self.graph.inputs if role == "input" else self.graph.targets
        if isinstance(x, dict):
            missing = [k for k in decl if k not in x]
            extra = [k for k in x if k not in decl]
            if missing or extra:
                raise DataError(f"the model's {role}s are {', '.join(decl)}; got "
                                f"{', '.join(x) or 'none'}",
                                hint=f"key the dict by the {role} names")
            return {k: self._check(k, x[k], decl[k]) for k in decl}
        if len(decl) != 1:
            raise DataError(f"this model has {len(decl)} {role}s ({', '.join(decl)}); "
                            "pass a dict keyed by their names",
                            hint="{" + ", ".join(f"'{k}': ..." for k in decl) + "}")
        k = next(iter(decl))
        return {k: self._check(k, x, decl[k])}

    def _inputs(self, x) -> dict:
        """x as _as_dict checks it, each input then normalised as the train
        block's data was for the last fit (self.normalization)."""
        feeds = self._as_dict(x, "input")
        if self.normalization:
            from .train.data import normalized
            for k, stats in self.normalization.items():
                feeds[k] = normalized(feeds[k], stats)
        return feeds

    def _rows(self, feeds: dict) -> int:
        """The number of examples feeds hold: the same in each, at least one."""
        sizes = {len(v) for v in feeds.values()}
        if len(sizes) > 1:
            raise DataError(f"the arrays given hold different numbers of examples: "
                            f"{', '.join(f'{k} {len(v)}' for k, v in feeds.items())}",
                            hint="give one row per example in each")
        n = sizes.pop() if sizes else 0
        if n == 0:
            raise DataError("there are no examples: the arrays have 0 rows",
                            hint="give at least one example")
        return n

    def _check(self, name, x, node) -> np.ndarray:
        try:
            x = np.asarray(x)
        except ValueError as e:     # a ragged list: rows of different lengths
            raise DataError(f"'{name}' is not an array of numbers: {str(e).split('.')[0]}",
                            hint="give every example the same shape") from None
        per = node.shape[1:]
        size = int(np.prod(per))
        if x.ndim == len(per) and x.shape == per:
            x = x[None]
        if x.ndim == 0 or int(np.prod(x.shape[1:])) != size:
            raise DataError(f"'{name}' expects examples of shape {fmt_shape(per)} "
                            f"({plural(size, 'value')} each), got an array of shape "
                            f"{fmt_shape(x.shape)}",
                            hint="the first axis counts the examples")
        if np.iscomplexobj(x) or not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
            raise DataError(f"'{name}' must hold real numbers, got {x.dtype}",
                            hint="convert it with np.asarray(x, dtype=np.float32)")
        with np.errstate(over="ignore", invalid="ignore"):   # beyond float32: checked below
            out = np.ascontiguousarray(x.reshape((len(x),) + per), dtype=np.float32)
        bad = np.argwhere(~np.isfinite(out))        # (example, entry...) of each
        if len(bad):
            raise DataError(f"'{name}' example {bad[0][0]} (counting from 0) holds a value "
                            "that is not a finite float32 number (NaN, infinite, or beyond "
                            "about 3.4e38)",
                            hint="remove or fill those values first")
        return out

    def _run_chunks(self, key, feeds: dict, collect):
        n = self._rows(feeds)
        prog = self._program(key)
        chunk = rows_per_call(self.graph, n, CHUNK) if key == "loss" else CHUNK
        out = []
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in feeds.items()}
            roots = prog(part)
            out.append((len(next(iter(part.values()))), collect(prog, roots)))
        return out

    # the spec's API ------------------------------------------------------------
    def predict(self, x):
        """x: (batch, *input shape), or a dict for several inputs. One output:
        an array; several: a dict of arrays."""
        if not self.graph.outputs:
            raise DataError(f"model {self.name} declares no output",
                            hint="add 'output NAME = ...' to the model")
        feeds = self._inputs(x)
        names = list(self.graph.outputs)

        def collect(prog, roots):
            g = prog.schedule.graph
            return [roots[g.outputs[k]].copy() for k in names]
        parts = self._run_chunks("predict", feeds, collect)
        result = {k: np.concatenate([p[1][i] for p in parts]) for i, k in enumerate(names)}
        return result[names[0]] if len(names) == 1 else result

    def _loss_feeds(self, x, y) -> dict:
        if self.graph.loss is None:
            raise DataError("the model has no loss statement, so there is no loss or "
                            "gradient to compute", file=self.file,
                            hint="add a 'loss' statement, e.g. loss mse(p, y)")
        feeds = self._inputs(x)
        feeds.update(self._as_dict(y, "target"))
        self._rows(feeds)
        return feeds

    def loss(self, x, y) -> float:
        feeds = self._loss_feeds(x, y)
        parts = self._run_chunks("loss", feeds,
                                 lambda prog, roots: float(roots[prog.schedule.graph.loss]))
        n = sum(p[0] for p in parts)
        return float(sum(k * v for k, v in parts) / n)

    def gradients(self, x, y) -> dict:
        feeds = self._loss_feeds(x, y)
        prog = self._program("gradients")
        roots = prog(feeds)
        g = prog.schedule.graph
        return {k: roots[g.grads[k]].copy() for k in self.graph.params}

    def fit(self, **overrides) -> list:
        """Train as the train block says; keyword overrides: any train key
        (epochs, batch, lr, ...), x, y (and x_test, y_test), on_epoch(record),
        on_start({"train": rows, "test": rows}) once the data is loaded and checked,
        grad_rms=True to add each param's RMS gradient on a fixed probe batch to
        every record (and to on_start's dict, for the initial params)."""
        from .train.loop import fit
        return fit(self, **overrides)

    def trace(self, x=None, y=None, **overrides):
        """One training step, value by value (forward values, d loss / d each,
        each param before, its gradient, after): on x and y, or on the
        examples of the first update of the train block's data. Returns a
        nncompile.trace.Trace; print it to read it."""
        from .trace import trace
        return trace(self, x, y, **overrides)

    def config(self, **overrides):
        keys = {f.name for f in dataclasses.fields(self.train_config)} - INTERNAL
        bad = [k for k in overrides if k not in keys]
        if "device" in bad:
            raise TypeError("device is chosen when compiling: "
                            "nncompile.compile(path, device=...)")
        if bad:
            raise TypeError(f"unknown training option(s): {', '.join(bad)}")
        for k, v in overrides.items():
            _check_option(k, v)
        if "data" in overrides:      # a built-in set's name, else a path from the cwd
            overrides.update(_data_option(overrides["data"]))
        return dataclasses.replace(self.train_config, **overrides)

    def save(self, path: str) -> None:
        """Write the params to an .npz, atomically (a temporary file, then rename);
        a DataError, writing nothing, when a param is not finite (load refuses those)."""
        bad = [k for k, v in self.params.items() if not np.all(np.isfinite(v))]
        if bad:
            raise DataError(f"param '{bad[0]}' holds values that are not finite numbers, so "
                            "there is nothing worth saving", file=path,
                            hint="training diverged: use a smaller lr or set clip, then "
                                 "train again")
        write_atomic(path, self.write_params)

    def write_params(self, f) -> None:
        """The params as an .npz archive into the open binary file f, and the
        inputs' normalisation under NORMALIZE_KEY.format(input, "shift" or "scale")."""
        stats = {NORMALIZE_KEY.format(k, part): v
                 for k, pair in (self.normalization or {}).items()
                 for part, v in zip(("shift", "scale"), pair)}
        np.savez(f, **self.params, **stats)

    def load(self, path: str) -> None:
        hint = "weights come from `nncompile run` or Model.save"
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError("no such weights file", file=path,
                            hint="`nncompile run MODEL.nn` writes MODEL.weights.npz; "
                                 "Model.save writes one too") from None
        except IsADirectoryError:
            raise DataError("this is a folder, not a weights file", file=path,
                            hint="name the .weights.npz file inside it") from None
        except Exception as e:   # a corrupt or foreign file
            why = "not an .npz archive" if "pickle" in str(e) else str(e)
            raise DataError(f"not a weights file written by nncompile ({why})", file=path,
                            hint=hint) from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise DataError("not a weights file: it holds one array, not an .npz archive of "
                            "params", file=path, hint=hint)
        try:
            with data:
                values = {k: data[k] for k in data.files}
        except Exception as e:   # a damaged member, or one that needs pickle
            raise DataError(f"the weights file is damaged ({e})", file=path,
                            hint=hint) from None
        params = {k: v for k, v in values.items() if not k.startswith("normalize:")}
        missing = [k for k in self.graph.params if k not in params]
        extra = [k for k in params if k not in self.graph.params]
        if missing:
            also = f"; it holds {', '.join(extra)} instead" if extra else ""
            raise DataError(f"the file lacks param(s) {', '.join(missing)} of model "
                            f"{self.name}{also}", file=path,
                            hint="were these weights trained from another model?")
        stats = self._read_normalization(values, path)
        values = params
        self.set_params(values, source=path)
        self.normalization = stats

    def _read_normalization(self, values: dict, path: str):
        """{input: (shift, scale)} from a weights file's NORMALIZE_KEY arrays, or None."""
        stats = {}
        for k, node in self.graph.inputs.items():
            pair = [values.get(NORMALIZE_KEY.format(k, part)) for part in ("shift", "scale")]
            if all(v is None for v in pair):
                continue
            size = int(np.prod(node.shape[1:]))
            ok = all(v is not None and v.shape == (size,) and np.issubdtype(v.dtype, np.floating)
                     for v in pair)
            if not ok or not np.all(np.isfinite(pair[0])) or not np.all(pair[1] > 0):
                raise DataError(f"the weights file's normalisation of input '{k}' is not "
                                f"{size} shifts and {size} positive scales", file=path,
                                hint="weights come from `nncompile run` or Model.save")
            stats[k] = tuple(np.asarray(v, np.float32) for v in pair)
        unknown = [k for k in values if k.startswith("normalize:") and
                   k.split(":")[1] not in stats]
        if unknown:
            raise DataError(f"the weights file normalises an input this model lacks "
                            f"({unknown[0]})", file=path,
                            hint="were these weights trained from another model?")
        return stats or None

    def emit(self, target: str = "ir") -> str:
        cfg = self.train_config
        trains = self.graph.loss is not None
        if target == "ast":
            return dump(parse(self.source, self.file))
        if target == "ir":
            return str(self.graph)
        if target in ("grad", "fused"):
            if not trains:
                return str(pipeline.optimize(self.graph, fused=target == "fused"))
            # grad shows every gradient; fused shows the training step as it runs
            g = pipeline.select(self.graph, outputs=True, updates=cfg.present,
                                grads=target == "grad" or not cfg.present, cfg=cfg)
            g = pipeline.optimize(g, fused=target == "fused")
            text = str(g)
            if target == "fused":
                text += pipeline.schedule(g).describe()
            return text
        if target == "cuda":
            from .backends.cuda.codegen import generate
            return generate(pipeline.program(self.graph, outputs=True, updates=cfg.present,
                                             cfg=cfg))
        raise ValueError(f"unknown target '{target}'; one of ast, ir, grad, fused, cuda")


# TrainConfig fields that are no training option (what the source said, and where)
INTERNAL = {"device", "present", "spans", "data_is_path"}

# what a fit/trace override may be: the ranges the train block checks, from
# train/config.py (LIMITS, CHOICES), so that the two cannot drift apart
_WHOLE = (lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool))
_REAL = (lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
         and np.isfinite(v))


def _data_option(data) -> dict:
    """fit(data=...): the name of a built-in set, or else a data file's path
    (relative to the working folder, where the train block's is relative to
    the model's)."""
    from .train.data import BUILTIN
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"data must be a built-in set's name or a file path, got "
                        f"{type(data).__name__}; pass arrays as fit(x=..., y=...)")
    data = os.fspath(data)
    if data in BUILTIN:
        return {"data": data, "data_is_path": False}
    return {"data": os.path.abspath(data), "data_is_path": True}


def _check_option(key: str, value) -> None:
    """A ValueError when a training option given from Python is out of range."""
    if key in CHOICES and value not in CHOICES[key]:
        *most, last = (f"'{c}'" for c in CHOICES[key])
        raise ValueError(f"{key} must be {', '.join(most)} or {last}, got {value!r}")
    if key == "shuffle" and not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"shuffle must be True or False, got {value!r}")
    limit = LIMITS.get(key)
    if limit is None or value is None and getattr(TrainConfig, key) is None:
        return
    if _REAL(value) and (_WHOLE(value) or not limit.whole) and limit.allows(value):
        return
    if _REAL(value) and not limit.open_high and value > limit.high:
        raise ValueError(f"{key} must be {limit.fault(value)}, got {value!r}")
    none = "None or " if getattr(TrainConfig, key) is None else ""
    raise ValueError(f"{key} must be {none}{limit.words()}, got {value!r}")


def check_output_folder(path: str) -> None:
    """A DataError when the folder a user named for an output is a file."""
    folder = os.path.dirname(path)
    if folder and os.path.exists(folder) and not os.path.isdir(folder):
        raise DataError(f"cannot write here: {folder} is a file, not a folder", file=path,
                        hint="choose an output path inside a folder")


def writable(path: str, make: bool = True) -> None:
    """A DataError, naming path, when a file cannot be written there: path is
    a folder, its folder is a file, or the folder cannot be made or written.
    With make False a missing folder is not made (a check before a long run
    that may write nothing): the nearest folder that exists must be writable."""
    check_output_folder(path)
    if os.path.isdir(path):
        raise DataError("cannot write here: it is a folder", file=path,
                        hint="rename or remove that folder, or write the file elsewhere")
    folder = os.path.dirname(os.path.abspath(path))
    if make:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot make the folder {folder} ({e.strerror or e})", file=path,
                            hint="choose a path inside a folder you may write to") from None
    else:
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise DataError(f"cannot write here: {folder} is a file, not a folder", file=path,
                            hint="choose an output path inside a folder")
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write here: the folder {folder} is not writable", file=path,
                        hint="choose a path inside a folder you may write to")


def write_atomic(path: str, write) -> None:
    """write(f) into a temporary file beside path, then rename it over path;
    a DataError naming path when that cannot be done."""
    write_files([(path, write)])


def write_files(files: list) -> None:
    """Each (path, write) written by write(f) into a temporary file beside its
    path; once every one is written, each renamed over its path. A failure
    is a DataError naming the path, and leaves every path as it was (a
    failure in the renames themselves, after all were written, aside). A
    Ctrl-C waits until every file is written, so that none is left half done
    and the caller can say what was written."""
    with _interrupt_after():
        for path, _ in files:
            writable(path)
        _write_files(files)


@contextlib.contextmanager
def _interrupt_after():
    """Defers a Ctrl-C (SIGINT, in the main thread) to the end of the block."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is None:     # a handler not set from Python
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught and callable(old):
            old(*caught[0])


def _write_files(files: list) -> None:
    temps = []
    current = files[0][0] if files else ""
    try:
        for current, write in files:
            folder = os.path.dirname(os.path.abspath(current))
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nncompile-", suffix=".tmp")
            temps.append((tmp, current))
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())    # mkstemp makes 0600; give the usual mode
        for tmp, current in temps:
            os.replace(tmp, current)
    except OSError as e:
        raise DataError(f"cannot write the file ({e.strerror or e})", file=current,
                        hint="check the free space and that you may write there") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


__all__ = ["compile", "compile_source", "Model", "N"]
