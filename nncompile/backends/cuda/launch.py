"""The CUDA runtime: compile (cached), allocate from the memory plan, launch.

CudaProgram(schedule, storage) runs a schedule on the GPU with the interface
of the numpy backend's NumpyProgram: feeds(batch) gives host staging buffers
to fill, run(batch) runs and returns the roots (copied back when read). Per
batch size every buffer of the plan is allocated once and every launch is
prepared once (its argument block packed); a run is a loop over prepared
calls. CudaStorage keeps params and optimizer state resident on the GPU and
copies them back only when the host reads them. fit_on_gpu is the training
loop: the data set uploaded once, each batch gathered on the GPU by the same
permutation as the CPU loop's, loss and accuracy summed on the GPU and copied
back once per epoch, and each step captured in a CUDA graph where possible.

All GPU access goes through a device object: PycudaDevice here (pycuda, with
pycuda.autoprimaryctx so PyTorch or CuPy can share the process; libcuda's
graph calls through ctypes, which pycuda does not wrap). The tests pass a CPU
emulation of the same few methods. pycuda is imported only when a
PycudaDevice is made, so this module imports without it.
"""
from __future__ import annotations

import ctypes
import gc
import os
import time
import weakref
from collections.abc import Mapping, MutableMapping
from functools import partial

import numpy as np

from ...diagnostics import CompileError, Diagnostic
from ...ir.graph import N, fmt_shape
from ...passes.schedule import params_too_large, value_label
from ...train.metrics import rows_per_call
from ..numpy.executor import fill_mask
from . import nvcc
from .codegen import Launch, UnsupportedOp, build, gemm_parts, py_size, resolve, runtime_source

FLOAT = 4
CHUNK = 1024          # rows per evaluation call, as the CPU loop's metrics


def _concrete(shape, batch) -> tuple:
    return tuple(batch if d == N else d for d in shape)


def _numel(shape, batch) -> int:
    return int(np.prod(_concrete(shape, batch), dtype=np.int64))


# the device ------------------------------------------------------------------

