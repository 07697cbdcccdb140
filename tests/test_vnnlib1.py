"""VNN-LIB 1.0 parser (VNN-COMP dialect): every construct, every malformed input, both front ends.

The parser has a bulk (numpy) front end for the usual VNN-COMP shapes and a general tree front end
for everything else and for every error; `both(text)` parses with each and checks they agree.
"""
import gzip
import random
import re
import time
from fractions import Fraction

import numpy as np
import pytest

from vnncert.errors import SpecError
from vnncert.spec import load_spec
from vnncert.spec import vnnlib1 as V
from vnncert.spec.cases import Source, assemble
from vnncert.spec.numbers import nearest, round_down, round_up
from vnncert.spec.vnnlib1 import parse_vnnlib1

from conftest import SHARED, shared_benchmark

WHERE = "p.vnnlib"


def parse(text, **kw):
    return parse_vnnlib1(text, where=WHERE, **kw)


def tree(text, n_inputs=None, n_outputs=None):
    """The general front end alone (what parse_vnnlib1 falls back to)."""
    n_in, n_out, atoms, dnf, _ = V._tree_parse(text, WHERE)

    def locate(token):
        return V._position(text, token, None)

    cases = assemble(atoms, dnf, n_in, n_out, Source(WHERE, locate))
    return V.Spec(n_inputs=n_in, n_outputs=n_out, cases=cases, source=WHERE, version="1.0")


def same_spec(a, b):
    assert (a.n_inputs, a.n_outputs, len(a.cases)) == (b.n_inputs, b.n_outputs, len(b.cases))
    for ca, cb in zip(a.cases, b.cases):
        for f in ("lower", "upper", "G", "h", "lower_strict", "upper_strict", "G_strict", "lower_dir", "upper_dir",
                  "h_dir"):
            x, y = getattr(ca.region, f), getattr(cb.region, f)
            assert (x is None) == (y is None), f
            if x is not None:
                assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f
                if x.dtype.kind == "f":
                    assert x.tobytes() == y.tobytes(), f  # bit for bit, signs of zeros included
        assert ca.region.h_exact == cb.region.h_exact
        assert len(ca.output) == len(cb.output)
        for ha, hb in zip(ca.output, cb.output):
            for f in ("A", "b", "strict"):
                x, y = getattr(ha, f), getattr(hb, f)
                assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f
            assert (ha.b_dir is None) == (hb.b_dir is None)
            if ha.b_dir is not None:
                assert ha.b_dir.tolist() == hb.b_dir.tolist()
            assert ha.b_exact == hb.b_exact


def both(text, bulk_expected=True, **kw):
    """Parse with parse_vnnlib1 and with the tree front end alone; they must agree."""
    spec = parse(text, **kw)
    assert (V._bulk_parse(text) is not None) == bulk_expected
    same_spec(spec, tree(text))
    return spec


def err(text, **kw):
    with pytest.raises(SpecError) as e:
        parse(text, **kw)
    return str(e.value)


def decl(n_in, n_out):
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))


def up(tok):
    """The least float64 >= the decimal `tok` (what an upper bound or a right-hand side becomes)."""
    return float(round_up(*nearest(Fraction(tok))))


def down(tok):
    """The greatest float64 <= the decimal `tok` (what a lower bound becomes)."""
    return float(round_down(*nearest(Fraction(tok))))


def box(lo, hi):
    return "".join(f"(assert (>= X_{i} {a}))\n(assert (<= X_{i} {b}))\n" for i, (a, b) in enumerate(zip(lo, hi)))


# ---- constructs ---------------------------------------------------------------------------------
def test_declarations_box_and_output_constant():
    s = both(decl(3, 2) + box([0, -1, 0.5], [1, 1, 0.5]) + "(assert (<= Y_1 -0.25))\n")
    assert (s.n_inputs, s.n_outputs, len(s.cases)) == (3, 2, 1)
    r = s.cases[0].region
    assert r.lower.tolist() == [0, -1, 0.5] and r.upper.tolist() == [1, 1, 0.5]
    assert r.lower.dtype == np.float64 and r.lower_strict is None and r.upper_strict is None and r.G is None
    (hs,) = s.cases[0].output
    assert hs.A.tolist() == [[0, 1]] and hs.b.tolist() == [-0.25] and hs.strict.tolist() == [False]


