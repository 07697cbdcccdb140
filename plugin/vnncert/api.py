"""The small Python API: `verify`, `load_spec`, `load_network`, `Outcome`."""
from __future__ import annotations

import math
import time
from typing import Optional

from .deadline import remaining
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
        spec = load_spec(prop, network=network)
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
    try:
        options = Options.make(mode=mode, seed=seed, threads=threads, **option_fields)
        check_options(options, timeout)
    except (TypeError, ValueError) as e:  # the same checks as the command line's
        return Outcome(Verdict.ERROR, engine="api", detail=str(e))
    deadline = time.monotonic() + (timeout if timeout is not None else math.inf)
    if not isolate:
        return solve(model, prop, options, deadline)
    from .supervise import run_supervised

    engine_deadline = deadline - ENGINE_MARGIN if timeout is not None else deadline
    res = run_supervised(lambda: solve(model, prop, options, engine_deadline), deadline, child_stdout="stderr")
    return outcome_of(res, timeout)


ENGINE_MARGIN = 0.3  # seconds the engines stop before the hard deadline, to answer cleanly


def outcome_of(res, timeout) -> Outcome:
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
