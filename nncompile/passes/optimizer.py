"""The optimizer's update rule as IR: g.updates[name] is the next value of
each param and optimizer buffer, computed from g.grads (PyTorch conventions)."""
from __future__ import annotations

from ..ir.graph import Graph


def _state(g: Graph, name: str, shape: tuple, value: float):
    node = g.add("state", [], {"name": name, "shape": shape, "value": value}, name=name)
    g.state[name] = node
    return node


def clip_gradients(g: Graph, clip: float) -> dict:
    """Scale every gradient by clip / max(norm, clip), norm the global L2 norm."""
    total = None
    for grad in g.grads.values():
        axes = tuple(range(len(grad.shape)))
        s = g.add("sum", [g.add("square", [grad])], {"axes": axes, "keepdims": False})
        total = s if total is None else g.add("add", [total, s])
    norm = g.add("sqrt", [total])
    c = g.const(clip)
    scale = g.add("div", [c, g.add("maximum", [norm, c])])
    return {k: g.add("mul", [v, scale]) for k, v in g.grads.items()}


def optimizer(graph: Graph, cfg) -> Graph:
    """After: g.updates holds the next value of every param (and of every
    optimizer buffer in g.state), for sgd, sgd with momentum, or adam."""
    g = graph.copy()
    grads = clip_gradients(g, cfg.clip) if cfg.clip else dict(g.grads)
    lr = g.const(cfg.lr)
    if cfg.optimizer == "adam":
        b1, b2 = cfg.beta1, cfg.beta2
        # b1^t and b2^t as running products: bias corrections 1 - b^t
        b1t = g.add("mul", [_state(g, "adam.beta1_power", (), 1.0), g.const(b1)])
        b2t = g.add("mul", [_state(g, "adam.beta2_power", (), 1.0), g.const(b2)])
        g.updates["adam.beta1_power"], g.updates["adam.beta2_power"] = b1t, b2t
        c1 = g.add("sub", [g.const(1.0), b1t])
        c2 = g.add("sqrt", [g.add("sub", [g.const(1.0), b2t])])
    for name, p in g.params.items():
        grad = grads[name]
        if cfg.optimizer == "sgd" and cfg.momentum == 0:
            g.updates[name] = g.add("sub", [p, g.add("mul", [grad, lr])])
        elif cfg.optimizer == "sgd":
            # v = momentum v + g;  p = p - lr v
            v = _state(g, f"{name}.velocity", p.shape, 0.0)
            v_new = g.add("add", [g.add("mul", [v, g.const(cfg.momentum)]), grad])
            g.updates[f"{name}.velocity"] = v_new
            g.updates[name] = g.add("sub", [p, g.add("mul", [v_new, lr])])
        else:
            m = _state(g, f"{name}.m", p.shape, 0.0)
            v = _state(g, f"{name}.v", p.shape, 0.0)
            m_new = g.add("add", [g.add("mul", [m, g.const(cfg.beta1)]),
                                  g.add("mul", [grad, g.const(1 - cfg.beta1)])])
            v_new = g.add("add", [g.add("mul", [v, g.const(cfg.beta2)]),
                                  g.add("mul", [g.add("square", [grad]), g.const(1 - cfg.beta2)])])
            g.updates[f"{name}.m"], g.updates[f"{name}.v"] = m_new, v_new
            # p = p - lr (m / c1) / (sqrt(v) / c2 + eps)
            denom = g.add("add", [g.add("div", [g.add("sqrt", [v_new]), c2]), g.const(cfg.eps)])
            step = g.add("div", [g.add("mul", [g.add("div", [m_new, c1]), lr]), denom])
            g.updates[name] = g.add("sub", [p, step])
    return g
