"""Dead code elimination (defined beside simplify, which uses it)."""
from .simplify import dce  # noqa: F401
