"""The numpy backend: runs a Schedule in float32 with preallocated buffers.

Per batch size, every buffer of the memory plan is allocated once and every
step is bound once to its buffers (a functools.partial of a numpy call), so a
training step is a loop over prebuilt calls that allocates no activations of
its own. Params and optimizer state live in `storage` (name -> array), shared
with the Model and updated in place. A dropout mask (a "random" leaf) is
refilled where the schedule places it, from the program's own generator.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ...ir.graph import N
from ...ops import REGISTRY
from ...ops.conv import SHARE_COLS, forget_overwritten
from ...ops.reduce import row_sum_call
from ...ops.registry import bind_call
from ..device import physical_memory
from . import pack

DTYPE = np.float32


def _concrete(shape, batch):
    return tuple(batch if d == N else d for d in shape)


class _Bound:
    """One batch size's buffers and calls."""

    def __init__(self, program: "NumpyProgram", batch: int):
        s = program.schedule
        g = s.graph
        self.feeds = {n.attrs["name"]: np.zeros(_concrete(n.shape, batch), DTYPE)
                      for n in list(g.inputs.values()) + list(g.targets.values())}
        slots = [np.zeros(_concrete(sh, batch), DTYPE) for sh in s.slot_shapes]
        self.value = {}
        for n in g.nodes:
            if n.op in ("input", "target"):
                self.value[n] = self.feeds[n.attrs["name"]]
            elif n.op in ("param", "state"):
                self.value[n] = program.storage[n.attrs["name"]]
            elif n.op == "const":
                self.value[n] = _scalar(n.attrs["value"])
        for n in s.order:
            if n.op == "count":    # fixed for a batch size: its own buffer, filled once
                self.value[n] = np.zeros((), DTYPE)
            else:
                self.value[n] = program.storage[s.writes[n]] if n in s.writes else \
                    slots[s.slot[n]]
        self.scratch = {}
        self.cols = {}         # im2col columns a forward conv shares with its weight gradient
        self.calls = []
        # values fixed for a batch size (constants, counts and what only they
        # feed): computed once here, never per step
        self.fixed = {id(v): v for n, v in self.value.items() if n.op == "const"}
        packed = pack.plan(s, self.value, self._head_shape)
        self.value.update(packed.values)
        run_at = {r.pos: r for r in packed.runs}
        member = {m.node: m for r in packed.runs for m in r.members}
        for k, n in enumerate(s.order):
            out, ins = self.value[n], [self.value[i] for i in n.inputs]
            if n in member:        # its head here, its tail with its run
                if member[n].head is not None:
                    self.calls += self._fused((member[n].head,), packed.head_out[n], ins)
            elif n.op == "fused":
                self.calls += self._fused(n.attrs["body"], out, ins)
            elif n.op == "count" or (REGISTRY[n.op].kind == "elementwise" and n not in s.writes
                                     and all(id(x) in self.fixed for x in ins)):
                # a count fills its own buffer; anything else gets one (its slot is shared)
                self.value[n] = self._fix(n.op, out if n.op == "count" else None, out.shape,
                                          ins, n.attrs)
            elif n.op == "random":
                self.calls.append(partial(fill_mask, program.rng(n.attrs["seed"]), out,
                                          n.attrs["rate"]))
            else:
                self.calls += self._bind(n.op, out, ins, n.attrs)
            if k in run_at:
                self.calls += self._run_tail(run_at[k], packed.packs)
        # updates that could not be written in place are copied back at the end
        for name, node in g.updates.items():
            if s.writes.get(node) != name and node in self.value:
                self.calls.append(_copy(program.storage[name], self.value[node]))
        self.roots = {n: self.value[n] for n in g.roots()}

    def _temp(self, shape, k):
        key = (shape, k)
        if key not in self.scratch:
            self.scratch[key] = np.zeros(shape, DTYPE)
        return self.scratch[key]

    def _fused(self, body, out, ins):
        """Bind a fused body: its last entry writes out; temps go to out while
        it is free and aliases no input, else to scratch buffers."""
        aliased = any(isinstance(x, np.ndarray) and np.shares_memory(out, x) for x in ins)
        last_use = {}
        for j, (_, args, _) in enumerate(body):
            for kind, x in args:
                if kind == "v":
                    last_use[x] = j
        vals, calls, out_holder, used = [], [], None, {}
        for j, (op, args, attrs) in enumerate(body):
            attrs = dict(attrs)
            xs = _operands(op, args, attrs, ins, vals)
            shape = _result_shape(op, xs, attrs)
            if j < len(body) - 1 and REGISTRY[op].kind == "elementwise" and all(
                    kind == "c" or id(x) in self.fixed for x, (kind, _) in zip(xs, args)):
                vals.append(self._fix(op, None, shape, xs, attrs))
                continue
            if j == len(body) - 1:
                dst = out
            elif shape == out.shape and not aliased and (
                    out_holder is None or (REGISTRY[op].kind == "elementwise"
                                           and last_use.get(out_holder, -1) <= j)):
                # out is free, or its value dies here and the op may work in place
                dst, out_holder = out, j
            else:
                k = used.get(shape, 0)
                used[shape] = k + 1
                dst = self._temp(shape, k)
            calls += self._bind(op, dst, xs, attrs)
            vals.append(dst)
        return calls

    def _fix(self, op, out, shape, ins, attrs) -> np.ndarray:
        """A value fixed for this batch size: computed once, now, into out (or
        a buffer of its own), and remembered as fixed."""
        if out is None:
            out = np.zeros(shape, DTYPE)
        for call in self._bind(op, out, ins, attrs):
            call()
        self.fixed[id(out)] = out
        return out

    @staticmethod
    def _head_shape(entry, ins) -> tuple:
        op, args, attrs = entry
        attrs = dict(attrs)
        return _result_shape(op, _operands(op, args, attrs, ins, []), attrs)

    def _run_tail(self, run, packs) -> list:
        """The calls computing a run's tail once over flat slices (pack.py)."""
        first, lo, hi = run.members[0], run.lo, run.hi
        flat = [payload[lo:hi] if kind == "base" else
                packs[(first.base.size, k)][lo:hi] if kind == "pack" else self.value[payload]
                for k, (kind, payload) in enumerate(first.operands)]
        return self._fused(first.body, first.base[lo:hi], flat)

    def _bind(self, op, out, ins, attrs) -> list:
        """The calls computing one primitive into out. The registry's bind where
        it has one (the conv ops share their im2col columns and transposed
        gradients through self.cols, whose entries made from memory that out
        overlaps are dropped here, since these calls overwrite it);
        log_softmax as its into() does it, with its temporaries in scratch
        buffers instead of fresh arrays each run; any other op straight to its
        into() (same results: the same numpy calls in the same order)."""
        if op == "log_softmax":
            calls = _log_softmax_calls(out, ins[0], self._temp)
        else:
            d = REGISTRY[op]
            if op in SHARE_COLS:
                calls = [d.bind(out, ins, attrs, cols_cache=self.cols)]
            elif d.bind is None and d.into is not None:
                calls = [partial(d.into, out, ins, attrs)]
            else:
                calls = [bind_call(d, out, ins, attrs)]
        if self.cols and isinstance(out, np.ndarray):
            forget_overwritten(self.cols, out)
        return calls


