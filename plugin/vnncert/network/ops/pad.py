"""Pad (constant, reflect, edge, wrap; negative pads crop): a selection per axis, plus the constant
where any axis is padded (`axismap`), so exactly affine in every lowering.

Opsets 2-10 give `pads` and `value` as attributes, 11+ as inputs (`constant_value` optional),
18+ may name the `axes` the pads are for; 19 adds `wrap`. The source index of each output
position along an axis is numpy's `np.pad` of the position numbers in the same mode, which is
ONNX's definition of reflect (no edge repeat), edge and wrap.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

import numpy as np

from ...errors import NetworkError
from . import axismap
from .base import OpHandler, ints, norm_axis, optional_input, register

MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


class PadMap(NamedTuple):
    mats: Dict[int, np.ndarray]  # axis -> (out length, in length) selection
    fill: np.ndarray  # the constant at padded positions (0 outside them), output shape
    shape: Tuple[int, ...]


def _source(n: int, begin: int, end: int, mode: str) -> np.ndarray:
    """Source index of each output position along one axis (-1: padded with the constant)."""
    idx = np.arange(n)
    b, e = max(begin, 0), max(end, 0)
    if b or e:
        if mode == "constant":
            idx = np.pad(idx, (b, e), mode="constant", constant_values=-1)
        else:
            if n == 0 or (mode == "reflect" and n < 2 and (b or e)):
                raise NetworkError(f"Pad in {mode} mode of an axis of length {n}")
            idx = np.pad(idx, (b, e), mode=MODES[mode])
    return idx[max(-begin, 0): len(idx) - max(-end, 0)]


def pad_map(node, ctx) -> PadMap:
    """The node's per-axis selections and fill (the one parser of every Pad lowering)."""
    shape = tuple(ctx.shape(node.inputs[0]))
    rank = len(shape)
    mode = node.attr("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in MODES:
        raise NetworkError(f"Pad node {node.name!r}: unknown mode {mode!r}")
    if len(node.inputs) > 1 and node.inputs[1]:
        if not ctx.is_const(node.inputs[1]):
            raise ctx.unsupported(node, "pads computed from the input")
        pads = ints(ctx.const(node.inputs[1]))
        value = 0.0
        if len(node.inputs) > 2 and node.inputs[2]:
            if not ctx.is_const(node.inputs[2]):
                raise ctx.unsupported(node, "a constant_value computed from the input")
            v = np.asarray(ctx.const(node.inputs[2])).reshape(-1)
            value = float(v[0]) if v.size else 0.0
        axes = optional_input(node, ctx, 3)
        axes = list(range(rank)) if axes is None else [norm_axis(a, rank) for a in ints(axes)]
    else:
        pads = ints(node.attr("pads", []))
        value = float(node.attr("value", 0.0))
        axes = list(range(rank))
    if len(pads) != 2 * len(axes):
        raise NetworkError(f"Pad node {node.name!r}: {len(pads)} pads for {len(axes)} axes")
    mats, masks, out = {}, {}, list(shape)
    for i, a in enumerate(axes):
        b, e = pads[i], pads[i + len(axes)]
        if b == 0 and e == 0:
            continue
        src = _source(shape[a], b, e, mode)
        if src.size == 0:
            raise NetworkError(f"Pad node {node.name!r}: axis {a} of length {shape[a]} padded by ({b}, {e}) is empty")
        W = np.zeros((src.size, shape[a]))
        ok = src >= 0
        W[np.flatnonzero(ok), src[ok]] = 1.0
        mats[a], masks[a], out[a] = W, ~ok, src.size
    fill = value * axismap.fill_pattern(out, masks) if (value != 0 and masks) else np.zeros(tuple(out))
    return PadMap(mats, fill, tuple(out))


@register("Pad")
class PadOp(OpHandler):
    def to_torch(self, node, ctx):
        p = pad_map(node, ctx)
        axismap.emit_torch(ctx, node.inputs[0], p.mats, node.outputs[0], p.fill)

    def to_affine(self, node, ctx):
        p = pad_map(node, ctx)
        ctx.set(node.outputs[0], axismap.apply_affine(ctx.sym(node.inputs[0]), p.mats, p.fill))