def test_ge_flips_to_le_rows_and_output_vs_output():
    s = both(decl(1, 3) + box([0], [1]) + "(assert (>= Y_0 2))\n(assert (<= Y_1 Y_2))\n(assert (>= Y_0 Y_2))\n")
    hs = s.cases[0].output[0]
    # y0 >= 2  ->  -y0 <= -2 ;  y1 <= y2 -> y1 - y2 <= 0 ;  y0 >= y2 -> -y0 + y2 <= 0
    assert hs.A.tolist() == [[-1, 0, 0], [0, 1, -1], [-1, 0, 1]]
    assert hs.b.tolist() == [-2, 0, 0] and not hs.strict.any()


def test_number_first_and_equality():
    s = both(decl(2, 2) + "(assert (<= 0.25 X_0))\n(assert (>= 0.75 X_0))\n(assert (= X_1 0.5))\n"
             "(assert (= Y_0 Y_1))\n")
    r = s.cases[0].region
    assert r.lower.tolist() == [0.25, 0.5] and r.upper.tolist() == [0.75, 0.5]
    hs = s.cases[0].output[0]
    assert hs.A.tolist() == [[1, -1], [-1, 1]] and hs.b.tolist() == [0, 0]


def test_input_and_output_disjuncts_mixed_acas_prop6_style():
    text = decl(2, 3) + """
(assert (or
    (and (<= X_0 0.7) (>= X_0 -0.1) (<= X_1 0.5) (>= X_1 0.1))
    (and (<= X_0 0.7) (>= X_0 -0.1) (<= X_1 -0.1) (>= X_1 -0.5))
))
(assert (or
    (and (<= Y_1 Y_0))
    (and (<= Y_2 Y_0))
))
"""
    s = both(text)
    assert len(s.cases) == 2
    # bounds rounded outward from the exact decimals
    assert s.cases[0].region.lower.tolist() == [down("-0.1"), down("0.1")]
    assert s.cases[0].region.upper.tolist() == [up("0.7"), 0.5]
    assert s.cases[1].region.lower.tolist() == [down("-0.1"), -0.5]
    assert s.cases[1].region.upper.tolist() == [up("0.7"), up("-0.1")]
    assert down("0.1") < 0.1 and up("0.7") > 0.7 and up("-0.1") > -0.1  # fl(0.1) > 0.1, fl(0.7) < 0.7
    for c in s.cases:
        assert [hs.A.tolist() for hs in c.output] == [[[-1, 1, 0]], [[-1, 0, 1]]]


def test_disjuncts_sharing_a_box_are_one_case_and_box_inside_disjuncts():
    # input and output constraints in the same (and ...); equal boxes in different disjuncts merge
    text = decl(1, 1) + """(assert (or
  (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))
  (and (>= X_0 2) (<= X_0 3) (<= Y_0 5))
  (and (<= X_0 1) (>= X_0 0) (>= Y_0 7))))"""
    s = both(text)
    assert [c.region.lower.tolist() for c in s.cases] == [[0], [2]]
    assert [[(h.A.tolist(), h.b.tolist()) for h in c.output] for c in s.cases] == \
        [[([[1]], [0]), ([[-1]], [-7])], [([[1]], [5])]]


def test_plain_asserts_are_anded_into_every_disjunct():
    text = decl(1, 2) + box([0], [1]) + "(assert (<= Y_0 3))\n(assert (or (and (>= Y_1 1)) (and (<= Y_1 -1))))\n" \
        "(assert (>= Y_0 -3))\n"
    s = both(text)
    (case,) = s.cases
    assert [(h.A.tolist(), h.b.tolist()) for h in case.output] == [
        ([[1, 0], [0, -1], [-1, 0]], [3, -1, 3]),
        ([[1, 0], [0, 1], [-1, 0]], [3, -1, 3]),
    ]


def test_several_or_asserts_multiply_out_in_order():
    text = decl(1, 2) + box([0], [1]) + "(assert (or (<= Y_0 1) (<= Y_0 2)))\n(assert (or (<= Y_1 10) (<= Y_1 20) (<= Y_1 30)))\n"
    s = both(text)
    (case,) = s.cases
    assert [h.b.tolist() for h in case.output] == [[1, 10], [1, 20], [1, 30], [2, 10], [2, 20], [2, 30]]


