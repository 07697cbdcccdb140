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
    relaxed_method: str = "crown"
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
    """Pin torch's thread pools (ONNX Runtime and HiGHS get the count through their own options)."""
    if threads and threads > 0:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
