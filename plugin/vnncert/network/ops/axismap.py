"""Separable per-axis linear maps: y = (W_1 along axis 1) ... (W_k along axis k) x + fill.

Pad, Tile and Resize/Upsample are each, per axis, a constant matrix W (out length x in length)
applied along that axis (a selection for Pad, Tile and nearest Resize, interpolation weights for
linear/cubic Resize), plus, for Pad's constant mode, a constant where any axis is padded. This
module lowers such a map once for all of them: to torch as one `AxisMatmul` step per axis (a
transpose and a product with a constant, which auto_LiRPA 0.3 bounds) and a constant Add, and to
the layer graph as sparse Kronecker matrices (exactly affine).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from ..affine import Sym, sparse
from .base import LazySteps, prod


def is_identity(W: np.ndarray) -> bool:
    return W.shape[0] == W.shape[1] and np.array_equal(W, np.eye(W.shape[0]))


def fill_pattern(shape: Sequence[int], masks: Dict[int, np.ndarray]) -> np.ndarray:
    """1.0 where any axis's position is in its mask (a bool vector over that axis's output), else 0."""
    keep = np.ones(tuple(shape))
    for axis, m in masks.items():
        view = [1] * len(shape)
        view[axis] = len(m)
        keep = keep * (1.0 - np.asarray(m, np.float64).reshape(view))
    return 1.0 - keep


def apply_affine(s: Sym, mats: Dict[int, np.ndarray], fill: Optional[np.ndarray] = None) -> Sym:
    """The layer-graph lowering: each W along its axis, as kron(I, W, I), then + fill (flat, C order)."""
    sp = sparse()
    for axis, W in sorted(mats.items()):
        if is_identity(W):
            continue
        shape = list(s.shape)
        pre, post = prod(shape[:axis]), prod(shape[axis + 1:])
        M = sp.kron(sp.kron(sp.identity(pre, format="csr"), sp.csr_matrix(np.asarray(W, np.float64))),
                    sp.identity(post, format="csr"), format="csr")
        shape[axis] = W.shape[0]
        s = s.linear(M, None, shape)
    if fill is not None and np.any(fill != 0):
        s = s + Sym.constant(np.broadcast_to(fill, s.shape))
    return s


def apply_numpy(x: np.ndarray, mats: Dict[int, np.ndarray], fill: Optional[np.ndarray] = None) -> np.ndarray:
    """The same map on a numpy array (in float64; for evaluation and tests)."""
    y = np.asarray(x, np.float64)
    for axis, W in sorted(mats.items()):
        y = np.moveaxis(np.tensordot(np.asarray(W, np.float64), np.moveaxis(y, axis, 0), axes=(1, 0)), 0, axis)
    return y + fill if fill is not None else y


def emit_torch(ctx, x: str, mats: Dict[int, np.ndarray], out: str, fill: Optional[np.ndarray] = None) -> None:
    """The torch lowering of the map on ONNX tensor x, into ONNX tensor `out`."""
    from .elementwise import broadcast_const, steps as elementwise_steps

    mats = {a: W for a, W in mats.items() if not is_identity(W)}
    has_fill = fill is not None and np.any(fill != 0)
    if not mats and not has_fill:
        ctx.alias(out, x)
        return
    x = ctx.not_on_batch(x, list(mats))
    order = sorted(mats)
    for i, axis in enumerate(order):
        v = ctx.view(x)
        target = out if (i == len(order) - 1 and not has_fill) else ctx.fresh(out)
        ctx.emit(steps.AxisMatmul(v.axis(axis), mats[axis]), [x], [target], v.merged)
        x = target
    if has_fill:
        y, c, merged = broadcast_const(ctx, x, np.asarray(fill, np.float32))
        ctx.emit(elementwise_steps.ConstOp("Add", c, False), [y], [out], merged)


def _define_steps():
    from .torch_base import Step, buffer

    class AxisMatmul(Step):
        """y = W applied along torch axis `axis` (x moved to the last axis, times W^T, moved back)."""

        affine = True

        def __init__(self, axis: int, W: np.ndarray):
            super().__init__()
            self.axis = int(axis)
            buffer(self, "wt", np.asarray(W, np.float64).T)

        def forward(self, x):
            return (x.movedim(self.axis, -1) @ self.wt).movedim(-1, self.axis)

        def extra_repr(self) -> str:
            return f"axis {self.axis}, {tuple(self.wt.shape[::-1])}"

    return {"AxisMatmul": AxisMatmul}


steps = LazySteps(_define_steps)