def test_nested_and_or_and_boolean_constants_use_the_tree_front_end():
    text = decl(1, 2) + box([0], [1]) + \
        "(assert (and (or (<= Y_0 1) (<= Y_0 2)) (or (and (<= Y_1 3) true) false)))\n"
    s = both(text, bulk_expected=False)
    assert [h.b.tolist() for h in s.cases[0].output] == [[1, 3], [2, 3]]
    # nested without constants goes through the bulk front end, same answer
    text2 = decl(1, 2) + box([0], [1]) + "(assert (and (or (<= Y_0 1) (<= Y_0 2)) (or (and (<= Y_1 3)))))\n"
    s2 = both(text2)
    assert [h.b.tolist() for h in s2.cases[0].output] == [[1, 3], [2, 3]]


def test_arithmetic_terms():
    s = both(decl(1, 3) + box([0], [1]) + "(assert (<= (+ Y_0 (* 2 Y_1) (- Y_2)) (- 3 1)))\n", bulk_expected=False)
    hs = s.cases[0].output[0]
    assert hs.A.tolist() == [[1, 2, -1]] and hs.b.tolist() == [2]


def test_comments_whitespace_and_ignored_commands():
    text = """; header with (parens) and ünïcödé
(declare-const X_0 Real) ; trailing comment )
(declare-const   Y_0\tReal)
(set-info :status unsat)
\x0c
(assert
   ( >=   X_0   -1 ) )   ;;; more
(assert (<= X_0 1));no space
(assert (<= Y_0 0))
(check-sat)
(get-model)"""
    s = both(text)
    assert s.cases[0].region.lower.tolist() == [-1] and s.cases[0].region.upper.tolist() == [1]
    assert s.cases[0].output[0].b.tolist() == [0]


@pytest.mark.parametrize("tok, value", [
    ("1.127338e6", 1127338.0), ("5.8e-05", 5.8e-05), ("-0.5", -0.5), ("-1E-3", -0.001), ("+2", 2.0),
    ("3", 3.0), (".5", 0.5), ("5.", 5.0), ("1e+2", 100.0), ("-.25e1", -2.5), ("0.0056251031346619", 0.0056251031346619),
    ("123456789012345678901234567890", 1.2345678901234568e29), ("4.9e-324", 5e-324), ("1e-400", 0.0),
])
def test_numbers_scientific_and_negative(tok, value):
    s = both(decl(1, 1) + f"(assert (>= X_0 {tok}))\n(assert (<= X_0 1e300))\n(assert (<= Y_0 {tok}))\n")
    near, d = nearest(Fraction(tok))
    assert near == value  # the same bits as float()
    lo = s.cases[0].region.lower[0]
    b = s.cases[0].output[0].b[0]
    assert lo == (value if d >= 0 else np.nextafter(value, -np.inf))  # rounded down
    assert b == (value if d <= 0 else np.nextafter(value, np.inf))  # rounded up
    assert Fraction(lo) <= Fraction(tok) <= Fraction(b)


def test_numbers_are_bit_exact_like_float():
    rng = random.Random(7)
    toks = []
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 24)))
        k = rng.randint(0, len(digits))
        t = digits[:k] + "." + digits[k:] if rng.random() < 0.8 else digits
        if rng.random() < 0.4:
            t += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 280))
        toks.append(rng.choice(["", "-", "+"]) + t)
    text = decl(len(toks), 1) + "".join(f"(assert (<= X_{i} {t}))\n(assert (>= X_{i} -1e308))\n"
                                        for i, t in enumerate(toks)) + "(assert (<= Y_0 0))\n"
    s = both(text)
    expect = np.array([float(t) for t in toks])
    exact = [Fraction(t) for t in toks]
    ups = np.array([e if Fraction(e) >= x else np.nextafter(e, np.inf) for e, x in zip(expect, exact)])
    assert s.cases[0].region.upper.tobytes() == (ups + 0.0).tobytes()
    # the nearest float64 (float()'s bits) and the direction of its rounding, exactly
    r = s.cases[0].region
    d = r.upper_dir if r.upper_dir is not None else np.zeros(len(toks), np.int8)
    assert d.tolist() == [(x > Fraction(e)) - (x < Fraction(e)) for e, x in zip(expect, exact)]


def test_lower_bound_beyond_float64_is_no_finite_bound():
    msg = err(decl(1, 1) + "(assert (>= X_0 -1e999))\n(assert (<= X_0 1))\n(assert (<= Y_0 0))")
    assert msg.startswith(f"{WHERE}:3:9: input X_0 has no finite lower bound") and "float64 range" in msg


