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
    # REFERENCE.md's example, value for value (17 significant digits of the float32 values)
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
