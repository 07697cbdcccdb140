"""Hostile property input, in process: NaN and infinities, declared indices beyond the network,
offending tokens quoted short, robustness properties with bad numbers (bounded reads:
tests/test_files.py).

The command-line side of the same points (exit code 2, one stderr line, memory limits) is in
tests/test_hostile.py (SPEC_CASES).
"""
import re

import numpy as np
import pytest

from vnncert.errors import SpecError
from vnncert.spec import parse_spec
from vnncert.spec.robustness import robustness_vnnlib

HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
BOX = "(assert (>= X_0 0.5))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))\n"


def err(text, **kw) -> str:
    with pytest.raises(SpecError) as e:
        parse_spec(text, where="p.vnnlib", **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---- NaN and infinities -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, where", [
    (HEAD + BOX + "(assert (>= Y_1 nan))\n", "9:17: 'nan'"),  # the bulk front end's shape
    (HEAD + BOX.replace("(<= X_0 1)", "(<= X_0 NaN)") + "(assert (>= Y_1 Y_0))\n", "6:17: 'NaN'"),
    (HEAD + BOX + "(assert (<= (+ Y_0 -nan) 1))\n", "9:20: '-nan'"),  # the tree front end's term
    (HEAD + BOX + "(assert (<= nan Y_0))\n", "9:13: 'nan'"),
    (HEAD + BOX + "(assert (= Y_0 +NAN))\n", "9:16: '+NAN'"),
    (HEAD + BOX + "(assert (or (and (<= Y_0 1)) (and (>= Y_1 Inf))))\n", "9:43: 'Inf'"),
    (HEAD + BOX.replace("(>= X_1 0)", "(>= X_1 -inf)") + "(assert (>= Y_1 Y_0))\n", "7:17: '-inf'"),
    (HEAD + BOX + "(assert (<= (* infinity Y_0) 1))\n", "9:16: 'infinity'"),
])
def test_nan_and_infinities_are_refused_in_every_position(text, where):
    msg = err(text)
    assert msg.startswith(f"p.vnnlib:{where} is not a number of VNN-LIB"), msg
    assert "NaN and infinities are refused" in msg


def test_nan_in_vnnlib_2_0_is_refused_with_its_position():
    q = ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [2]) (declare-output Y real [2]))\n"
         "(assert (<= X[0] 1.0))\n(assert (>= X[0] nan))\n(assert (<= X[1] 1.0))\n(assert (>= X[1] 0.0))\n"
         "(assert (<= Y[0] 0.0))\n")
    assert err(q).startswith("p.vnnlib:4:18: 'nan' is not a number of VNN-LIB")


def test_constants_beyond_float64_are_real_numbers():
    """1e999 is a finite real: an input bound there leaves the box without a finite bound (an error
    naming it); an output constant there is an ordinary, exact comparison."""
    assert "input X_0 has no finite upper bound" in err(HEAD + BOX.replace("(<= X_0 1)", "(<= X_0 1e999)")
                                                        + "(assert (>= Y_1 Y_0))\n")
    s = parse_spec(HEAD + BOX + "(assert (or (<= Y_0 1e999) (>= Y_1 1e999)))\n")
    big = np.array([[1.7976931348623157e308, 1.7976931348623157e308]])
    assert [bool(h.holds(big)[0]) for h in s.cases[0].output] == [True, False]


