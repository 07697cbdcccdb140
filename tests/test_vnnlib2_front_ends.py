"""vnncert's bulk 2.0 front end against the `vnnlib` package, the reference: the same normal form bit for bit
(and the same Composition) or the same error, line and column included, on every 2.0 text of the 2.0 tests
(tests/test_vnnlib2.py, tests/test_vnnlib2_theories.py), on a corpus of shapes written here, and on the
benchmark properties written as 2.0 queries (spec_to_vnnlib2; ../shared/benchmarks, when present).
The bulk front end must take the common shapes (the benchmark texts, over real and float32) itself."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED, SPECS

import test_vnnlib2
import test_vnnlib2_theories
from vnncert.errors import SpecError
from vnncert.spec import load_spec
from vnncert.spec.vnnlib2 import parse_vnnlib2, read_query, spec_float_exact, spec_to_vnnlib2
from vnncert.spec.vnnlib2_bulk import bulk_parse, read_header

H = "(vnnlib-version <2.0>)\n"
NET = H + "(declare-network f\n  (declare-input X float32 [1,2])\n  (declare-output Y float32 [3])\n)\n"
BOX = "(assert (>= X[0,0] 0.0))\n(assert (<= X[0,0] 1.0))\n(assert (>= X[0,1] -1.0))\n(assert (<= X[0,1] 0.1))\n"
TWO = (H + "(declare-network f (declare-input X float32 [1,2]) (declare-output Y float32 [1,2]))\n"
       "(declare-network g (isomorphic-to f) (declare-input A float32 [1,2]) (declare-output B float32 [1,2]))\n")

# shapes the bulk front end takes, and near misses it leaves to the package (same result either way)
CORPUS = [
    NET + BOX + "(assert (or (<= Y[0] Y[1]) (and (< Y[2] 0.5) (> Y[0] -0.25)) (== Y[0] 0.75)))\n",
    NET + BOX + "; a comment (assert (<= Y[0] 9.0))\n(assert (<= Y[0] 0.1))  ; trailing\n",
    NET.replace("(declare-network f", "; (assert (<= Y[0] 9.0))\n(declare-network f") + BOX + "(assert (<= Y[0] 0.1))\n",
    NET + BOX + "(assert (or (and (<= Y[0] 0.1) (or (and (>= Y[1] 0.2)) (and (<= Y[2] -0.3)))) (>= Y[0] 7.5)))\n",
    NET + "(assert (or (and (>= X[0,0] 0.0) (<= X[0,0] 0.5) (>= X[0,1] 0.0) (<= X[0,1] 0.5) (or (and (<= Y[0] 0.1)) "
          "(and (>= Y[1] 0.3)))) (and (>= X[0,0] 0.5) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 0.5) (<= Y[2] Y[0]))))\n",
    NET + BOX + "(assert (and (<= Y[0] 0.50000000000000001) (>= Y[1] -0.3333333333333333333) (< Y[2] 16777217.0)))\n",
    NET.replace("float32", "real") + BOX + "(assert (<= Y[0] 0.50000000000000001))\n(assert (>= Y[1] Y[2]))\n",
    NET.replace("float32", "float64") + BOX + "(assert (<= Y[0] 0.1))\n(assert (> Y[1] 1.0000000000000002))\n",
    NET + BOX + "(assert (<= Y[0] 3.5e2))\n",  # an exponent: the package's syntax error
    NET + BOX + "(assert (<= Y[0] 1))\n",  # an integer literal: the package's type error
    NET + BOX + "(assert (<= Y[0] .5))\n",
    NET + BOX + "(assert (<= Y[3] 0.5))\n",  # out of range
    NET + BOX + "(assert (<= Y[0,0] 0.5))\n",  # too many indices
    NET + BOX + "(assert (<= Z[0] 0.5))\n",  # undeclared
    NET + BOX + "(assert (<= Y[00] 0.5))\n",  # a leading zero (the package reads 0)
    NET + BOX + "(assert (<= Y [0] 0.5))\n",
    NET + BOX + "(assert (!= Y[0] 0.5))\n",
    NET + BOX + "(assert (= Y[0] 0.5))\n",
    NET + BOX + "(assert (<= 0.5 1.0))\n",
    NET + BOX + "(assert (<= Y[0] X[0,0]))\n",  # MNC: an input copied to the output (package path)
    NET + BOX + "(assert (== Y[0] Y[1]))\n",
    NET + BOX + "(assert (<= Y[0] 0.5)\n",  # unbalanced
    NET + BOX + "( assert (<= Y[0] 0.5))\n",
    NET + "(assert (>= X[0,0] 0.0))\n(assert (<= Y[0] 0.5))\n",  # an unbounded input: assemble's error
    NET + "(assert (>= X[0,0] 0.5))\n(assert (<= X[0,0] 0.25))\n(assert (>= X[0,1] 0.0))\n(assert (<= X[0,1] 0.5))\n"
          "(assert (<= Y[0] 0.0))\n",  # an empty box: assemble's error, line and column
    NET + BOX + "(assert (<= Y[0] 340282356779733661637539395458142568448.0))\n",  # beyond float32: package words it
    NET + BOX + "(assert (<= Y[0] 0.0000000000000000000000000000000000000000000000001))\n",
    NET.replace("[3]", "[]") + BOX + "(assert (<= Y 0.5))\n",  # a scalar
    NET.replace("[1,2]", "[2,1,1]").replace("X[0,0]", "X[0,0,0]").replace("X[0,1]", "X[1,0,0]")
    + "(assert (>= X[0,0,0] 0.0))\n(assert (<= X[0,0,0] 1.0))\n(assert (>= X[1,0,0] 0.0))\n(assert (<= X[1,0,0] 1.0))\n"
      "(assert (<= Y[2] 0.5))\n",
    NET.replace("<2.0>", "<2.1>") + BOX + "(assert (<= Y[0] 0.5))\n",  # a warning: the package
    NET.replace("float32", "float16") + BOX + "(assert (<= Y[0] 0.5))\n",
    H + "(declare-network f (declare-input X float32 [1,2]) (declare-input P float32 [3]) (declare-hidden H float32 "
        "[1,4] \"h0\") (declare-output Y float32 [3]) (declare-output W float32 [2]))\n" + BOX
    + "(assert (and (>= P[0] 0.0) (<= P[0] 1.0) (>= P[1] 0.0) (<= P[1] 1.0) (>= P[2] 0.0) (<= P[2] 1.0)))\n"
      "(assert (or (<= H[0,3] 0.5) (>= W[1] Y[2])))\n",
    TWO + "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
          "(assert (and (>= A[0,0] 0.0) (<= A[0,0] 1.0) (>= A[0,1] 0.0) (<= A[0,1] 1.0)))\n(assert (<= Y[0,1] B[0,1]))\n",
    TWO + "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
          "(assert (== X[0,0] A[0,0]))\n(assert (== X[0,1] A[0,1]))\n(assert (<= Y[0,1] B[0,1]))\n",  # ties: package
    TWO.replace("(isomorphic-to f)", "(equal-to f)") + "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) "
    "(<= X[0,1] 1.0) (>= A[0,0] 0.0) (<= A[0,0] 1.0) (>= A[0,1] 0.0) (<= A[0,1] 1.0)))\n(assert (> Y[0,0] B[0,0]))\n",
    TWO.replace("g (isomorphic-to f)", "f") + "(assert (<= X[0,0] 1.0))\n",  # a network declared twice
    TWO.replace("A float32", "A float64").replace("B float32", "B float64") + "(assert (<= X[0,0] 1.0))\n",
]


def _texts():
    """(id, text) of every 2.0 text: the 2.0 tests', this corpus, the shipped properties as 2.0."""
    out = []
    for k, p in enumerate(test_vnnlib2.test_clean_errors.pytestmark[0].args[1]):
        out.append((f"clean_errors{k}", p[0]))
    for case, (_, head, sat, unsat, _) in sorted(test_vnnlib2_theories.CASES.items()):
        out += [(f"theory-{case}-sat", head + sat), (f"theory-{case}-unsat", head + unsat)]
    out += [(f"corpus{k}", t) for k, t in enumerate(CORPUS)]
    return out


