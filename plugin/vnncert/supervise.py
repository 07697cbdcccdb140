"""Run work in a forked child under a hard deadline the parent enforces (even on native code).

The child becomes its own process-group leader, does the work, and sends one pickled result
through a pipe. The parent waits with select(); at the deadline it SIGKILLs the child's whole
process group. A child that dies without answering (segfault, OOM kill) yields a `ChildDied`.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass
class TimedOut:
    seconds: float


@dataclass
class ChildDied:
    message: str


@dataclass
class ChildRaised:
    exc: BaseException
    trace: str


_current_child: Optional[int] = None


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _on_signal(signum, frame):
    if _current_child is not None:
        _kill_group(_current_child)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def run_supervised(fn: Callable[[], Any], deadline: float) -> Any:
    """fn() in a child; returns its value, or TimedOut / ChildDied / ChildRaised. deadline: monotonic."""
    global _current_child
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        try:
            payload = pickle.dumps(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            try:
                payload = pickle.dumps(("raised", e, traceback.format_exc()))
            except Exception:
                payload = pickle.dumps(("raised", RuntimeError(f"{type(e).__name__}: {e}"), traceback.format_exc()))
        try:
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(w)
    _current_child = pid
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    chunks = []
    t0 = time.monotonic()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(pid)
                return TimedOut(time.monotonic() - t0)
            ready, _, _ = select.select([r], [], [], min(left, 3600.0))
            if not ready:
                continue
            data = os.read(r, 1 << 20)
            if not data:
                break
            chunks.append(data)
        # EOF: the child finished writing (or died)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
        if not chunks:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
                return ChildDied(f"engine process died with signal {name}")
            return ChildDied(f"engine process exited with status {os.WEXITSTATUS(status)} without an answer")
        msg = pickle.loads(b"".join(chunks))
        if msg[0] == "ok":
            return msg[1]
        return ChildRaised(msg[1], msg[2])
    finally:
        os.close(r)
        for s, h in old.items():
            signal.signal(s, h)
        try:  # the group may hold grandchildren
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _current_child = None
