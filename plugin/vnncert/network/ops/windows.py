"""Sliding windows, shared by Conv and the pools: padding (explicit or auto_pad), the window
attributes, and the map from each kernel offset to the input positions it reads."""
from __future__ import annotations

import math
from typing import List, NamedTuple

import numpy as np

from ...errors import NetworkError
from .base import ints


class Window(NamedTuple):
    """A node's window attributes, padding resolved: `pads` is ONNX's [begin..., end...]."""

    kernel: List[int]
    strides: List[int]
    dilations: List[int]
    pads: List[int]

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def symmetric(self) -> bool:
        return self.pads[:self.nd] == self.pads[self.nd:]


def window(node, in_spatial, kernel) -> Window:
    """The window of a Conv or pooling node over an input of spatial shape `in_spatial`."""
    kernel = ints(kernel)
    nd = len(kernel)
    strides = ints(node.attr("strides", [1] * nd))
    dilations = ints(node.attr("dilations", [1] * nd))
    return Window(kernel, strides, dilations, explicit_pads(node, list(in_spatial), kernel, strides, dilations))


def explicit_pads(node, in_spatial, kernel, strides, dilations):
    """ONNX pads [begin..., end...], with auto_pad SAME_UPPER/SAME_LOWER/VALID resolved."""
    nd = len(kernel)
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "", None):
        pads = list(node.attr("pads", [0] * (2 * nd)))
        return [int(p) for p in pads]
    if auto_pad == "VALID":
        return [0] * (2 * nd)
    begin, end = [], []
    for i in range(nd):
        out = math.ceil(in_spatial[i] / strides[i])
        eff = (kernel[i] - 1) * dilations[i] + 1
        total = max(0, (out - 1) * strides[i] + eff - in_spatial[i])
        small, big = total // 2, total - total // 2
        if auto_pad == "SAME_UPPER":
            begin.append(small)
            end.append(big)
        else:
            begin.append(big)
            end.append(small)
    return begin + end


def window_positions(in_spatial, kernel, strides, pads_begin, pads_end, dilations, ceil_mode=False):
    """Per kernel offset: (input spatial flat index, valid-in-input mask, valid-in-padded mask)
    arrays over the output grid, plus the output spatial shape."""
    nd = len(kernel)
    out = []
    for i in range(nd):
        span = in_spatial[i] + pads_begin[i] + pads_end[i] - dilations[i] * (kernel[i] - 1) - 1
        if ceil_mode:
            o = -(-span // strides[i]) + 1
            # the last window must start inside the padded input (ONNX / torch rule)
            if (o - 1) * strides[i] >= in_spatial[i] + pads_begin[i]:
                o -= 1
        else:
            o = span // strides[i] + 1
        if o <= 0:
            raise NetworkError(f"window of size {list(kernel)} does not fit input {list(in_spatial)}")
        out.append(int(o))
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    offsets = []
    for kk in np.ndindex(*kernel):
        pos = [grids[i] * strides[i] + kk[i] * dilations[i] - pads_begin[i] for i in range(nd)]
        inside = np.ones(tuple(out), dtype=bool)
        padded = np.ones(tuple(out), dtype=bool)
        for i in range(nd):
            inside &= (pos[i] >= 0) & (pos[i] < in_spatial[i])
            padded &= (pos[i] >= -pads_begin[i]) & (pos[i] < in_spatial[i] + pads_end[i])
        flat = np.zeros(tuple(out), dtype=np.int64)
        for i in range(nd):
            flat = flat * in_spatial[i] + np.clip(pos[i], 0, in_spatial[i] - 1)
        offsets.append((kk, flat.reshape(-1), inside.reshape(-1), padded.reshape(-1)))
    return offsets, tuple(out)
