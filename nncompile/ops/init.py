"""Param initialisers, seeded per param: the same seed and name give the same numbers.

xavier: Glorot uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Keras' default)
he:     Kaiming normal, N(0, sqrt(2 / fan_in)) (for relu layers)
fan_in / fan_out: a [k, m] weight has fan_in k and fan_out m; a conv weight
[filters, channels, kh, kw] has fan_in channels*kh*kw and fan_out filters*kh*kw.
"""
from __future__ import annotations

import zlib

import numpy as np


def fans(shape: tuple) -> tuple:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    field = int(np.prod(shape[2:]))
    return shape[1] * field, shape[0] * field


def param_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def initial_value(init: tuple, shape: tuple, seed: int, name: str) -> np.ndarray:
    kind, args = init[0], init[1:]
    rng = param_rng(seed, name)
    fan_in, fan_out = fans(shape)
    if kind == "zeros":
        x = np.zeros(shape)
    elif kind == "ones":
        x = np.ones(shape)
    elif kind == "constant":
        x = np.full(shape, args[0])
    elif kind == "normal":
        x = rng.normal(args[0], args[1], shape)
    elif kind == "uniform":
        x = rng.uniform(args[0], args[1], shape)
    elif kind == "xavier":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        x = rng.uniform(-a, a, shape)
    elif kind == "he":
        x = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    else:
        raise ValueError(f"unknown init {kind}")
    return np.ascontiguousarray(x, dtype=np.float32)
