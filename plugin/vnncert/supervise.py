"""Run work in a forked child under a hard deadline the parent enforces (even on native code).

The child becomes its own process-group leader, does the work, and sends one pickled result
through a pipe. The parent waits with select(); at the deadline it SIGKILLs the child's whole
process group. A child that dies without answering (segfault, OOM kill) yields a `ChildDied`.

The child never outlives its parent, however the parent ends (even by SIGKILL, which runs no
code in the parent):

- on Linux the child asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG),
  right after fork, and then checks that its parent is still the process that forked it (the
  parent may have died before the prctl call);
- a small guard process (forked by the parent, then moved into the child's process group, so that
  a kill of the caller's group spares it) waits for the end of a pipe only the parent holds open,
  and checks the parent's pid every half second; when the parent is gone it SIGKILLs the child's
  whole process group (grandchildren included, itself too). It also covers systems without prctl.
  The parent kills and reaps it with the group when the work is over.

SIGTERM / SIGINT reaching the parent while it waits kill the child's group first, then go to the
handler the parent had before (the CLI's handler, Python's KeyboardInterrupt, or the default
action). A signal the parent ignored stays ignored.

The child's stdout can be sent to /dev/null or to stderr (`child_stdout`), so that what the
libraries print there (torch prints "No CUDA runtime is found ..." when it finds nvcc but no GPU)
never reaches the parent's stdout, whose first line is the verdict.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import sys
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
_previous_handlers: dict = {}
GUARD_POLL = 0.5  # seconds between the guard's checks of the parent's pid (the pipe wakes it at once)


def _prctl():
    """libc's prctl (Linux), or None. Looked up in the parent so the child calls it at once after fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        f = ctypes.CDLL(None, use_errno=True).prctl
        f.restype = ctypes.c_int
        return f
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_PRCTL = _prctl()


def _die_with_parent(parent: int) -> None:
    """In the child: SIGKILL when the parent dies; exit now if it died already."""
    if _PRCTL is not None:
        try:
            _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except Exception:  # noqa: BLE001 - the guard still covers this child
            pass
    if os.getppid() != parent:
        os._exit(1)


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
    prev = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _guard(group: int, alive_r: int, parent: int) -> None:
    """In the guard process: wait until the parent is gone, then kill the engine's group. Never returns."""
    try:
        try:
            os.setpgid(0, group)
        except OSError:
            pass
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # the parent decides; it kills this process when done
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # hold none of the caller's pipes open
                os.dup2(null, fd)
        except OSError:
            pass
        while True:
            try:
                ready, _, _ = select.select([alive_r], [], [], GUARD_POLL)
            except InterruptedError:
                continue
            if ready or os.getppid() != parent:  # end of the pipe: the parent has exited or was killed
                break
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    finally:
        os._exit(0)


def _drop_warning(*args, **kwargs) -> None:
    return None


def run_supervised(fn: Callable[[], Any], deadline: float, child_stdout: str = "stderr",
                   quiet_warnings: bool = False) -> Any:
    """fn() in a child; returns its value, or TimedOut / ChildDied / ChildRaised. deadline: monotonic.

    child_stdout: where the child's fd 1 goes: "stderr" (the parent's fd 2), "null" (/dev/null) or
    "inherit". quiet_warnings: the child shows no Python warnings (library deprecation notices).
    """
    global _current_child
    for stream in (sys.stdout, sys.stderr):  # the child must not inherit (and later write) buffered text
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    parent = os.getpid()
    alive_r, alive_w = os.pipe()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            try:
                os.setpgid(0, 0)
            except OSError:
                pass
            _die_with_parent(parent)
            os.close(r)
            os.close(alive_r)
            os.close(alive_w)
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_DFL)
            if child_stdout in ("null", "stderr"):
                target = os.open(os.devnull, os.O_WRONLY) if child_stdout == "null" else 2
                os.dup2(target, 1)
            if quiet_warnings:  # filters alone do not hold: auto_LiRPA sets simplefilter("once") on import
                import warnings

                warnings.simplefilter("ignore")
                warnings.showwarning = _drop_warning
        except BaseException:  # noqa: BLE001 - never return into the parent's code
            os._exit(1)
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
    guard = None
    try:
        os.close(w)
        try:  # also here: the group must exist before anyone kills it
            os.setpgid(pid, pid)
        except OSError:
            pass
        _current_child = pid
        guard = os.fork()
        if guard == 0:
            os.close(r)
            os.close(alive_w)
            _guard(pid, alive_r, parent)
        try:  # in the child's group: a kill of the parent's group (the caller's) must not reach it
            os.setpgid(guard, pid)
        except OSError:
            pass
        os.close(alive_r)
        alive_r = -1
        return _wait(pid, r, deadline)
    finally:
        for fd in (r, alive_w, alive_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        _restore_signals()
        try:  # the group may hold grandchildren
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in (pid, guard):
            if p:
                if p == guard:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.waitpid(p, 0)
                except ChildProcessError:
                    pass
        _current_child = None


def _install_signals() -> None:
    _previous_handlers.clear()
    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            prev = signal.getsignal(s)
            if prev == signal.SIG_IGN:
                continue
            _previous_handlers[s] = prev if prev is not None else signal.SIG_DFL
            signal.signal(s, _on_signal)
        except ValueError:  # not the main thread: leave the signals alone
            pass


def _restore_signals() -> None:
    for s, h in list(_previous_handlers.items()):
        try:
            signal.signal(s, h)
        except ValueError:
            pass
    _previous_handlers.clear()


def _wait(pid: int, r: int, deadline: float) -> Any:
    _install_signals()
    chunks = []
    t0 = time.monotonic()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            _kill_group(pid)
            return TimedOut(time.monotonic() - t0)
        try:
            ready, _, _ = select.select([r], [], [], min(left, 3600.0))
        except InterruptedError:
            continue
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
