"""The train block, checked: every key with its value and its span."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import Span


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
