"""Another standard-CLI solver on a query vnncert composes: the `vnnlib-test-solver` package (a configurable
fake) answers a query with two networks and a hidden node, and vnncert reads its answer and re-checks it
(api.read_assignment, api.check_assignment), as it reads and re-checks its own standard-CLI answer.

What the fake can show: that its output for such a query (every declared variable of both networks, hidden
node included, in declaration order) is read the same way as vnncert's, and that a claimed witness is judged
only by replaying its inputs on the original models: a correct assignment passes, one whose inputs leave the
box or whose inputs do not make the query true fails whatever outputs it claims. It cannot show that the
fake solver reasons about the query at all: its answers are configured."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import SPECS

from vnncert.api import check_assignment, read_assignment

TINY = str(SPECS / "onnx" / "tiny_2in.onnx")
# tiny: h = relu(x0 + x1, x0 - x1), y1 = 0.5 - 2 x1 on the box; g is a copy of it, on the same input
QUERY = """(vnnlib-version <2.0>)
(declare-network f (declare-input X float32 [1,2]) (declare-hidden H float32 [1,2] "h") (declare-output Y float32 [1,2]))
(declare-network g (declare-input A float32 [1,2]) (declare-output B float32 [1,2]))
(assert (and (>= X[0,0] 0.5) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 0.5)))
(assert (and (== X[0,0] A[0,0]) (== X[0,1] A[0,1])))
(assert (>= H[0,0] 0.9))
(assert (>= B[0,1] 0.4))
"""


def _fake():
    from test_cli_standard import FAKE

    import os

    if not os.path.exists(FAKE):
        pytest.skip("vnnlibTestSolver (package vnnlib-test-solver) is not installed")
    return FAKE


def _run(argv, tmp_path):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("driver")
    (d / "g.onnx").write_bytes(open(TINY, "rb").read())
    (d / "q.vnnlib").write_text(QUERY)
    networks = {"f": TINY, "g": str(d / "g.onnx")}
    return d, networks


def test_vnncert_answers_and_its_answer_rechecks(setup, tmp_path):
    d, networks = setup
    p = _run([sys.executable, "-m", "vnncert.cli", "verify", str(d / "q.vnnlib"), "--network", f"f={networks['f']}",
              "--network", f"g={networks['g']}", "--threads", "1", "--timeout", "60"], tmp_path)
    assert p.returncode == 0 and p.stdout.startswith("sat\n"), p.stderr
    values = read_assignment(p.stdout.split("\n", 1)[1], str(d / "q.vnnlib"))
    assert list(values) == ["X", "H", "Y", "A", "B"]  # declaration order, hidden node included
    assert check_assignment(str(d / "q.vnnlib"), networks, values) is None
    assert values["H"][0, 0] >= np.float32(0.9) and values["B"][0, 1] >= np.float32(0.4)


def _config(rules):
    lines = ['[solver]', 'name = "Fake Solver"', 'version = "2.0.1"']
    for match, values in rules:
        lines += ["", "[[rules]]", f'match = "{match}"', 'result = "sat"', "[rules.assignments]"]
        lines += [f"{k} = {json.dumps([float(v) for v in np.ravel(vals)])}" for k, vals in values.items()]
    return "\n".join(lines) + "\n"


def test_the_fake_solver_is_read_and_rechecked(setup, tmp_path):
    fake = _fake()
    d, networks = setup
    good = {"X": [1.0, 0.0], "H": [1.0, 1.0], "Y": [0.0, 0.5], "A": [1.0, 0.0], "B": [0.0, 0.5]}
    outside = dict(good, X=[1.5, 0.0], A=[1.5, 0.0])  # claims the same outputs; its input leaves the box
    liar = dict(good, X=[0.5, 0.0], A=[0.5, 0.0])  # in the box, but h0 = 0.5 < 0.9: the claimed H is false
    untied = dict(good, A=[1.0, 0.25])  # the query equates X and A
    cfg = tmp_path / "fake.toml"
    cfg.write_text(_config([("good*", good), ("outside*", outside), ("liar*", liar), ("untied*", untied)]))
    verdicts = {}
    for stem in ("good", "outside", "liar", "untied"):
        q = tmp_path / f"{stem}_q.vnnlib"
        q.write_text(QUERY)
        p = _run([fake, "--config", str(cfg), "verify", str(q), "--network", f"f={networks['f']}",
                  "--network", f"g={networks['g']}", "--timeout", "10"], tmp_path)
        assert p.returncode == 0 and p.stdout.startswith("sat\n"), (p.stdout, p.stderr)
        values = read_assignment(p.stdout.split("\n", 1)[1], str(q))
        assert list(values) == ["X", "H", "Y", "A", "B"]
        verdicts[stem] = check_assignment(str(q), networks, values)
    assert verdicts["good"] is None
    assert "do not make the query true" in verdicts["outside"]
    assert "do not make the query true" in verdicts["liar"]
    assert "equates" in verdicts["untied"]


def test_a_wrong_mapping_is_the_fake_solvers_error_too(setup, tmp_path):
    """Standard error condition 1 for a second network without a model: both solvers refuse it."""
    fake = _fake()
    d, networks = setup
    cfg = tmp_path / "fake.toml"
    cfg.write_text(_config([("q*", {})]))
    for argv in ([fake, "--config", str(cfg)], [sys.executable, "-m", "vnncert.cli"]):
        p = _run(argv + ["verify", str(d / "q.vnnlib"), "--network", f"f={networks['f']}"], tmp_path)
        assert p.returncode != 0 and p.stdout == "" and "g" in p.stderr, (argv[0], p.stdout, p.stderr)
