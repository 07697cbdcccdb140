"""ConvTranspose (1-D/2-D/3-D, groups, dilations, output_padding, output_shape, auto_pad):
torch's conv_transpose, a sparse matrix in the layer graph (affine, like Conv).

Each input position i contributes W[c_in, c_out_g, k] x[c_in, i] to the output position
o = i * stride + k * dilation - pad_begin (kept when 0 <= o < out); the output length is
stride (in - 1) + output_padding + (kernel - 1) dilation + 1 - pad_begin - pad_end. With
`output_shape` the pads follow from it (SAME_UPPER puts the larger half at the end, otherwise at
the begin: ONNX's rule); `auto_pad` SAME_* asks for out = in * stride. Torch's own padding is
symmetric and its output_padding must stay below the stride or dilation; other nodes convolve
without padding, then crop pad_begin / pad_end and pad output_padding with zeros, then add the
bias.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional

import numpy as np

from ...errors import NetworkError
from .base import LazySteps, OpHandler, ints, register
from .conv import add_kernel_entries, batched_matrix, channel_bias


class ConvTransposeAttrs(NamedTuple):
    W: np.ndarray  # (C_in, C_out / group, *kernel), float64
    bias: Optional[np.ndarray]
    strides: List[int]
    dilations: List[int]
    pads: List[int]  # [begin..., end...] (may be negative: then the output grows)
    group: int
    in_spatial: List[int]
    out_spatial: List[int]


def conv_transpose_attrs(node, ctx) -> ConvTransposeAttrs:
    """A ConvTranspose node's constants and attributes (the one parser of its lowerings)."""
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if ctx.is_const(x) or not ctx.is_const(w) or (b is not None and not ctx.is_const(b)):
        raise NetworkError(f"ConvTranspose node {node.name!r}: only constant weights and bias are supported")
    W = np.asarray(ctx.const(w), dtype=np.float64)
    if W.ndim < 3:
        raise NetworkError(f"ConvTranspose node {node.name!r}: weight of rank {W.ndim}")
    nd = W.ndim - 2
    in_spatial = list(ctx.shape(x))[2:]
    if len(in_spatial) != nd:
        raise NetworkError(f"ConvTranspose node {node.name!r}: input of rank {len(in_spatial) + 2} for a {nd}-D kernel")
    kernel = ints(node.attr("kernel_shape", W.shape[2:]))
    strides = ints(node.attr("strides", [1] * nd))
    dil = ints(node.attr("dilations", [1] * nd))
    out_pad = ints(node.attr("output_padding", [0] * nd))
    group = int(node.attr("group", 1))
    if list(kernel) != list(W.shape[2:]):
        raise NetworkError(f"ConvTranspose node {node.name!r}: kernel_shape {kernel} and weight {list(W.shape)} differ")
    full = [strides[i] * (in_spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1 for i in range(nd)]
    auto_pad = node.attr("auto_pad", "NOTSET")
    out_shape = node.attr("output_shape")
    if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = ints(out_shape)[-nd:] if out_shape is not None else [in_spatial[i] * strides[i] for i in range(nd)]
        total = [full[i] - target[i] for i in range(nd)]
        if auto_pad == "SAME_UPPER":
            pads = [t // 2 for t in total] + [t - t // 2 for t in total]
        else:
            pads = [t - t // 2 for t in total] + [t // 2 for t in total]
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = ints(node.attr("pads", [0] * (2 * nd)))
    out_spatial = [full[i] - pads[i] - pads[nd + i] for i in range(nd)]
    if any(o <= 0 for o in out_spatial):
        raise NetworkError(f"ConvTranspose node {node.name!r}: output of spatial shape {out_spatial}")
    C = ctx.shape(x)[1]
    if C != W.shape[0] or C % group:
        raise NetworkError(f"ConvTranspose node {node.name!r}: {C} input channels for weight {list(W.shape)}, group {group}")
    bias = np.asarray(ctx.const(b), dtype=np.float64).reshape(-1) if b is not None else None
    return ConvTransposeAttrs(W, bias, strides, dil, pads, group, in_spatial, out_spatial)


def conv_transpose_matrix(in_shape, a: ConvTransposeAttrs):
    """Sparse matrix (no bias) of the transposed convolution on an (N, C, *S) input, and the output shape."""
    N, C = int(in_shape[0]), int(in_shape[1])
    S = [int(d) for d in in_shape[2:]]
    nd = len(S)
    W = a.W
    Cg, OCg = C // a.group, W.shape[1]
    OC = OCg * a.group
    out = a.out_spatial
    n_in, n_out = int(np.prod(S)), int(np.prod(out))
    grids = np.meshgrid(*[np.arange(s) for s in S], indexing="ij")
    ic = np.arange(C)
    oc_of = (ic // Cg)[:, None] * OCg + np.arange(OCg)[None, :]  # (C, OCg) absolute output channel
    entries = ([], [], [])
    in_flat = np.arange(n_in)
    for kk in np.ndindex(*W.shape[2:]):
        pos = [grids[i] * a.strides[i] + kk[i] * a.dilations[i] - a.pads[i] for i in range(nd)]
        inside = np.ones(tuple(S), dtype=bool)
        flat = np.zeros(tuple(S), dtype=np.int64)
        for i in range(nd):
            inside &= (pos[i] >= 0) & (pos[i] < out[i])
            flat = flat * out[i] + np.clip(pos[i], 0, out[i] - 1)
        sel = np.flatnonzero(inside.reshape(-1))
        if sel.size == 0:
            continue
        w = W[(slice(None), slice(None)) + tuple(kk)]  # (C, OCg)
        r = oc_of[:, :, None] * n_out + flat.reshape(-1)[sel][None, None, :]  # (C, OCg, P)
        c = ic[:, None, None] * n_in + in_flat[sel][None, None, :]
        add_kernel_entries(entries, r, c, w)
    return batched_matrix(entries, (OC * n_out, C * n_in), N), (N, OC) + tuple(out)  # duplicates are summed


@register("ConvTranspose")
class ConvTransposeOp(OpHandler):
    def to_torch(self, node, ctx):
        a = conv_transpose_attrs(node, ctx)
        if a.W.ndim - 2 not in (1, 2, 3):
            raise ctx.unsupported(node, f"a {a.W.ndim - 2}-D transposed convolution")
        x = ctx.require_merged(node.inputs[0], node)
        ctx.emit(steps.ConvTranspose(a), [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        a = conv_transpose_attrs(node, ctx)
        s = ctx.sym(node.inputs[0])
        M, out_shape = conv_transpose_matrix(s.shape, a)
        ctx.set(node.outputs[0], s.linear(M, None if a.bias is None else channel_bias(a.bias, out_shape), out_shape))


def _define_steps():
    from .torch_base import F, Step, buffer

    class ConvTranspose(Step):
        """torch's conv_transpose with its own padding and output_padding when they express the node
        (symmetric pads >= 0, output_padding below max(stride, dilation): the form auto_LiRPA 0.3
        bounds); otherwise without padding, then [pad_begin, pad_begin + out) taken along each
        axis (zeros beyond the unpadded result: negative pads, output_padding), then the bias."""

        affine = True

        def __init__(self, a: ConvTransposeAttrs):
            super().__init__()
            nd = a.W.ndim - 2
            self.nd, self.group = nd, a.group
            self.strides, self.dilations = tuple(a.strides), tuple(a.dilations)
            self.begin, self.out_spatial = list(a.pads[:nd]), list(a.out_spatial)
            buffer(self, "weight", np.asarray(a.W, np.float32))
            self.has_bias = a.bias is not None
            if self.has_bias:
                buffer(self, "bias", np.asarray(a.bias, np.float32))
            out_pad = []
            for i in range(nd):
                k = (a.W.shape[2 + i] - 1) * a.dilations[i] + 1
                out_pad.append(a.out_spatial[i] - ((a.in_spatial[i] - 1) * a.strides[i] + k - 2 * a.pads[i]))
            self.plain = all(a.pads[i] == a.pads[nd + i] >= 0 and 0 <= out_pad[i] < max(a.strides[i], a.dilations[i])
                             for i in range(nd))
            self.padding, self.output_padding = tuple(a.pads[:nd]), tuple(out_pad)

        def forward(self, x):
            fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[self.nd]
            if self.plain:
                return fn(x, self.weight, self.bias if self.has_bias else None, stride=self.strides,
                          padding=self.padding, output_padding=self.output_padding, groups=self.group,
                          dilation=self.dilations)
            y = fn(x, self.weight, None, stride=self.strides, dilation=self.dilations, groups=self.group)
            idx, pad = [slice(None), slice(None)], []
            for i in range(self.nd):
                n = y.shape[2 + i]
                lo, hi = self.begin[i], self.begin[i] + self.out_spatial[i]
                idx.append(slice(max(lo, 0), max(min(hi, n), max(lo, 0))))
                pad.append((max(-lo, 0), max(hi - max(n, lo), 0)))
            y = y[tuple(idx)]
            if any(p != (0, 0) for p in pad):
                y = F.pad(y, tuple(v for p in reversed(pad) for v in p))
            if self.has_bias:
                y = y + self.bias.reshape((1, -1) + (1,) * self.nd)
            return y

    return {"ConvTranspose": ConvTranspose}


steps = LazySteps(_define_steps)