def test_strict_relations_kept_apart():
    s = both(decl(2, 2) + "(assert (> X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (< X_1 1))\n"
             "(assert (or (and (< Y_0 1) (<= Y_1 2)) (and (> Y_1 Y_0))))\n")
    r = s.cases[0].region
    assert r.lower_strict.tolist() == [True, False] and r.upper_strict.tolist() == [False, True]
    h0, h1 = s.cases[0].output
    assert h0.strict.tolist() == [True, False] and h1.strict.tolist() == [True]
    assert h1.A.tolist() == [[1, -1]] and h1.b.tolist() == [0]
    # a strict and a non-strict bound at the same value: the strict one wins; a looser strict one does not
    s2 = both(decl(1, 1) + "(assert (>= X_0 0))\n(assert (> X_0 0))\n(assert (> X_0 -1))\n(assert (<= X_0 1))\n(assert (<= Y_0 0))")
    assert s2.cases[0].region.lower_strict.tolist() == [True]
    s3 = both(decl(1, 1) + "(assert (>= X_0 0))\n(assert (> X_0 -1))\n(assert (<= X_0 1))\n(assert (<= Y_0 0))")
    assert s3.cases[0].region.lower_strict is None and s3.cases[0].region.lower.tolist() == [0]


def test_tightest_bound_wins_and_minus_zero_is_zero():
    s = both(decl(1, 1) + "(assert (>= X_0 -0.0))\n(assert (>= X_0 -1))\n(assert (<= X_0 3))\n(assert (<= X_0 2))\n(assert (<= Y_0 0))")
    r = s.cases[0].region
    assert r.lower.tolist() == [0] and r.upper.tolist() == [2]
    assert r.lower.tobytes() == np.zeros(1).tobytes()


def test_constant_comparisons():
    # true constants vanish; a false one removes its disjunct
    s = both(decl(1, 1) + box([0], [1]) + "(assert (or (and (<= 1 2) (<= Y_0 1)) (and (<= 2 1) (<= Y_0 2)) (and (< Y_0 Y_0))))",
             bulk_expected=False)  # two constants compared: the exact (tree) front end decides
    assert [h.b.tolist() for h in s.cases[0].output] == [[1]]
    # decided exactly, not in float64: 0.1 + 0.2 == 0.3 holds for reals
    s = both(decl(1, 1) + box([0], [1]) + "(assert (or (and (= (+ 0.1 0.2) 0.3) (<= Y_0 1)) "
             "(and (< 0.30000000000000000001 0.3) (<= Y_0 2)) (and (<= 1e-400 0) (<= Y_0 3))))", bulk_expected=False)
    assert [h.b.tolist() for h in s.cases[0].output] == [[1]]


def test_counts_checked_against_network():
    text = decl(2, 3) + box([0, 0], [1, 1]) + "(assert (<= Y_0 0))"
    s = parse(text, n_inputs=2, n_outputs=3)
    assert (s.n_inputs, s.n_outputs) == (2, 3)
    assert "declares 2 inputs (X_0..X_1) but the network has 5" in err(text, n_inputs=5, n_outputs=3)
    assert "declares 3 outputs (Y_0..Y_2) but the network has 10" in err(text, n_inputs=2, n_outputs=10)


def test_vnnlib_gz_via_load_spec(tmp_path):
    text = decl(2, 1) + box([0, -1], [1, 1]) + "(assert (or (and (<= Y_0 0)) (and (>= Y_0 3))))\n"
    plain = tmp_path / "prop.vnnlib"
    plain.write_text(text)
    gz = tmp_path / "prop.vnnlib.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    a, b = load_spec(str(plain)), load_spec(str(gz), n_inputs=2, n_outputs=1)
    same_spec(a, b)
    assert b.source == "prop.vnnlib.gz" and len(b.cases[0].output) == 2


# ---- malformed input: one clean SpecError each, with position and what was expected ---------------
def test_unbalanced_close():
    msg = err(decl(1, 1) + "(assert (<= X_0 1)))\n")
    assert msg.startswith(f"{WHERE}:3:20: unbalanced ')'")


def test_unbalanced_open():
    msg = err(decl(1, 1) + "(assert (>= X_0 0))\n(assert (<= X_0 1)\n(assert (<= Y_0 0))\n")
    assert msg.startswith(f"{WHERE}:4:1: unbalanced '('") and "never closed" in msg


