"""Rewrite an ONNX model into the form the converters expect (the ORT path never uses this).

A model below opset 11 is raised to opset 13 by onnx's version converter, which is not faithful
everywhere: it turns Upsample (opsets 7-9) and Resize-10 into a Resize-13 with that version's
defaults (half_pixel coordinates, round_prefer_floor), while the old ops sample at x / scale
(asymmetric) and, in nearest mode, round down (floor): with a scale of 1.3, or in linear mode,
the converted model computes another function. Those attributes are set explicitly here; and,
since the converters lower the raised model while every witness is judged on the original, the
raised model is then run beside the original in ONNX Runtime on random inputs: a conversion
that changed what the model computes is an error, never a different network verified in silence
(attributes the converter leaves behind that the new version does not define, such as Pad's
`value` in reflect mode, are dropped for that run; a raised model ONNX Runtime still cannot load
is not compared).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import NetworkError

TARGET_OPSET = 13
CHECK_SAMPLES = 4  # random inputs the raised model is compared on
CHECK_RTOL = 1e-4  # float32 evaluation of the same function in another op order stays far within this


def normalise_model(model):
    """Copy of `model` with initializers removed from the graph inputs and an opset >= 11 (13 when raised)."""
    import onnx
    from onnx import version_converter

    m = onnx.ModelProto()
    m.CopyFrom(model)
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 11:
        # convert first: IR version 3 models need their initializers listed as inputs
        try:
            m = version_converter.convert_version(m, TARGET_OPSET)
        except Exception as e:
            raise NetworkError(f"cannot raise the model from opset {opset} to {TARGET_OPSET}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        _old_resize_semantics(m.graph)
    inits = {t.name for t in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.ir_version = max(m.ir_version, 4)  # IR >= 4 allows initializers that are not inputs
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:
        pass  # shapes are re-derived by the converters from real evaluation
    if opset < 11:
        why = _changed_function(model, m)
        if why:
            raise NetworkError(f"raising the model from opset {opset} to {TARGET_OPSET} changed what it computes ({why}); "
                               f"the converters cannot take it")
    return m


def _old_resize_semantics(graph) -> None:
    """Every Resize of a raised model came from an Upsample or a Resize-10: give it their sampling."""
    from onnx import helper

    for node in graph.node:
        if node.op_type == "Resize":
            have = {a.name: a for a in node.attribute}
            mode = helper.get_attribute_value(have["mode"]) if "mode" in have else b"nearest"
            if "coordinate_transformation_mode" not in have:
                node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
            if mode in (b"nearest", "nearest") and "nearest_mode" not in have:
                node.attribute.append(helper.make_attribute("nearest_mode", "floor"))
        for a in node.attribute:
            if a.g.node:
                _old_resize_semantics(a.g)
            for g in a.graphs:
                _old_resize_semantics(g)


def _without_stale_attributes(model):
    """A copy without the attributes the version converter left behind that the new op version
    does not define (Pad's `value` in reflect or edge mode), so ONNX Runtime loads it."""
    import onnx
    from onnx import defs

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for node in m.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            allowed = set(defs.get_schema(node.op_type, TARGET_OPSET, "").attributes)
        except Exception:
            continue
        stale = [a for a in node.attribute if a.name not in allowed]
        for a in stale:
            node.attribute.remove(a)
    return m


def _changed_function(original, raised) -> Optional[str]:
    """Why the raised model is not the original (in ONNX Runtime, on random inputs), or None."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    opts = ort.RunOptions()
    opts.log_severity_level = 4
    try:
        a = ort.InferenceSession(original.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception:
        return None  # the loader reports a model ONNX Runtime cannot load
    try:
        b = ort.InferenceSession(_without_stale_attributes(raised).SerializeToString(), sess_options=so,
                                 providers=["CPUExecutionProvider"])
    except Exception:
        return None  # not comparable (the converters read the raised graph, not ONNX Runtime)
    rng = np.random.default_rng(0)
    names = {i.name for i in b.get_inputs()}
    for k in range(CHECK_SAMPLES):
        feed = {}
        for i in a.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(i.type, np.float32)
            x = rng.standard_normal(shape) if k % 2 else rng.uniform(-1, 1, shape)
            feed[i.name] = x.astype(dtype)
        try:
            ya = a.run(None, feed, opts)
            yb = b.run(None, {n: v for n, v in feed.items() if n in names}, opts)
        except Exception:
            return None  # an input the model cannot run (the loader's own check covers the zero input)
        for u, v in zip(ya, yb):
            u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
            if u.shape != v.shape:
                return f"output shape {list(v.shape)} instead of {list(u.shape)}"
            tol = CHECK_RTOL * (1.0 + np.nanmax(np.abs(u), initial=0.0))
            ok = np.isclose(u, v, rtol=0.0, atol=tol, equal_nan=True)
            if not ok.all():
                return f"output entries differ by up to {float(np.nanmax(np.abs(u - v))):.3g}"
    return None
