"""Sound bounds over the layer graph (docs/architecture.md, "The bounds layer").

One entry point:

    g = bounds.prepare(layer_graph, "numpy" | "torch", options)   # or prepare_lirpa(network)
    r = bounds.compute(g, lower, upper, C, method="interval" | "crown" | "alpha" | "lp"
                       | "lirpa-ibp" | "lirpa-crown" | "lirpa-alpha", parent=..., ...)

over a batch of input boxes (B, n_in) and per box the rows C (B, R, n_out) to bound from below;
`r.lower` (B, R) are sound float64 lower bounds of C f(x), widened by the one margin rule
(`bounds.margin`, which also owns the one "refutes a row" test). The modules:

* `crown`: the one CROWN (interval bounds, back-substitution, alpha on the final pass) over any
  DAG of the layer graph's kinds, numpy (no torch import: the quick pass) or torch (batched);
* `region`: every layer's bounds over one region for the MILP (CROWN, a refine hook, LP tightening);
* `lp`, `encoding`: the triangle LP over the layer graph's encoding, safe weak-duality bounds;
* `alpha_beta`: alpha/beta bounds with ReLU split constraints over the layer graph (`graph.GraphView`);
* `lirpa`: auto_LiRPA (public API only) behind the same `compute`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..options import BoundsOptions
from .crown import BoxState, Crown, Expired
from .margin import refutes, widen_lower

METHODS = ("interval", "crown", "alpha", "lp", "lirpa-ibp", "lirpa-crown", "lirpa-alpha")

__all__ = ["METHODS", "BoxState", "Crown", "Expired", "Result", "compute", "prepare", "prepare_lirpa", "refutes"]


@dataclass
class Result:
    """Bounds of one batch of boxes: lower (B, R) numpy float64, widened; A (B, R, n_in), the
    coefficients in x of each row's linear bound (CROWN-type methods, when asked; for our CROWN,
    `lower` is that linear function's minimum over the box, widened: the input split's clipping
    reads the function's constant off it, so a bound taken from several must keep its own A); scores (B, R,
    n_in), the input-split scores (torch CROWN, when asked); state, each box's intermediate bounds
    (for its children); unstable (B,), unstable ReLUs per box."""

    lower: np.ndarray
    A: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None
    state: Optional[BoxState] = None
    unstable: Optional[np.ndarray] = None


def prepare(lg, backend: str = "numpy", options: BoundsOptions = BoundsOptions()) -> Crown:
    """The graph with its weights in `backend`'s arrays, for many `compute` calls."""
    return Crown(lg, backend, chunk_values=options.chunk_values, sparse_fill=options.sparse_fill,
                 forward_max_inputs=options.forward_max_inputs, backward_budget=options.backward_budget,
                 backward_forward_ratio=options.backward_forward_ratio,
                 quadratic_max_inputs=options.quadratic_max_inputs,
                 quadratic_max_products=options.quadratic_max_products, forward_narrow=options.forward_narrow,
                 fixed_row_width=options.fixed_row_width, sparse_rows=options.sparse_rows,
                 sparse_row_macs=options.sparse_row_macs, sparse_budget=options.sparse_budget)


def prepare_lirpa(network, options: BoundsOptions = BoundsOptions()):
    """auto_LiRPA's BoundedModule of the network (float64), for `compute` with the lirpa methods."""
    from .lirpa import LirpaGraph

    return LirpaGraph(network, options)