def test_unknown_variable():
    msg = err(decl(1, 1) + box([0], [1]) + "(assert (<= Y_3 1))\n")
    assert msg == f"{WHERE}:5:13: unknown variable Y_3 (not declared with declare-const)"
    assert "unknown variable X_0" in err("(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(declare-const X_0 Real)")


def test_missing_bounds():
    assert err(decl(2, 1) + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= Y_0 0))") == \
        f"{WHERE}: input X_1 has no upper bound; expected a constraint such as (<= X_1 <number>)"
    msg = err(decl(1, 1) + "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))\n  (and (<= X_0 1) (<= Y_0 0))))")
    assert msg.startswith(f"{WHERE}:4:8: input X_0 has no lower bound in disjunct 2") and "(>= X_0 <number>)" in msg


def test_empty_box():
    msg = err(decl(1, 1) + "(assert (>= X_0 1))\n(assert (<= Y_0 0))\n(assert (<= X_0 0.5))\n")
    assert msg.startswith(f"{WHERE}:5:9: empty input box: X_0 has lower bound 1.0 above upper bound 0.5")
    assert "line 3, column 9" in msg and "expected lower <= upper" in msg
    msg = err(decl(1, 1) + "(assert (>= X_0 1))\n(assert (< X_0 1))\n(assert (<= Y_0 0))\n")
    assert msg.startswith(f"{WHERE}:4:9: empty input box") and "strict" in msg


def test_empty_box_in_a_disjunct_that_a_false_constant_removes_is_fine():
    s = both(decl(1, 1) + "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0)) (and (>= X_0 5) (<= X_0 1) (< 1 0))))",
             bulk_expected=False)
    assert len(s.cases) == 1 and len(s.cases[0].output) == 1


def test_an_empty_box_among_several_disjuncts_is_dropped():
    """It can never hold (the 2.0 rule too: spec/cases.py); only a single conjunction's empty box is an error."""
    s = both(decl(1, 1) + "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))\n  (and (>= X_0 5) (<= X_0 1) (<= Y_0 1))))")
    assert len(s.cases) == 1 and s.cases[0].region.upper.tolist() == [1.0] and len(s.cases[0].output) == 1
    assert s.cases[0].output[0].b.tolist() == [0.0]
    # an empty box in every disjunct: no case (unsat by the property's own text), no missing-bound error
    s = both(decl(2, 1) + "(assert (>= X_1 0))\n(assert (or (and (>= X_0 2) (<= X_0 1) (<= Y_0 0))\n"
             "  (and (> X_0 1) (<= X_0 1) (<= Y_0 1))))")
    assert s.cases == []


@pytest.mark.parametrize("text", ["", "   \n\n", "; only a comment\n"])
def test_empty_file(text):
    assert err(text) == f"{WHERE}: empty property: no declare-const found"


def test_no_assert():
    assert err(decl(1, 1)) == f"{WHERE}: property has no assert"


def test_binary_garbage(tmp_path):
    p = tmp_path / "junk.vnnlib"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SpecError, match=r"junk.vnnlib: not a VNN-LIB text file"):
        load_spec(str(p))
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(SpecError, match=r"not a VNN-LIB text file"):
        load_spec(str(p))
    # control characters in otherwise valid text: a clean error too
    msg = err("\x01\x02\x03 (declare-const X_0 Real)")
    assert msg.startswith(f"{WHERE}:1:1: expected '(' to start a command")


def test_broken_gzip(tmp_path):
    p = tmp_path / "prop.vnnlib.gz"
    p.write_bytes(gzip.compress(b"(declare-const X_0 Real)")[:15])
    with pytest.raises(SpecError, match=r"prop.vnnlib.gz: broken gzip file"):
        load_spec(str(p))


def test_unknown_command():
    msg = err(decl(1, 1) + "(frobnicate X_0)\n")
    assert msg == f"{WHERE}:3:2: unknown command 'frobnicate' (expected declare-const or assert)"


def test_mixing_inputs_and_outputs():
    msg = err(decl(1, 1) + box([0], [1]) + "(assert (<= X_0 Y_0))\n")
    assert msg.startswith(f"{WHERE}:5:9: constraint mixes inputs (X) and outputs (Y)")


