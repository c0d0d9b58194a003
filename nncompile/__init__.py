"""nncompile: a compiler for neural networks (.nn files -> IR -> numpy / CUDA).

The API names are imported when first used (PEP 562), so that `import
nncompile` and the command line's start do not load numpy and lark before
the command line can catch a Ctrl-C."""
from .diagnostics import CompileError, DataError, ModelWarning, NNCompileError  # noqa: F401

__version__ = "0.1.0"
__all__ = ["compile", "compile_source", "Model", "CompileError", "DataError", "DeviceError",
           "ModelWarning", "NNCompileError"]

_LAZY = {"compile": "api", "compile_source": "api", "Model": "api",
         "DeviceError": "backends.device"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nncompile' has no attribute '{name}'")
    import importlib
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
