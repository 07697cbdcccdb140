"""The frozen options object passed down the call chain (no global settings)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace


# Each engine (and each shared layer: bounds, search, milp, smoothing) reads its tuning constants from
# its own frozen section below; a constant's one-line comment says why it has its value. A test picks
# a code path by passing a section with other values (`Options().with_(attack=AttackOptions(...))`
# or the flat names of `FLAT`), never by patching module globals.


@dataclass(frozen=True)
class AttackOptions:
    """The falsifier (engines/attack.py)."""

    samples: int = 4096  # random + corner samples over all cases: enough to hit ACAS Xu's sat regions
    pgd_restarts: int = 64  # PGD starts per round (at least one per disjunct)
    pgd_steps: int = 50  # PGD steps per start
    lead_seconds: float = 10.0  # in front of a complete engine (--mode exact): HiGHS's own heuristics find witnesses slowly
    lead_share: float = 0.1  # ... and at most this share of the time, so the complete engine keeps the rest


@dataclass(frozen=True)
class QuickOptions:
    """The numpy CROWN pass before any heavy import (engines/quick_bounds.py)."""


@dataclass(frozen=True)
class RelaxedOptions:
    """The relaxed engine (engines/relaxed.py)."""

    method: str = "crown"  # ibp | crown | alpha-crown | lp


@dataclass(frozen=True)
class BoundsOptions:
    """The bounds layer (bounds/)."""


@dataclass(frozen=True)
class InputSplitOptions:
    """Input-split branch and bound (search/)."""

    heuristic: str = "slack"  # input-split dimension: slack | smear | width | abswidth (docs/relaxed.md)
    max_dims: int = 16  # input splitting only when a case has at most this many free input dims


@dataclass(frozen=True)
class ActivationSplitOptions:
    """Activation-split (ReLU-split) branch and bound (search/)."""


@dataclass(frozen=True)
class MilpOptions:
    """The Pyomo model and the HiGHS solve (milp/)."""

    primal_feas_tol: float = 1e-7  # HiGHS's primal feasibility tolerance: only enlarges the searched set (safe side)
    dual_feas_tol: float = 1e-9  # HiGHS's dual feasibility tolerance: the unsat margin is 10 x this x the column ranges
    mip_feas_tol: float = 1e-6  # HiGHS's integrality tolerance: only enlarges the searched set (safe side)
    sub_mips: bool = False  # RINS, RENS and root reduced-cost sub-MIPs: most of the time on these models, no answer helped
    early_stop: float = 1.0  # seconds (at most 5 % of its time) a solve is told to stop before its deadline
    spurious_retries: int = 3  # incumbents that do not replay: re-solves asking for a deeper violation
    mip_gap: float = 1e-4  # relative gap at which HiGHS may stop (the cutoff decides unsat, not this)


@dataclass(frozen=True)
class ExactOptions:
    """The exact engine's pipeline (engines/exact.py)."""

    row_bounds: bool = True  # rule disjuncts out by their rows' sound bounds before HiGHS (off: HiGHS decides; tests)


@dataclass(frozen=True)
class SmoothingOptions:
    """Randomized smoothing (smoothing/, engines/probabilistic.py)."""

    sigma: float = 0.25  # noise level (Cohen et al. 2019 use 0.12 .. 1.0)
    noise: str = "gaussian"  # gaussian (l2) | laplace | uniform (l1)
    n0: int = 100  # selection samples (Cohen et al.'s default)
    n: int = 100_000  # estimation samples (Cohen et al.'s default)
    alpha: float = 0.001  # failure probability (Cohen et al.'s default)
    batch: int = 10_000  # noisy inputs per ONNX Runtime call
    max_batch_values: int = 1 << 25  # input values per batch at most (128 MiB of float32): caps the batch of big inputs
    bank_limit_bytes: int = 1 << 30  # a noise bank larger than this is not drawn (fresh noise instead): bounded memory
    witness_replays: int = 16  # candidate witnesses of f replayed per query at most (one ORT call on the original each)


@dataclass(frozen=True)
class Options:
    mode: str = "auto"
    seed: int = 0
    threads: int = 0  # 0 = all cores
    attack: AttackOptions = field(default_factory=AttackOptions)
    quick: QuickOptions = field(default_factory=QuickOptions)
    relaxed: RelaxedOptions = field(default_factory=RelaxedOptions)
    bounds: BoundsOptions = field(default_factory=BoundsOptions)
    input_split: InputSplitOptions = field(default_factory=InputSplitOptions)
    activation_split: ActivationSplitOptions = field(default_factory=ActivationSplitOptions)
    milp: MilpOptions = field(default_factory=MilpOptions)
    exact: ExactOptions = field(default_factory=ExactOptions)
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)

    @classmethod
    def make(cls, **kw) -> "Options":
        """Options from top-level fields, whole sections, and the flat names of `FLAT`
        (what the command line and `vnncert.verify(**option_fields)` pass)."""
        return cls().with_(**kw)

    def with_(self, **kw) -> "Options":
        """A copy with top-level fields, sections, or flat names (`FLAT`) replaced."""
        top, per_section = {}, {}
        names = {f.name for f in fields(self)}
        for k, v in kw.items():
            if k in FLAT:
                section, name = FLAT[k]
                per_section.setdefault(section, {})[name] = v
            elif k in names:
                top[k] = v
            else:
                raise TypeError(f"unknown option {k!r}")
        out = replace(self, **top) if top else self
        for section, values in per_section.items():
            out = replace(out, **{section: replace(getattr(out, section), **values)})
        return out


# flat option name (command line, API keyword) -> (section, field)
FLAT = {
    "attack_samples": ("attack", "samples"),
    "pgd_restarts": ("attack", "pgd_restarts"),
    "pgd_steps": ("attack", "pgd_steps"),
    "relaxed_method": ("relaxed", "method"),
    "split_heuristic": ("input_split", "heuristic"),
    "split_max_dims": ("input_split", "max_dims"),
    "sigma": ("smoothing", "sigma"),
    "noise": ("smoothing", "noise"),
    "n0": ("smoothing", "n0"),
    "n": ("smoothing", "n"),
    "alpha": ("smoothing", "alpha"),
    "batch": ("smoothing", "batch"),
}


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
