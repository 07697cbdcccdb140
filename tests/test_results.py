"""Result files: exact VNN-COMP format, float32 round trip, atomic writes, refusal of unchecked sat."""
import os

import numpy as np
import pytest

from vnncert.results import (Outcome, Verdict, format_witness, parse_assignment, parse_verdict, read_result_file,
                             result_text, witness_input, write_result_file)


def test_witness_round_trips_float32_exactly(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(200) * 10.0 ** rng.integers(-8, 8, 200)).astype(np.float32)
    y = rng.standard_normal(7).astype(np.float32)
    out = Outcome(Verdict.SAT, counterexample=(x, y), witness_checked=True)
    f = tmp_path / "r.txt"
    write_result_file(str(f), out)
    verdict, assignment = read_result_file(str(f))
    assert verdict == Verdict.SAT
    back = witness_input(assignment, x.size).astype(np.float32)
    assert np.array_equal(back, x)
    assert np.array_equal(np.array([assignment[f"Y_{j}"] for j in range(7)], np.float32), y)


def test_result_file_layout():
    x = np.array([0.025, 0.975], np.float32)
    y = np.array([-0.035, 0.325], np.float32)
    text = result_text(Outcome(Verdict.SAT, counterexample=(x, y), witness_checked=True))
    # docs/formats.md's example, value for value (17 significant digits of the float32 values)
    assert text == ("sat\n((X_0 0.02500000037252903)\n (X_1 0.97500002384185791)\n"
                    " (Y_0 -0.035000000149011612)\n (Y_1 0.32499998807907104))\n")


def test_sat_without_checked_witness_is_refused(tmp_path):
    x = np.zeros(2, np.float32)
    with pytest.raises(ValueError):
        result_text(Outcome(Verdict.SAT, counterexample=(x, x), witness_checked=False))
    with pytest.raises(ValueError):
        result_text(Outcome(Verdict.SAT))


@pytest.mark.parametrize("v", ["unsat", "unknown", "timeout", "error"])
def test_one_word_results(tmp_path, v):
    f = tmp_path / "r"
    write_result_file(str(f), Outcome(Verdict(v)))
    assert f.read_text() == v + "\n"


def test_atomic_write_leaves_no_temp_files(tmp_path):
    f = tmp_path / "r"
    for v in ("unknown", "unsat"):
        write_result_file(str(f), Outcome(Verdict(v)))
    assert os.listdir(tmp_path) == ["r"]


def test_old_words_and_harness_words():
    assert parse_verdict("holds") == Verdict.UNSAT
    assert parse_verdict("violated") == Verdict.SAT
    assert parse_verdict("run_instance_timeout") == Verdict.TIMEOUT
    assert parse_verdict("error_exit_code_1") == Verdict.ERROR


def test_parse_assignment_ignores_comments():
    a = parse_assignment("((X_0 1.5) ; c\n (X_1 -2e-3)\n (Y_0 3))")
    assert a == {"X_0": 1.5, "X_1": -0.002, "Y_0": 3.0}
    assert format_witness(np.zeros(0, np.float32), np.zeros(0, np.float32)) == "()"


def test_fixed_input_that_is_not_a_float32_is_reached_by_its_rounding(tmp_path):
    """A box with X_0 fixed at 0.1 (no float32 equals it): the model's input there is fl32(0.1),
    which is accepted as a witness; a float32 one step further out is not; strict bounds stay exact."""
    from helpers import mlp_onnx

    from vnncert import load_network
    from vnncert.results import check_witness
    from vnncert.search.falsify import snap_into_box
    from vnncert.spec import parse_spec

    net = load_network(mlp_onnx(tmp_path / "id.onnx", [(np.eye(2), np.zeros(2))]), threads=1)
    text = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
            "(assert (>= X_0 0.1))\n(assert (<= X_0 0.1))\n(assert (>= X_1 -1.0))\n(assert (<= X_1 1.0))\n"
            "(assert (>= Y_0 0.05))\n")
    spec = parse_spec(text, n_inputs=2, n_outputs=2)
    f = np.float32(0.1)
    assert float(f) != 0.1
    x = snap_into_box(np.array([0.1, 0.25]), spec.cases[0].region.lower, spec.cases[0].region.upper, np.float32)
    assert x[0] == f
    assert check_witness(net, spec, x) is not None
    for off in (np.nextafter(f, np.float32(1)), np.nextafter(f, np.float32(0))):
        assert check_witness(net, spec, np.array([off, 0.25], np.float32)) is None
    reg = spec.cases[0].region
    assert not reg.contains(np.array([[float(f), 0.25]]))[0]  # the real box itself is unchanged
    assert reg.contains_input(np.array([[float(f), 0.25]]), np.float32)[0]
    assert not reg.contains_input(np.array([[float(f), 0.25]]), np.float64)[0]
    # fl32(0.7) < 0.7: reached by rounding from X_0 >= 0.7, but a strict X_0 > 0.7 is checked exactly
    g = np.float32(0.7)
    assert float(g) < 0.7
    wide = text.replace("(assert (<= X_0 0.1))", "(assert (<= X_0 0.8))")
    closed = parse_spec(wide.replace("(assert (>= X_0 0.1))", "(assert (>= X_0 0.7))"), n_inputs=2, n_outputs=2)
    strict = parse_spec(wide.replace("(assert (>= X_0 0.1))", "(assert (> X_0 0.7))"), n_inputs=2, n_outputs=2)
    assert check_witness(net, closed, np.array([g, 0.25], np.float32)) is not None
    assert check_witness(net, strict, np.array([g, 0.25], np.float32)) is None
    # the falsifier answers sat on it (the centre is a witness of Y_0 >= 0.05)
    from vnncert.engines import attack
    from vnncert.options import Options

    out = attack.check(net, spec, __import__("time").monotonic() + 20, Options(mode="falsify", threads=1))
    assert out.verdict == Verdict.SAT and out.counterexample[0][0] == f
