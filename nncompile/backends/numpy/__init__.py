from .executor import NumpyProgram  # noqa: F401
