"""The train block, checked: every key with its value and its span.

LIMITS and CHOICES are the one statement of the values each setting takes:
the train block's checks (frontend/lower.py) and Model.fit's keyword
overrides (api.py) both read them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..diagnostics import Span

MAX_INT = 2 ** 31 - 1      # counts (batch, epochs, ...) and sizes fit a C int everywhere


def shown(v) -> str:
    """A setting's value as the train block writes it: none, true, 0.1."""
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


@dataclass(frozen=True)
class Limit:
    """The numbers a setting takes: from low to high, each end included
    unless open, whole numbers only where whole; example is one to write."""
    low: float = -math.inf
    high: float = math.inf
    whole: bool = False
    open_low: bool = False
    open_high: bool = False
    example: str = ""

    def allows(self, v: float) -> bool:
        return math.isfinite(v) and (not self.whole or v == int(v)) and \
            (self.low < v if self.open_low else self.low <= v) and \
            (v < self.high if self.open_high else v <= self.high)

    def kind(self) -> str:
        return "a whole number" if self.whole else "a number"

    def words(self) -> str:
        """The kind and the lower end, in words: 'a whole number of 1 or more'."""
        kind = self.kind()
        if self.low == -math.inf:
            return kind
        if self.open_high:
            kind = "a fraction" if (self.low, self.high) == (0, 1) else kind
            return f"{kind} in [{_num(self.low)}, {_num(self.high)})"
        if self.open_low:
            return "a positive number" if self.low == 0 and not self.whole else \
                f"{kind} above {_num(self.low)}"
        return f"{kind} of {_num(self.low)} or more"

    def text(self) -> str:
        """Every bound in words: 'a whole number from 1 to 2147483647'."""
        if self.high == math.inf or self.open_high or self.low == -math.inf or self.open_low:
            return self.words()
        return f"{self.kind()} from {_num(self.low)} to {_num(self.high)}"

    def fault(self, v: float) -> str:
        """What v fails, for 'X must be ...': 'positive', 'at most 2147483647'."""
        if not math.isfinite(v) or self.whole and v != int(v):
            return self.words()
        if v < self.low or v == self.low and self.open_low:
            return "positive" if self.open_low and self.low == 0 else \
                f"above {_num(self.low)}" if self.open_low else f"at least {_num(self.low)}"
        return f"below {_num(self.high)}" if self.open_high else f"at most {_num(self.high)}"


LIMITS = {
    "split": Limit(0, 1, open_high=True, example="split = 0.2"),
    "batch": Limit(1, MAX_INT, whole=True, example="batch = 32"),
    "accumulate": Limit(1, MAX_INT, whole=True, example="accumulate = 2"),
    "epochs": Limit(0, MAX_INT, whole=True, example="epochs = 10"),
    "early_stop": Limit(1, MAX_INT, whole=True, example="early_stop = 5"),
    "seed": Limit(0, whole=True, example="seed = 1"),
    "clip": Limit(0, open_low=True, example="clip = 1.0"),
    "lr": Limit(0, open_low=True, example="sgd(lr = 0.01)"),
    "momentum": Limit(0, example="sgd(lr = 0.01, momentum = 0.9)"),
    "beta1": Limit(0, 1, open_high=True, example="adam(lr = 0.001, beta1 = 0.9)"),
    "beta2": Limit(0, 1, open_high=True, example="adam(lr = 0.001, beta2 = 0.999)"),
    "eps": Limit(0, example="adam(lr = 0.001, eps = 1e-8)"),
}

CHOICES = {
    "optimizer": ("sgd", "adam"),
    "normalize": ("none", "minmax", "standardize"),
    "device": ("cpu", "cuda", "auto"),
}


@dataclass
class TrainConfig:
    data: str | None = None
    data_is_path: bool = False
    split: float | None = None          # None: the data set's default
    normalize: str = "none"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch: int = 32
    accumulate: int = 1
    epochs: int = 10
    shuffle: bool = True
    clip: float | None = None
    early_stop: int | None = None       # patience in epochs on the held-out loss
    seed: int = 0
    device: str = "auto"
    present: bool = False               # the file has a train block
    spans: dict = field(default_factory=dict)   # key -> Span of its value

    def span(self, key: str) -> Span | None:
        return self.spans.get(key) or self.spans.get("train")
