"""The small Python API (`verify`, `load_spec`, `load_network`, `Outcome`) and the one verify pipeline.

`run_query` is the supervised-verify function both command-line forms and `vnncert.verify` call:
argument checks, the deadline, the killable child process, the mapping of what came back to an
Outcome. `check_arguments` is the one check of the arguments they share.
"""
from __future__ import annotations

import math
import time
from typing import Optional

from .deadline import deadline_from_start, remaining
from .errors import VnncertError
from .options import Options, apply_threads
from .results import Outcome, Verdict


def solve(model: str, prop: str, options: Options, deadline: float) -> Outcome:
    """Load, parse and route one query in this process. Bad input becomes Outcome(error)."""
    from . import router
    from .network import load_network
    from .spec import load_spec

    t0 = time.monotonic()
    try:
        apply_threads(options.threads)
        network = load_network(model, threads=options.threads)
        spec = load_spec(prop, signature=network.signature)
        if remaining(deadline) <= 0:
            return Outcome(Verdict.TIMEOUT, engine="load", seconds=time.monotonic() - t0, detail="deadline reached while loading")
        out = router.run(network, spec, options, deadline)
    except VnncertError as e:
        return Outcome(Verdict.ERROR, engine="load", seconds=time.monotonic() - t0, detail=str(e))
    out.stats = {**(out.stats or {}), "load_seconds": round(time.monotonic() - t0 - out.seconds, 6)}
    return out


def verify(model: str, prop: str, mode: str = "auto", timeout: Optional[float] = None, seed: int = 0,
           threads: int = 0, isolate: bool = False, **option_fields) -> Outcome:
    """Answer one VNN-LIB query on one ONNX model.

    `timeout` counts from this call. With isolate=True the work runs in a supervised child
    process that is killed at the deadline (what the CLI does; the child's stdout then goes to
    stderr); otherwise engines stop cooperatively at the deadline. Bad input, including arguments
    the command line would refuse (`check_arguments`), gives Outcome(verdict=error, detail=message).
    """
    since = time.monotonic()
    try:
        options = Options.make(mode=mode, seed=seed, threads=threads, **option_fields)
    except TypeError as e:  # an option name that does not exist
        return Outcome(Verdict.ERROR, engine="api", detail=str(e))
    return run_query(model, prop, options, timeout, since=since, isolate=isolate)


ENGINE_MARGIN = 0.3  # seconds the engines stop before the hard deadline, to answer cleanly


def run_query(model: str, prop: str, options: Options, timeout: Optional[float] = None, *,
              since: Optional[float] = None, isolate: bool = True, child_stdout: str = "stderr",
              quiet_warnings: bool = False) -> Outcome:
    """Answer one query under one deadline: the one verify pipeline behind both `vnncert verify`
    forms (VNN-COMP and VNN-LIB 2.0) and `vnncert.verify`.

    1. The options and the timeout are checked (`check_options`); a bad one gives Outcome(error)
       naming the argument the way the command line spells it.
    2. The hard deadline is `timeout` seconds after `since` (a time.monotonic() value; None: the
       start of this process, which is how the command line counts); no timeout, or inf, is none.
    3. isolate=True: `solve` runs in a supervised child process (`supervise.run_supervised`) whose
       whole process group is killed at the hard deadline; the engines are told to stop
       ENGINE_MARGIN seconds earlier, to answer cleanly. The child's stdout goes to `child_stdout`
       ("stderr", "null" or "inherit"); `quiet_warnings` hides its Python warnings.
       isolate=False: `solve` runs in this process; the engines stop cooperatively at the deadline.
    4. What came back (an Outcome, a kill at the deadline, a dead or failing child) becomes one
       Outcome, with `seconds` set.
    """
    t0 = time.monotonic()
    try:
        check_options(options, timeout)
    except (TypeError, ValueError) as e:
        return Outcome(Verdict.ERROR, engine="arguments", detail=str(e))
    limit = math.inf if timeout is None else float(timeout)
    hard = deadline_from_start(limit) if since is None else since + limit
    if isolate:
        from .supervise import run_supervised

        res = run_supervised(lambda: solve(model, prop, options, hard - ENGINE_MARGIN), hard,
                             child_stdout=child_stdout, quiet_warnings=quiet_warnings)
        out = _outcome_of(res, timeout)
    else:
        out = solve(model, prop, options, hard)
    if not out.seconds:
        out.seconds = time.monotonic() - t0
    return out