# ---- declared indices and sizes ---------------------------------------------------------------------------------
def test_an_index_beyond_the_network_is_an_error_at_the_declaration():
    text = HEAD.replace("X_1", "X_999999999") + BOX.replace("X_1", "X_999999999") + "(assert (>= Y_1 Y_0))\n"
    assert err(text, n_inputs=2, n_outputs=2) == \
        "p.vnnlib:2:16: variable X_999999999 is out of range: the network has 2 inputs (X_0..X_1)"
    assert err(text) == "p.vnnlib: X_ variables are not numbered 0..999999999 without gaps (missing X_1)"
    out = HEAD.replace("Y_1", "Y_5") + BOX + "(assert (>= Y_5 Y_0))\n"
    assert err(out, n_inputs=2, n_outputs=2).startswith("p.vnnlib:4:16: variable Y_5 is out of range: the network has 2")
    huge = HEAD.replace("X_1", "X_" + "9" * 5000) + BOX.replace("X_1", "X_" + "9" * 5000) + "(assert (>= Y_1 Y_0))\n"
    msg = err(huge)
    assert "indices must be below 10**9" in msg and len(msg) < 400


def test_vnnlib_2_0_shapes_are_bounded_without_a_model():
    from vnncert.spec.vnnlib2 import MAX_ELEMENTS_WITHOUT_MODEL

    q = ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X real [1000000000]) (declare-output Y real [2]))\n"
         "(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert (<= Y[0] 0.0))\n")
    msg = err(q)
    assert msg.startswith("p.vnnlib:2:") and "1000000000 elements" in msg and str(MAX_ELEMENTS_WITHOUT_MODEL) in msg


def test_offending_tokens_are_quoted_in_at_most_200_characters():
    for text in (HEAD + BOX + "(assert (>= Y_1 " + "q" * 1_000_000 + "))\n",
                 HEAD + BOX + "(" + "z" * 1_000_000 + " Y_1 0)\n",
                 HEAD + BOX + "(assert (" + "<" * 1_000_000 + " Y_1 0))\n",
                 HEAD.replace("Real", "R" * 1_000_000, 1) + BOX,
                 HEAD + BOX + "(assert (>= Y_1 0." + "1" * 1_000_000 + "))\n",
                 HEAD + BOX + "(assert (>= Y_1 " + "1" * 1_000_000 + "e5))\n"):
        msg = err(text)
        assert len(msg) < 400, msg[:500]
        assert re.search(r"\(1000\d{3} characters\)|number with 100000\d characters", msg), msg[:500]


# ---- robustness properties -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, pattern", [
    (dict(eps=float("nan")), "eps must be a finite number >= 0"),
    (dict(eps=float("inf")), "eps must be a finite number >= 0"),
    (dict(eps=-0.1), "eps must be a finite number >= 0"),
    (dict(x=[0.5, float("nan")]), "the point's value 1 is nan, not a finite number"),
    (dict(x=[float("-inf"), 0.5]), "the point's value 0 is -inf"),
    (dict(clip_lo=float("nan"), clip_hi=1.0), "clip LO must be a finite number"),
    (dict(clip_lo=0.0, clip_hi=float("inf")), "clip HI must be a finite number"),
    (dict(clip_lo=1.0, clip_hi=0.0), "clip LO 1.0 is above clip HI 0.0"),
    (dict(x=[5.0, 0.5], clip_lo=0.0, clip_hi=1.0), "the clipped box is empty at input 0"),
    (dict(label=2), "label 2 is not in 0..1"),
    (dict(x=[1e308, 0.0], eps=1e308), "beyond the float64 range"),
])
def test_robustness_properties_refuse_bad_numbers(kw, pattern):
    args = dict(x=[0.5, 0.5], label=0, n_classes=2, eps=0.1)
    args.update(kw)
    with pytest.raises(SpecError, match=re.escape(pattern)):
        robustness_vnnlib(args.pop("x"), args.pop("label"), args.pop("n_classes"), args.pop("eps"), **args)


def test_a_robustness_property_reads_back_as_its_box():
    text = robustness_vnnlib(np.array([0.1, 0.9]), 1, 3, 0.05, 0.0, 1.0)
    spec = parse_spec(text)
    r = spec.cases[0].region
    assert r.contains(np.array([[0.05, 0.95]]))[0] and not r.contains(np.array([[0.04, 0.95]]))[0]
    assert len(spec.cases[0].output) == 2
