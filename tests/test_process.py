"""The process side of the command line: stdout's first line, output files, shared argument checks."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SPECS
from helpers import box_spec

VNNCERT = [sys.executable, "-m", "vnncert.cli"]
TINY = SPECS / "onnx" / "tiny_2in.onnx"


@pytest.fixture(scope="module")
def softmax_query(tmp_path_factory):
    """A query the quick pass (no layer graph for Softmax) and the falsifier (it is unsat) leave open:
    an auto run goes on to the relaxed engine, which imports torch's extension helper via auto_LiRPA."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = tmp_path_factory.mktemp("sig")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    W = numpy_helper.from_array(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32), "W")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1),
                           helper.make_node("Softmax", ["z"], ["y"], axis=1)], "sig", [x], [y], [W, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(d / "sig.onnx"))
    prop = d / "sig.vnnlib"
    prop.write_text(box_spec([0.5, 0.0], [1.0, 0.5], [["(>= Y_0 1.5)"]], 2))  # softmax < 1: unsat
    return str(d / "sig.onnx"), str(prop)


def _fake_cuda_env(tmp_path: Path) -> dict:
    """PATH with an `nvcc` first: torch then prints "No CUDA runtime is found, using CUDA_HOME=..." on
    stdout when its extension helper is imported on a machine without a GPU."""
    bin_dir = tmp_path / "cuda" / "bin"
    bin_dir.mkdir(parents=True)
    nvcc = bin_dir / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'nvcc: fake'\n")
    nvcc.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@pytest.mark.parametrize("grammar", ["vnncomp", "vnnlib2"])
def test_stdout_first_line_is_the_verdict_with_nvcc_on_path(softmax_query, tmp_path, grammar):
    model, prop = softmax_query
    env = _fake_cuda_env(tmp_path)
    args = (["verify", model, prop] if grammar == "vnncomp" else ["verify", prop, "--network", f"N={model}"])
    args += ["--timeout", "60", "--threads", "1"]
    p = subprocess.run(VNNCERT + args, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "unsat\n", p.stdout  # nothing before (or after) the verdict
    assert p.stderr == "", p.stderr  # library warnings stay off stderr in a normal run
    # with -v the libraries' chatter goes to stderr; that it shows there proves the run reached it
    v = subprocess.run(VNNCERT + args + ["-v"], capture_output=True, text=True, env=env, timeout=120)
    assert v.returncode == 0 and v.stdout.splitlines()[0] == "unsat", v.stdout
    if "No CUDA runtime" not in v.stderr:
        pytest.skip("torch printed no CUDA notice here (a GPU, or another torch build)")
    assert "No CUDA runtime" not in v.stdout


def test_api_refuses_what_the_command_line_refuses():
    import vnncert

    for kw, needle in [({"timeout": float("nan")}, "--timeout"), ({"mode": "bogus"}, "--mode"),
                       ({"threads": 100000}, "--threads"), ({"seed": -1}, "--seed"), ({"sigma": -1.0}, "--sigma"),
                       ({"n": 0}, "--n must"), ({"alpha": 2.0}, "--alpha"), ({"noise": "bogus"}, "--noise"),
                       ({"relaxed_method": "bogus"}, "--relaxed-method")]:
        out = vnncert.verify(str(TINY), "unused.vnnlib", **kw)
        assert out.verdict == vnncert.Verdict.ERROR and needle in out.detail, (kw, out.detail)


def test_check_arguments_accepts_the_defaults_and_inf():
    from vnncert.api import check_arguments, check_options
    from vnncert.options import Options

    check_options(Options())
    # the defaults skipped by check_options are themselves valid
    defaults = Options()
    check_arguments(relaxed_method=defaults.relaxed.method, noise=defaults.smoothing.noise)
    check_arguments(mode="auto", timeout=float("inf"), seed=2 ** 64 - 1, threads=1024, relaxed_method="alpha-crown",
                    sigma=0.5, noise="laplace", n0=1, n=1, alpha=0.5)
    check_arguments(timeout=0.0, threads=0, seed=0)
    with pytest.raises(ValueError, match="--threads"):
        check_arguments(threads=1025)
    with pytest.raises(ValueError, match="--seed"):
        check_arguments(seed=2 ** 64)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_mode_symlink_and_devices(tmp_path):
    from vnncert.results import atomic_write

    new = tmp_path / "new.txt"
    atomic_write(str(new), "a\n")
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~_umask()  # what open() gives, not 0600
    old = tmp_path / "old.txt"
    old.write_text("x\n")
    old.chmod(0o604)
    atomic_write(str(old), "b\n")
    assert old.read_text() == "b\n" and stat.S_IMODE(old.stat().st_mode) == 0o604
    sub = tmp_path / "sub"
    sub.mkdir()
    target = sub / "target.txt"
    target.write_text("t\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write(str(link), "through\n")
    assert link.is_symlink() and target.read_text() == "through\n"
    assert sorted(p.name for p in sub.iterdir()) == ["target.txt"]  # the temporary file was in the target's folder
    fifo = tmp_path / "fifo"  # not a regular file: written in place, never replaced
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write(str(fifo), "through the pipe\n")
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(IsADirectoryError):
        atomic_write(str(sub), "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.txt", "new.txt", "old.txt", "sub"]  # no leftovers


def test_same_file_sees_symlinks_and_hard_links(tmp_path):
    from vnncert.outputs import OutputError, check_distinct, same_file

    a = tmp_path / "a.onnx"
    a.write_bytes(b"m")
    (tmp_path / "s").symlink_to(a)
    os.link(a, tmp_path / "h")
    assert same_file(str(a), str(tmp_path / "s")) and same_file(str(a), str(tmp_path / "h"))
    assert same_file(str(tmp_path / "new.txt"), str(tmp_path / "." / "new.txt"))  # neither exists yet
    assert not same_file(str(a), str(tmp_path / "b"))
    with pytest.raises(OutputError, match="same file as the model"):
        check_distinct([("--result-file", str(tmp_path / "h"))], [("model", str(a))])
    check_distinct([("--result-file", str(tmp_path / "r.txt")), ("--json", None)], [("model", str(a))])


def test_demo_detail_is_wrapped_at_word_boundaries():
    from vnncert.demo import detail_lines

    text = ("quick_bounds: unknown (no layer graph (unsupported ONNX operator Sigmoid by the MILP encoder)); "
            "attack: unknown (no witness in 4096 samples; no witness in 50 PGD steps); relaxed: unsat")
    lines = detail_lines(text, 40)
    assert " ".join(lines) == text  # nothing lost, nothing cut
    assert all(len(line) <= 40 for line in lines)
    words = set(text.split())
    assert all(w in words for line in lines for w in line.split())
    assert detail_lines("") == [""]
