"""VNN-LIB 2.0 queries -> the Spec normal form: every construct of the grammar we accept, clean errors for the
rest, and the same answers as the 1.0 text of the same property (2.0 text generated here, never committed)."""
import numpy as np
import pytest

from conftest import SPECS
from helpers import mlp_onnx

from vnncert import load_network
from vnncert.errors import SpecError
from vnncert.signature import Signature, TensorSignature
from vnncert.spec import detect_version, load_spec, parse_spec
from vnncert.spec.vnnlib2 import (SOUND_ELEMENT_TYPES, THEORIES, format_number, parse_vnnlib2, read_query,
                                  round_to_type, spec_to_vnnlib2)

HEAD = "(vnnlib-version <2.0>)\n"


def net(x="X float32 [1,2]", y="Y float32 [3]", name="f", extra=""):
    return HEAD + f"(declare-network {name}\n  (declare-input {x})\n{extra}  (declare-output {y}))\n"


BOX = "(assert (>= X[0,0] 0.0))\n(assert (<= X[0,0] 1.0))\n(assert (>= X[0,1] -1.0))\n(assert (<= X[0,1] 1.0))\n"


def parse(text, **kw):
    return parse_vnnlib2(text, "q.vnnlib", **kw)


def rows(hs):
    return [(list(a), float(b), bool(s)) for a, b, s in zip(hs.A, hs.b, hs.strict)]


def error(text, **kw):
    with pytest.raises(SpecError) as e:
        parse(text, **kw)
    return str(e.value)


# ---- structure ----------------------------------------------------------------------------------
def test_version_detection_and_dispatch():
    text = net() + BOX + "(assert (<= Y[0] 0.5))\n"
    assert detect_version(text) == "2.0"
    spec = parse_spec(text, where="q.vnnlib")
    assert spec.version == "2.0" and spec.n_inputs == 2 and spec.n_outputs == 3


def test_indices_are_flat_c_order_over_any_shape():
    text = HEAD + ("(declare-network f (declare-input X float32 [2,3,2]) (declare-output Y float32 []))\n"
                   + "".join(f"(assert (>= X[{i},{j},{k}] {format_number(-(i * 6 + j * 2 + k) - 0.5)}))\n"
                             f"(assert (<= X[{i},{j},{k}] {format_number(i * 6 + j * 2 + k + 0.5)}))\n"
                             for i in range(2) for j in range(3) for k in range(2))
                   + "(assert (<= Y 0.0))\n")
    spec = parse(text)
    assert spec.n_inputs == 12 and spec.n_outputs == 1
    r = spec.cases[0].region
    assert np.array_equal(r.upper, np.arange(12) + 0.5) and np.array_equal(r.lower, -np.arange(12) - 0.5)
    assert rows(spec.cases[0].output[0]) == [([1.0], 0.0, False)]
    d = spec.declarations["variables"]
    assert [(v["name"], v["kind"], v["element_type"], v["shape"]) for v in d] == [
        ("X", "input", "float32", [2, 3, 2]), ("Y", "output", "float32", [])]


def test_every_comparison_and_connective():
    text = net() + BOX + """; a comment
(assert (or (<= Y[0] Y[1])
            (and (< Y[2] 0.5) (> Y[0] -0.25))
            (>= Y[1] Y[2])
            (== Y[0] 0.75)
            (!= Y[2] 1.5)))
"""
    spec = parse(text)
    assert len(spec.cases) == 1
    out = [rows(h) for h in spec.cases[0].output]
    assert out == [
        [([1, -1, 0], 0.0, False)],
        [([0, 0, 1], 0.5, True), ([-1, 0, 0], 0.25, True)],
        [([0, -1, 1], 0.0, False)],
        [([1, 0, 0], 0.75, False), ([-1, 0, 0], -0.75, False)],
        [([0, 0, 1], 1.5, True)], [([0, 0, -1], -1.5, True)],  # != : the disjunction of < and >
    ]


