"""Importing this package fills the registry with every primitive."""
from . import elementwise, matmul, reduce, shape  # noqa: F401
from .registry import REGISTRY, OpDef  # noqa: F401