@pytest.mark.parametrize("rel, found", [("(<= X_0)", 1), ("(>= X_0 1 2)", 3), ("(= Y_0)", 1)])
def test_wrong_arity(rel, found):
    msg = err(decl(1, 1) + f"(assert {rel})\n")
    assert re.match(rf"{WHERE}:3:9: relation [<>=]+ takes exactly two arguments, found {found}$", msg)


def test_assert_arity_and_bad_numbers_and_operators():
    assert err(decl(1, 1) + "(assert (<= X_0 1) (<= X_0 2))") == f"{WHERE}:3:1: assert takes exactly one constraint"
    assert err(decl(1, 1) + "(assert (<= X_0 1.2.3))") == f"{WHERE}:3:17: expected a declared variable or a number, found '1.2.3'"
    assert err(decl(1, 1) + "(assert (xor (<= X_0 1)))").startswith(f"{WHERE}:3:9: unsupported operator 'xor'")
    assert err(decl(1, 1) + "(assert (<= (* X_0 X_0) 1))").startswith(f"{WHERE}:3:13: non-linear term")
    assert err(decl(1, 1) + "(assert X_0)") == f"{WHERE}:3:9: expected a constraint such as (<= X_0 1), found 'X_0'"


def test_bad_declarations():
    assert err("(declare-const X_0 Int)\n(assert (<= X_0 1))") == \
        f"{WHERE}:1:20: variable X_0 has sort 'Int'; VNN-LIB 1.0 variables are Real"
    assert err("(declare-const Z_0 Real)\n").startswith(f"{WHERE}:1:16: variable name 'Z_0' is not of the form X_<i> or Y_<j>")
    assert err("(declare-const X_0 Real)\n(declare-const X_0 Real)").startswith(f"{WHERE}:2:16: variable X_0 declared twice")
    assert err("(declare-const X_0 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)\n" + box([0], [1])) == \
        f"{WHERE}: X_ variables are not numbered 0..2 without gaps (missing X_1)"
    assert err("(declare-const X_0 Real)\n(declare-const X_00 Real)\n(assert (<= X_0 1))").endswith(
        "X_0 is declared twice under different spellings")


def test_bare_token_at_top_level():
    assert err(decl(1, 1) + "assert\n") == f"{WHERE}:3:1: expected '(' to start a command, found 'assert'"


# ---- the two front ends agree on random properties --------------------------------------------------
def _random_property(rng):
    nx, ny = rng.randint(1, 3), rng.randint(1, 3)
    nums = ["0", "1", "-1", "0.5", "-0.25", "1e-3", "2.5E+2", ".5", "5.", "-0", "0.0", "+3", "7e0", "1e22", "3e-23",
            "9007199254740993", "0.1", "123456789.123456789"]

    def num():
        return rng.choice(nums) if rng.random() < 0.5 else repr(round(rng.uniform(-2, 2), rng.randint(0, 17)))

    def rel(kind):
        op = rng.choice(["<=", ">=", "<", ">", "="])
        n = nx if kind == "X" else ny
        v = f"{kind}_{rng.randrange(n)}"
        x = rng.random()
        if x < 0.6:
            return f"({op} {v} {num()})"
        if x < 0.75:
            return f"({op} {num()} {v})"
        if x < 0.95:
            return f"({op} {v} {kind}_{rng.randrange(n)})"
        return f"({op} {num()} {num()})"

    def boxrels():
        out = []
        for i in range(nx):
            lo = round(rng.uniform(-1, 0.5), 2)
            out += [f"({rng.choice(['>=', '>'])} X_{i} {lo})", f"({rng.choice(['<=', '<'])} X_{i} {lo + round(rng.uniform(0, 1), 2)})"]
        return out

    def formula(depth):
        if depth > 2 or rng.random() < 0.4:
            return rel(rng.choice("XY")) if rng.random() < 0.3 else rel("Y")
        parts = " ".join(formula(depth + 1) for _ in range(rng.randint(1, 3)))
        return f"({rng.choice(['and', 'or'])} {parts})"

    lines = [f"(declare-const X_{i} Real)" for i in range(nx)] + [f"(declare-const Y_{j} Real)" for j in range(ny)]
    if rng.random() < 0.5:
        lines += [f"(assert {r})" for r in boxrels()]
    else:
        lines.append("(assert (or " + " ".join("(and " + " ".join(boxrels()) + ")" for _ in range(rng.randint(1, 3))) + "))")
    lines += [f"(assert {formula(0)})" for _ in range(rng.randint(1, 3))]
    sep = rng.choice(["\n", " ", "\n; c (\n", "\t\r\n"])
    return sep.join(lines)


