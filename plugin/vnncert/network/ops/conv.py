"""Conv (1-D/2-D/3-D, groups, dilations, explicit or SAME pads): torch ConvNd, a sparse matrix."""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ...errors import NetworkError
from .base import LazySteps, OpHandler, register
from ..affine import sparse
from .windows import Window, window, window_positions


class ConvAttrs(NamedTuple):
    W: np.ndarray  # (OC, C / group, *kernel), float64
    bias: Optional[np.ndarray]  # (OC,) float64
    window: Window
    group: int


def conv_attrs(node, ctx) -> ConvAttrs:
    """A Conv node's constants and attributes (the one parser of every Conv lowering)."""
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if ctx.is_const(x) or not ctx.is_const(w) or (b is not None and not ctx.is_const(b)):
        raise NetworkError(f"Conv node {node.name!r}: only constant weights and bias are supported")
    W = np.asarray(ctx.const(w), dtype=np.float64)
    if W.ndim < 3:
        raise NetworkError(f"Conv node {node.name!r}: weight of rank {W.ndim}")
    bias = np.asarray(ctx.const(b), dtype=np.float64).reshape(-1) if b is not None else None
    return ConvAttrs(W, bias, window(node, ctx.shape(x)[2:], W.shape[2:]), int(node.attr("group", 1)))


def conv_matrix(in_shape, W: np.ndarray, strides, pads, dilations, group: int):
    """Sparse matrix of an N-D convolution (no bias) on a (N, C, *S) input, and the output shape."""
    W = np.asarray(W, dtype=np.float64)
    N, C = int(in_shape[0]), int(in_shape[1])
    S = [int(d) for d in in_shape[2:]]
    OC, Cg = W.shape[0], W.shape[1]
    nd = len(S)
    kernel = list(W.shape[2:])
    if C != Cg * group or OC % group:
        raise NetworkError(f"Conv: {C} input channels do not fit weight {list(W.shape)} with group {group}")
    offsets, out_s = window_positions(S, kernel, strides, pads[:nd], pads[nd:], dilations)
    n_pos = int(np.prod(out_s))
    n_in_sp = int(np.prod(S))
    OCg = OC // group
    oc = np.arange(OC)
    ic_of = (oc // OCg)[:, None] * Cg + np.arange(Cg)[None, :]  # (OC, Cg) absolute input channel
    entries = ([], [], [])
    for kk, flat, inside, _ in offsets:
        w = W[(slice(None), slice(None)) + tuple(kk)]  # (OC, Cg)
        pos = np.flatnonzero(inside)
        if pos.size == 0:
            continue
        r = oc[:, None, None] * n_pos + pos[None, None, :]  # (OC, 1, P)
        c = ic_of[:, :, None] * n_in_sp + flat[pos][None, None, :]  # (OC, Cg, P)
        add_kernel_entries(entries, r, c, w)
    return batched_matrix(entries, (OC * n_pos, C * n_in_sp), N), (N, OC) + tuple(out_s)


def add_kernel_entries(entries, r, c, w) -> None:
    """Append one kernel offset's nonzero entries to `entries` (rows, cols, values lists): weights
    w (A, B) at rows r and columns c, arrays broadcasting to (A, B, positions)."""
    shape = np.broadcast_shapes(r.shape, c.shape)
    v = np.broadcast_to(w[:, :, None], shape)
    nz = v != 0
    entries[0].append(np.broadcast_to(r, shape)[nz])
    entries[1].append(np.broadcast_to(c, shape)[nz])
    entries[2].append(v[nz])


def batched_matrix(entries, shape, N: int):
    """The CSR matrix of one sample's entries (duplicates summed), block-diagonal over N samples."""
    sp = sparse()
    rows, cols, vals = entries
    one = sp.csr_matrix((np.concatenate(vals) if vals else np.zeros(0),
                         (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                          np.concatenate(cols) if cols else np.zeros(0, np.int64))), shape=shape)
    return sp.kron(sp.identity(N, format="csr"), one, format="csr") if N > 1 else one


def channel_bias(bias, out_shape):
    """A per-channel bias (axis 1) as the flat constant of an output of `out_shape`."""
    return np.broadcast_to(bias.reshape((1, -1) + (1,) * (len(out_shape) - 2)), out_shape).reshape(-1)


@register("Conv")
class ConvOp(OpHandler):
    def to_torch(self, node, ctx):
        a = conv_attrs(node, ctx)
        if a.window.nd not in (1, 2, 3):
            raise NetworkError(f"Conv node {node.name!r}: {a.window.nd}-D convolution is not supported by the torch converter")
        x = ctx.require_merged(node.inputs[0], node)
        ctx.emit(steps.Conv(a.W, a.bias, a.window.strides, a.window.pads, a.window.dilations, a.group),
                 [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        a = conv_attrs(node, ctx)
        s = ctx.sym(node.inputs[0])
        M, out_shape = conv_matrix(s.shape, a.W, a.window.strides, a.window.pads, a.window.dilations, a.group)
        ctx.set(node.outputs[0], s.linear(M, None if a.bias is None else channel_bias(a.bias, out_shape), out_shape))


def _define_steps():
    from .torch_base import F, Step, nn, torch

    class Conv(Step):
        """ConvNd; a 1-D convolution runs as a 2-D one of height 1 (auto_LiRPA 0.3 bounds Conv2d only)."""

        affine = True

        def __init__(self, weight: np.ndarray, bias, strides, pads, dilations, group: int):
            super().__init__()
            w = np.array(weight, dtype=np.float32)
            nd = w.ndim - 2
            self.as_1d = nd == 1
            if self.as_1d:
                w = w[:, :, None, :]
                strides, dilations = [1] + list(strides), [1] + list(dilations)
                pads = [0, pads[0], 0, pads[1]]
                nd = 2
            cls = {2: nn.Conv2d, 3: nn.Conv3d}[nd]
            begin, end = list(pads[:nd]), list(pads[nd:])
            symmetric = begin == end
            self.pad = None
            if not symmetric:
                # F.pad wants (last_begin, last_end, ..., first_begin, first_end)
                p = []
                for i in reversed(range(nd)):
                    p += [int(begin[i]), int(end[i])]
                self.pad = tuple(p)
            self.conv = cls(w.shape[1] * group, w.shape[0], kernel_size=tuple(w.shape[2:]), stride=tuple(strides),
                            padding=tuple(begin) if symmetric else 0, dilation=tuple(dilations), groups=group,
                            bias=bias is not None)
            with torch.no_grad():
                self.conv.weight.copy_(torch.as_tensor(w))
                if bias is not None:
                    self.conv.bias.copy_(torch.as_tensor(np.array(bias, dtype=np.float32)))

        def forward(self, x):
            if self.as_1d:
                x = x.unsqueeze(2)
            if self.pad is not None:
                x = F.pad(x, self.pad)
            y = self.conv(x)
            if self.as_1d:
                y = y.squeeze(2)
            return y

    return {"Conv": Conv}


steps = LazySteps(_define_steps)
