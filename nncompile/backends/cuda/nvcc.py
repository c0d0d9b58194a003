"""nvcc: CUDA source -> PTX or cubin, cached on disk.

The cache key hashes the source, the target (ptx or cubin), the architecture,
the flags and nvcc's own version string, so a second run of the same model
compiles nothing. The cache lives in $NNCOMPILE_CACHE, else
~/.cache/nncompile/cuda. nvcc runs the host compiler even for -ptx, so it is
named explicitly (-ccbin) when one is found.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from functools import lru_cache

FLAGS = ("-std=c++17", "-O3")
STATS = {"compiled": 0, "cached": 0, "seconds": 0.0}   # this process's compiles


class CudaCompileError(RuntimeError):
    """nvcc rejected generated source: a bug in nncompile, with nvcc's log."""


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for path in ("/usr/local/cuda/bin/nvcc",):
        if os.path.exists(path):
            return path
    return None


def host_compiler() -> str | None:
    return shutil.which("g++") or ("/usr/bin/g++" if os.path.exists("/usr/bin/g++") else None)


@lru_cache(maxsize=None)
def version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def cache_dir() -> str:
    return os.environ.get("NNCOMPILE_CACHE") or \
        os.path.join(os.path.expanduser("~"), ".cache", "nncompile", "cuda")


def cache_key(source: str, arch: str, target: str, nvcc: str) -> str:
    h = hashlib.sha256()
    for part in (source, arch, target, " ".join(FLAGS), version(nvcc)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def compile(source: str, arch: str, target: str = "cubin") -> bytes:
    """Compiled source for arch (e.g. sm_90), from the cache when it is there."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise CudaCompileError("nvcc is not on PATH (install the CUDA toolkit)")
    key = cache_key(source, arch, target, nvcc)
    path = os.path.join(cache_dir(), f"{key}.{target}")
    try:
        with open(path, "rb") as f:
            data = f.read()
        STATS["cached"] += 1
        return data
    except OSError:
        pass
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nncompile-nvcc-") as tmp:
        src, out = os.path.join(tmp, "program.cu"), os.path.join(tmp, f"program.{target}")
        with open(src, "w") as f:
            f.write(source)
        cmd = [nvcc, *FLAGS, f"-arch={arch}", f"-{target}", src, "-o", out]
        cxx = host_compiler()
        if cxx:
            cmd[1:1] = ["-ccbin", cxx]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise CudaCompileError(f"nvcc failed ({' '.join(cmd)}):\n{run.stderr}{run.stdout}")
        with open(out, "rb") as f:
            data = f.read()
    STATS["compiled"] += 1
    STATS["seconds"] += time.perf_counter() - t0
    os.makedirs(cache_dir(), exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=cache_dir(), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp_path, path)
    return data
