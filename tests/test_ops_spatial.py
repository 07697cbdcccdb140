"""Pad, ConvTranspose, Resize and Upsample (network/ops: pad.py, convtranspose.py, resize.py,
axismap.py): exactly affine, so the torch module and the layer graph agree with ONNX Runtime in
every opset variant that matters (Pad 2/11/13/18/19, Resize 11/13/18/19 in its modes, Upsample
7/9, ConvTranspose with strides, dilations, groups, asymmetric and negative pads,
output_padding, output_shape, auto_pad); verify answers exactly on a net with each."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from helpers import assert_lowerings_agree, box_spec, op_model
from vnncert.network import load_network
from vnncert.network.ops import lowerings

F32, I64 = np.float32, np.int64
pytest.importorskip("torch")


def _xs(net, n=64, seed=1):
    return np.random.default_rng(seed).uniform(-2, 2, (n, net.n_inputs))


def _check(tmp_path, name, nodes, inits, in_shape, opset=13, ir_version=8, layers=True):
    path = op_model(tmp_path / f"{name}.onnx", nodes, inits, in_shape, opset=opset, ir_version=ir_version)
    net = load_network(path, threads=1)
    assert net.layer_graph.n_relus == 0 if layers else True
    assert_lowerings_agree(net, _xs(net), layers=layers)
    return net


def test_registry():
    for op in ("Pad", "ConvTranspose", "Resize", "Upsample"):
        assert lowerings(op)[1:3] == ["to_torch", "to_affine"], op


# ---- Pad -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_pad(tmp_path, mode, opset):
    pads = [0, 0, 1, 2, 0, 0, 2, -1]  # (N, C, H, W): H +1/+2, W +2 at the start, cropped by 1 at the end
    inits = {"pads": np.asarray(pads, I64)}
    ins = ["x", "pads"]
    if mode == "constant":
        inits["v"] = np.asarray(0.75, F32)
        ins.append("v")
    _check(tmp_path, f"pad-{mode}-{opset}", [helper.make_node("Pad", ins, ["y"], mode=mode)], inits, (1, 2, 3, 4), opset)


def test_pad_axes_of_opset_18_and_wrap_of_19(tmp_path):
    inits = {"pads": np.asarray([2, 1], I64), "axes": np.asarray([-1], I64), "v": np.asarray(-1.5, F32)}
    _check(tmp_path, "pad-axes", [helper.make_node("Pad", ["x", "pads", "v", "axes"], ["y"])], inits, (1, 2, 3), 18)
    inits = {"pads": np.asarray([0, 1, 2, 0, 2, 1], I64)}
    _check(tmp_path, "pad-wrap", [helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")], inits, (1, 3, 4), 19)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_of_opset_2_converted(tmp_path, mode):
    """pads and value as attributes (opset 2-10): the model is raised to opset 13 for the converters."""
    node = helper.make_node("Pad", ["x"], ["y"], mode=mode, pads=[0, 0, 1, 0, 0, 0, 0, 2], value=0.5)
    _check(tmp_path, f"pad2-{mode}", [node], {}, (1, 1, 3, 3), opset=9, ir_version=4)


# ---- ConvTranspose -------------------------------------------------------------------------------
CONV_T = [
    ("plain", (1, 3, 4, 4), (3, 2, 3, 3), {}),
    ("stride2", (1, 3, 4, 4), (3, 2, 4, 4), {"strides": [2, 2]}),
    ("pads", (1, 3, 4, 4), (3, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("asymmetric-pads", (1, 2, 4, 5), (2, 2, 3, 3), {"strides": [2, 1], "pads": [0, 2, 1, 0]}),
    ("output-padding", (1, 2, 4, 4), (2, 3, 3, 3), {"strides": [3, 2], "output_padding": [2, 1]}),
    ("dilations", (1, 2, 4, 4), (2, 2, 3, 2), {"dilations": [2, 3], "strides": [1, 2], "pads": [1, 0, 0, 1]}),
    ("groups", (1, 4, 3, 3), (4, 3, 2, 2), {"group": 2, "strides": [2, 2]}),
    ("output-shape", (1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [8, 7]}),
    ("same-upper", (1, 2, 3, 3), (2, 2, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("same-lower", (1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("1d", (1, 2, 5), (2, 3, 3), {"strides": [2], "pads": [1, 0]}),
    ("3d", (1, 1, 2, 3, 2), (1, 2, 2, 2, 2), {"strides": [2, 1, 2]}),
]


@pytest.mark.parametrize("case", CONV_T, ids=[c[0] for c in CONV_T])
def test_conv_transpose(tmp_path, case):
    name, in_shape, w_shape, attrs = case
    rng = np.random.default_rng(3)
    inits = {"W": rng.standard_normal(w_shape).astype(F32), "B": rng.standard_normal(w_shape[1] * attrs.get("group", 1)).astype(F32)}
    _check(tmp_path, name, [helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], **attrs)], inits, in_shape)


# ---- Resize / Upsample ---------------------------------------------------------------------------
RESIZE = [
    ("nearest-half-pixel", 13, {"mode": "nearest"}, [1, 1, 2, 1.5], None),
    ("nearest-asymmetric-floor", 13, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                      "nearest_mode": "floor"}, [1, 1, 2, 3], None),
    ("nearest-align-corners-ceil", 11, {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
                                        "nearest_mode": "ceil"}, None, [1, 2, 5, 7]),
    ("nearest-prefer-ceil-down", 13, {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}, [1, 1, 0.5, 0.75], None),
    ("linear-half-pixel", 13, {"mode": "linear"}, [1, 1, 2, 2], None),
    ("linear-align-corners", 11, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, [1, 2, 7, 5]),
    ("linear-pytorch-half-pixel", 13, {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     [1, 1, 1.5, 0.5], None),
    ("linear-asymmetric", 18, {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 2.5, 1], None),
    ("linear-antialias-down", 18, {"mode": "linear", "antialias": 1}, [1, 1, 0.5, 0.6], None),
    ("cubic", 13, {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, [1, 1, 2, 1.5], None),
    ("linear-half-pixel-symmetric", 19, {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
     [1, 1, 1.7, 2.2], None),
    ("crop-and-resize", 13, {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                             "extrapolation_value": 0.25}, None, [1, 2, 5, 6]),
]


@pytest.mark.parametrize("case", RESIZE, ids=[c[0] for c in RESIZE])
def test_resize(tmp_path, case):
    name, opset, attrs, scales, sizes = case
    inits, ins = {}, ["x"]
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        inits["roi"] = np.asarray([0, 0, -0.2, 0.1, 1, 1, 1.1, 0.8], F32)
        ins.append("roi")
    else:
        ins.append("" if opset >= 13 else "roi")
        if opset < 13:
            inits["roi"] = np.zeros(0, F32)
    if scales is not None:
        inits["scales"] = np.asarray(scales, F32)
        ins.append("scales")
    else:
        if opset < 13:
            inits["scales"] = np.zeros(0, F32)
        ins += ["scales" if opset < 13 else "", "sizes"]
        inits["sizes"] = np.asarray(sizes, I64)
    _check(tmp_path, name, [helper.make_node("Resize", ins, ["y"], **attrs)], inits, (1, 2, 4, 3), opset)


def test_resize_axes_of_opset_18(tmp_path):
    inits = {"scales": np.asarray([3.0], F32)}
    _check(tmp_path, "axes", [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", axes=[2])],
           inits, (1, 2, 3, 4), 18)


@pytest.mark.parametrize("opset,mode", [(7, "nearest"), (9, "nearest"), (9, "linear")])
def test_upsample(tmp_path, opset, mode):
    """Upsample (opsets 7 and 9) reaches the converters as the Resize the model is raised to."""
    if opset == 7:
        node = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=[1.0, 1.0, 2.0, 3.0])
        inits = {}
    else:
        node = helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)
        inits = {"s": np.asarray([1.0, 1.0, 2.0, 3.0], F32)}
    _check(tmp_path, f"up{opset}-{mode}", [node], inits, (1, 2, 3, 2), opset=opset, ir_version=4)


def test_resize_with_computed_scales_is_refused_by_name(tmp_path):
    from vnncert.errors import UnsupportedOperator

    inits = {"base": np.asarray([1.0, 1.0, 1.0], F32), "ax": np.asarray([0], I64)}
    nodes = [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),  # a scale computed from x
             helper.make_node("Abs", ["m"], ["a"]),
             helper.make_node("Add", ["a", "base"], ["s0"]),
             helper.make_node("Unsqueeze", ["s0", "ax"], ["s1"]),
             helper.make_node("Concat", ["s1"], ["s"], axis=0),
             helper.make_node("Reshape", ["s", "four"], ["scales"]),
             helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs")]
    inits["four"] = np.asarray([3], I64)
    net = load_network(op_model(tmp_path / "rs.onnx", nodes, inits, (1, 1, 2), out_shape=(1, 1, 2)), threads=1)
    with pytest.raises(UnsupportedOperator, match=r"Resize \(node 'rs'\).*computed from the input"):
        _ = net.layer_graph


# ---- verify --------------------------------------------------------------------------------------
def test_verify_through_pad_resize_and_conv_transpose(tmp_path):
    """y = sum of a ConvTranspose of the nearest-upsampled, edge-padded 2x2 input with all-one
    weights: every output is a positive combination of the inputs, so on [0, 1]^4 y >= 0 always
    (y <= -0.01 is unsat) and y reaches its maximum at x = 1 (sat just below it)."""
    from vnncert.api import verify

    inits = {"pads": np.asarray([0, 0, 1, 0, 0, 0, 0, 1], I64), "scales": np.asarray([1, 1, 2, 2], F32),
             "W": np.ones((1, 1, 2, 2), F32)}
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="edge"),
             helper.make_node("Resize", ["p", "", "scales"], ["r"], mode="nearest"),
             helper.make_node("ConvTranspose", ["r", "W"], ["c"], strides=[2, 2]),
             helper.make_node("ReduceSum", ["c"], ["s"], keepdims=0),
             helper.make_node("Reshape", ["s", "shape"], ["y"])]
    inits["shape"] = np.asarray([1, 1], I64)
    model = op_model(tmp_path / "spatial.onnx", nodes, inits, (1, 1, 2, 2))
    net = load_network(model, threads=1)
    top = float(net.evaluate(np.ones((1, 4)))[0, 0])
    unsat, sat = tmp_path / "u.vnnlib", tmp_path / "s.vnnlib"
    unsat.write_text(box_spec([0.0] * 4, [1.0] * 4, [["(<= Y_0 -0.01)"]], 1))
    sat.write_text(box_spec([0.0] * 4, [1.0] * 4, [[f"(>= Y_0 {top - 0.5!r})"]], 1))
    for mode in ("exact", "relaxed"):
        out = verify(model, str(unsat), mode=mode, timeout=60, threads=1)
        assert out.verdict.value == "unsat" and out.engine == mode, (mode, out.verdict, out.detail)
    out = verify(model, str(sat), mode="exact", timeout=60, threads=1)
    assert out.verdict.value == "sat", (out.verdict, out.detail)