def _outcome_of(res, timeout) -> Outcome:
    from .supervise import ChildDied, ChildRaised, TimedOut

    if isinstance(res, Outcome):
        return res
    if isinstance(res, TimedOut):
        return Outcome(Verdict.TIMEOUT, engine="supervisor", seconds=res.seconds,
                       detail=f"killed at the {timeout} s deadline")
    if isinstance(res, ChildDied):
        return Outcome(Verdict.ERROR, engine="supervisor", detail=res.message)
    if isinstance(res, ChildRaised):
        e = res.exc
        return Outcome(Verdict.ERROR, engine="supervisor", detail=f"internal error: {type(e).__name__}: {e}",
                       stats={"traceback": res.trace})
    return Outcome(Verdict.ERROR, engine="supervisor", detail=f"unexpected result {res!r}")


# ---- argument checks shared by both verify grammars, the smoothing commands and the API ----------
THREADS_MAX = 1024  # --threads 0..1024 (0: all cores); a fixed cap, the same on every machine
SEED_MAX = 2 ** 64 - 1  # seeds feed numpy's SeedSequence / default_rng: any integer 0..2**64-1


def check_timeout(timeout) -> None:
    """A timeout is a number of seconds >= 0; `inf` means no limit (as if none was given). NaN is refused."""
    if timeout is None:
        return
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError(f"--timeout must be a number of seconds >= 0 (inf: no limit), got {timeout}")


def check_arguments(mode=None, timeout=None, seed=None, threads=None, relaxed_method=None, sigma=None,
                    noise=None, n0=None, n=None, alpha=None, batch=None) -> None:
    """Raise ValueError naming the first bad argument. None means "not given" (the default is used).

    The one check behind `vnncert verify MODEL PROP` (VNN-COMP form), `vnncert verify QUERY --network`
    (VNN-LIB 2.0 form), `vnncert smooth` and `vnncert.verify`, so that they accept the same values.
    """
    if mode is not None:
        from .router import MODES

        if mode not in MODES:
            raise ValueError(f"--mode must be one of {', '.join(sorted(MODES))}, got {mode!r}")
    check_timeout(timeout)
    if seed is not None and not (_is_int(seed) and 0 <= seed <= SEED_MAX):
        raise ValueError(f"--seed must be an integer in 0..2**64-1, got {seed}")
    if threads is not None and not (_is_int(threads) and 0 <= threads <= THREADS_MAX):
        raise ValueError(f"--threads must be an integer in 0..{THREADS_MAX} (0: all cores), got {threads}")
    if relaxed_method is not None:
        methods = relaxed_methods()
        if str(relaxed_method).lower() not in methods:
            raise ValueError(f"--relaxed-method must be one of {', '.join(methods)}, got {relaxed_method!r}")
    if sigma is not None and not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"--sigma must be a positive finite number, got {sigma}")
    if noise is not None:
        noises = noise_kinds()
        if noise not in noises:
            raise ValueError(f"--noise must be one of {', '.join(noises)}, got {noise!r}")
    for name, v in (("--n0", n0), ("--n", n), ("--batch", batch)):
        if v is not None and not (_is_int(v) and 1 <= v <= 10 ** 12):
            raise ValueError(f"{name} must be an integer in 1..10**12, got {v}")
    if alpha is not None and not (0 < float(alpha) < 1):
        raise ValueError(f"--alpha must lie strictly between 0 and 1, got {alpha}")


def check_options(options: Options, timeout=None) -> None:
    """`check_arguments` on an Options object (the API's path)."""
    sm = options.smoothing
    check_arguments(mode=options.mode, timeout=timeout, seed=options.seed, threads=options.threads,
                    relaxed_method=options.relaxed.method, sigma=sm.sigma, noise=sm.noise,
                    n0=sm.n0, n=sm.n, alpha=sm.alpha, batch=sm.batch)


def relaxed_methods() -> tuple:
    """The relaxed engine's bounding methods, read off the engine (plus `lp`, the exact engine's LP)."""
    from .engines.relaxed import METHODS

    return tuple(METHODS) + ("lp",)


def noise_kinds() -> tuple:
    from .smoothing.noise import NOISES

    return tuple(NOISES)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