def _same(s1, s2):
    from test_exact_constants import _same_normal_form

    _same_normal_form(s1, s2)
    assert s1.declarations == s2.declarations
    c1, c2 = s1.composition, s2.composition
    assert (c1 is None) == (c2 is None)
    if c1 is not None:
        assert (c1.n_free, c1.n_outputs, c1.n_declared) == (c2.n_free, c2.n_outputs, c2.n_declared)
        assert np.array_equal(c1.exposed, c2.exposed) and len(c1.derived) == len(c2.derived)
        for d1, d2 in zip(c1.derived, c2.derived):
            assert (d1.element_type, d1.program) == (d2.element_type, d2.program)
            assert all(np.array_equal(a, b) for a, b in zip(d1.leaves + d1.consts, d2.leaves + d2.consts))
        for u1, u2 in zip(c1.networks, c2.networks):
            assert (u1.name, u1.model, u1.isomorphic_to, u1.where, u1.inputs, u1.outputs) == \
                (u2.name, u2.model, u2.isomorphic_to, u2.where, u2.inputs, u2.outputs)
            assert [(h.onnx_name, h.tensor, h.where) for h in u1.hidden] == [(h.onnx_name, h.tensor, h.where) for h in u2.hidden]
            assert np.array_equal(u1.input_index, u2.input_index)