def test_front_ends_agree_on_random_properties():
    rng = random.Random(2024)
    n_bulk = 0
    for _ in range(300):
        text = _random_property(rng)
        try:
            expected = tree(text)
        except SpecError as e:
            with pytest.raises(SpecError) as got:
                parse(text)
            assert str(got.value) == str(e)
            continue
        got = parse(text)
        same_spec(got, expected)
        n_bulk += V._bulk_parse(text) is not None
    assert n_bulk > 100  # the bulk front end was really exercised


# ---- real competition files (../shared/benchmarks) ----------------------------------------------------
def _counts_from_instances():
    """{vnnlib path: (n_inputs, n_outputs)} from the ONNX model each instances.csv pairs it with."""
    from vnncert.network.loader import load_network

    counts, nets = {}, {}
    for csv in sorted(SHARED.glob("*/instances.csv")):
        for line in csv.read_text().splitlines():
            if not line.strip():
                continue
            onnx, prop = [c.strip() for c in line.split(",")[:2]]
            onnx, prop = csv.parent / onnx, csv.parent / prop
            if onnx not in nets:
                net = load_network(str(onnx))
                nets[onnx] = (net.n_inputs, net.n_outputs)
            prev = counts.setdefault(prop, nets[onnx])
            assert prev == nets[onnx], f"{prop} paired with models of different sizes"
    return counts


def test_every_benchmark_property_parses():
    shared_benchmark("")
    counts = _counts_from_instances()
    files = sorted(SHARED.rglob("*.vnnlib")) + sorted(SHARED.rglob("*.vnnlib.gz"))
    assert files
    t0 = time.perf_counter()
    for f in files:
        n_in, n_out = counts.get(f, (None, None))
        spec = load_spec(str(f), n_inputs=n_in, n_outputs=n_out)
        assert spec.cases, f
        for c in spec.cases:
            assert np.isfinite(c.region.lower).all() and np.isfinite(c.region.upper).all() and c.output
        # the general front end agrees (on the smaller files, to keep this test short)
        if f.suffix == ".vnnlib" and f.stat().st_size < 300_000:
            same_spec(spec, tree(f.read_text()))
    assert time.perf_counter() - t0 < 60
    assert counts and all(f in set(files) for f in counts)


def test_acasxu_prop6_two_boxes_four_disjuncts_each():
    spec = load_spec(str(shared_benchmark("acasxu") / "vnnlib" / "prop_6.vnnlib"), n_inputs=5, n_outputs=5)
    assert len(spec.cases) == 2
    lo = [c.region.lower for c in spec.cases]
    hi = [c.region.upper for c in spec.cases]
    assert lo[0][1] == down("0.11140846") and hi[0][1] == up("0.499999896")
    assert lo[1][1] == down("-0.499999896") and hi[1][1] == up("-0.11140846")
    for c in spec.cases:
        assert len(c.output) == 4
        for j, hs in enumerate(c.output, start=1):
            row = np.zeros(5)
            row[j], row[0] = 1, -1  # Y_j <= Y_0
            assert hs.A.tolist() == [row.tolist()] and hs.b.tolist() == [0] and not hs.strict.any()


def test_mnist_fc_784_inputs_9_disjuncts():
    bench = shared_benchmark("mnist_fc")
    spec = load_spec(str(bench / "vnnlib" / "prop_0_0.03.vnnlib"), n_inputs=784, n_outputs=10)
    (case,) = spec.cases
    assert case.region.lower.shape == (784,) and (case.region.upper - case.region.lower <= 0.0600001).all()
    assert len(case.output) == 9
    label = 4  # "Mnist property with label: 4"
    for hs, j in zip(case.output, [k for k in range(10) if k != label]):
        row = np.zeros(10)
        row[j], row[label] = -1, 1  # Y_j >= Y_label
        assert hs.A.tolist() == [row.tolist()] and hs.b.tolist() == [0]