def _scalar(value):
    """A constant operand: a 0-d float32 array (numpy's ufuncs take it a little
    faster than a numpy scalar, with the same result)."""
    return np.array(value, DTYPE)


def _log_softmax_calls(out, x, temp) -> list:
    """ops/reduce.py's _log_softmax_into, bound: max, shift, exp, sum, log,
    subtract along the last axis (the sum as a matmul with ones where
    row_sum_call allows); temporaries in scratch (live only here)."""
    keep = out.shape[:-1] + (1,)
    m, s, e = temp(keep, 0), temp(keep, 1), temp(out.shape, 0)
    return [partial(np.maximum.reduce, x, axis=-1, keepdims=True, out=m),
            partial(np.subtract, x, m, out=out),
            partial(np.exp, out, out=e),
            row_sum_call(e, s) or partial(np.add.reduce, e, axis=-1, keepdims=True, out=s),
            partial(np.log, s, out=s),
            partial(np.subtract, out, s, out=out)]


def _operands(op, args, attrs, ins, vals) -> list:
    """A body entry's operands: inputs, earlier entries' buffers, constants;
    a matmul's transposes as views."""
    xs = [ins[x] if kind == "in" else vals[x] if kind == "v" else _scalar(x)
          for kind, x in args]
    if op == "matmul":
        xs = [np.swapaxes(xs[0], -1, -2) if attrs.get("trans_a") else xs[0],
              np.swapaxes(xs[1], -1, -2) if attrs.get("trans_b") else xs[1]]
    return xs