def test_strict_input_bounds_are_kept():
    text = net() + "(assert (> X[0,0] 0.0))\n(assert (< X[0,0] 1.0))\n(assert (>= X[0,1] 0.0))\n(assert (<= X[0,1] 1.0))\n" \
        "(assert (<= Y[0] 0.0))\n"
    r = parse(text).cases[0].region
    assert list(r.lower_strict) == [True, False] and list(r.upper_strict) == [True, False]
    assert r.contains(np.array([[0.5, 1.0]]))[0] and not r.contains(np.array([[0.0, 0.5]]))[0]


def test_asserts_multiply_out_and_input_disjuncts_become_cases():
    text = net() + """(assert (or (and (>= X[0,0] 0.0) (<= X[0,0] 0.5)) (and (>= X[0,0] 0.5) (<= X[0,0] 1.0))))
(assert (>= X[0,1] 0.0))
(assert (<= X[0,1] 1.0))
(assert (or (<= Y[0] 0.0) (<= Y[1] 0.0)))
"""
    spec = parse(text)
    assert len(spec.cases) == 2
    assert [list(c.region.upper) for c in spec.cases] == [[0.5, 1.0], [1.0, 1.0]]
    assert all(len(c.output) == 2 for c in spec.cases)


def test_float_types_read_constants_in_the_declared_type():
    text = net() + "(assert (>= X[0,0] -0.1))\n(assert (<= X[0,0] 0.1))\n(assert (>= X[0,1] 0.0))\n" \
        "(assert (<= X[0,1] 0.7004349250))\n(assert (<= Y[0] 0.3))\n"
    r32 = parse(text).cases[0]
    assert r32.region.upper[0] == float(np.float32(0.1)) and r32.region.lower[0] == -float(np.float32(0.1))
    assert r32.region.upper[1] == float(np.float32(0.700434925))
    assert r32.output[0].b[0] == float(np.float32(0.3))
    r64 = parse(text.replace("float32", "float64")).cases[0]
    assert r64.region.upper[0] == 0.1 and r64.output[0].b[0] == 0.3
    rr = parse(text.replace("float32", "real")).cases[0]
    assert rr.region.upper[0] == 0.1


def test_round_to_float32_is_correctly_rounded_even_past_double_rounding():
    one = np.float32(1.0)
    up = np.nextafter(one, np.float32(2))
    mid = (float(one) + float(up)) / 2
    # a decimal just above the float32 midpoint whose nearest double IS the midpoint: float32(float(s)) is wrong
    s = repr(mid) + "0000000000000000001"
    assert float(s) == mid and float(np.float32(float(s))) == float(one)
    assert round_to_type(s, "float32") == float(up)
    assert round_to_type("1.000000059604644775390625", "float32") == float(one)  # exact tie: to even
    assert round_to_type("0.1", "float64") == 0.1


def test_exact_float_forms_signs_and_unit_factors():
    text = net() + BOX + """(assert (or (<= (- Y[0] Y[1]) 0.0) (>= 0.0 (+ Y[1] (- Y[2]))) (<= (* -1.0 Y[2]) 0.5)
                (<= (- Y[0]) (* 1.0 Y[1])) (< (+ Y[0] (* -1.0 Y[2])) 0.0) (<= (+ Y[1]) -0.5)))
"""
    out = [rows(h) for h in parse(text).cases[0].output]
    assert out == [[([1, -1, 0], 0.0, False)], [([0, 1, -1], 0.0, False)], [([0, 0, -1], 0.5, False)],
                   [([-1, -1, 0], 0.0, False)], [([1, 0, -1], 0.0, True)], [([0, 1, 0], -0.5, False)]]


def test_linear_arithmetic_over_real():
    text = net("X real [1,2]", "Y real [3]") + BOX + """(assert (<= (+ (* 0.5 X[0,0]) (* 2.0 X[0,1]) 0.25) 1.0))
(assert (>= (- Y[0] (* 3.0 Y[1]) 1.0 Y[2]) (* 2.0 (- 0.5))))
"""
    c = parse(text).cases[0]
    assert c.region.G.tolist() == [[0.5, 2.0]] and c.region.h.tolist() == [0.75]
    # (Y0 - 3 Y1 - 1 - Y2) >= -1  <=>  -Y0 + 3 Y1 + Y2 <= 0
    assert rows(c.output[0]) == [([-1.0, 3.0, 1.0], 0.0, False)]


