"""VNN-LIB constants are real numbers: exact witness checks, outward rounding for the engines.

A constant such as 0.50000000000000001, 1e-400 or 0.1 is not a float64 number. The parsers keep
its exact value (spec/numbers.py: nearest float64 and direction); the arrays the engines read are
rounded outward; a witness is judged against the exact value (spec/model.py). Every check below
compares with fractions.Fraction, never with float arithmetic.
"""
from fractions import Fraction

import numpy as np
import pytest

from vnncert.spec import parse_spec
from vnncert.spec import vnnlib1 as V
from vnncert.spec.cases import Source, assemble
from vnncert.spec.model import rows_hold
from vnncert.spec.numbers import nearest

CONSTS = ["0.50000000000000001", "0.49999999999999999", "1e-400", "-1e-400", "0.1", "-0.1", "0.5",
          "0.3333333333333333333", "1.000000059604644775390625000001", "9007199254740993"]
RELS = ["<", "<=", ">", ">=", "="]
HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
QUERY2 = "(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [1]) (declare-output Y real [1]))\n"


def holds(op, a: Fraction, b: Fraction) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "=": a == b}[op]


def fl(c: Fraction, dtype) -> float:
    """c correctly rounded to `dtype` (ties to even), by brute force over the neighbours."""
    t = np.dtype(dtype).type
    with np.errstate(over="ignore"):
        f = t(float(c))
    cands = {f, np.nextafter(f, t(np.inf)), np.nextafter(f, t(-np.inf))}
    best = min(cands, key=lambda v: (abs(Fraction(float(v)) - c), int(np.asarray(v).view(f"u{np.dtype(t).itemsize}")) & 1))
    return float(best)


def neighbours(v: float, dtype=np.float64):
    t = np.dtype(dtype).type
    f = t(v)
    return sorted({float(f), float(np.nextafter(f, t(np.inf))), float(np.nextafter(f, t(-np.inf))),
                   float(np.nextafter(np.nextafter(f, t(np.inf)), t(np.inf)))})


def specs(text1: str, text2: str, c: str):
    """The same property through the bulk front end, the tree front end and VNN-LIB 2.0 (real;
    not for constants beyond a double's range, which the `vnnlib` package cannot read)."""
    bulk = parse_spec(text1)
    n_in, n_out, atoms, dnf, _ = V._tree_parse(text1, "p")
    cases = assemble(atoms, dnf, n_in, n_out, Source("p", lambda t: V._position(text1, t, None)))
    tree = V.Spec(n_in, n_out, cases)
    out = {"bulk": bulk, "tree": tree}
    if float(c) != 0 or Fraction(c) == 0:
        out["2.0"] = parse_spec(text2)
    return out


def to2(rel: str) -> str:
    return {"=": "=="}.get(rel, rel)


@pytest.mark.parametrize("c", CONSTS)
@pytest.mark.parametrize("op", RELS)
def test_output_relation_is_checked_exactly(op, c):
    """(op Y_0 c): a witness at (and around) the float64 and float32 roundings of c is accepted
    exactly when the relation holds for the real numbers."""
    text1 = HEAD + f"(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert ({op} Y_0 {c}))\n"
    text2 = QUERY2 + f"(assert (>= X[0] 0.0))\n(assert (<= X[0] 1.0))\n(assert ({to2(op)} Y[0] {_pos(c)}))\n"
    exact = Fraction(c)
    ys = neighbours(float(exact)) + neighbours(fl(exact, np.float32), np.float32) + [0.0]
    for name, spec in specs(text1, text2, c).items():
        (case,) = spec.cases
        got = case.unsafe(np.array(ys)[:, None])
        want = [holds(op, Fraction(y), exact) for y in ys]
        assert got.tolist() == want, (name, op, c, ys)
        for hs in case.output:  # the engines' rows are a superset: b rounded up
            assert all(Fraction(float(b)) >= Fraction(-exact if a[0] < 0 else exact)
                       for a, b in zip(hs.A.tolist(), hs.b.tolist()))


