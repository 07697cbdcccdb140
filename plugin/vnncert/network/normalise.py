"""Rewrite an ONNX model into the form the converters expect (the ORT path never uses this)."""
from __future__ import annotations

from ..errors import NetworkError

TARGET_OPSET = 13


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
    inits = {t.name for t in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.ir_version = max(m.ir_version, 4)  # IR >= 4 allows initializers that are not inputs
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:
        pass  # shapes are re-derived by the converters from real evaluation
    return m