def test_contradictory_disjuncts_are_dropped_and_constants_evaluated():
    text = net() + """(assert (or (and (<= X[0,0] 0.0) (>= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0))
            (and (<= X[0,0] 1.0) (>= X[0,0] 0.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0) (<= 1.0 0.0))
            (and (<= X[0,0] 1.0) (>= X[0,0] 0.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0) (<= 0.0 1.0))))
(assert (<= Y[0] 0.0))
"""
    spec = parse(text)
    assert len(spec.cases) == 1 and rows(spec.cases[0].output[0]) == [([1, 0, 0], 0.0, False)]
    empty = parse(net() + BOX + "(assert (and (== X[0,0] 0.5) (!= X[0,0] 0.5)))\n(assert (<= Y[0] 0.0))\n")
    assert empty.cases == []  # unsatisfiable by its own text


def test_a_single_conjunction_with_an_empty_box_is_an_error_as_in_1_0():
    """The shared case assembly (spec/cases.py): among several disjuncts an empty box is dropped
    (above); a query that is one conjunction with an empty box is an error, positioned as in 1.0."""
    msg = error(net() + BOX + "(assert (>= X[0,0] 2.0))\n(assert (<= Y[0] 0.0))\n")
    assert msg.startswith("q.vnnlib:9:13: empty input box: X[0,0] has lower bound 2.0 above upper bound 1.0"), msg
    assert "(the other bound is at line 6, column 13)" in msg
    msg = error(net() + BOX + "(assert (< X[0,1] 1.0))\n(assert (>= X[0,1] 1.0))\n(assert (<= Y[0] 0.0))\n")
    assert "empty input box: X[0,1] has lower and upper bound 1.0 and one of them strict" in msg


def test_package_warnings_are_kept_not_printed(capfd):
    text = net().replace("<2.0>", "<2.1>") + BOX + "(assert (<= Y[0] 0.0))\n"
    spec = parse(text)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert spec.declarations["version"] == "2.1"
    assert any("q.vnnlib:1:" in w and "warning" in w for w in spec.declarations["warnings"])


def test_declarations_in_order_and_networks_needing_models():
    text = HEAD + """(declare-network f (declare-input A float32 [2,2]) (declare-output B float32 [1]))
(declare-network g (equal-to f) (declare-input C float32 [2,2]) (declare-output D float32 [1]))
(assert (<= A[0,0] C[0,0]))
"""
    q = read_query(text, "q.vnnlib")
    assert [d.header() for d in q.declarations] == ["A float32 [2,2]", "B float32 [1]", "C float32 [2,2]", "D float32 [1]"]
    assert q.networks_needing_models() == ["f"] and q.networks[1].equal_to == "f"


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,needles", [
    (net() + "(assert (<= X[0,0] 1e5))\n", ["q.vnnlib:5:21:", "no exponent"]),
    (net() + "(assert (<= X[0,0] 1.0)\n", ["q.vnnlib:", "syntax error"]),
    (net() + "(assert (<= X[0,0] 1))\n", ["q.vnnlib:5:20:", "Type mismatch"]),
    (net() + "(assert (<= X[0,0] Z))\n", ["q.vnnlib:5:20:", "Undeclared"]),
    (net() + "(assert (<= X[0,2] 1.0))\n", ["q.vnnlib:5:13:", "out of bounds"]),
    (net() + "(assert (<= X[0] 1.0))\n", ["q.vnnlib:5:13:", "indices"]),
    (net().replace("<2.0>", "<3.0>") + "(assert (<= X[0,0] 1.0))\n", ["q.vnnlib:1:", "version"]),
    # the theories beyond one network's box and outputs parse (tests/test_vnnlib2_theories.py); what stays an error:
    (net() + "(declare-network f (declare-input U float32 [1]) (declare-output W float32 [1]))\n" + BOX
     + "(assert (<= Y[0] W[0]))\n", ["q.vnnlib:5:1:", "network f is declared twice"]),
    (net("X real [1,2]", "Y real [30]") + BOX + "(assert (<= (*" + "".join(
        " (+ " + " ".join(f"Y[{j}]" for j in range(30)) + ")" for _ in range(4)) + ") 1.0))\n",
     ["q.vnnlib:9:", "more than 10000 monomials"]),
    (net("X float16 [1,2]", "Y float16 [3]") + BOX + "(assert (<= Y[0] 0.0))\n",
     ["q.vnnlib:3:3:", "float16", "cannot analyse soundly", "`real`"]),
    (net("X int32 [1,2]", "Y int32 [3]") + "(assert (<= X[0,0] 1))\n", ["int32", "cannot analyse soundly"]),
    (net() + "(assert (<= X[0,0] 1.0))\n(assert (>= X[0,0] 0.0))\n(assert (<= X[0,1] 1.0))\n(assert (<= Y[0] 0.0))\n",
     ["input X[0,1] has no lower bound"]),
])
def test_clean_errors(text, needles):
    msg = error(text)
    for n in needles:
        assert n in msg, msg
    assert "\n" not in msg and "{" not in msg  # one line, no raw JSON


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    d = tmp_path_factory.mktemp("v2")
    W = [(np.array([[1.0, 1.0], [1.0, -1.0], [0.5, 0.0]]), np.zeros(3))]
    return load_network(mlp_onnx(d / "lin.onnx", W))  # input [N,2] (N symbolic), output [N,3]