@pytest.mark.parametrize("c", CONSTS)
@pytest.mark.parametrize("op", RELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_relation_is_checked_exactly(op, c, dtype):
    """(op X_0 c): the input a model of `dtype` runs on is accepted when it is the rounding of a
    point of the region (fl(c) for a non-strict bound, correctly rounded from the exact c), and
    beyond c for a strict one, exactly."""
    exact = Fraction(c)
    other = {"<": "(>= X_0 -1e20)", "<=": "(>= X_0 -1e20)", ">": "(<= X_0 1e20)", ">=": "(<= X_0 1e20)", "=": "true"}[op]
    text1 = HEAD + f"(assert ({op} X_0 {c}))\n(assert {other})\n(assert (<= Y_0 0))\n"
    o2 = {"true": "(<= Y[0] 0.0)", "(>= X_0 -1e20)": "(>= X[0] -100000000000000000000.0)",
          "(<= X_0 1e20)": "(<= X[0] 100000000000000000000.0)"}[other]
    text2 = QUERY2 + f"(assert ({to2(op)} X[0] {_pos(c)}))\n(assert {o2})\n(assert (<= Y[0] 0.0))\n"
    f = fl(exact, dtype)
    xs = neighbours(f, dtype)
    want = []
    for x in xs:
        X = Fraction(x)
        if op in ("<", ">"):
            want.append(holds(op, X, exact))
        elif op == "<=":
            want.append(X <= Fraction(f))
        elif op == ">=":
            want.append(X >= Fraction(f))
        else:
            want.append(X == Fraction(f))
    for name, spec in specs(text1.replace("(assert true)\n", ""), text2, c).items():
        (case,) = spec.cases
        got = case.region.contains_input(np.array(xs)[:, None], dtype)
        assert got.tolist() == want, (name, op, c, np.dtype(dtype).name, xs)
        # the engines' box contains the real region: lower rounded down, upper rounded up
        r = case.region
        if op in ("<", "<=", "="):
            assert Fraction(float(r.upper[0])) >= exact
        if op in (">", ">=", "="):
            assert Fraction(float(r.lower[0])) <= exact


def _pos(c: str) -> str:
    """A 1.0 decimal in 2.0's positional notation (2.0 numbers have no exponent)."""
    v = Fraction(c)
    from vnncert.spec.numbers import terminating_decimal

    return terminating_decimal(v)


def test_2_0_numbers_beyond_a_double_are_a_clean_error():
    """The `vnnlib` package throws std::out_of_range for them (an IndexError): a positioned SpecError."""
    from vnncert.errors import SpecError

    tiny = "0." + "0" * 400 + "1"
    with pytest.raises(SpecError, match=r"q:3:18: the number .* beyond what the VNN-LIB 2.0 parser"):
        parse_spec(QUERY2 + f"(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert (<= Y[0] {tiny}))\n".replace(
            "(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n", "") + "(assert (<= X[0] 1.0))(assert (>= X[0] 0.0))",
            where="q")


def test_front_ends_keep_the_same_exact_values():
    """bulk (vectorised) and tree (Fraction) front ends: the same nearest float64 and direction for
    every decimal, including 17-19 digit mantissas and exponents (the bulk one's fast paths)."""
    import random

    rng = random.Random(11)
    toks = []
    for _ in range(6000):
        digits = "".join(rng.choice("0123456789" if rng.random() < 0.8 else "05") for _ in range(rng.randint(1, 24)))
        k = rng.randint(0, len(digits))
        t = (digits[:k] + "." + digits[k:]) if rng.random() < 0.8 else digits
        t = "0." if t == "." else t
        if rng.random() < 0.3:
            t += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 330))
        toks.append(rng.choice(["", "-", "+"]) + t)
    text = " ".join(toks)
    b = np.frombuffer(text.encode() + bytes(V._PAD), dtype=np.uint8)
    starts = np.cumsum([0] + [len(t) + 1 for t in toks[:-1]])
    vals, dirs = V._numbers(text, b, starts, starts + np.array([len(t) for t in toks]))
    assert [(float(v), int(d)) for v, d in zip(vals, dirs)] == [nearest(Fraction(t)) for t in toks]


def test_nearest_is_the_nearest_float64_and_the_sign_of_the_error():
    """numbers.nearest decides the direction in integers; checked here in Fraction arithmetic."""
    import random

    rng = random.Random(5)
    vals = [Fraction(rng.randint(-10 ** 30, 10 ** 30), rng.randint(1, 10 ** rng.randint(0, 40))) for _ in range(3000)]
    vals += [Fraction(1, 3), Fraction(-1, 10), Fraction(0), Fraction(2 ** 53 + 1), Fraction(1, 2 ** 1075)]
    for c in vals:
        near, d = nearest(c)
        below, above = float(np.nextafter(near, -np.inf)), float(np.nextafter(near, np.inf))
        err = c - Fraction(near)
        assert d == (err > 0) - (err < 0)
        assert abs(err) <= abs(c - Fraction(below)) and abs(err) <= abs(c - Fraction(above))


