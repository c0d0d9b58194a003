"""Importing this package fills the registry with every primitive."""
from . import conv, elementwise, matmul, reduce, shape  # noqa: F401
from .registry import REGISTRY, OpDef  # noqa: F401