def test_types_and_shapes_checked_against_the_model(small_net):
    ok = net("X float32 [1,2]", "Y float32 [1,3]") + BOX + "(assert (<= Y[0,0] 0.0))\n"
    assert parse(ok, signature=small_net.signature).n_inputs == 2
    msg = error(ok.replace("float32", "float64"), signature=small_net.signature)
    assert "declared float64" in msg and "is float32" in msg
    assert "shape [3]" in error(net() + BOX + "(assert (<= Y[0] 0.0))\n", signature=small_net.signature)
    msg = error(net("X float32 [4,2]", "Y float32 [4,3]") + BOX + "(assert (<= Y[0,0] 0.0))\n", signature=small_net.signature)
    assert "dynamic dimension" in msg
    real = (net("X real [1,2]", "Y real [1,3]") + BOX + "(assert (<= Y[0,0] 0.0))\n")
    assert parse(real, signature=small_net.signature).declarations["real"] is True
    mixed = net("X real [1,2]", "Y float32 [1,3]") + BOX + "(assert (<= Y[0,0] 0.0))\n"
    assert "mixes `real`" in error(mixed, signature=small_net.signature)


def test_the_parser_knows_the_model_by_its_signature_only(small_net):
    """`Network.signature` is a small value (names, shapes with symbolic dims as 1, element types);
    a hand-made one checks a query exactly as the model's does (spec/ never sees the Network)."""
    sig = small_net.signature
    made = Signature((TensorSignature("x", (1, 2), "float32", (True, False)),),
                     (TensorSignature("y", (1, 3), "float32", (True, False)),), "lin.onnx")
    assert sig == made and (sig.n_inputs, sig.n_outputs) == (2, 3) and small_net.signature is sig
    ok = net("X float32 [1,2]", "Y float32 [1,3]") + BOX + "(assert (<= Y[0,0] 0.0))\n"
    assert parse(ok, signature=made).n_inputs == 2
    for bad in (net("X float32 [4,2]", "Y float32 [4,3]"), net("X float64 [1,2]", "Y float64 [1,3]")):
        q = bad + BOX + "(assert (<= Y[0,0] 0.0))\n"
        assert error(q, signature=made) == error(q, signature=sig)
    assert "lin.onnx" in error(net("X float32 [2]", "Y float32 [1,3]") + "(assert (<= Y[0,0] 0.0))\n", signature=made)
    # 1.0: the counts come from the signature
    one = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= Y_0 0))\n"
    with pytest.raises(SpecError, match="property declares 1 inputs .* but the network has 2"):
        parse_spec(one, where="p.vnnlib", signature=made)
    assert parse_spec(one, where="p.vnnlib", signature=Signature.flat(1, 1)).n_inputs == 1