def test_rows_over_several_outputs_use_rational_arithmetic_when_float64_cannot_tell():
    A = np.array([[1.0, -1.0]])
    big, tiny = 2.0 ** 60, 2.0 ** -60
    # y0 - y1 with y1 tiny rounds to y0 in float64: only the exact difference decides
    assert rows_hold(A, np.array([big]), np.array([True]), None, None, np.array([[big, tiny]]))[0, 0]
    assert not rows_hold(A, np.array([big]), np.array([False]), None, None, np.array([[big, -tiny]]))[0, 0]
    # y0 - y1 against an exact 0 is decided by the sign of the float64 difference, which is exact
    tiny2 = np.array([[tiny, np.nextafter(tiny, 1)], [big, tiny], [-tiny, -tiny]])
    assert rows_hold(A, np.zeros(1), np.array([False]), None, None, tiny2)[:, 0].tolist() == [True, False, True]
    assert rows_hold(A, np.zeros(1), np.array([True]), None, None, tiny2)[:, 0].tolist() == [True, False, False]
    # a non-float64 right-hand side: (<= (- Y_0 Y_1) 0.1) keeps 0.1 itself
    spec = parse_spec("(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)"
                      "(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= (- Y_0 Y_1) 0.1))")
    (hs,) = spec.cases[0].output
    assert hs.b_exact == (Fraction(1, 10),)
    f = 0.1  # fl(0.1) > 0.1
    assert not hs.holds(np.array([[f, 0.0]]))[0] and hs.holds(np.array([[np.nextafter(f, 0), 0.0]]))[0]
    assert not hs.holds(np.array([[1.0 + f, 1.0]]))[0]  # exactly 0.1000000000000000888 > 0.1
    assert hs.holds(np.array([[1.0, 0.9]]))[0]  # exactly 0.09999999999999997779 <= 0.1


def test_an_empty_region_that_floats_cannot_see_is_empty():
    """X_0 >= 0.10000000000000000001 and X_0 <= 0.1: both round to the same float64s, but the
    region is empty (an error, as any empty box); equal exact bounds are a fixed input."""
    from vnncert.errors import SpecError

    text = HEAD + "(assert (>= X_0 0.10000000000000000001))\n(assert (<= X_0 0.1))\n(assert (<= Y_0 0))\n"
    for parse in (parse_spec, lambda t: V.parse_vnnlib1(t.replace("(<= Y_0 0)", "(<= Y_0 (+ 0 0))"))):
        with pytest.raises(SpecError, match="empty input box"):
            parse(text)
    fixed = parse_spec(HEAD + "(assert (>= X_0 0.1))\n(assert (<= X_0 0.1))\n(assert (<= Y_0 0))\n")
    r = fixed.cases[0].region
    assert r.lower[0] < 0.1 == r.upper[0] and r.fixed().tolist() == [True]
    assert r.contains_input(np.array([[0.1]]), np.float64)[0]  # fl64(0.1): what a float64 model gets
    assert r.contains_input(np.array([[float(np.float32(0.1))]]), np.float32)[0]


def test_1_0_and_2_0_and_the_2_0_writer_agree_on_exact_values():
    from vnncert.spec.vnnlib2 import spec_to_vnnlib2

    body = "(assert (>= X_0 0.50000000000000001))\n(assert (<= X_0 0.7))\n(assert (or (<= Y_0 1e-300) " \
           "(> Y_0 0.3333333333333333333) (<= Y_0 -0.1)))\n"
    s1 = parse_spec(HEAD + body)
    s2 = parse_spec(QUERY2 + "(assert (>= X[0] 0.50000000000000001))\n(assert (<= X[0] 0.7))\n(assert (or (<= Y[0] "
                    + _pos("1e-300") + ") (> Y[0] 0.3333333333333333333) (<= Y[0] -0.1)))\n")
    s3 = parse_spec(spec_to_vnnlib2(s1, [1], [1], "real"))
    for s in (s2, s3):
        for c1, c2 in zip(s1.cases, s.cases):
            for f in ("lower", "upper", "lower_dir", "upper_dir"):
                a, b = getattr(c1.region, f), getattr(c2.region, f)
                assert (a is None and b is None) or a.tolist() == b.tolist(), f
            for h1, h2 in zip(c1.output, c2.output):
                assert h1.A.tolist() == h2.A.tolist() and h1.b.tolist() == h2.b.tolist()
                assert h1.strict.tolist() == h2.strict.tolist() and h1.b_dir.tolist() == h2.b_dir.tolist()


