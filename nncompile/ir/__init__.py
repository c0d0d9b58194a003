from .graph import N, Graph, Node, ShapeError  # noqa: F401
