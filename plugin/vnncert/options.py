"""The frozen options object passed down the call chain (no global settings)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Options:
    mode: str = "auto"
    seed: int = 0
    threads: int = 0  # 0 = all cores
    # falsifier
    attack_samples: int = 4096
    pgd_restarts: int = 64
    pgd_steps: int = 50
    # relaxed engine
    relaxed_method: str = "crown"  # ibp | crown | alpha-crown
    split_heuristic: str = "slack"  # input-split dimension: slack | smear | width | abswidth (docs/relaxed.md)
    split_max_dims: int = 16  # input-split BaB only when a case has at most this many free input dims
    # probabilistic engine
    sigma: float = 0.25
    noise: str = "gaussian"
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    batch: int = 10_000

    def with_(self, **kw) -> "Options":
        return replace(self, **kw)


def apply_threads(threads: int) -> None:
    """Pin torch's thread pools (ONNX Runtime and HiGHS get the count through their own options).

    torch is not imported here (it costs ~1.5 s of start-up): before its import the count goes
    through OMP_NUM_THREADS / MKL_NUM_THREADS, which torch reads when it starts; engines that
    import torch call `apply_torch_threads` afterwards.
    """
    import os
    import sys

    # OpenMP threads that spin while waiting make small torch ops (ACAS Xu-sized CROWN) 20x slower
    # whenever another process wants the cores (measured: 104 s vs 5.7 s on 2 loaded cores)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads and threads > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        if "torch" in sys.modules:
            apply_torch_threads(threads)


def apply_torch_threads(threads: int) -> None:
    if threads and threads > 0:
        import torch

        torch.set_num_threads(threads)
        # torch aborts the whole process (C++ terminate, not a Python error) when the interop pool is
        # set a second time or after parallel work started: set it at most once per process
        if torch.get_num_interop_threads() != 1 and not _INTEROP_SET:
            _INTEROP_SET.append(True)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass


_INTEROP_SET: list = []


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


def check_options(options: "Options", timeout=None) -> None:
    """`check_arguments` on an Options object (the API's path)."""
    check_arguments(mode=options.mode, timeout=timeout, seed=options.seed, threads=options.threads,
                    relaxed_method=options.relaxed_method, sigma=options.sigma, noise=options.noise,
                    n0=options.n0, n=options.n, alpha=options.alpha, batch=options.batch)


def relaxed_methods() -> tuple:
    """The relaxed engine's bounding methods, read off the engine (plus `lp`, the exact engine's LP)."""
    from .engines.relaxed import METHODS

    return tuple(METHODS) + ("lp",)


def noise_kinds() -> tuple:
    from .engines.probabilistic import NOISES

    return tuple(NOISES)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