def _same_normal_form(s1, s2):
    """Bit for bit: the engines' floats, the directions, the exact right-hand sides, the strictness."""
    assert (s1.n_inputs, s1.n_outputs, len(s1.cases)) == (s2.n_inputs, s2.n_outputs, len(s2.cases))
    for c1, c2 in zip(s1.cases, s2.cases):
        for f in ("lower", "upper", "lower_dir", "upper_dir", "lower_strict", "upper_strict", "G", "h", "h_dir"):
            a, b = getattr(c1.region, f), getattr(c2.region, f)
            assert (a is None) == (b is None), f
            assert a is None or (a.dtype == b.dtype and a.tobytes() == b.tobytes()), f
        assert c1.region.h_exact == c2.region.h_exact
        assert len(c1.output) == len(c2.output)
        for h1, h2 in zip(c1.output, c2.output):
            for f in ("A", "b", "strict"):
                assert getattr(h1, f).tobytes() == getattr(h2, f).tobytes(), f
            assert (h1.b_dir is None) == (h2.b_dir is None) and (h1.b_dir is None or h1.b_dir.tolist() == h2.b_dir.tolist())
            assert h1.b_exact == h2.b_exact


@pytest.mark.parametrize("k", ["3", "-3", "0.1", "7"])
@pytest.mark.parametrize("c", ["0.1", "1", "-0.7", "0.50000000000000001"])
def test_a_scaled_single_variable_bound_parses_identically_in_1_0_and_2_0(k, c):
    """`(<= (* k X_0) c)` is `X_0 <= c/k` (`>=` for k < 0) in both versions: one back end divides
    through exactly and rounds outward from c/k, so 1.0 and 2.0 (over real) give the same floats, the
    same directions and the same exact values; the same for an output bound and for a row over two
    outputs whose coefficients are scaled to float64 numbers (its exact right-hand side is kept)."""
    head1 = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    body1 = (f"(assert (<= (* {k} X_0) {c}))\n(assert (>= (* {k} X_0) -2))\n"
             f"(assert (or (<= (* {k} Y_0) {c}) (<= (+ (* 0.1 Y_0) (* {k} Y_1)) {c})))\n")
    k2 = k if "." in k else k + ".0"
    c2 = _pos(c) if "." in c else c + ".0"
    head2 = "(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [1]) (declare-output Y real [2]))\n"
    body2 = (f"(assert (<= (* {k2} X[0]) {c2}))\n(assert (>= (* {k2} X[0]) -2.0))\n"
             f"(assert (or (<= (* {k2} Y[0]) {c2}) (<= (+ (* 0.1 Y[0]) (* {k2} Y[1])) {c2})))\n")
    s1, s2 = parse_spec(head1 + body1), parse_spec(head2 + body2)
    assert (s1.version, s2.version) == ("1.0", "2.0")
    _same_normal_form(s1, s2)
    # and the values are c/k's, rounded outward, with c/k's own direction
    q = Fraction(c) / Fraction(k)
    r = s1.cases[0].region
    lo_c, hi_c = (Fraction(-2) / Fraction(k), q) if Fraction(k) > 0 else (q, Fraction(-2) / Fraction(k))
    for v, d, exact, up in ((r.upper[0], r.upper_dir, hi_c, True), (r.lower[0], r.lower_dir, lo_c, False)):
        near, direction = nearest(exact)
        assert (0 if d is None else int(d[0])) == direction
        assert Fraction(float(v)) >= exact if up else Fraction(float(v)) <= exact
        assert float(v) == near or float(np.nextafter(near, np.inf if up else -np.inf)) == float(v)
    for x in (float(np.nextafter(r.upper[0], -np.inf)), float(r.upper[0]), float(r.lower[0])):
        assert r.contains(np.array([[x]]))[0] == (lo_c <= Fraction(x) <= hi_c)
    two = s1.cases[0].output[1]
    assert two.A.shape == (1, 2) and two.rows == 1
    if Fraction(k).denominator == 1 and Fraction(c) == Fraction(float(c)):
        assert two.b_exact is None  # (0.1 Y_0 + k Y_1) * 10 <= 10 c: a float64 right-hand side
    for y0 in (0.0, 1.0, -1.0):  # the row holds exactly when (0.1 y0 + k y1) <= c
        y1 = float((Fraction(c) - Fraction(1, 10) * Fraction(y0)) / Fraction(k))
        assert two.holds(np.array([[y0, y1]]))[0] == (Fraction(1, 10) * Fraction(y0) + Fraction(k) * Fraction(y1) <= Fraction(c))


