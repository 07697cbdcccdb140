"""One OS process per step, under a wall-clock limit, whose whole tree is killed at the limit.

Each step starts in a new session (its own process group). At the limit the runner SIGKILLs
every descendant it can see (psutil, collected before the kill) and the group. A step that dies
by a signal (segfault, OOM kill) is reported as such; nothing it does can affect other rows.

`Running` objects are waited on through Linux pidfds when available (no polling latency), else
polled every 10 ms. An optional address-space limit (RLIMIT_AS) is set by `ulimit -v` in a
`/bin/sh` wrapper that then `exec`s the step, so no Python code runs between fork and exec (safe in
the threads of a Dask worker).
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class Step:
    """One process to run: argv, wall-clock limit, where its output goes."""

    argv: List[str]
    timeout: float  # seconds of wall time; the process tree is killed when they pass
    cwd: Optional[str] = None
    env: Optional[Dict[str, str]] = None
    stdout_path: Optional[str] = None  # None: discarded
    stderr_path: Optional[str] = None  # None: discarded; the same path as stdout_path: one log
    label: str = ""


@dataclass
class StepResult:
    returncode: Optional[int]  # exit status; None when killed at the limit or by a signal
    signal: Optional[int]  # the signal that ended it (not counting our kill at the limit)
    seconds: float  # wall time from spawn to exit
    timed_out: bool  # killed by us at the limit
    spawn_error: str = ""  # the process could not be started at all

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        if self.spawn_error:
            return f"could not start: {self.spawn_error}"
        if self.timed_out:
            return f"killed at its {self.seconds:.1f} s limit"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            return f"died with signal {name}"
        return f"exit code {self.returncode}"


@dataclass
class Running:
    step: Step
    popen: Optional[subprocess.Popen]
    started: float
    deadline: float
    pidfd: Optional[int] = None
    files: list = field(default_factory=list)
    result: Optional[StepResult] = None


def _wrapped(argv: List[str], memory_limit_mb: Optional[float]) -> List[str]:
    if not memory_limit_mb:
        return list(argv)
    kb = max(1, int(memory_limit_mb * 1024))
    return ["/bin/sh", "-c", f'ulimit -v {kb} && exec "$@"', "vnncert-limit"] + list(argv)


def start(step: Step, memory_limit_mb: Optional[float] = None) -> Running:
    t0 = time.monotonic()
    files = []
    try:
        out = open(step.stdout_path, "wb") if step.stdout_path else subprocess.DEVNULL
        if step.stdout_path:
            files.append(out)
        if step.stderr_path and step.stderr_path == step.stdout_path:
            err = subprocess.STDOUT
        else:
            err = open(step.stderr_path, "wb") if step.stderr_path else subprocess.DEVNULL
            if step.stderr_path:
                files.append(err)
        env = None
        if step.env is not None:
            env = dict(os.environ)
            env.update(step.env)
        p = subprocess.Popen(_wrapped(step.argv, memory_limit_mb), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             cwd=step.cwd, env=env, start_new_session=True, close_fds=True)
    except OSError as e:
        for f in files:
            f.close()
        r = Running(step, None, t0, t0 + step.timeout)
        r.result = StepResult(None, None, time.monotonic() - t0, False, spawn_error=f"{step.argv[0]}: {e.strerror or e}")
        return r
    run = Running(step, p, t0, t0 + step.timeout, files=files)
    if hasattr(os, "pidfd_open"):
        try:
            run.pidfd = os.pidfd_open(p.pid)
        except OSError:
            run.pidfd = None
    return run


def _descendants(pid: int) -> list:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing, or the process is gone
        return []


def kill_tree(pid: int) -> None:
    """SIGKILL the process, its group, and every descendant (and their groups)."""
    kids = _descendants(pid)
    groups = {pid}
    for k in kids:
        try:
            groups.add(os.getpgid(k.pid))
        except (ProcessLookupError, OSError):
            pass
    for g in groups:
        if g in (0, 1, os.getpgrp()):
            continue
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for k in kids:
        try:
            k.kill()
        except Exception:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _finish(run: Running, timed_out: bool) -> StepResult:
    p = run.popen
    if timed_out:
        kill_tree(p.pid)
    code = p.wait()
    seconds = time.monotonic() - run.started
    for f in run.files:
        try:
            f.close()
        except OSError:
            pass
    if run.pidfd is not None:
        try:
            os.close(run.pidfd)
        except OSError:
            pass
        run.pidfd = None
    if timed_out:
        run.result = StepResult(None, None, seconds, True)
    elif code < 0:
        run.result = StepResult(None, -code, seconds, False)
    else:
        run.result = StepResult(code, None, seconds, False)
    return run.result


def poll(run: Running) -> Optional[StepResult]:
    """The result if the step ended (or its limit passed, in which case it is killed now)."""
    if run.result is not None:
        return run.result
    if run.popen.poll() is not None:
        return _finish(run, False)
    if time.monotonic() >= run.deadline:
        return _finish(run, True)
    return None


def wait_any(runs: List[Running], max_wait: float) -> None:
    """Block until some step may have ended, some limit passed, or max_wait seconds elapsed."""
    if not runs:
        time.sleep(max(0.0, min(max_wait, 0.05)))
        return
    now = time.monotonic()
    wait = max(0.0, min([max_wait] + [r.deadline - now for r in runs]))
    fds = [r.pidfd for r in runs if r.pidfd is not None]
    if fds and len(fds) == len(runs):
        try:
            select.select(fds, [], [], wait)
            return
        except (OSError, ValueError):
            pass
    time.sleep(min(wait, 0.01))


def run_step(step: Step, memory_limit_mb: Optional[float] = None) -> StepResult:
    """Run one step to its end or limit (blocking)."""
    run = start(step, memory_limit_mb)
    while True:
        res = poll(run)
        if res is not None:
            return res
        wait_any([run], 3600.0)


def tail(path: Optional[str], limit: int = 400) -> str:
    """The last `limit` characters of a log file, on one line."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())[-limit:]
