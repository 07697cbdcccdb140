"""The frozen options object passed down the call chain (no global settings)."""
from __future__ import annotations

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