def _both(text):
    """(result or error message) of the package and of the default front end (bulk where it applies)."""
    out = []
    for fe in ("package", "auto"):
        try:
            out.append(parse_vnnlib2(text, "q.vnnlib", front_end=fe))
        except SpecError as e:
            out.append(str(e))
    return out


@pytest.mark.parametrize("name,text", _texts(), ids=[n for n, _ in _texts()])
def test_bulk_front_end_agrees_with_the_package(name, text):
    ref, got = _both(text)
    if isinstance(ref, str) or isinstance(got, str):
        assert ref == got
        return
    _same(ref, got)
    q = read_header(text, "q.vnnlib")
    if q is not None:  # the header reader, where it applies, reads what the package reads
        p = read_query(text, "q.vnnlib")
        assert q.networks == p.networks and q.version == p.version and not p.warnings


def test_the_bulk_front_end_takes_the_common_shapes():
    took = [t for t in CORPUS[:8] if bulk_parse(t, "q.vnnlib") is not None]
    assert len(took) == 8
    assert bulk_parse(CORPUS[-6], "q.vnnlib") is not None  # hidden nodes and several inputs and outputs
    assert bulk_parse(CORPUS[-5], "q.vnnlib") is not None  # two networks
    assert bulk_parse(CORPUS[-3], "q.vnnlib") is not None  # equal-to
    assert bulk_parse(CORPUS[-4], "q.vnnlib") is None  # equated inputs: the package path ties them


def _shipped():
    rows = [ln.split(",") for ln in (SPECS / "instances.csv").read_text().split("\n") if ln.strip()]
    return [(SPECS / o, SPECS / v) for o, v, _ in rows]


def _benchmarks():
    out = []
    acas = SHARED / "acasxu" / "vnnlib"
    if acas.is_dir():
        out += sorted(acas.glob("prop_*.vnnlib"))
    for d in ("nn4sys", "mnist_fc", "collins_rul_cnn", "eran_2021", "oval21", "cgan", "lsnc", "verivital_2021"):
        files = sorted((SHARED / d / "vnnlib").glob("*.vnnlib")) if (SHARED / d / "vnnlib").is_dir() else []
        out += sorted(files, key=lambda f: f.stat().st_size)[-2:]  # the largest two of each
    return out


@pytest.mark.parametrize("prop", _benchmarks() + [v for _, v in _shipped()], ids=lambda p: p.name)
def test_properties_as_2_0_queries(prop):
    """The 1.0 property written as 2.0 (over real, and over float32 where every row is exact there): the
    bulk front end takes it, and gives what the package gives."""
    spec = load_spec(str(prop))
    for etype in ("real", "float32"):
        if etype == "float32" and not spec_float_exact(spec):
            continue
        text = spec_to_vnnlib2(spec, [spec.n_inputs], [spec.n_outputs], etype)
        got = bulk_parse(text, prop.name)
        assert got is not None, (prop.name, etype)
        _same(parse_vnnlib2(text, prop.name, front_end="package"), got)