class PycudaDevice:
    """The GPU in this process, through pycuda: modules, memory, one stream."""

    def __init__(self):
        import pycuda.autoprimaryctx as primary
        import pycuda.driver as drv
        from pycuda._pvt_struct import pack
        self.drv, self._pack = drv, pack
        dev = primary.device
        major, minor = dev.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self.name = dev.name()
        self.sms = dev.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
        self.stream = drv.Stream()
        self._graphs = _GraphApi() if os.environ.get("NNCOMPILE_CUDA_GRAPHS", "1") != "0" \
            else None
        self.captured = 0          # training steps captured as CUDA graphs

    def module(self, source: str):
        return self.drv.module_from_buffer(nvcc.compile(source, self.arch, "cubin"))

    def function(self, module, name: str):
        return module.get_function(name)

    def alloc(self, nbytes: int):
        # pycuda's MemoryError is not Python's: made one, so callers catch one kind
        try:
            return self.drv.mem_alloc(max(int(nbytes), FLOAT))
        except self.drv.MemoryError:
            raise MemoryError(f"the GPU has no {nbytes} bytes left") from None

    def memory(self) -> float:
        """The GPU's memory in bytes."""
        return float(self.drv.Context.get_device().total_memory())

    def pinned(self, shape, dtype=np.float32) -> np.ndarray:
        try:
            return self.drv.pagelocked_empty(shape, dtype)
        except self.drv.MemoryError:
            raise MemoryError(f"no page-locked host memory for {shape}") from None

    def upload(self, ptr, host: np.ndarray) -> None:
        self.drv.memcpy_htod_async(int(ptr), host, self.stream)

    def download(self, host: np.ndarray, ptr) -> None:
        self.stream.synchronize()
        self.drv.memcpy_dtoh(host, int(ptr))

    def copy(self, dst, src, nbytes: int) -> None:
        self.drv.memcpy_dtod_async(int(dst), int(src), int(nbytes), self.stream)

    def zero(self, ptr, nbytes: int) -> None:
        self.drv.memset_d8_async(int(ptr), 0, int(nbytes), self.stream)

    def prepare(self, fn, grid, block, args):
        """A zero-argument call launching fn with args packed once:
        args are ("p", pointer) | ("i", int) | ("f", float)."""
        fn.prepare([{"p": np.uintp, "i": np.int32, "f": np.float32}[k] for k, _ in args])
        buf = self._pack(fn.arg_format, *[int(v) if k != "f" else float(v) for k, v in args])
        return partial(fn._launch_kernel, tuple(grid), tuple(block), buf, 0, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def capture(self, calls):
        """A replay of calls (which only launch and copy on the stream) as
        one CUDA graph, or None where that is not possible."""
        if self._graphs is None:
            return None
        graph = self._graphs.capture(self.stream, calls)
        self.captured += graph is not None
        return graph


class _GraphApi:
    """CUDA graphs through libcuda (pycuda has no wrapper for them)."""

    def __init__(self):
        self.lib = ctypes.CDLL("libcuda.so.1")
        self.lib.cuGraphLaunch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    def _check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with CUresult {status}")

    def capture(self, stream, calls):
        """The graph of calls, or None when capture fails (then they run as
        plain launches). Python's garbage collector is held off meanwhile: a
        pycuda buffer or module freed during the capture would invalidate it."""
        h = ctypes.c_void_p(stream.handle)
        graph, exe = ctypes.c_void_p(), ctypes.c_void_p()
        collecting = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            try:
                self._check(self.lib.cuStreamBeginCapture_v2(h, ctypes.c_int(1)),
                            "cuStreamBeginCapture")   # 1: thread-local capture mode
            except (RuntimeError, AttributeError):
                return None
            failed = False
            try:
                for call in calls:
                    call()
            except Exception:     # a launch refused while capturing: end it, run plainly
                failed = True
            finally:
                status = self.lib.cuStreamEndCapture(h, ctypes.byref(graph))
        finally:
            if collecting:
                gc.enable()
        if failed:
            if status == 0 and graph:
                self.lib.cuGraphDestroy(graph)
            return None
        try:
            self._check(status, "cuStreamEndCapture")
            self._check(self.lib.cuGraphInstantiateWithFlags(ctypes.byref(exe), graph,
                                                             ctypes.c_ulonglong(0)),
                        "cuGraphInstantiate")
        except RuntimeError:
            return None
        return _Graph(self.lib, graph, exe, h)


class _Graph:
    def __init__(self, lib, graph, exe, stream):
        self.lib, self.graph, self.exe, self.stream = lib, graph, exe, stream

    def __call__(self):
        status = self.lib.cuGraphLaunch(self.exe, self.stream)
        if status != 0:
            raise RuntimeError(f"cuGraphLaunch failed with CUresult {status}")

    def __del__(self):
        try:
            self.lib.cuGraphExecDestroy(self.exe)
            self.lib.cuGraphDestroy(self.graph)
        except Exception:
            pass


_DEVICE = None


def default_device():
    global _DEVICE
    if _DEVICE is None:
        _DEVICE = PycudaDevice()
    return _DEVICE


def _modules(device) -> dict:
    """Loaded modules of a device, by source (one compile, one load each)."""
    if not hasattr(device, "_nncompile_modules"):
        device._nncompile_modules = {}
    return device._nncompile_modules


def load(device, source: str):
    mods = _modules(device)
    if source not in mods:
        mods[source] = device.module(source)
    return mods[source]


# params and optimizer state --------------------------------------------------

class CudaStorage(MutableMapping):
    """name -> float32 host array, with a resident copy on the GPU.

    Each name is fresh on the host, on the device, or both. Reading an array
    here copies the device's newer values back first and then counts the host
    as newer (the caller may write into it); a run uploads what the host has
    newer and marks what it wrote. A device buffer, once made for a name,
    keeps its address (launches are prepared with it)."""

    def __init__(self, device=None):
        self._device = device
        self._host, self._dev, self._fresh = {}, {}, {}

    @property
    def device(self):
        if self._device is None:
            self._device = default_device()
        return self._device

    def __getitem__(self, name):
        host = self._host[name]
        if self._fresh[name] == "device":
            self.device.download(host, self._dev[name][0])
        self._fresh[name] = "host"
        return host

    def __setitem__(self, name, value):
        self._host[name] = np.array(value, dtype=np.float32, order="C")   # our own copy
        self._fresh[name] = "host"

    def __delitem__(self, name):
        del self._host[name]
        del self._fresh[name]

    def __iter__(self):
        return iter(self._host)

    def __len__(self):
        return len(self._host)

    def device_ptr(self, name) -> int:
        """The device buffer of name, made current."""
        host = self._host[name]
        buf = self._dev.get(name)
        if buf is None or buf[1] != host.nbytes:
            buf = self._dev[name] = (self.device.alloc(host.nbytes), host.nbytes)
            self._fresh[name] = "host"
        if self._fresh[name] == "host":
            self.device.upload(buf[0], host)
            self.device.synchronize()     # the host array may change right after
            self._fresh[name] = "both"
        return int(buf[0])

    def written(self, name) -> None:
        self._fresh[name] = "device"


# programs ----------------------------------------------------------------

class _Bound:
    """One batch size's buffers and prepared calls."""

    def __init__(self, prog: "CudaProgram", batch: int):
        d, plan = prog.device, prog.plan
        self.batch = batch
        self.slots = [d.alloc(FLOAT * py_size(sz, batch)) for sz in plan.slots]
        self.feed_host = {k: d.pinned(_concrete(s, batch)) for k, s in plan.feeds.items()}
        self.feed_dev = {k: d.alloc(v.nbytes) for k, v in self.feed_host.items()}
        self.rand_host = {k: d.pinned(_concrete(n.shape, batch)) for k, n in plan.randoms.items()}
        self.rand_dev = {k: d.alloc(v.nbytes) for k, v in self.rand_host.items()}
        self.store = {name: prog.storage.device_ptr(name) for name in plan.storage}
        launches = [(s, resolve(s, batch, d.sms)) for s in plan.steps if isinstance(s, Launch)]
        ws = max([r[4] for _, r in launches], default=0)
        tiles = max([r[5] for _, r in launches], default=0)
        self.ws, self.counters = d.alloc(FLOAT * max(ws, 1)), d.alloc(4 * max(tiles, 1))
        d.zero(self.counters, 4 * max(tiles, 1))
        # column sums in GEMM epilogues: [row tiles, N] partial sums, a counter per column tile
        sums = [(grid[1] * py_size(s.grid[2], batch), grid[0])
                for s, (_, grid, *_) in launches if s.column_sum]
        cws = max([a for a, _ in sums], default=1)
        ccount = max([b for _, b in sums], default=1)
        self.cws, self.ccount = d.alloc(FLOAT * cws), d.alloc(4 * ccount)
        d.zero(self.ccount, 4 * ccount)
        # sums over all rows in softmax kernels: a partial per block, one counter
        gws = max([grid[0] * s.grid_sums for s, (_, grid, *_) in launches], default=1)
        self.gws, self.gcount = d.alloc(FLOAT * max(gws, 1)), d.alloc(4)
        d.zero(self.gcount, 4)
        self.calls = []
        resolved = dict((id(s), r) for s, r in launches)
        for s in plan.steps:
            if isinstance(s, Launch):
                fname, grid, block, ints, _, _ = resolved[id(s)]
                args = [("p", self.ptr(r)) for r in s.params]
                if s.family == "gemm":
                    args += [("p", self.ws), ("p", self.counters)]
                    if s.column_sum:
                        args += [("p", self.cws), ("p", self.ccount)]
                if s.grid_sums:
                    args += [("p", self.gws), ("p", self.gcount)]
                args += [("i", x) for x in ints]
                if s.family != "gemm":
                    self.calls.append(d.prepare(prog.function(fname), grid, block, args))
                    continue
                for part, y0, z0 in gemm_parts(grid):   # CUDA's grid has at most 65535 in y, z
                    self.calls.append(d.prepare(prog.function(fname), part, block,
                                                args + [("i", y0), ("i", z0)]))
            else:
                _, dst, src, size = s
                self.calls.append(partial(d.copy, self.ptr(dst), self.ptr(src),
                                          FLOAT * py_size(size, batch)))
        d.synchronize()
        self._program = weakref.ref(prog)    # not a strong one: no cycle to wait for gc

    @property
    def roots(self) -> "_Roots":
        return _Roots(self._program(), self)

    def ptr(self, ref) -> int:
        kind, x = ref
        if kind == "slot":
            return int(self.slots[x])
        if kind == "store":
            return self.store[x]
        if kind == "feed":
            return int(self.feed_dev[x])
        if kind == "random":
            return int(self.rand_dev[x])
        raise ValueError(f"no buffer for {ref}")


class _Roots(Mapping):
    """root Node -> its value at the last run, copied back when read."""

    def __init__(self, prog, bound):
        self.prog, self.bound = prog, bound

    def __getitem__(self, node):
        ref = self.prog.plan.roots[node]
        if ref[0] == "const":
            return np.asarray(ref[1], dtype=np.float32)
        host = np.empty(_concrete(node.shape, self.bound.batch), np.float32)
        self.prog.device.download(host, self.bound.ptr(ref))
        return host

    def __iter__(self):
        return iter(self.prog.plan.roots)

    def __len__(self):
        return len(self.prog.plan.roots)

    def ptr(self, node) -> int:
        return self.bound.ptr(self.prog.plan.roots[node])


MAX_INDEX = 2 ** 31 - 1     # the kernels index their buffers with 32-bit ints


def _check_indexable(schedule, batch: int) -> None:
    """Every value of one batch has at most MAX_INDEX numbers, or a
    CompileError at the statement of the largest, with the batch that fits."""
    values = [n for n in schedule.order if n in schedule.slot]
    values += [*schedule.graph.inputs.values(), *schedule.graph.targets.values()]
    if not values:
        return
    node = max(values, key=lambda n: _numel(n.shape, batch))
    count = _numel(node.shape, batch)
    if count <= MAX_INDEX:
        return
    each = _numel(node.shape, 1)
    what = value_label(node)
    raise CompileError([Diagnostic(
        node.span, f"one batch of {batch} examples makes {what} "
        f"{fmt_shape(_concrete(node.shape, batch))} hold {count} numbers, more than the "
        f"{MAX_INDEX} the GPU kernels can index",
        f"use a batch of at most {MAX_INDEX // each} examples"
        if N in node.shape and each <= MAX_INDEX else "make this layer smaller")],
        schedule.graph.source)


class CudaProgram:
    """A scheduled graph on the GPU, runnable for any batch size."""

    def __init__(self, schedule, storage: CudaStorage):
        self.schedule = schedule
        self.storage = storage
        self.device = storage.device
        try:
            self.plan = build(schedule)
        except UnsupportedOp as e:
            from ..device import DeviceError
            raise DeviceError(f"error: {e}\nhint: use --device cpu for this model") from None
        self.module = load(self.device, self.plan.source)
        self._functions = {}
        self._bound = {}
        self._rng = None

    def function(self, name):
        if name not in self._functions:
            self._functions[name] = self.device.function(self.module, name)
        return self._functions[name]

    def rng(self, seed: int) -> np.random.Generator:
        """The stream of this program's dropout masks, as the numpy backend's."""
        if self._rng is None:
            self._rng = np.random.default_rng([seed, 2])
        return self._rng

    def restart(self) -> None:
        """Draw dropout masks from the start of their stream again."""
        self._rng = None

    def bound(self, batch: int) -> _Bound:
        """The buffers and calls for this batch size, made on first use (and
        again when a param's buffer moved); a CompileError at the statement of
        the largest value when they do not fit on the GPU or hold more numbers
        than the kernels' 32-bit indices reach."""
        b = self._bound.get(batch)
        if b is None or any(self.storage.device_ptr(k) != p for k, p in b.store.items()):
            self._bound.pop(batch, None)     # its buffers go before new ones come
            _check_indexable(self.schedule, batch)
            self.sync_storage()
            try:
                b = self._bound[batch] = _Bound(self, batch)
            except MemoryError:
                b = None
            if b is None:    # raised out here, the failed attempt's buffers are freed
                room = getattr(self.device, "memory", lambda: float("inf"))()
                raise self.schedule.too_large(batch, "on the GPU", room)
        return b

    def feeds(self, batch: int) -> dict:
        """name -> the host staging buffer to fill before run(batch)."""
        b = self.bound(batch)
        self.device.synchronize()      # the last run's uploads have left them
        return b.feed_host

    def sync_storage(self) -> None:
        """Upload the params and buffers the host has changed (the first time,
        all of them: a CompileError at the largest param when they do not fit)."""
        try:
            for name in self.plan.storage:
                self.storage.device_ptr(name)
        except MemoryError:
            raise params_too_large(self.schedule.graph, "on the GPU") from None

    def fill_masks(self, b: _Bound) -> None:
        """Fresh dropout masks, drawn as the numpy backend draws them."""
        if self.plan.randoms:
            self.device.synchronize()     # the last run's uploads have left the host masks
        for name, node in self.plan.randoms.items():
            fill_mask(self.rng(node.attrs["seed"]), b.rand_host[name], node.attrs["rate"])
            self.device.upload(b.rand_dev[name], b.rand_host[name])

    def prepare_run(self, b: _Bound) -> None:
        self.sync_storage()
        self.fill_masks(b)

    def finish_run(self) -> None:
        for name in self.plan.written:
            self.storage.written(name)

    def run(self, batch: int) -> Mapping:
        """Run once on what the feed buffers hold; returns root -> value
        (copied from the GPU when read; valid until the next run)."""
        b = self.bound(batch)
        self.prepare_run(b)
        for name, host in b.feed_host.items():
            self.device.upload(b.feed_dev[name], host)
        for call in b.calls:
            call()
        self.finish_run()
        return b.roots

    def __call__(self, feeds: dict) -> Mapping:
        batch = len(next(iter(feeds.values())))
        buf = self.feeds(batch)
        for k, v in feeds.items():
            if k in buf:
                np.copyto(buf[k], v.reshape(buf[k].shape), casting="unsafe")
        return self.run(batch)


# the training loop -----------------------------------------------------------

class _Runtime:
    """The training loop's kernels and its few device scalars."""

    def __init__(self, device):
        self.device = device
        mod = load(device, runtime_source())
        self.fn = {k: device.function(mod, k) for k in
                   ("nn_gather_rows", "nn_step_end", "nn_metrics", "nn_axpy")}
        # int cursor at +0, int right at +4, double loss total at +8
        self.scalars = device.alloc(16)
        self.cursor, self.right, self.total = (int(self.scalars) + o for o in (0, 4, 8))

    def blocks(self, n: int) -> tuple:
        return (max(1, min(-(-n // 256), 32 * max(self.device.sms, 1))), 1, 1)

    def gather(self, dst, src, perm, rows: int, width: int):
        return self.device.prepare(self.fn["nn_gather_rows"], self.blocks(rows * width),
                                   (256, 1, 1), [("p", dst), ("p", src), ("p", perm),
                                                 ("p", self.cursor), ("i", rows),
                                                 ("i", width)])

    def step_end(self, loss_ptr, rows: int):
        return self.device.prepare(self.fn["nn_step_end"], (1, 1, 1), (32, 1, 1),
                                   [("p", loss_ptr), ("p", self.total), ("p", self.cursor),
                                    ("i", rows)])

    def read(self) -> tuple:
        """(loss total, right) as the device holds them."""
        host = np.empty(2, np.float64)
        self.device.download(host, self.scalars)
        right = int(host[:1].view(np.int32)[1])
        return float(host[1]), right


class _Data:
    """A data set resident on the GPU: name -> (buffer, row width)."""

    def __init__(self, device, arrays: dict):
        self.rows = len(next(iter(arrays.values()))) if arrays else 0
        self.buf, self.width = {}, {}
        host = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        for k, v in host.items():
            self.buf[k] = device.alloc(max(v.nbytes, FLOAT))
            if v.size:
                device.upload(self.buf[k], v)
            self.width[k] = int(np.prod(v.shape[1:], dtype=np.int64))
        device.synchronize()          # before the host copies go


def _steps(rt: _Runtime, prog: CudaProgram, data: _Data, perm, rows: int):
    """The calls of one training step on `rows` examples: gather the batch
    at the cursor, run the program, add its loss and move the cursor."""
    b = prog.bound(rows)
    calls = [rt.gather(b.feed_dev[k], data.buf[k], perm, rows, data.width[k])
             for k in b.feed_dev if k in data.buf]
    calls += b.calls
    calls.append(rt.step_end(b.roots.ptr(prog.schedule.graph.loss), rows))
    return b, calls


def fit_on_gpu(model, cfg, xs, ys, xt, yt, on_epoch=None) -> list:
    """The training loop of train/loop.py, on the GPU (same records, same order
    of examples, same losses to float32 rounding)."""
    from ...train.loop import Interrupted, close_epoch, epoch_orders
    from ...train.metrics import accuracy_kind
    storage = model._storage
    d = storage.device
    rt = _Runtime(d)
    train, test = _Data(d, {**xs, **ys}), _Data(d, {**xt, **yt})
    n = train.rows
    kind = accuracy_kind(model, ys)
    accumulate = cfg.accumulate
    if accumulate == 1:
        step = model._program("step", cfg)
        programs = [step]
    else:
        grads_prog, update = model._program("gradients"), model._program("update", cfg)
        programs = [grads_prog, update]
    perm_host = d.pinned((max(n, 1),), np.int32)
    perm = d.alloc(4 * max(n, 1))
    graphs = {}

    def run_step(rows):
        # a batch size's first step runs as plain launches (its kernels load, and
        # a bad launch fails where it is made); the second is captured as a graph
        if rows not in graphs:
            graphs[rows] = [*_steps(rt, step, train, perm, rows), None, 0]
        entry = graphs[rows]
        b, calls, replay, runs = entry
        if step.plan.randoms:
            step.fill_masks(b)
        elif runs == 1:
            replay = entry[2] = d.capture(calls)
        entry[3] += 1
        if replay is not None:
            replay()
        else:
            for call in calls:
                call()

    orders = epoch_orders(cfg, n)
    history = []
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            order = next(orders)
            d.synchronize()                   # the last epoch's copy has left perm_host
            perm_host[:n] = order
            d.upload(perm, perm_host)
            d.zero(rt.scalars, 16)
            sizes = [min(cfg.batch, n - s) for s in range(0, n, cfg.batch)]
            if accumulate == 1:
                step.sync_storage()
                for rows in sizes:
                    run_step(rows)
                step.finish_run()
            else:
                _accumulated_epoch(rt, model, grads_prog, update, train, perm, sizes,
                                   accumulate)
            total, _ = rt.read()
            record = {"epoch": epoch, "loss": total / n}
            if kind is not None:
                _metrics(rt, model, record, "train", train, ys, kind, with_loss=False)
            if test.rows:
                _metrics(rt, model, record, "test", test, yt, kind, with_loss=True)
            if close_epoch(record, t0, history, on_epoch):
                break
    except KeyboardInterrupt:
        raise Interrupted(history) from None
    finally:
        for p in programs:
            p.finish_run()
    return history


def _accumulated_epoch(rt, model, grads_prog, update, train, perm, sizes, accumulate):
    """Gradient accumulation: the gradients of `accumulate` batches summed,
    each weighted by its share of the examples, then one update."""
    d = rt.device
    g = grads_prog.schedule.graph
    params = list(model.graph.params)
    update.sync_storage()       # grad/PARAM among them: the params error if they do not fit
    acc = {k: model._storage.device_ptr(f"grad/{k}") for k in params}
    size = {k: int(np.prod(model.graph.params[k].shape, dtype=np.int64)) for k in params}
    for group in range(0, len(sizes), accumulate):
        chunk = sizes[group:group + accumulate]
        weight_total = sum(chunk)
        for k in params:
            d.zero(acc[k], FLOAT * size[k])
        for rows in chunk:
            b, calls = _steps(rt, grads_prog, train, perm, rows)
            grads_prog.prepare_run(b)
            for call in calls:
                call()
            w = np.float32(rows / weight_total)
            for k in params:
                d.prepare(rt.fn["nn_axpy"], rt.blocks(size[k]), (256, 1, 1),
                          [("p", acc[k]), ("p", b.roots.ptr(g.grads[k])), ("f", w),
                           ("i", size[k])])()
        grads_prog.finish_run()
        for k in params:
            model._storage.written(f"grad/{k}")
        ub = update.bound(1)
        update.prepare_run(ub)
        for call in ub.calls:
            call()
        update.finish_run()


def _metrics(rt, model, record, part, data: _Data, ys, kind, with_loss):
    """Loss and accuracy over a resident data set, in chunks as the CPU loop."""
    if kind is None and not with_loss:
        return
    d = rt.device
    prog = model._program("evaluate")
    g = prog.schedule.graph
    n = data.rows
    d.zero(rt.scalars, 16)
    (yname,) = ys.keys() if len(ys) == 1 else (None,)
    code = {None: 0, "onehot": 1, "binary": 2}[kind[1] if kind else None]
    chunk = rows_per_call(model.graph, n, CHUNK) if with_loss else CHUNK
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        b = prog.bound(m)
        prog.prepare_run(b)
        for k, dst in b.feed_dev.items():
            if k in data.buf:
                w = data.width[k]
                d.copy(dst, int(data.buf[k]) + FLOAT * s * w, FLOAT * m * w)
        for call in b.calls:
            call()
        out_ptr = b.roots.ptr(g.outputs[kind[0]]) if kind else b.roots.ptr(g.loss)
        y_ptr = int(data.buf[yname]) + FLOAT * s * data.width[yname] if kind else out_ptr
        width = data.width[yname] if kind else 1
        d.prepare(rt.fn["nn_metrics"], rt.blocks(m), (256, 1, 1),
                  [("p", b.roots.ptr(g.loss)), ("p", out_ptr), ("p", y_ptr),
                   ("p", rt.total), ("p", rt.right), ("i", m), ("i", width),
                   ("i", code)])()
    prog.finish_run()
    total, right = rt.read()
    if with_loss:
        record[f"{part}_loss"] = total / n
    if kind:
        record[f"{part}_accuracy"] = right / n