def test_nn4sys_large_files():
    bench = shared_benchmark("nn4sys")
    spec = load_spec(str(bench / "vnnlib" / "lindex_10000.vnnlib"))
    assert (spec.n_inputs, spec.n_outputs) == (1, 1)
    assert len(spec.cases) == 10000 and all(len(c.output) == 2 for c in spec.cases)
    spec = load_spec(str(bench / "vnnlib" / "cardinality_1_240_128_dual.vnnlib"))
    assert len(spec.cases) == 240 and spec.n_inputs == 308
    assert all(c.output[0].b.tolist() == [up("-1e-5")] for c in spec.cases)


def test_deep_nesting_is_a_clean_error_or_parses():
    head = decl(1, 1) + box([0], [1])
    s = both(head + "(assert " + "(and " * 200 + "(<= Y_0 1)" + ")" * 200 + ")")
    assert s.cases[0].output[0].b.tolist() == [1]
    deep = 5000  # refused by the parser's own depth limit, whatever sys.getrecursionlimit() is
    assert err(head + "(assert " + "(and " * deep + "(<= Y_0 1)" + ")" * deep + ")") == \
        f"{WHERE}: expressions nested too deeply to parse"


def test_scaled_single_variable_bound_is_divided_through_exactly():
    """(<= (* 3 X_0) 1) is X_0 <= 1/3 exactly: the box's upper bound is 1/3 rounded up, and the
    witness check compares with 1/3 itself (no extra G row is needed)."""
    text = decl(1, 1) + "(assert (<= (* 3 X_0) 1))(assert (>= X_0 0))(assert (>= (* 0.5 Y_0) 0.1))"
    (case,) = both(text, bulk_expected=False).cases
    third = Fraction(1, 3)
    assert Fraction(case.region.upper[0]) > third and Fraction(np.nextafter(case.region.upper[0], 0)) < third
    assert case.region.G is None
    assert not case.region.contains(np.array([[case.region.upper[0]]]))[0]  # above 1/3
    assert case.region.contains(np.array([[np.nextafter(case.region.upper[0], 0)]]))[0]
    (hs,) = case.output
    assert hs.A.tolist() == [[-1.0]] and hs.b[0] == up("-0.2")  # 0.5 y >= 0.1  <=>  -y <= -0.2
    assert hs.holds(np.array([[0.2]]))[0]  # fl(0.2) = 0.2000000000000000111 >= 0.2
    assert not hs.holds(np.array([[np.nextafter(0.2, 0)]]))[0]  # the float64 below it is < 0.2


def test_scaled_rows_over_several_variables_become_exact():
    """(* 0.1 Y_0) is not a float64 coefficient: the row is scaled by 10 (exactly the same set)."""
    s = both(decl(1, 2) + box([0], [1]) + "(assert (<= (+ (* 0.1 Y_0) (* 0.2 Y_1)) 0.3))", bulk_expected=False)
    (hs,) = s.cases[0].output
    assert hs.A.tolist() == [[1.0, 2.0]] and hs.b.tolist() == [3.0] and hs.b_dir is None
    assert hs.holds(np.array([[1.0, 1.0]]))[0] and not hs.holds(np.array([[1.0, np.nextafter(1.0, 2)]]))[0]
    assert "too many significant digits" in err(
        decl(1, 2) + box([0], [1]) + "(assert (<= (+ (* 0.12345678901234567891 Y_0) (* 0.2 Y_1)) 0.3))")


def test_nesting_precheck_is_the_running_parenthesis_depth():
    """`_may_nest_too_deeply` is exactly: the running depth ('(' +1, ')' -1, over the bytes, comments
    included) exceeds MAX_DEPTH somewhere; random texts around the limit, unbalanced ones too."""
    rng = random.Random(7)
    for trial in range(200):
        n = rng.choice([0, 1, 50, V.MAX_DEPTH - 1, V.MAX_DEPTH, V.MAX_DEPTH + 1, 2 * V.MAX_DEPTH])
        parts = []
        for _ in range(n):
            parts.append(rng.choice(["(", "(", "(", ")", " x ", "; (é)\n", "(assert (<= X_0 1))"]))
        text = "".join(parts)
        depth, deepest = 0, 0
        for ch in text:
            depth += (ch == "(") - (ch == ")")
            deepest = max(deepest, depth)
        assert V._may_nest_too_deeply(text) == (deepest > V.MAX_DEPTH), trial
    assert V._may_nest_too_deeply("(" * (V.MAX_DEPTH + 1)) and not V._may_nest_too_deeply("(" * V.MAX_DEPTH)
    assert not V._may_nest_too_deeply("") and not V._may_nest_too_deeply(")))")
