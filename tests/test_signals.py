"""Signals and killed parents: the engine never outlives vnncert, nothing writes after the end.

Each test starts a long-running engine (helpers.slow_onnx: minutes of native ONNX Runtime work),
finds the engine process through /proc (vnncert's child that leads its own process group), kills
or signals something, and checks that every process is gone within a few seconds and that the
result file is no longer written.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from helpers import box_spec, slow_onnx

VNNCERT = [sys.executable, "-m", "vnncert.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# A shell that starts a command in the background (`make test &`, nohup) starts it with SIGINT
# ignored, and an ignored signal stays ignored across exec: the processes these tests interrupt
# would never see the SIGINT (Python installs its KeyboardInterrupt handler only where SIGINT is
# not ignored). A handler of ours is reset to the default on exec, so the children get SIGINT.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
RUN_INSTANCE = ROOT / "vnncomp_scripts" / "run_instance.sh"
GONE_WITHIN = 5.0  # seconds; the mechanisms act at once, this is room for a loaded machine


_tracked: list = []


def _track(*pids: int) -> None:
    _tracked.extend(pids)


@pytest.fixture(autouse=True)
def _kill_leftovers():
    """Whatever a failing test leaves running is killed (only the processes the test found)."""
    yield
    while _tracked:
        pid = _tracked.pop()
        if _stat(pid) is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    d = tmp_path_factory.mktemp("slow")
    model = slow_onnx(d / "slow.onnx")
    prop = d / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1e30)"]], 2))  # never reached: sampling goes on
    return model, str(prop)


def _stat(pid: int):
    """(state, ppid, pgid) of a live process, None when it is gone (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _children(pid: int):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None and st[1] == pid:
                out.append(int(d))
    return out


def _engine_of(parent: int, timeout: float = 30.0) -> int:
    """The engine: the child of `parent` that leads its own process group."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for c in _children(parent):
            st = _stat(c)
            if st is not None and st[2] == c:
                return c
        time.sleep(0.05)
    raise AssertionError(f"no engine process under {parent} after {timeout} s")


def _group(pgid: int):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None and st[2] == pgid:
                out.append(int(d))
    return out


def _gone(pids, within: float = GONE_WITHIN) -> float:
    """Seconds until every pid is gone; fails after `within`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if all(_stat(p) is None for p in pids):
            return time.monotonic() - t0
        time.sleep(0.02)
    alive = [(p, _stat(p)) for p in pids if _stat(p) is not None]
    for p, _ in alive:  # leave nothing behind for the next test
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise AssertionError(f"still running {within} s later: {alive}")


def _unchanged_for(path: Path, seconds: float) -> None:
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    time.sleep(seconds)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before, f"{path} was written after the end"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _vnncert_under(script_pid: int, timeout: float = 30.0) -> int:
    """The `vnncert verify` process run_instance.sh started (not its short-lived awk)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for kid in _children(script_pid):
            if "vnncert" in _cmdline(kid) and " verify " in _cmdline(kid):
                return kid
        time.sleep(0.05)
    raise AssertionError("run_instance.sh started no vnncert")


def test_engine_dies_when_vnncert_is_sigkilled(slow, tmp_path):
    model, prop = slow
    proc = subprocess.Popen(VNNCERT + ["verify", model, prop, "--timeout", "120", "--threads", "1",
                                       "--result-file", str(tmp_path / "r.txt")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    _track(proc.pid)
    engine = _engine_of(proc.pid)
    time.sleep(2.0)  # deep in ONNX Runtime by now
    group = _group(engine)
    _track(*group)
    assert engine in group and len(group) >= 2, group  # the engine and its guard
    proc.kill()
    proc.communicate(timeout=30)
    _gone(group)


def test_grandchildren_die_with_the_parent(tmp_path):
    """A process the engine started (same process group) goes too when the parent is SIGKILLed."""
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "from vnncert.supervise import run_supervised\n"
        "def work():\n"
        "    p = subprocess.Popen(['sleep', '300'])\n"
        "    open(sys.argv[1] + '.tmp', 'w').write(str(p.pid))\n"
        "    import os; os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "    time.sleep(300)\n"
        "run_supervised(work, time.monotonic() + 300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(pid_file)], env=ENV)
    _track(proc.pid)
    t0 = time.monotonic()
    while not pid_file.exists():
        assert time.monotonic() - t0 < 30, "the engine did not start its grandchild"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    engine = _engine_of(proc.pid)
    _track(grandchild, *_group(engine))
    assert _stat(grandchild) is not None and _stat(grandchild)[2] == engine
    proc.kill()
    proc.wait(timeout=30)
    _gone([engine, grandchild])


def test_engine_dies_when_run_instance_group_is_sigkilled(slow, tmp_path):
    model, prop = slow
    script = subprocess.Popen(["bash", str(RUN_INSTANCE), "v1", "c", model, prop, str(tmp_path / "r.txt"), "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    _track(script.pid)
    parent = _vnncert_under(script.pid)
    _track(parent)
    engine = _engine_of(parent)
    time.sleep(2.0)
    group = _group(engine)
    _track(*group)
    os.killpg(script.pid, signal.SIGKILL)
    script.communicate(timeout=30)
    _gone([parent] + group)


def test_sigterm_to_vnncert_kills_the_engine_and_exits_143(slow, tmp_path):
    model, prop = slow
    res = tmp_path / "r.txt"
    proc = subprocess.Popen(VNNCERT + ["verify", model, prop, "--timeout", "120", "--threads", "1",
                                       "--result-file", str(res)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _track(proc.pid)
    engine = _engine_of(proc.pid)
    time.sleep(1.5)
    group = _group(engine)
    _track(*group)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, (out, err)
    assert out == "" and err == ""  # quiet: no verdict printed after the signal, no traceback
    assert all(_stat(p) is None for p in group), "vnncert exited before its engine was gone"
    assert res.read_text() == "unknown\n"  # as written at the start: nothing after the signal
    _unchanged_for(res, 1.0)


def test_sigterm_to_run_instance_leaves_no_writer(slow, tmp_path):
    model, prop = slow
    res = tmp_path / "r.txt"
    script = subprocess.Popen(["bash", str(RUN_INSTANCE), "v1", "c", model, prop, str(res), "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                              start_new_session=True)
    _track(script.pid)
    parent = _vnncert_under(script.pid)
    _track(parent)
    engine = _engine_of(parent)
    time.sleep(1.5)
    group = _group(engine)
    _track(*group)
    os.kill(script.pid, signal.SIGTERM)
    out, err = script.communicate(timeout=30)
    assert script.returncode == 143, (out, err)
    # the script waited for vnncert, which had killed its engine: no writer is left behind
    assert all(_stat(p) is None for p in [parent] + group), [(p, _stat(p)) for p in [parent] + group]
    assert res.read_text() == "unknown\n"
    _unchanged_for(res, 1.0)


@pytest.fixture(scope="module")
def softmax_query(tmp_path_factory):
    """A query the quick pass and the falsifier leave open (Softmax: no layer graph; unsat), so an
    auto run goes on to import torch and auto_LiRPA in the engine (about two seconds)."""
    import numpy as np
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


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.35, 0.6, 1.0, 1.6])
def test_sigint_at_any_moment_is_a_quiet_exit_130(softmax_query, tmp_path, delay):
    model, prop = softmax_query
    res = tmp_path / "r.txt"
    proc = subprocess.Popen(VNNCERT + ["verify", model, prop, "--timeout", "60", "--threads", "1",
                                       "--result-file", str(res)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _track(proc.pid)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    if proc.returncode == 0:  # it had answered already: nothing to interrupt
        assert out.splitlines()[0] == "unsat"
        return
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, err)
    assert err == "", err  # no traceback, no internal error
    assert _children(proc.pid) == []


@pytest.mark.parametrize("turn_into", ["KeyboardInterrupt", "ImportError"])
def test_sigint_during_an_import_is_a_quiet_exit_130(tmp_path, turn_into):
    """The interrupt lands inside `import numpy` (made certain by an import hook that signals the
    process); an interrupted C-extension import may surface as ImportError, which must not show
    either."""
    code = (
        "import os, signal, sys, time, runpy\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy':\n"
        "            try:\n"
        "                os.kill(os.getpid(), signal.SIGINT)\n"
        "                time.sleep(5)\n"
        "            except KeyboardInterrupt:\n"
        f"                if {turn_into!r} == 'ImportError':\n"
        "                    raise ImportError('numpy: the C extension failed to import')\n"
        "                raise\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['vnncert'] + sys.argv[1:]\n"
        "runpy.run_module('vnncert.cli', run_name='__main__', alter_sys=True)\n"
    )
    p = subprocess.run([sys.executable, "-c", code, "verify", "m.onnx", "p.vnnlib"], capture_output=True, text=True,
                       env=ENV, cwd=tmp_path, timeout=60)
    assert p.returncode == 130, p.stderr
    assert p.stderr == "" and p.stdout == ""
