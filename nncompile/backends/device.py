"""Choosing the device: cpu, cuda, or auto (cuda when pycuda and a GPU are there)."""
from __future__ import annotations

import os
import sys

from ..diagnostics import NNCompileError

CUDA_HINT = ("install the cuda extra on a machine with an NVIDIA GPU and driver: "
             "pip install 'nncompile[cuda]' (see docs/cuda.md), or use --device cpu")


class DeviceError(NNCompileError):
    """The device asked for is not there."""


def physical_memory() -> float:
    """This machine's memory in bytes (inf where the system does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE")) * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return float("inf")


def cuda_status() -> tuple[bool, str]:
    """(usable, why not): pycuda imports, a driver answers and a GPU is present."""
    try:
        import pycuda.driver as drv
    except Exception as e:   # ImportError, or libcuda.so.1 missing
        return False, f"pycuda cannot be imported ({e.__class__.__name__}: {e})"
    try:
        drv.init()
        if drv.Device.count() == 0:
            return False, "no CUDA GPU is present"
    except Exception as e:
        return False, f"the CUDA driver reports: {e}"
    try:
        from .cuda import launch  # noqa: F401
    except ImportError as e:
        return False, f"the CUDA backend cannot load ({e})"
    return True, ""


def resolve_device(requested: str, quiet: bool = False) -> str:
    if requested not in ("cpu", "cuda", "auto"):
        raise ValueError(f"unknown device {requested!r}; use 'cpu', 'cuda' or 'auto'")
    if requested == "cpu":
        return "cpu"
    ok, why = cuda_status()
    if ok:
        return "cuda"
    if requested == "cuda":
        raise DeviceError(f"error: device cuda is not available: {why}\nhint: {CUDA_HINT}")
    if not quiet:
        print(f"nncompile: using the CPU ({why})", file=sys.stderr)
    return "cpu"


def make_storage(device: str):
    """Where a model keeps its params and optimizer state: a dict of arrays on
    the CPU; for cuda a dict-like whose arrays stay resident on the GPU."""
    if device == "cuda":
        from .cuda.launch import CudaStorage
        return CudaStorage()
    return {}


def store_family(storage, arrays: dict) -> None:
    """Put a family of per-param arrays (the params, or every param's velocity,
    in the params' order) into storage. On the CPU they become views of one
    flat float32 buffer, so the numpy backend can update the whole family with
    one call per operation (backends/numpy/pack.py)."""
    if not isinstance(storage, dict):
        for name, a in arrays.items():
            storage[name] = a
        return
    import numpy as np
    flat = np.empty(sum(np.size(a) for a in arrays.values()), np.float32)
    offset = 0
    for name, a in arrays.items():
        view = flat[offset:offset + np.size(a)].reshape(np.shape(a))
        view[...] = a
        storage[name] = view
        offset += view.size


def make_program(device: str, schedule, storage):
    """The runnable form of a schedule on the device."""
    if device == "cuda":
        from .cuda.launch import CudaProgram
        return CudaProgram(schedule, storage)
    from .numpy import NumpyProgram
    return NumpyProgram(schedule, storage)