def test_theories_are_every_theory_of_the_standard():
    """Every theory of chapter 4 is accepted (tests/test_vnnlib2_theories.py answers each); float16
    and the integer types stay refused unless the query is over `real`."""
    assert THEORIES["hidden-node"] == ("NH", "H") and THEORIES["multiple-network"] == ("SNET", "MENET", "MINET", "MNET")
    assert THEORIES["multiple-input-output"] == ("SIO", "MIO") and THEORIES["multiple-node-comparison"] == ("SNC", "MNC")
    assert THEORIES["arithmetic-complexity"] == ("BND", "OUTC", "LIN", "POLY") and "float16" not in SOUND_ELEMENT_TYPES


# ---- 1.0 and 2.0 texts of the same property ---------------------------------------------------------
def _own_instances():
    rows_ = [line.split(",") for line in (SPECS / "instances.csv").read_text().split("\n") if line.strip()]
    return [(SPECS / o, SPECS / v) for o, v, _ in rows_]


def _compare(spec1, spec2, rounding, exact=False):
    """The same normal form; with `exact` (a `real` query) also the same exact constants (the
    directions of rounding beside the outward floats)."""
    def same_dirs(a, b):
        return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))

    assert (spec1.n_inputs, spec1.n_outputs) == (spec2.n_inputs, spec2.n_outputs)
    assert len(spec1.cases) == len(spec2.cases)
    for c1, c2 in zip(spec1.cases, spec2.cases):
        assert np.array_equal(rounding(c1.region.lower), c2.region.lower)
        assert np.array_equal(rounding(c1.region.upper), c2.region.upper)
        if exact:
            assert same_dirs(c1.region.lower_dir, c2.region.lower_dir)
            assert same_dirs(c1.region.upper_dir, c2.region.upper_dir)
        assert len(c1.output) == len(c2.output)
        for h1, h2 in zip(c1.output, c2.output):
            assert np.array_equal(h1.A, h2.A) and np.array_equal(rounding(h1.b), h2.b)
            assert np.array_equal(h1.strict, h2.strict)
            if exact:
                assert same_dirs(h1.b_dir, h2.b_dir)


@pytest.mark.parametrize("onnx_path,prop", _own_instances(), ids=lambda p: p.name)
def test_same_normal_form_as_1_0(onnx_path, prop):
    network = load_network(str(onnx_path))
    spec1 = load_spec(str(prop), signature=network.signature)
    real = spec_to_vnnlib2(spec1, network.input_shape, network.output_shape, "real")
    _compare(spec1, parse(real, signature=network.signature), lambda a: np.asarray(a, dtype=np.float64), exact=True)
    f32 = spec_to_vnnlib2(spec1, network.input_shape, network.output_shape, network.input_type_name)
    _compare(spec1, parse(f32, signature=network.signature), lambda a: np.asarray(a, dtype=np.float32).astype(np.float64))


def test_same_answers_as_1_0(tmp_path):
    """The falsifier on the 1.0 file and on its 2.0 text: same verdict.

    A 2.0 witness meets the 1.0 text up to its bounds read in float32 (the 2.0 query is typed float32:
    `(<= X[0] 0.1)` admits float32(0.1), a hair above the real 0.1 of the 1.0 text)."""
    import math

    from vnncert.api import solve
    from vnncert.options import Options

    opts = Options(mode="falsify", seed=0, threads=1)
    seen = set()
    for onnx_path, prop in _own_instances()[:4]:
        network = load_network(str(onnx_path), threads=1)
        spec1 = load_spec(str(prop), signature=network.signature)
        q = tmp_path / (prop.stem + ".2.vnnlib")
        q.write_text(spec_to_vnnlib2(spec1, network.input_shape, network.output_shape, network.input_type_name))
        o1 = solve(str(onnx_path), str(prop), opts, math.inf)
        o2 = solve(str(onnx_path), str(q), opts, math.inf)
        assert o1.verdict == o2.verdict, (prop.name, o1.detail, o2.detail)
        seen.add(o1.verdict.value)
        if o2.verdict.value == "sat":
            x, y = o2.counterexample
            case = spec1.cases[0]
            lo32, hi32 = (case.region.lower.astype(np.float32), case.region.upper.astype(np.float32))
            assert np.all(x >= lo32) and np.all(x <= hi32)
            assert case.unsafe(y.astype(np.float64))[0]
    assert "sat" in seen  # the comparison covered a satisfiable property
