"""nncompile: a compiler for neural networks (.nn files -> IR -> numpy / CUDA)."""
from .api import Model, compile, compile_source  # noqa: F401
from .backends.device import DeviceError  # noqa: F401
from .diagnostics import CompileError, DataError, NNCompileError  # noqa: F401

__version__ = "0.1.0"
__all__ = ["compile", "compile_source", "Model", "CompileError", "DataError", "DeviceError",
           "NNCompileError"]
