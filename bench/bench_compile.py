#!/usr/bin/env python
"""Compile time of every sample in samples/*.nn, median of several runs.

Stages, each timed on its own by calling nncompile.passes.pipeline's parts
directly, in the order `nncompile.compile(...)` then
`model._program("step", model.train_config)` runs them:
  front end:  parse (lark LALR, grammar cached) -> lower (names, shapes, the
              train block) -> verify
  model:      the Model object: param init (seeded)
  passes:     select (training mode, autodiff, the optimizer's update as IR;
              autodiff and optimizer are also timed alone) -> simplify -> cse
              -> fuse -> dce + verify -> schedule (buffer plan)
  bind:       the numpy executor binding every step to preallocated buffers
              for the train block's batch size (done on the first step)
The end-to-end figures time the public calls themselves:
  compile     nncompile.compile(path) (read + front end + model)
  step        model._program("step", cfg) (passes + NumpyProgram)
  total       compile + step, the target's figure (under 50 ms for digits_mlp)
and the first compile in a fresh interpreter (imports and grammar load) is
timed once per sample in a subprocess.

    python bench/bench_compile.py [--repeats N] [--out FILE]
Writes bench/results/compile.json and prints a table (milliseconds).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import nncompile  # noqa: E402
from nncompile.api import Model, _read_model  # noqa: E402
from nncompile.frontend.lower import lower  # noqa: E402
from nncompile.frontend.parse import parse  # noqa: E402
from nncompile.passes import pipeline  # noqa: E402
from nncompile.passes.autodiff import autodiff  # noqa: E402
from nncompile.passes.cse import cse  # noqa: E402
from nncompile.passes.fuse import fuse  # noqa: E402
from nncompile.passes.optimizer import optimizer  # noqa: E402
from nncompile.passes.schedule import schedule  # noqa: E402
from nncompile.passes.simplify import dce, simplify  # noqa: E402
from nncompile.passes.verify import verify  # noqa: E402
from nncompile.backends.numpy import NumpyProgram  # noqa: E402

TARGET_MS = {"digits_mlp": 50.0}
FOREIGN_MAX = 0.2     # cores of other work tolerated during a measurement


def machine_info() -> dict:
    """The machine a result was measured on."""
    cpu = platform.processor() or "unknown"
    lscpu = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            lscpu[k.strip()] = v.strip()
        cpu = lscpu.get("Model name", cpu)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "nncompile"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", ""
    blas = "unknown"
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:  # noqa: BLE001 - older numpy: no dict mode
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "cores_per_socket": lscpu.get("Core(s) per socket"),
        "threads_per_core": lscpu.get("Thread(s) per core"),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": blas,
        "nncompile_commit": commit + ("+local changes" if dirty else ""),
    }


# ---------------------------------------------------------------- a shared machine
# This machine may run other work (tests, other benchmarks) at the same time.
# Foreign load = CPU time the whole machine spent busy (/proc/stat, steal
# included) minus this process's own CPU time, per second of wall time, in
# cores. Benchmarks wait for a quiet machine and redo runs that overlapped
# other work, and record what they saw.

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / _CLK


def _own_s() -> float:
    t = os.times()
    return t.user + t.system


class ForeignLoad:
    """with ForeignLoad() as f: ...; f.cores is the other work's CPU use, in
    cores, averaged over the block (None where /proc/stat is unreadable)."""

    def __enter__(self):
        self.t, self.busy, self.own = time.perf_counter(), _machine_busy_s(), _own_s()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t
        busy = _machine_busy_s()
        if busy is None or self.busy is None or wall <= 0:
            self.cores = None
        else:
            self.cores = max(0.0, (busy - self.busy) - (_own_s() - self.own)) / wall
        return False


def wait_quiet(threshold: float = 0.1, window: float = 1.0, max_wait: float = 300.0) -> float:
    """Wait until the other work on the machine uses under `threshold` cores
    over a `window`, for at most max_wait seconds; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        with ForeignLoad() as f:
            time.sleep(window)
        if f.cores is None or f.cores < threshold:
            break
    return time.perf_counter() - t0


def stages(source: str, file: str) -> dict:
    """One compile, each stage timed (seconds); checks it builds what
    model._program('step') builds."""
    t = {}
    c0 = time.perf_counter()
    program = parse(source, file)
    c1 = time.perf_counter()
    graph, train = lower(program)
    c2 = time.perf_counter()
    graph = verify(graph)
    c3 = time.perf_counter()
    model = Model(graph, train, source, file, "cpu", True)
    c4 = time.perf_counter()
    t["parse"], t["lower"], t["verify"] = c1 - c0, c2 - c1, c3 - c2
    t["front_end"] = c3 - c0
    t["model"] = c4 - c3
    if graph.loss is None:
        return t
    # model._program("step", cfg) is pipeline.program(graph, updates=True, cfg=cfg):
    # select (training mode, autodiff, optimizer) -> optimize -> schedule
    p = [time.perf_counter()]
    g = pipeline.select(graph, updates=True, cfg=train)
    p.append(time.perf_counter())
    g = simplify(g)
    p.append(time.perf_counter())
    g = cse(g)
    p.append(time.perf_counter())
    g = fuse(g)
    p.append(time.perf_counter())
    g = verify(dce(g))
    p.append(time.perf_counter())
    s = schedule(g)
    p.append(time.perf_counter())
    prog = NumpyProgram(s, _storage(model, s))
    prog.bound(train.batch)
    p.append(time.perf_counter())
    for k, name in enumerate(("select", "simplify", "cse", "fuse", "dce_verify", "schedule",
                              "bind")):
        t[name] = p[k + 1] - p[k]
    # inside select: autodiff alone, then the optimizer's update rule
    a0 = time.perf_counter()
    g = autodiff(graph)
    a1 = time.perf_counter()
    optimizer(g, train)
    a2 = time.perf_counter()
    t["autodiff"], t["optimizer"] = a1 - a0, a2 - a1
    t["passes"] = p[6] - p[0]
    t["_schedule"] = s
    return t


