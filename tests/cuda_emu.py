"""A CPU stand-in for the GPU: the device object of backends/cuda/launch.py
with kernels compiled by g++ against cuda_emu.h and run one fiber per CUDA
thread. With it the generated kernels and the whole runtime (buffers, plan,
training loop) are checked against the numpy backend on machines without a
GPU; test_cuda_gpu.py runs the same checks on a real one.

Kernels are extern "C" functions; for each one a trampoline taking an array
of argument pointers is generated from its parameter list, and emu_launch
runs it over the grid. Built libraries are cached by a hash of their source.
Every buffer sits between guard bands, checked after each launch: a kernel
writing out of bounds fails there.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import weakref
from functools import partial

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = re.compile(r"(?<!extern )__shared__\s+(__align__\(\d+\)\s+)?(\w+)\s+(\w+)\s*((?:\[[^\]]*\])*)\s*;")
KERNEL = re.compile(r'extern "C" __global__ void(?: __launch_bounds__\([\d, ]+\))?\s+(\w+)\(([^)]*)\)')


def available() -> bool:
    return shutil.which("g++") is not None


def _trampolines(source: str) -> str:
    out = []
    for name, params in KERNEL.findall(source):
        args = []
        for i, p in enumerate(x.strip() for x in params.split(",")):
            ctype = re.sub(r"\s*\b\w+$", "", p).replace("__restrict__", "").strip()
            args.append(f"*({ctype}*)a[{i}]")
        out.append(f'extern "C" void emu_{name}(void** a) {{ {name}({", ".join(args)}); }}')
    return "\n".join(out) + "\n"


def _per_slot(source: str) -> str:
    """Each `__shared__ T x[dims];` made `static T x_emu[EMU_SLOTS][dims];`
    plus `auto& x = x_emu[emu_slot];`: a copy per resident block."""
    out = SHARED.sub(lambda m: f"static {m[1] or ''}{m[2]} {m[3]}_emu[EMU_SLOTS]{m[4]}; "
                               f"auto& {m[3]} = {m[3]}_emu[emu_slot];", source)
    if "__shared__" in out:
        raise ValueError("a __shared__ declaration the emulator cannot give one copy per "
                         "block: " + out[out.index("__shared__"):][:120])
    return out


def build(source: str) -> ctypes.CDLL:
    with open(os.path.join(HERE, "cuda_emu.h")) as f:
        header = f.read()
    source = _per_slot(source)
    text = header + "\n" + source + "\n" + _trampolines(source)
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    cache = os.path.join(tempfile.gettempdir(), "nncompile-cuda-emu")
    os.makedirs(cache, exist_ok=True)
    lib = os.path.join(cache, f"{key}.so")
    if not os.path.exists(lib):
        src = os.path.join(cache, f"{key}.cpp")
        with open(src, "w") as f:
            f.write(text)
        tmp = lib + f".{os.getpid()}.tmp"
        cmd = ["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-ffp-contract=off",
               "-w", src, "-o", tmp]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"g++ failed on the emulated kernels:\n{run.stderr[-4000:]}")
        os.replace(tmp, lib)
    return ctypes.CDLL(lib)


GUARD = 1024          # bytes of a known pattern around every buffer


class _Buffer:
    """Emulated device memory: a 256-byte aligned slice of a numpy array,
    between guard bands that no kernel may write."""

    def __init__(self, nbytes: int):
        self.raw = np.full(nbytes + 256 + 2 * GUARD, 0xA5, np.uint8)
        self.start = GUARD + (-(self.raw.ctypes.data + GUARD)) % 256
        self.nbytes = nbytes
        self.view = self.raw[self.start:self.start + nbytes]
        self.view[:] = 0

    def __int__(self):
        return self.view.ctypes.data

    def intact(self) -> bool:
        return bool(np.all(self.raw[:self.start] == 0xA5) and
                    np.all(self.raw[self.start + self.nbytes:] == 0xA5))


class _Module:
    def __init__(self, lib):
        self.lib = lib


class EmuDevice:
    """The device interface of launch.PycudaDevice, on the CPU.

    Like a GPU's stream, it runs the work it is given (uploads, copies,
    launches) later, in order: here all of it waits until the host
    synchronizes or downloads, as if the GPU were far behind. An upload from
    page-locked memory (pinned()) reads the host array only then, as a DMA
    does; one from other memory is copied at once, as CUDA stages it. So host
    code that refills a page-locked buffer before the GPU has read it, or
    reads a result before synchronizing, gets the wrong numbers here."""

    name = "CPU emulation (cuda_emu.h)"
    arch = "emu"

    ORDERS = ("index", "reverse", "shuffle")

    def __init__(self, sms: int = 4, graphs: bool = True, order: str = "index", seed: int = 0,
                 resident: int = 1):
        """sms: the multiprocessors the code generator plans for (split-K);
        resident: how many blocks the emulator runs at once, interleaved;
        order: how blocks start and the threads of the resident blocks take
        turns between barriers (cuda_emu.h emu_set_order): by index, reversed,
        or shuffled afresh from seed at every launch and every round."""
        self.sms = sms
        self.graphs = graphs
        self.order = self.ORDERS.index(order)
        self.seed = seed
        self.resident = resident
        self.captured = 0
        self.launches = 0
        self.buffers = weakref.WeakSet()
        self.queue = []           # the stream: work not yet done
        self._pinned = []         # (start, end, array) of each page-locked host array

    def module(self, source: str):
        return _Module(build(source))

    def function(self, module, name: str):
        lib = module.lib
        lib.emu_launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_uint] * 6
        lib.emu_set_order.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_int]
        lib.emu_fault.restype = ctypes.c_char_p
        tramp = getattr(lib, f"emu_{name}")
        return lib, ctypes.cast(tramp, ctypes.c_void_p).value

    def alloc(self, nbytes: int):
        buf = _Buffer(max(int(nbytes), 4))
        self.buffers.add(buf)
        return buf

    def check_guards(self, what):
        broken = [b for b in self.buffers if not b.intact()]
        if broken:
            raise AssertionError(f"{what} wrote outside its buffers (sizes "
                                 f"{[b.nbytes for b in broken]})")

    def pinned(self, shape, dtype=np.float32):
        host = np.zeros(shape, dtype)
        self._pinned.append((host.ctypes.data, host.ctypes.data + host.nbytes, host))
        return host

    def _page_locked(self, host: np.ndarray) -> bool:
        a = host.ctypes.data
        return any(start <= a < end for start, end, _ in self._pinned)

    def upload(self, ptr, host):
        src = host if self._page_locked(host) else host.copy()
        self.queue.append(lambda: ctypes.memmove(int(ptr), src.ctypes.data, src.nbytes))

    def download(self, host, ptr):
        self.synchronize()
        ctypes.memmove(host.ctypes.data, int(ptr), host.nbytes)

    def copy(self, dst, src, nbytes):
        self.queue.append(lambda: ctypes.memmove(int(dst), int(src), int(nbytes)))

    def zero(self, ptr, nbytes):
        self.queue.append(lambda: ctypes.memset(int(ptr), 0, int(nbytes)))

    def prepare(self, fn, grid, block, args):
        lib, tramp = fn
        values = [ctypes.c_void_p(int(v)) if k == "p" else ctypes.c_int(int(v)) if k == "i"
                  else ctypes.c_float(float(v)) for k, v in args]
        argv = (ctypes.c_void_p * max(len(values), 1))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        grid, block = tuple(int(x) for x in grid), tuple(int(x) for x in block)
        # CUDA refuses more than 65535 blocks in y or z (the tests may lower the limit)
        from nncompile.backends.cuda import codegen
        if max(grid[1:]) > codegen.MAX_GRID_YZ or grid[0] > 2 ** 31 - 1:
            raise RuntimeError(f"invalid configuration argument: grid {grid}")

        def run(seed):
            lib.emu_set_order(self.order, seed, self.resident)
            if lib.emu_launch(tramp, argv, *grid, *block) != 0:
                raise RuntimeError(f"{lib.emu_fault().decode()} in a launch of grid {grid}, "
                                   f"block {block}")
            self.check_guards(f"a launch of grid {grid}, block {block}")

        def call():
            self.launches += 1
            self.queue.append(partial(run, self.seed + self.launches))
        call.keep = (values, argv)
        return call

    def synchronize(self):
        """Do the work queued so far, in order (a fault raised here, as CUDA
        reports a kernel's fault at the next synchronization)."""
        queue, self.queue = self.queue, []
        for work in queue:
            work()

    def capture(self, calls):
        """A "graph": the calls replayed as recorded (their arguments fixed)."""
        if not self.graphs:
            return None
        calls = list(calls)
        self.captured += 1

        def replay():
            for c in calls:
                c()
        return replay
