"""Writers for the small data files the tests build in tmp_path."""
from __future__ import annotations

import csv
import gzip as _gzip
from pathlib import Path

import numpy as np


def write_idx(path, array, gzip: bool = False) -> Path:
    """An idx file of unsigned bytes: magic 0x000008NN (NN = ndim), big-endian
    uint32 dims, then the bytes; gzip-compressed when gzip is True."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = (0x0800 | a.ndim).to_bytes(4, "big")
    raw += b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()
    path = Path(path)
    path.write_bytes(_gzip.compress(raw) if gzip else raw)
    return path


def write_csv(path, rows, header=None) -> Path:
    """Comma separated rows, with an optional header row first."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return path