# ---- end to end: ONNX Runtime replays of float32 and float64 models -------------------------------------------
def _identity(path, dtype):
    """y = x for one input, as a float32 or a float64 ONNX model (Gemm with weight 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    et = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inits = [numpy_helper.from_array(np.ones((1, 1), dtype), "W"), numpy_helper.from_array(np.zeros(1, dtype), "B")]
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)], "id",
                          [helper.make_tensor_value_info("x", et, ["N", 1])],
                          [helper.make_tensor_value_info("y", et, ["N", 1])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_witnesses_of_float32_and_float64_models(tmp_path, dtype):
    """docs/usage.md, "Exact constants": what (>= X_0 0.50000000000000001) and (>= Y_0 ...) mean."""
    from vnncert import load_network
    from vnncert.results import check_witness

    net = load_network(_identity(tmp_path / "id.onnx", dtype), threads=1)
    assert np.dtype(net.input_dtype) == np.dtype(dtype)
    t = np.dtype(dtype).type
    half, above = t(0.5), np.nextafter(t(0.5), t(1))
    # input side: 0.5 is the rounding of the region's points near 0.50000000000000001: accepted;
    # a strict bound is checked exactly
    closed = parse_spec(HEAD + "(assert (>= X_0 0.50000000000000001))\n(assert (<= X_0 1))\n(assert (>= Y_0 0))\n")
    strict = parse_spec(HEAD + "(assert (> X_0 0.50000000000000001))\n(assert (<= X_0 1))\n(assert (>= Y_0 0))\n")
    assert check_witness(net, closed, np.array([half]))[0][0] == half
    assert closed.cases[0].region.contains_input(np.array([[half]]), dtype)[0]
    assert not strict.cases[0].region.contains_input(np.array([[half]]), dtype)[0]
    assert strict.cases[0].region.contains_input(np.array([[above]]), dtype)[0]
    # check_witness moves 0.5 (on the edge of the engines' outward box) into the region: the next value
    assert check_witness(net, strict, np.array([half]))[0][0] == above
    # output side: exact, the replayed y = 0.5 is below 0.50000000000000001
    out = parse_spec(HEAD + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= Y_0 0.50000000000000001))\n")
    assert check_witness(net, out, np.array([half])) is None
    got = check_witness(net, out, np.array([above]))
    assert got is not None and got[1][0] == above
    # the engines' row is y >= 0.5 (b rounded up from -0.50000000000000001): a superset
    assert out.cases[0].output[0].b.tolist() == [-0.5]


def test_a_candidate_on_the_outward_box_edge_is_moved_into_the_region(tmp_path):
    """The engines' box is rounded outward; a float64 model's candidate at its lower edge
    (one ulp below fl64(0.1)) is moved onto fl64(0.1) by check_witness and replayed again."""
    from vnncert import load_network
    from vnncert.results import check_witness

    net = load_network(_identity(tmp_path / "id64.onnx", np.float64), threads=1)
    spec = parse_spec(HEAD + "(assert (>= X_0 0.1))\n(assert (<= X_0 0.2))\n(assert (<= Y_0 0.15))\n")
    lo = spec.cases[0].region.lower[0]
    assert lo < 0.1 and not spec.cases[0].region.contains_input(np.array([[lo]]), np.float64)[0]
    x, y, _ = check_witness(net, spec, np.array([lo]))
    assert x[0] == 0.1 and y[0] == 0.1


def test_falsifier_no_longer_answers_sat_on_a_rounded_constant():
    """The repro of issue 18 point 1: y1 = 0.5 - 2 x1 <= 0.5 on the box, so y1 >= 0.50000000000000001
    is unsat; the float64 rounding of the constant made Y_1 = 0.5 look like a witness."""
    from conftest import SPECS

    import vnncert

    text = ("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"
            "(assert (>= X_0 0.5)) (assert (<= X_0 1)) (assert (>= X_1 0)) (assert (<= X_1 0.5))\n"
            "(assert (>= Y_1 0.50000000000000001))\n")
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".vnnlib", delete=False) as f:
        f.write(text)
    out = vnncert.verify(str(SPECS / "onnx" / "tiny_2in.onnx"), f.name, mode="falsify", timeout=30, threads=1)
    assert out.verdict.value == "unknown", out.detail
