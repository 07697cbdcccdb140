"""Resize (opsets 10-19) and Upsample (7, 9): affine with constant scales or sizes, every mode.

Every mode of Resize (nearest with its rounding modes, linear, cubic, antialias) computes each
output entry as a fixed combination of input entries, separately along each axis: so the node is
one constant matrix per resized axis (`axismap`), plus a constant where tf_crop_and_resize
extrapolates. The matrix of an axis is read off ONNX Runtime itself, the runtime every witness is
replayed on: the same node (its attributes, this axis's scale, size or roi) applied to an identity
matrix resizes that matrix's second axis, so its output is the transposed weight matrix. That
keeps the many coordinate-transformation and rounding modes exactly as ONNX Runtime computes them,
in one place. Refused uses: scales, sizes or roi computed from the input, and a
keep_aspect_ratio_policy other than stretch (opset 18's common scale over several axes).
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from ...errors import NetworkError
from . import axismap
from .base import OpHandler, ints, norm_axis, register


class ResizeMap(NamedTuple):
    mats: Dict[int, np.ndarray]
    fill: Optional[np.ndarray]
    shape: Tuple[int, ...]


def _const_input(node, ctx, i: int) -> Optional[np.ndarray]:
    if len(node.inputs) > i and node.inputs[i]:
        if not ctx.is_const(node.inputs[i]):
            raise ctx.unsupported(node, "scales, sizes or roi computed from the input")
        v = np.asarray(ctx.const(node.inputs[i]))
        return v if v.size else None
    return None


def _probe(node, opset: int, n_in: int, scale=None, size=None, roi=None, zeros: bool = False) -> np.ndarray:
    """ONNX Runtime's output for the node applied along axis 1 of an (n_in, n_in) identity (or zero)
    matrix: row r is the resized unit vector e_r."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    feeds = {"X": np.zeros((n_in, n_in), np.float32) if zeros else np.eye(n_in, dtype=np.float32)}
    inits = []
    attrs = {k: v for k, v in node.attrs.items() if k not in ("axes", "keep_aspect_ratio_policy", "scales")}

    def const(name, value, dtype):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    if node.op_type == "Upsample":
        opset = 9
        ins = ["X", const("scales", [1.0, scale], np.float32)]
    elif opset < 11:
        ins = ["X", const("scales", [1.0, scale], np.float32)]
    else:
        roi_name = const("roi", [0.0, roi[0], 1.0, roi[1]] if roi is not None else [], np.float32)
        sc = const("scales", [1.0, scale] if scale is not None else [], np.float32)
        sz = const("sizes", [n_in, size], np.int64) if size is not None else ""
        if opset >= 13:
            ins = ["X", roi_name if roi is not None else "", sc if scale is not None else "", sz]
        else:
            ins = ["X", roi_name, sc, sz]
        while ins and not ins[-1]:
            ins.pop()
    proto = helper.make_node(node.op_type, ins, ["Y"], **attrs)
    graph = helper.make_graph([proto], "probe", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n_in, n_in])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, feeds)[0], np.float64)


def resize_map(node, ctx) -> ResizeMap:
    """Per resized axis its weight matrix (from ONNX Runtime), the extrapolation fill, the output
    shape (the one parser of Resize and Upsample)."""
    shape = tuple(int(d) for d in ctx.shape(node.inputs[0]))
    rank = len(shape)
    opset = ctx.graph.opset if hasattr(ctx, "graph") else 13
    mode = node.attr("coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" else "asymmetric")
    if node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ctx.unsupported(node, "keep_aspect_ratio_policy other than stretch")
    if node.op_type == "Upsample":
        scales = node.attr("scales")
        scales = np.asarray(scales, np.float64) if scales is not None else _const_input(node, ctx, 1)
        roi, sizes = None, None
    elif opset < 11:
        scales, roi, sizes = _const_input(node, ctx, 1), None, None
    else:
        roi, scales, sizes = _const_input(node, ctx, 1), _const_input(node, ctx, 2), _const_input(node, ctx, 3)
    axes = node.attr("axes")
    axes = list(range(rank)) if axes is None else [norm_axis(a, rank) for a in ints(axes)]
    if scales is None and sizes is None:
        raise NetworkError(f"{node.op_type} node {node.name!r}: neither scales nor sizes")
    per = len(axes)
    values = np.asarray(scales if sizes is None else sizes).reshape(-1)
    if values.size != per:
        raise NetworkError(f"{node.op_type} node {node.name!r}: {values.size} scales or sizes for {per} axes")
    crop = mode == "tf_crop_and_resize"
    if crop and roi is None:
        raise NetworkError(f"Resize node {node.name!r}: tf_crop_and_resize without a roi")
    roi = np.asarray(roi, np.float64).reshape(-1) if (crop and roi is not None) else None
    mats, masks, out = {}, {}, list(shape)
    extrapolation = float(node.attr("extrapolation_value", 0.0)) if crop else 0.0
    for i, a in enumerate(axes):
        r = (float(roi[i]), float(roi[i + per])) if roi is not None else None
        if sizes is None:
            sc, sz = float(values[i]), None
            if sc == 1.0 and r in (None, (0.0, 1.0)):
                continue
        else:
            sc, sz = None, int(values[i])
            if sz == shape[a] and r in (None, (0.0, 1.0)):
                continue
        try:
            Y = _probe(node, opset, shape[a], scale=sc, size=sz, roi=r)
            Y0 = _probe(node, opset, shape[a], scale=sc, size=sz, roi=r, zeros=True) if extrapolation else None
        except Exception as e:  # ONNX Runtime refuses this node's attributes on a matrix
            from ..loader import one_line_reason

            raise ctx.unsupported(node, f"ONNX Runtime cannot resize one axis with these attributes: {one_line_reason(e)}")
        if Y.ndim != 2 or Y.shape[0] != shape[a] or Y.shape[1] == 0:
            raise ctx.unsupported(node, f"an axis resize of shape {list(Y.shape)}")
        if Y0 is not None:
            masks[a] = Y0[0] != 0
            Y = Y - Y0
        mats[a], out[a] = Y.T.copy(), Y.shape[1]
    fill = extrapolation * axismap.fill_pattern(out, masks) if masks else None
    return ResizeMap(mats, fill, tuple(out))


@register("Resize", "Upsample")
class ResizeOp(OpHandler):
    def to_torch(self, node, ctx):
        m = resize_map(node, ctx)
        axismap.emit_torch(ctx, node.inputs[0], m.mats, node.outputs[0], m.fill)

    def to_affine(self, node, ctx):
        m = resize_map(node, ctx)
        ctx.set(node.outputs[0], axismap.apply_affine(ctx.sym(node.inputs[0]), m.mats, m.fill))
