"""Horizontal fusion of the optimizer's update on the numpy backend.

The update applies one elementwise rule to every param. On a small network its
cost is numpy's per-call overhead: four or five calls per param. The Model
stores the params, and each per-param optimizer buffer, as views of one flat
buffer per family, all in the same order (backends/device.store_family). So
the updates that apply the same rule to consecutive params can run as one
call per operation over a flat slice of each buffer: a run.

plan() finds the runs. What holds after it:
- every member of a run is an update written in place into storage. Its body
  is elementwise entries (the tail) and at most one other entry that reads
  only the node's inputs (the head: the GEMM computing this param's
  gradient, say), which runs in the member's place. The
  members of a run have the same tail, and their outputs lie side by side in
  one flat buffer;
- every operand of a member's tail is one of:
  - a constant;
  - a 0-d value (the same node in every member);
  - a storage view at the member's own offset in its family;
  - a computed value of the param's shape. plan() places it in a pack: a flat
    buffer with the family's layout, at the member's offset, that nothing else
    writes. A head's result is placed the same way. A value has one place, so
    no run has two members reading one computed value (two params whose
    gradients are one node each keep their own update);
- a run's tail executes once, at the place of its last member in the schedule
  (heads stay where they are). That move changes no value read:
  - every reader of a member's result comes later;
  - every write of storage that a member reads as its old value comes later;
  - every storage value that a member reads as its new value is written
    earlier.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ops import REGISTRY

LEAVES = ("param", "state")


def flat_location(arr: np.ndarray):
    """(flat base, offset in elements) when arr is a contiguous view of a 1-d
    contiguous buffer, else None."""
    base = arr.base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous \
            or not arr.flags.c_contiguous or base.dtype != arr.dtype:
        return None
    offset, rem = divmod(arr.ctypes.data - base.ctypes.data, arr.itemsize)
    return None if rem else (base, offset)


@dataclass
class Member:
    node: object
    pos: int
    base: np.ndarray            # the flat buffer the member's output lies in
    offset: int
    size: int
    shape: tuple
    head: tuple | None          # body entry computing a value the tail reads
    signature: tuple            # (tail tree, operand kinds): equal within a run
    body: tuple                 # the tail over operand numbers ("in", i)
    operands: list              # per operand number: (kind, payload)


@dataclass
class Run:
    members: list
    pos: int = 0

    @property
    def lo(self) -> int:
        return self.members[0].offset

    @property
    def hi(self) -> int:
        return self.members[-1].offset + self.members[-1].size


@dataclass
class Plan:
    runs: list = field(default_factory=list)
    head_out: dict = field(default_factory=dict)    # member node -> view for its head
    values: dict = field(default_factory=dict)      # node -> the buffer it now has
    packs: dict = field(default_factory=dict)       # (layout size, operand no.) -> flat buffer


def _member(n, pos, schedule, value, head_shape):
    """n as a run member, or None when it cannot be one."""
    if n not in schedule.writes:
        return None
    out = value[n]
    loc = flat_location(out)
    if loc is None or out.ndim == 0:
        return None
    base, offset = loc
    body = n.attrs["body"] if n.op == "fused" else \
        ((n.op, tuple(("in", i) for i in range(len(n.inputs))), tuple(sorted(n.attrs.items()))),)
    heads = [j for j, (op, _, _) in enumerate(body) if REGISTRY[op].kind != "elementwise"]
    if len(heads) > 1 or len(body) == len(heads):
        return None
    h = heads[0] if heads else None
    head = body[h] if heads else None
    if head is not None and (any(kind == "v" for kind, _ in head[1]) or
                             head_shape(head, [value[i] for i in n.inputs]) != out.shape):
        return None
    keys, operands, kinds = {}, [], []

    def operand(key, kind, payload):
        if key not in keys:
            keys[key] = len(operands)
            operands.append((kind, payload))
            kinds.append(("base", id(payload)) if kind == "base" else
                         ("node", key[1]) if kind == "node" else (kind,))
        return keys[key]

    def arg(a):
        """(tree of the argument, its tail form), or None when a is not allowed."""
        kind, x = a
        if kind == "c":
            return ("c", x), a
        if kind == "v":
            if x == h:
                k = operand(("pack", "head"), "pack", "head")
                return ("x", k), ("in", k)
            x -= h is not None and x > h
            return trees[x], ("v", x)
        inp = n.inputs[x]
        arr = value[inp]
        if inp.op == "const":
            c = float(arr)
            return ("c", c), ("c", c)
        if arr.ndim == 0:
            k = operand(("node", inp), "node", inp)
        elif arr.shape != out.shape or inp.op in ("input", "target"):
            return None
        elif inp.op in LEAVES or inp in schedule.writes:
            at = flat_location(arr)
            if at is None or at[1] != offset or at[0].size != base.size:
                return None
            k = operand(("base", id(at[0])), "base", at[0])
        else:
            k = operand(("pack", inp), "pack", inp)
        return ("x", k), ("in", k)

    trees, tail = [], []
    for op, args, attrs in (e for j, e in enumerate(body) if j != h):
        parts = [arg(a) for a in args]
        if any(p is None for p in parts):
            return None
        trees.append((op, attrs, tuple(t for t, _ in parts)))
        tail.append((op, tuple(f for _, f in parts), attrs))
    signature = (trees[-1], tuple(kinds))
    return Member(n, pos, base, offset, out.size, out.shape, head, signature,
                  tuple(tail), operands)


def _runs(members: list) -> list:
    """Members with one signature and output buffer, side by side -> runs of 2 or more."""
    groups = {}
    for m in members:
        groups.setdefault((m.signature, id(m.base)), []).append(m)
    runs = []
    for group in groups.values():
        group.sort(key=lambda m: m.offset)
        current = [group[0]]
        for m in group[1:]:
            if m.offset == current[-1].offset + current[-1].size:
                current.append(m)
            else:
                runs.append(current)
                current = [m]
        runs.append(current)
    return [Run(r, max(m.pos for m in r)) for r in runs if len(r) > 1]


def _wants(run: Run) -> list:
    """What the run places: [(node or (member node, "head"), pack key, offset, member)]."""
    return [((m.node, "head") if payload == "head" else payload, (m.base.size, k), m.offset, m)
            for m in run.members for k, (kind, payload) in enumerate(m.operands)
            if kind == "pack"]


def _conflict(runs: list):
    """The first run that wants a value placed in two places (by two of its
    members: params whose gradients are one node, say, or by an earlier
    run), or a place another value has; else None."""
    placed, occupied = {}, {}
    for run in runs:
        for key, pack_key, offset, _ in _wants(run):
            if placed.setdefault(key, (pack_key, offset)) != (pack_key, offset) or \
                    occupied.setdefault((pack_key, offset), key) != key:
                return run
    return None


def _place(runs: list, plan: Plan) -> None:
    """Give each pack operand its view (the runs have no conflict)."""
    for run in runs:
        for key, pack_key, offset, m in _wants(run):
            pack = plan.packs.setdefault(pack_key, np.zeros(pack_key[0], np.float32))
            view = pack[offset:offset + m.size].reshape(m.shape)
            if isinstance(key, tuple):
                plan.head_out[key[0]] = view
            else:
                plan.values[key] = view


def _order_ok(run: Run, where: dict, readers: dict, writer: dict, pos: dict) -> bool:
    # writer: storage name -> the update writing it in place; pos: node -> place
    """Moving the run's tail to run.pos changes no value read (module docstring)."""
    def eff(node):
        r = where.get(node)
        return r.pos if r is not None else pos[node]

    for m in run.members:
        if any(eff(r) <= run.pos for r in readers.get(m.node, ())):
            return False
        for inp in m.node.inputs:
            if inp.op in LEAVES:
                w = writer.get(inp.attrs["name"])
                if w is not None and w is not m.node and eff(w) <= run.pos:
                    return False
            elif where.get(inp) is not None:
                if where[inp] is run or where[inp].pos >= run.pos:
                    return False
    return True


def plan(schedule, value: dict, head_shape) -> Plan:
    """The runs of a bound schedule (module docstring). value: node -> buffer;
    head_shape(entry, input buffers) -> the shape a head entry computes."""
    result = Plan()
    members = [m for pos, n in enumerate(schedule.order)
               if (m := _member(n, pos, schedule, value, head_shape)) is not None]
    runs = _runs(members)
    readers = {}
    for n in schedule.order:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    writer = {name: node for node, name in schedule.writes.items()}
    pos = {n: k for k, n in enumerate(schedule.order)}
    while True:
        where = {m.node: r for r in runs for m in r.members}
        bad = [r for r in runs if not _order_ok(r, where, readers, writer, pos)]
        bad = bad[0] if bad else _conflict(runs)
        if bad is None:
            break
        runs = [r for r in runs if r is not bad]
    _place(runs, result)
    result.runs = runs
    for run in result.runs:              # shared 0-d values: a buffer nobody reuses
        for kind, payload in run.members[0].operands:
            if kind == "node" and payload.op not in LEAVES and payload not in schedule.writes \
                    and payload.op != "const":
                result.values.setdefault(payload, np.zeros((), np.float32))
    return result
