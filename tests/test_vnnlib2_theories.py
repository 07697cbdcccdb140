"""Every theory of the VNN-LIB 2.0 standard (chapter 4), answered: a sat and an unsat query per theory on
small models made here, whose answers are known in closed form, through the Python API and the standard
command line. Every sat witness is checked independently: its inputs are run through ONNX Runtime on the
original files (not vnncert's code), and the query's condition is evaluated on those values.

The models (weights chosen so the closed forms are short), on the box x in [0, 1]^2:
  f(x) = W2 relu(W1 x), W1 = [[1, 1], [1, -1]], W2 = [[1, 0.5], [0, 1]]: hidden h0 = relu(x0 + x1, x0 - x1),
         y0 = x0 + x1 + 0.5 relu(x0 - x1) in [0, 2], y1 = relu(x0 - x1) in [0, 1]
  g    = f with W2[1, 1] = 1.1: g1(x) - f1(x) = 0.1 relu(x0 - x1) in [0, 0.1]
  k(x) = x (one Gemm), a network of another structure
  m(a, b) = (relu(a - b), a + b) with two inputs and two outputs (a, b in R^2)
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import mlp_onnx

import vnncert
from vnncert.api import named_assignment
from vnncert.cli import standard

HEAD = "(vnnlib-version <2.0>)\n"
W1 = np.array([[1.0, 1.0], [1.0, -1.0]])
W2 = np.array([[1.0, 0.5], [0.0, 1.0]])
W2G = np.array([[1.0, 0.5], [0.0, 1.1]])


def _mio_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 2])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 2])
    t = helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 2])
    nodes = [helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Relu", ["d"], ["s"]),
             helper.make_node("Add", ["a", "b"], ["t"])]
    m = helper.make_model(helper.make_graph(nodes, "mio", [a, b], [s, t]), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("theories")
    return {
        "f": mlp_onnx(d / "f.onnx", [(W1, np.zeros(2)), (W2, np.zeros(2))], batch_symbolic=False),
        "g": mlp_onnx(d / "g.onnx", [(W1, np.zeros(2)), (W2G, np.zeros(2))], batch_symbolic=False),
        "k": mlp_onnx(d / "k.onnx", [(np.eye(2), np.zeros(2))], batch_symbolic=False),
        "m": _mio_onnx(d / "m.onnx"),
    }


def net(name, t="float32", extra="", x="X", y="Y", eq=""):
    return (f"(declare-network {name}{eq} (declare-input {x} {t} [1,2]){extra} (declare-output {y} {t} [1,2]))\n")


def box(*names, lo="0.0", hi="1.0"):
    return "".join(f"(assert (and (>= {v}[0,{i}] {lo}) (<= {v}[0,{i}] {hi})))\n" for v in names for i in range(2))


# an unsat query whose margin is 0 somewhere cannot be proven with the bounds' margin rule
# (docs/architecture.md): these boxes keep the unsat answers 0.2 away from it
BOX_X1 = "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.2) (<= X[0,1] 1.0)))\n"
TIE_XA = "(assert (== X[0,0] A[0,0]))\n(assert (== X[0,1] A[0,1]))\n"


def _f(x, w2=W2):
    return w2 @ np.maximum(W1 @ x, 0.0)


# theory -> (networks the query declares -> model key, the query without its last assert, the sat assert,
#            the unsat assert, condition on the witness's values (named_assignment) for the sat query)
CASES = {
    "BND": ({"f": "f"}, HEAD + net("f") + box("X"), "(assert (>= Y[0,0] 1.9))\n", "(assert (> Y[0,0] 2.5))\n",
            lambda v: v["Y"][0, 0] >= np.float32(1.9)),
    # x1 >= 0.2: y0 - y1 = x0 + x1 - 0.5 relu(x0 - x1) >= 0.4
    "OUTC": ({"f": "f"}, HEAD + net("f") + BOX_X1, "(assert (>= Y[0,0] Y[0,1]))\n", "(assert (>= Y[0,1] Y[0,0]))\n",
             lambda v: v["Y"][0, 0] >= v["Y"][0, 1]),
    "LIN-real": ({"f": "f"}, HEAD + net("f", "real") + box("X"), "(assert (>= (+ Y[0,0] Y[0,1]) 2.4))\n",
                 "(assert (>= (+ Y[0,0] Y[0,1]) 3.0))\n", lambda v: v["Y"][0, 0] + v["Y"][0, 1] >= 2.4),
    "LIN-float32": ({"f": "f"}, HEAD + net("f") + box("X"), "(assert (>= (+ Y[0,0] Y[0,1] (* -0.5 Y[0,1])) 1.9))\n",
                    "(assert (>= (+ Y[0,0] Y[0,1] (* -0.5 Y[0,1])) 2.5))\n",
                    lambda v: np.float32(np.float32(v["Y"][0, 0] + v["Y"][0, 1]) + np.float32(-0.5) * v["Y"][0, 1])
                    >= np.float32(1.9)),
    "POLY-real": ({"f": "f"}, HEAD + net("f", "real") + box("X"), "(assert (>= (* Y[0,0] Y[0,1]) 1.2))\n",
                  "(assert (>= (* Y[0,0] Y[0,1]) 2.5))\n", lambda v: v["Y"][0, 0] * v["Y"][0, 1] >= 1.2),
    "POLY-float32": ({"f": "f"}, HEAD + net("f") + box("X"), "(assert (>= (* Y[0,0] Y[0,1] 2.0) 2.4))\n",
                     "(assert (>= (* Y[0,0] Y[0,1] 2.0) 5.0))\n",
                     lambda v: np.float32(np.float32(v["Y"][0, 0] * v["Y"][0, 1]) * np.float32(2.0)) >= np.float32(2.4)),
    "H": ({"f": "f"}, HEAD + net("f", extra=' (declare-hidden Z float32 [1,2] "h0")') + box("X"),
          "(assert (>= Z[0,0] 1.9))\n", "(assert (> Z[0,0] 2.5))\n", lambda v: v["Z"][0, 0] >= np.float32(1.9)),
    "MIO": ({"m": "m"}, HEAD + "(declare-network m (declare-input P float32 [1,2]) (declare-input Q float32 [1,2]) "
            "(declare-output S float32 [1,2]) (declare-output T float32 [1,2]))\n" + box("P", "Q"),
            "(assert (and (>= S[0,0] 0.9) (<= T[0,1] 0.1)))\n", "(assert (>= S[0,0] 1.5))\n",
            lambda v: v["S"][0, 0] >= np.float32(0.9) and v["T"][0, 1] <= np.float32(0.1)),
    # x1 >= 0.2: y0 - x0 = x1 + 0.5 relu(x0 - x1) >= 0.2, while y1 = relu(x0 - x1) < x0
    "MNC": ({"f": "f"}, HEAD + net("f") + BOX_X1, "(assert (< Y[0,1] X[0,0]))\n", "(assert (<= Y[0,0] X[0,0]))\n",
            lambda v: v["Y"][0, 1] < v["X"][0, 0]),
    # f and its copy on x and on a, a0 >= x0 + 0.1, a1 = x1: y0 grows with slope >= 1 in x0, y1 does not fall
    "MENET": ({"f": "f", "c": None}, HEAD + net("f") + net("c", x="A", y="B", eq=" (equal-to f)")
              + "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 0.5) (>= A[0,0] 0.6) (<= A[0,0] 1.0)))\n"
              + "(assert (and (>= X[0,1] 0.0) (<= X[0,1] 1.0) (== X[0,1] A[0,1])))\n",
              "(assert (>= Y[0,1] B[0,1]))\n", "(assert (>= Y[0,0] B[0,0]))\n", lambda v: v["Y"][0, 1] >= v["B"][0, 1]),
    # g isomorphic to f: g1 - f1 = 0.1 relu(x0 - x1) <= 0.1 on the shared input
    "MINET": ({"f": "f", "g": "g"}, HEAD + net("f", "real") + net("g", "real", x="A", y="B", eq=" (isomorphic-to f)")
              + box("X") + TIE_XA, "(assert (> (- B[0,1] Y[0,1]) 0.05))\n", "(assert (> (- B[0,1] Y[0,1]) 0.2))\n",
              lambda v: v["B"][0, 1] - v["Y"][0, 1] > 0.05),
    # f against k(x) = x: f0 - k0 = x1 + 0.5 relu(x0 - x1) in [0, 1]
    "MNET": ({"f": "f", "k": "k"}, HEAD + net("f") + net("k", x="A", y="B") + box("X") + TIE_XA,
             "(assert (>= (- Y[0,0] B[0,0]) 0.9))\n", "(assert (> (- Y[0,0] B[0,0]) 1.5))\n",
             lambda v: np.float32(v["Y"][0, 0] - v["B"][0, 0]) >= np.float32(0.9)),
}


def _networks(case, models):
    decl, *_ = CASES[case]
    return {name: models[key] for name, key in decl.items() if key is not None}


def _write(tmp_path, case, which):
    decl, head, sat, unsat, _ = CASES[case]
    q = tmp_path / f"{case}_{which}.vnnlib"
    q.write_text(head + (sat if which == "sat" else unsat))
    return q


def _replayed_independently(case, models, values):
    """The witness's inputs through ONNX Runtime on the original files (outside vnncert): its declared
    hidden nodes and outputs must be what the files compute."""
    import onnx
    import onnxruntime as ort

    decl, head, *_ = CASES[case]
    from vnncert.spec.vnnlib2 import read_query

    q = read_query(head + "(assert (<= 0.0 1.0))\n", "q")
    for n in q.networks:
        path = models[decl[n.name] if decl[n.name] is not None else decl[n.equal_to]]
        m = onnx.load(path)
        for h in n.hidden:
            m.graph.output.append(onnx.helper.make_tensor_value_info(h.onnx_name, onnx.TensorProto.FLOAT, None))
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {i.name: np.asarray(values[d.name], np.float32) for i, d in zip(sess.get_inputs(), n.inputs)}
        outs = sess.run([o.name for o in m.graph.output], feeds)
        names = [d.name for d in n.outputs] + [d.name for d in n.hidden]
        for name, got in zip(names, outs):
            assert np.array_equal(np.asarray(values[name], np.float32), got), (case, name, values[name], got)


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_sat_and_unsat(tmp_path, models, case):
    networks = _networks(case, models)
    out = vnncert.verify_query(str(_write(tmp_path, case, "unsat")), networks, timeout=60, threads=1)
    assert out.verdict.value == "unsat", (case, out.detail)
    q = _write(tmp_path, case, "sat")
    out = vnncert.verify_query(str(q), networks, timeout=60, threads=1)
    assert out.verdict.value == "sat", (case, out.detail)
    values = named_assignment(out, str(q))
    assert CASES[case][4](values), (case, values)
    _replayed_independently(case, models, values)


@pytest.mark.parametrize("case", ["H", "MIO", "MNC", "MENET", "MINET", "MNET", "POLY-float32", "LIN-real"])
def test_standard_command_line_sat_and_unsat(tmp_path, models, case, capsys):
    argv = [a for name, path in _networks(case, models).items() for a in ("--network", f"{name}={path}")]
    assert standard.main(["verify", str(_write(tmp_path, case, "unsat")), *argv, "--threads", "1"]) == 0
    assert capsys.readouterr().out == "unsat\n"
    q = _write(tmp_path, case, "sat")
    assert standard.main(["verify", str(q), *argv, "--threads", "1"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == "sat"
    from vnncert.spec.vnnlib2 import read_query

    values, k = {}, 1
    for d in read_query(q.read_text(), "q").declarations:  # every declared variable, in declaration order
        assert lines[k] == d.header()
        values[d.name] = np.array([float(v) for v in lines[k + 1:k + 1 + d.size]]).reshape(d.shape)
        k += 1 + d.size
    assert lines[k:] == [""]
    assert CASES[case][4](values), (case, values)
    _replayed_independently(case, models, values)


def test_poly_in_exact_mode_says_why(tmp_path, models):
    """--mode exact cannot encode a product of two variables in the MILP: the router names the node and
    the reason (a sat query is still answered by the falsifier that leads the exact engine)."""
    out = vnncert.verify_query(str(_write(tmp_path, "POLY-real", "unsat")), _networks("POLY-real", models),
                               mode="exact", timeout=60, threads=1)
    assert out.verdict.value == "unknown" and "product of two variable tensors" in out.detail, out.detail
    assert "no MILP encoding" in out.detail, out.detail
    out = vnncert.verify_query(str(_write(tmp_path, "POLY-real", "sat")), _networks("POLY-real", models),
                               mode="exact", timeout=60, threads=1)
    assert out.verdict.value == "sat", out.detail


def test_serialise_assignments_names_every_declared_variable(tmp_path, models, capsys):
    """--serialise-assignments DIR: one TensorProto per declared variable of every network (hidden node
    included), in its declared shape and type; stdout holds the result line only."""
    from onnx import numpy_helper

    q = tmp_path / "q.vnnlib"
    q.write_text(HEAD + net("f", extra=' (declare-hidden Z float32 [1,2] "h0")') + net("g", x="A", y="B") + box("X")
                 + TIE_XA + "(assert (> (- B[0,1] Y[0,1]) 0.05))\n")
    out = tmp_path / "out"
    assert standard.main(["verify", str(q), "--network", f"f={models['f']}", "--network", f"g={models['g']}",
                          "--serialise-assignments", str(out), "--threads", "1"]) == 0
    assert capsys.readouterr().out == "sat\n"
    arrays = {p.stem: numpy_helper.to_array(__import__("onnx").load_tensor(str(p))) for p in out.glob("*.pb")}
    assert sorted(arrays) == ["A", "B", "X", "Y", "Z"]
    assert all(a.shape == (1, 2) and a.dtype == np.float32 for a in arrays.values())
    assert np.array_equal(arrays["X"], arrays["A"]) and arrays["B"][0, 1] - arrays["Y"][0, 1] > np.float32(0.05)
    assert np.array_equal(arrays["Z"][0], np.maximum(W1 @ arrays["X"][0].astype(np.float64), 0).astype(np.float32))


def test_vnncomp_form_on_a_model_with_two_inputs(tmp_path, models):
    """A 1.0 property on a model with several inputs and outputs: X_i over its inputs concatenated in the
    model's order (a: X_0, X_1; b: X_2, X_3), Y_j over its outputs (s: Y_0, Y_1; t: Y_2, Y_3)."""
    from helpers import box_spec

    prop = tmp_path / "p.vnnlib"
    # s0 = relu(a0 - b0) >= 0.9 needs a0 near 1 and b0 near 0; t1 = a1 + b1 <= 0.1
    prop.write_text(box_spec([0, 0, 0, 0], [1, 1, 1, 1], [["(>= Y_0 0.9)", "(<= Y_3 0.1)"]], 4))
    out = vnncert.verify(models["m"], str(prop), timeout=60, threads=1)
    assert out.verdict.value == "sat", out.detail
    x, y = out.counterexample
    assert y[0] == max(np.float32(x[0] - x[2]), 0) and y[3] == np.float32(x[1] + x[3])
    prop.write_text(box_spec([0, 0, 0, 0], [1, 1, 1, 1], [["(>= Y_0 1.5)"]], 4))
    assert vnncert.verify(models["m"], str(prop), timeout=60, threads=1).verdict.value == "unsat"


def test_float_arithmetic_is_the_querys_own(tmp_path, models):
    """y = x with x0 = 1 and x1 = 2**-24 fixed: in float32, y0 + y1 rounds to 1 (ties to even), so
    `(> (+ Y[0,0] Y[0,1]) 1.0)` is false; over real it is true. The float32 query is never sat, the real
    one is (its witness checked exactly)."""
    tiny = "0.000000059604644775390625"
    for etype, expected in (("float32", ("unknown", "unsat")), ("real", ("sat",))):
        q = tmp_path / f"{etype}.vnnlib"
        q.write_text(HEAD + net("k", etype) + f"(assert (and (>= X[0,0] 1.0) (<= X[0,0] 1.0) (>= X[0,1] {tiny}) "
                     f"(<= X[0,1] {tiny})))\n(assert (> (+ Y[0,0] Y[0,1]) 1.0))\n")
        out = vnncert.verify_query(str(q), {"k": models["k"]}, timeout=30, threads=1)
        assert out.verdict.value in expected, (etype, out.verdict, out.detail)