def _result_shape(op, xs, attrs) -> tuple:
    if op == "matmul":
        return np.broadcast_shapes(xs[0].shape[:-2], xs[1].shape[:-2]) + \
            (xs[0].shape[-2], xs[1].shape[-1])
    return _shape_of(op, xs, attrs)


def _shape_of(op, xs, attrs):
    shapes = [np.shape(x) for x in xs]
    return tuple(REGISTRY[op].infer(shapes, attrs)) if op != "expand" else shapes[1]


def _copy(dst, src):
    return partial(np.copyto, dst, src)


def fill_mask(rng, out, rate):
    """A fresh dropout mask: 1 / (1 - rate) with probability 1 - rate, else 0."""
    rng.random(out=out, dtype=out.dtype)
    np.greater_equal(out, rate, out=out)
    out *= out.dtype.type(1.0 / (1.0 - rate))


class NumpyProgram:
    """A scheduled graph, runnable for any batch size."""

    def __init__(self, schedule, storage: dict):
        self.schedule = schedule
        self.storage = storage
        self._bound = {}
        self._rng = None

    def rng(self, seed: int) -> np.random.Generator:
        """The stream of this program's dropout masks, default_rng([seed, 2]):
        shared by every batch size, so each run draws the next masks."""
        if self._rng is None:
            self._rng, self._seed = np.random.default_rng([seed, 2]), seed
        return self._rng

    def restart(self) -> None:
        """Draw dropout masks from the start of their stream again (a new fit);
        the bound calls keep the same generator."""
        if self._rng is not None:
            self._rng.bit_generator.state = \
                np.random.default_rng([self._seed, 2]).bit_generator.state

    def bound(self, batch: int) -> _Bound:
        """The buffers and calls for this batch size, made on first use; a
        CompileError at the largest value's statement when they cannot fit
        in memory (checked first: Linux hands out more than it has)."""
        b = self._bound.get(batch)
        if b is None:
            room = physical_memory()
            if self.schedule.value_bytes(batch)[0] > room:
                raise self.schedule.too_large(batch, "in memory", room)
            try:
                with np.errstate(over="ignore", under="ignore", invalid="ignore",
                                 divide="ignore"):
                    b = self._bound[batch] = _Bound(self, batch)
            except MemoryError:
                b = None
            if b is None:    # raised out here, the failed attempt's arrays are freed;
                # less was free than the machine has: no estimate of what fits
                raise self.schedule.too_large(batch, "in memory", float("inf"))
        return b

    def feeds(self, batch: int) -> dict:
        """name -> the input/target buffer to fill before run(batch)."""
        return self.bound(batch).feeds

    def run(self, batch: int) -> dict:
        """Run once on what the feed buffers hold; returns root node -> buffer
        (valid until the next run with this batch size)."""
        b = self.bound(batch)
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for call in b.calls:
                call()
        return b.roots

    def rows_runner(self, batch: int, sources: dict):
        """run(idx) for a training loop: gathers rows idx (batch of them) of each
        source array (name -> all the examples) into the feeds, runs once and
        returns the loss as a float. The caller silences floating-point
        warnings (np.errstate) around its whole loop."""
        b = self.bound(batch)
        takes = [partial(np.take, v, axis=0, out=b.feeds[k]) for k, v in sources.items()
                 if k in b.feeds]
        calls, loss = b.calls, b.roots[self.schedule.graph.loss]

        def run(idx) -> float:
            for take in takes:
                take(idx)
            for call in calls:
                call()
            return float(loss)
        return run

    def __call__(self, feeds: dict) -> dict:
        batch = len(next(iter(feeds.values())))
        buf = self.feeds(batch)
        for k, v in feeds.items():
            np.copyto(buf[k], v.reshape(buf[k].shape), casting="unsafe")
        return self.run(batch)