def compute(graph, lower, upper, C, method: str = "crown", *, parent: Optional[BoxState] = None,
            intermediate: Optional[BoxState] = None, want_A: bool = False, want_scores: bool = False,
            want_state: bool = False, output_box: bool = False, score_dims=None,
            options: BoundsOptions = BoundsOptions(), deadline: float = math.inf, forward_only: bool = False) -> Result:
    """Sound lower bounds of C[b] f(x) over lower[b] <= x <= upper[b] (see the module docstring).

    `graph`: a `Crown` (`prepare`), a LayerGraph (numpy CROWN made on the spot) or a
    `lirpa.LirpaGraph`. `parent`: the intermediate bounds of boxes containing these ones (CROWN
    reuses them; only rows unstable there are bounded again); `intermediate`: these boxes' own
    intermediate bounds (only the final pass runs). `output_box`: CROWN bounds of the output
    layer too, and each row's bound intersected with the interval bound of C over them (the
    numpy quick pass does this). `score_dims`: the input dims the split scores are over (all: None;
    the search asks for the free ones). method "alpha": CROWN, then the final pass's lower slopes
    optimised (`options.alpha_iters` steps; torch). "lp": one region at a time (`bounds.region`,
    the triangle LP). Our CROWN raises `Expired` once `deadline` has passed (checked between
    layers and row chunks). `forward_only`: where CROWN carries the forward pass (few free
    inputs, `Crown.forward_worthwhile`), its bounds stand for every intermediate layer (no
    back-substitution but the final rows'): looser, cheaper."""
    lower = np.asarray(lower, np.float64)
    upper = np.asarray(upper, np.float64)
    C = np.asarray(C, np.float64)
    if getattr(graph, "is_lirpa", False):
        if not method.startswith("lirpa-"):
            raise ValueError(f"auto_LiRPA computes the lirpa-* methods, not {method!r}")
        lb, A = graph.lower(lower, upper, C, method[len("lirpa-"):], want_A=want_A)
        return Result(widen_lower(lb), A)
    if method == "lp":
        return _lp(graph, lower, upper, C, deadline)
    if method not in ("interval", "crown", "alpha"):
        raise ValueError(f"unknown bound method {method!r} ({', '.join(METHODS)})")
    crown = graph if isinstance(graph, Crown) else prepare(graph, "numpy", options)
    ops = crown.ops
    if intermediate is not None:
        res = crown.reuse(lower, upper, intermediate)
        crown._deadline = deadline
    else:
        res = crown.intermediate(lower, upper, parent=parent, method="interval" if method == "interval" else "crown",
                                 output=output_box, want_shares=want_scores, share_dims=score_dims, deadline=deadline,
                                 forward_only=forward_only)
    grad = None
    if crown.backend == "torch":
        import torch

        grad = torch.no_grad()
        grad.__enter__()
    alpha = method == "alpha" and crown.backend == "torch" and options.alpha_iters > 0
    lb = A = scores = None
    try:
        if method == "interval":
            lb = _interval_rows(crown, res, C)
        elif not alpha or want_A or want_scores:
            lb, A, scores = crown.final(C, res, want_A=want_A, want_scores=want_scores)
    finally:
        if grad is not None:
            grad.__exit__(None, None, None)
    lb = None if lb is None else ops.numpy(lb)
    if alpha:  # its first step is CROWN's own slopes: never looser than the plain pass
        la = ops.numpy(crown.optimise_final(C, res, options.alpha_iters, options.alpha_lr))
        la = np.where(np.isnan(la), -np.inf, la)
        if lb is None and res.lin:  # (final, which runs it otherwise) the linearised product relaxation
            import torch

            with torch.no_grad():
                lq = ops.numpy(crown.quadratic_final(C, res)[0])
            la = np.maximum(la, np.where(np.isnan(lq), -np.inf, lq))
        lb = la if lb is None else np.maximum(lb, la)
    if method != "interval" and output_box and crown.lg.output in res.affine:
        lb = np.maximum(lb, ops.numpy(_interval_rows(crown, res, C)))
    out = Result(widen_lower(lb))
    if A is not None:
        out.A = ops.numpy(A)
    if scores is not None:
        out.scores = ops.numpy(scores)
    if want_state:
        out.state = res.state(crown.readers)
    if crown.relus:
        out.unstable = np.asarray(ops.numpy(crown.unstable(res)), np.int64).reshape(-1)
    else:
        out.unstable = np.zeros(lower.shape[0], np.int64)
    return out


def _interval_rows(crown: Crown, res, C):
    """Interval lower bounds of C y over the output layer's bounds (B, R)."""
    ops = crown.ops
    k = crown.lg.output
    if k not in res.affine:
        res.affine[k] = crown._affine_bounds(k, res, None, "interval", False, True)
    lo, hi = res.affine[k]
    C = ops.asarray(C)
    Cp = ops.pos(C)
    return ops.bdot(Cp, lo) + ops.bdot(C - Cp, hi)


def _lp(lg, lower, upper, C, deadline):
    from ..spec.model import InputRegion
    from .region import compute_bounds, output_lower_bounds

    if isinstance(lg, Crown):
        lg = lg.lg
    out = np.empty(C.shape[:2])
    for b in range(lower.shape[0]):
        bnd = compute_bounds(lg, InputRegion(lower[b], upper[b]), deadline, method="lp", encode=True)
        # an empty region (the LP's Farkas certificate) has every row refuted
        out[b] = np.inf if bnd.empty else output_lower_bounds(lg, C[b], bnd, use_lp=True, deadline=deadline)
    return Result(out)
