"""The frozen options object passed down the call chain (no global settings)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Optional


# Each engine (and each shared layer: bounds, search, milp, smoothing) reads its tuning constants from
# its own frozen section below; a constant's one-line comment says why it has its value. A test picks
# a code path by passing a section with other values (`Options().with_(attack=AttackOptions(...))`
# or the flat names of `FLAT`), never by patching module globals.


@dataclass(frozen=True)
class AttackOptions:
    """The falsifier (engines/attack.py)."""

    samples: int = 4096  # random + corner + face samples over all cases: enough to hit ACAS Xu's sat regions
    sample_values: int = 1 << 20  # ... per case at most this many input values (a 784-pixel box: 1,337 samples; PGD does better there)
    pgd_restarts: int = 64  # PGD starts per round at least (and at least one per disjunct)
    pgd_steps: int = 50  # PGD (Adam) steps per round
    pgd_seconds: float = 0.25  # PGD time per falsifier call, over the cases it attacks: restarts scale to it (ACAS Xu: ~1,000-4,000 a round); 0.5 found 4 more of 141 ACAS Xu sat runs and cost every unsat instance ~0.5 s
    pgd_time_share: float = 0.5  # ... and at most this share of the time left to the falsifier's deadline (a short --timeout still ends in its answer)
    pgd_rounds: int = 2  # ... in this many rounds (later rounds: the best points perturbed, fresh starts); more while time is left
    pgd_max_restarts: int = 16384  # restarts per round at most ...
    pgd_max_values: int = 1 << 22  # ... and restarts x input values at most (memory: 16 MiB per float32 copy)
    pgd_osi_steps: int = 10  # ... half the fresh starts first climb a random direction of the outputs this many sign steps (0: none)
    pgd_halve_every: int = 5  # ... each disjunct's restarts halved every this many steps, the closest kept (0: never)
    pgd_hinge: float = 1e-5  # objective: the sum over the disjunct's rows of max(row, -this) (ACAS Xu prop_2 sat: 112/117 runs, the worst row alone 108)
    pgd_lr: float = 0.25  # Adam's step, times the box's width per input (sign steps missed ACAS Xu 1_9 prop_7's thin region)
    pgd_decay: float = 0.95  # ... multiplied by this after every step
    pgd_seeds: int = 4  # per disjunct, the samples closest to it start PGD runs
    lead_seconds: float = 10.0  # in front of a complete engine (--mode exact): HiGHS's own heuristics find witnesses slowly
    lead_share: float = 0.1  # ... and at most this share of the time, so the complete engine keeps the rest
    max_corners: int = 1024  # box corners among the samples (all of them up to 10 free dims)
    replays_per_round: int = 8  # unsafe-looking candidates replayed in ONNX Runtime per round (the best-scoring first)
    pgd_cases: int = 16  # PGD runs on the cases whose samples came closest to the unsafe set, at most this many
    share: float = 0.25  # of the time left, in front of engines that can take the network (its work is bounded; this caps huge nets)


@dataclass(frozen=True)
class QuickOptions:
    """The numpy CROWN pass before any heavy import (engines/quick_bounds.py)."""

    max_cases: int = 64  # beyond this the batched engines are faster than one numpy pass per case
    share: float = 0.1  # of the time left, when engines follow (a numpy CROWN pass longer than this is not quick: cgan's took 95 of 120 s)


@dataclass(frozen=True)
class RelaxedOptions:
    """The relaxed engine (engines/relaxed.py)."""

    method: str = "crown"  # ibp | crown | alpha-crown | lp
    max_affine_checks: int = 64  # open cases checked for "no ReLU unstable on the box" (one numpy CROWN pass each)
    share: float = 0.5  # of the time left, when the exact engine follows and takes the network (ACAS Xu's slowest split: 26 of 116 s)
    forward_only_slack: float = 0.25  # CROWN's intermediate bounds forward-only (where the forward pass is on) when, on a sample of the cases, they refute what CROWN does and leave the rest at most this much further (relatively) from refuted (nn4sys mscn: 6 %, 5x faster; cgan: 340 %); negative: never
    forward_only_sample: int = 4  # ... cases in that sample (each bounded both ways: on nn4sys mscn CROWN's costs ~0.1 s a case)


@dataclass(frozen=True)
class BoundsOptions:
    """The bounds layer (bounds/)."""

    chunk_values: int = 1 << 25  # back-substitution matrix entries per step (256 MiB of float64): rows go in chunks past it
    box_values: int = 1 << 22  # boxes per torch CROWN call so one (box, 2 x width, width) matrix stays near this (32 MiB; forward-only bounds: one (box, width, columns) array: nn4sys mscn 303 cases a call, not 3)
    dense_max_elements: int = 30_000_000  # entries of the graph's terms as kept (dense, or CSR nonzeros) in the torch copies: 240 MB
    sparse_fill: float = 0.15  # torch terms filled below this go CSR (torch spmm beat dense up to ~0.15 fill on one core)
    forward_max_inputs: int = 16  # CROWN carries linear bounds forward when a case has at most this many free inputs (cgan: 3-4; at 32, nn4sys pensieve_parallel_35 took 5.1 s instead of 2.5 s: its 32 free columns cost more than back-substitution) ...
    backward_budget: float = 2e8  # ... and back-substituting a layer's rows would cost more than this (rows x entries, per box: cgan)
    backward_forward_ratio: float = 2.0  # ... a layer's back-substitution (with the forward pass on) costs at most this many forward passes (2 x columns x entries, per box): cgan's 2e8 budget is ~1.3 of its passes; nn4sys mscn's one-column pass is 3e6
    quadratic_max_inputs: int = 16  # torch CROWN: products relaxed also through their factors' linear bounds in x (an n x n form per box and row) up to this many inputs
    quadratic_max_products: int = 1024  # ... on product layers of at most this many products (lsnc: 8; a 120,000-product MatMul of 4 inputs took 140 s and 10 GB for 64 boxes, McCormick alone 25 s)
    sparse_rows: float = 0.3  # (forward pass on) back-substitution with CSR coefficients while they fill less than this share of their layer (0: off; cgan 15 -> 19 of 19 with `sparse_budget` inf)
    sparse_row_macs: float = 3e5  # ... a first pass in which rows going back further than this many multiply-adds each finish through the forward functions, then the full pass of the rows still unstable (cgan 64_nCh_1, 1/8 boxes: 23 -> 12.6 CPU s, the same bounds)
    sparse_budget: float = math.inf  # ... and a layer's rows are back-substituted so only while they cost at most this many multiply-adds per box (the widest relaxation gaps first; the rest as far as `backward_budget` pays for; inf: every unstable row, cgan 64_nCh_1 prop_0's box -12.7 at 1e9 -> -0.046, 2.4x the time)
    forward_narrow: float = 1e-9  # ... input entries narrower than this (x (1 + |x|)) are constants (intervals), not columns: a fixed input is one ulp wide
    fixed_row_width: float = 1e-6  # CROWN skips back-substituting a row that reads no input wider than forward_narrow while its interval bounds are narrower than this (x (1 + |bound|)): only rounding to gain
    alpha_iters: int = 8  # method "alpha": Adam steps on the final pass's lower slopes (enough to close ACAS Xu's boxes)
    alpha_lr: float = 0.25  # ... their learning rate (slopes live in [0, 1])
    refine_elements: int = 2_000_000  # alpha-CROWN of intermediate rows: slopes (rows x earlier unstable ReLUs) per batch; the smooth split's root: a layer's rows x earlier relu/act/product neurons at most this
    lirpa_iterations: int = 20  # auto_LiRPA alpha-CROWN: optimisation steps (its default)
    lirpa_lr: float = 0.1  # ... learning rate of the slopes
    lirpa_patience: int = 5  # ... steps without improvement before it stops early


@dataclass(frozen=True)
class InputSplitOptions:
    """Input-split branch and bound (search/)."""

    heuristic: str = "slack"  # input-split dimension: slack | smear | width | abswidth (docs/relaxed.md)
    max_dims: int = 32  # input splitting only when a case has at most this many free input dims (nn4sys pensieve_*_parallel: 32; the smooth split's alternative timed out there)
    clip: bool = True  # input-domain clipping of every open box by its rows' linear bounds (our CROWN; docs/relaxed.md §3)
    clip_rebound: float = 0.5  # a box clipping shrank to at most this share of its volume (over its free dims) is bounded again whole, not split (0: never)
    batch: int = 256  # boxes bounded per call at the start ...
    batch_min: int = 16  # ... halved down to this while a call takes longer than batch_slow
    batch_max: int = 4096  # ... doubled up to this while a call takes less than batch_fast
    cases_at_once: int = 64  # the relaxed engine's searches of this many cases run side by side, their boxes bounded in one call (nn4sys mscn: 240 one-dim cases of ~6 boxes each)
    batch_fast: float = 0.2  # seconds (the deadline is checked between calls)
    batch_slow: float = 0.8  # seconds
    max_open_boxes: int = 2_000_000  # memory bound: past this many open boxes the search gives up (unknown)
    max_state_bytes: int = 1 << 30  # ... and past this much memory for their intermediate bounds
    min_width: float = 1e-9  # a box no wider than this in every free dim is not split further
    leaf_unstable: int = 30  # exact engine: a box with at most this many unstable ReLUs goes to the MILP
    min_leaf_seconds: float = 5.0  # ... with at least this long (or its share of the time left)
    pgd_every: float = 2.0  # seconds between PGD runs on the most promising open boxes (0: none) ...
    pgd_share: float = 0.1  # ... while they have taken at most this share of the search's time (cgan: 34 runs, ~30% of it)
    costly_box_seconds: float = 0.01  # once alpha costs more than this per box (cgan: ~0.5 s; ACAS Xu: < 1 ms), it runs ...
    alpha_payoff: float = 4.0  # ... only while the boxes it closed, each worth this many CROWN bounds, pay its time ...
    alpha_probe_every: int = 8  # ... and on every 8th batch regardless (its yield changes with depth)
    pgd_boxes: int = 4  # ... on this many of them
    pgd_restarts: int = 8  # ... with this many restarts each at least
    pgd_steps: int = 20  # ... of this many steps a round
    pgd_seconds: float = 0.2  # ... in about this long over the boxes: the restarts scale to it (0: pgd_restarts, AttackOptions.pgd_rounds rounds)


@dataclass(frozen=True)
class ActivationSplitOptions:
    """Activation-split (ReLU-split) branch and bound (search/) and its alpha/beta bound (bounds/alpha_beta.py)."""

    batch_parents: int = 256  # domains split per round: 2 x 256 children of a 784-256x6-10 net take ~1 s on one core
    # the smooth-activation split (search/smooth_split.py: graphs with act / product layers)
    smooth_batch: int = 32  # domains bounded per call at the start (doubled while a call takes < 0.3 s, to 1024)
    smooth_max_domains: int = 500_000  # memory bound: past this many open domains the search gives up (unknown)
    smooth_root_alpha_iters: int = 20  # alpha-CROWN steps on the root domain's intermediate rows, then on its final rows (0: off)
    smooth_root_alpha_lr: float = 0.1  # ... Adam's learning rate (eran 6x200 sigmoid idx_6553: margin +1.27 at 0.1, -1.26 at 0.25, -2.65 at 0.5)
    smooth_alpha_iters: int = 0  # alpha-CROWN steps on the final rows of each domain CROWN leaves open (0: off)
    fsb_candidates: int = 8  # filtered smart branching: a parent's best free neurons by each score (BaBSR's, the intercept's; up to 2x this many, each once) whose children are bounded once to pick the split (1: the best sum of the two alone)
    fsb_min_weight: float = 0.5  # ... a candidate's value: its better child's margin plus this times the worse one's
    fsb_chunk: int = 4096  # ... children x rows bounded per call at most (memory: each holds a row per layer entry)
    root_iters: int = 40  # Adam steps on the root domain's alpha/beta
    child_iters: int = 12  # ... on each child's, started from its parent's (8 proved fewer disjuncts on mnist_fc 256x6)
    lr_alpha: float = 0.3  # Adam's learning rate of the lower slopes
    lr_beta: float = 0.05  # ... of the split multipliers
    lr_cut: float = 0.005  # ... of the cuts' multipliers (oval21 img3458, SCIP's cuts: root -0.071 at 0.005, -0.129 at 0.1; docs/exact.md §4)
    step_dtype: str = "float32"  # the optimiser's steps (twice float64's speed on the CPU); every bound kept is float64
    freeze_margin: float = 1e-3  # a child whose bound is above b by this (relative) leaves the optimisation early
    check_points: int = 8  # unsafe-looking domain minimisers sent to ONNX Runtime per round at most
    tighten_stall: float = 0.03  # tighten_rows stops when the second half of its time gained at most this share of its gain and stabilised at most this share of the rows it stabilised
    tighten_min_seconds: float = 2.0  # ... but not before this long
    tighten_min_rounds: int = 6  # ... nor before this many rounds
    tighten_side_weight: float = 0.1  # a side (l or u) of a row is searched only when the chord's gap depends on it this much
    trace: Optional[Callable[[dict], None]] = None  # called with each round's figures (benchmarks, debugging)


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
    lp_tighten_share: float = 0.35  # of the time left, on LP tightening of intermediate bounds (output-row LPs included)
    bab_min_unstable: int = 60  # chains with this many unstable ReLUs after alpha-CROWN go to the ReLU-split BaB, no LPs
    bab_shallow: bool = False  # ... also graphs whose ReLUs all read the input's affine maps (one layer: exact pre-activation bounds, so the MILP's root LP is the triangle relaxation the BaB would only repeat, node by node; verivital avgpool prop_7_0.04: MILP unsat in 38 s, the BaB a timeout at 300 s)
    bab_quick_share: float = 0.05  # deep chains: the first ReLU-split search's share, before the bounds are tightened
    bab_continue_progress: float = 0.9  # ... unless the first search closed this share of every open disjunct's gap between its root bound and zero: then it goes on instead (oval21 cifar_base_kw img6767: 0.96 after 35 s; the tightening took 338 s and stabilised 6 of 286 ReLUs)
    tighten_share: float = 0.5  # ... the share of the time left that tightening the intermediate bounds by BaB gets
    bab_cuts: bool = True  # ... where that search has not finished after cut_after_share, SCIP's root cuts of each open disjunct's MILP over its bounds enter a new search (milp/cuts.py; oval21 20 -> 25 of 30, mnist_fc 256x6 prop_2_0.05 159 -> 293 s)
    cut_share: float = 0.3  # ... the share of the time left that SCIP's roots get (least-proven disjunct first)
    cut_after_share: float = 0.25  # ... the share of the time left that the search going on (first bounds) or after the tightening gets before SCIP's cuts enter a new one
    cut_probe_share: float = 1.0  # ... below 1, the share of the time left after the roots that new searches with the cuts get before the trees under way take them instead (search/activation_split `cut_trees`); 1: new trees (at 0.2 oval21 cifar_wide_kw img9916 timed out: its new search did not finish its probe, a fifth of the ~225 s left, and the old tree took the cuts; 706 s with new trees)
    cut_race_share: float = 1.0  # ... (cut_probe_share 1) below 1, a disjunct with cuts and a tree under way: a new search with them races the tree, getting this share of each turn (search/activation_split `Race`); 1: new searches only (at 0.67: oval21 cifar_wide_kw img9916 673.5 s against 620.6 at two threads, mnist_fc 256x6 prop_2_0.05 still a timeout; docs/exact.md §4)
    cut_race_period: float = 15.0  # ... seconds per turn of the race
    cut_rounds: int = 10  # ... SCIP's separation rounds at the root
    refine_iters: int = 30  # alpha-CROWN steps on a layer's unstable rows (converged on mnist_fc: 60 or 150 moved < 0.01)
    refine_min_rows: int = 128  # in the LP route, alpha-CROWN only on layers with this many unstable rows (or past the LP share)


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
    "split_clip": ("input_split", "clip"),
    "split_clip_rebound": ("input_split", "clip_rebound"),
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