def _storage(model, s) -> dict:
    """The model's storage plus the optimizer state the step reads (as
    Model._program adds it)."""
    st = dict(model._storage)
    for node in s.graph.nodes:
        if node.op == "state" and node.attrs["name"] not in st:
            st[node.attrs["name"]] = np.full(node.shape, node.attrs["value"], np.float32)
    return st


def end_to_end(path: str) -> dict:
    c0 = time.perf_counter()
    m = nncompile.compile(path, device="cpu", quiet=True)
    c1 = time.perf_counter()
    if m.graph.loss is not None:
        m._program("step", m.train_config)
    c2 = time.perf_counter()
    return {"compile": c1 - c0, "step": c2 - c1, "total": c2 - c0}, m


FRESH = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import nncompile
t1 = time.perf_counter()
m = nncompile.compile({path!r}, device="cpu", quiet=True)
if m.graph.loss is not None:
    m._program("step", m.train_config)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def fresh_process(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FRESH.format(root=ROOT, path=path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    imp, comp = map(float, out.stdout.split())
    return {"import": imp, "first_compile_and_step": comp}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "compile.json"))
    args = ap.parse_args(argv)
    info = machine_info()
    print(f"{info['cpu']} ({info['cpus']} CPUs), python {info['python']}, "
          f"numpy {info['numpy']}, nncompile {info['nncompile_commit']}")
    samples = sorted(glob.glob(os.path.join(ROOT, "samples", "*.nn")))
    results = {"machine": info, "repeats": args.repeats, "unit": "ms", "samples": {}}
    cols = ("parse", "lower", "verify", "front_end", "model", "select", "autodiff",
            "optimizer", "simplify", "cse", "fuse", "dce_verify", "schedule", "passes", "bind")
    print(f"{'sample':14s} {'front':>6s} {'passes':>7s} {'bind':>6s} {'compile':>8s} "
          f"{'step':>6s} {'total':>6s} {'fresh':>6s}   (ms, median of {args.repeats})")
    ok = True
    for path in samples:
        name = os.path.splitext(os.path.basename(path))[0]
        source, file = _read_model(path)
        rel = os.path.relpath(path, ROOT)
        try:
            stages(source, file)          # warm: caches, imports
            end_to_end(path)
        except Exception as e:  # noqa: BLE001 - a sample that does not compile is reported
            results["samples"][name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"{name:14s} error: {type(e).__name__}: {str(e).splitlines()[0]}")
            ok = False
            continue
        for attempt in range(1, 4):       # redo a sample that overlapped other work
            waited = wait_quiet()
            with ForeignLoad() as load:
                runs = [stages(source, file) for _ in range(args.repeats)]
                e2e = [end_to_end(path)[0] for _ in range(args.repeats)]
            if load.cores is None or load.cores < FOREIGN_MAX:
                break
        _, m = end_to_end(path)
        same = True
        if m.graph.loss is not None:
            built = m._program("step", m.train_config).schedule
            mine = runs[-1]["_schedule"]
            # the same graph and step order (buffer numbers may differ: schedule()
            # walks a set of Nodes, whose order follows their addresses)
            same = str(built.graph) == str(mine.graph) and \
                [repr(n) for n in built.order] == [repr(n) for n in mine.order]
            ok &= same
        med = {k: statistics.median(r[k] for r in runs) * 1e3 for k in cols if k in runs[0]}
        med.update({k: statistics.median(r[k] for r in e2e) * 1e3
                    for k in ("compile", "step", "total")})
        fresh = fresh_process(rel)
        entry = {"file": rel, "median_ms": med,
                 "fresh_process_ms": {k: v * 1e3 if isinstance(v, float) else v
                                      for k, v in fresh.items()},
                 "stages_build_same_program_as_model": same,
                 "foreign_load_cores": load.cores, "attempts": attempt,
                 "waited_for_quiet_s": round(waited, 1)}
        if name in TARGET_MS:
            entry["target_ms"] = TARGET_MS[name]
            entry["meets_target"] = med["total"] < TARGET_MS[name]
        results["samples"][name] = entry
        f_ms = entry["fresh_process_ms"].get("first_compile_and_step", float("nan"))
        print(f"{name:14s} {med['front_end']:6.2f} {med.get('passes', 0):7.2f} "
              f"{med.get('bind', 0):6.2f} {med['compile']:8.2f} {med['step']:6.2f} "
              f"{med['total']:6.2f} {f_ms:6.1f}" + ("" if same else "  (stage split differs!)"))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(args.out)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
