"""The exact engine: a mixed-integer program per input region, modelled in Pyomo, solved by HiGHS.

Pipeline for one case (input region + output disjunction), see docs/exact.md:

1. bounds (`milp_bounds.compute_bounds`): IBP, CROWN, on affine/ReLU chains alpha-CROWN
   (`relu_bab.optimised_rows`), then LP tightening of unstable ReLUs; every bound is sound (LP
   values are turned into weak-duality bounds, never taken on trust). An affine/ReLU chain
   without extra input constraints gets IBP, CROWN and alpha-CROWN on every layer first, and
   when that leaves at least BAB_MIN_UNSTABLE unstable ReLUs (step 3's branch and bound) no LPs;
2. each disjunct's rows get sound lower bounds (CROWN and the LP); a disjunct whose bound is
   positive is impossible (this alone is the `--relaxed-method lp` answer: `lp_check`);
3. on an affine/ReLU chain with at least BAB_MIN_UNSTABLE unstable ReLUs left, the remaining
   disjuncts first go to the ReLU-split branch and bound (`relu_bab.SplitBaB`, on the same
   bounds); with two or more ReLU layers that first search is short (BAB_QUICK_SHARE), then
   the intermediate bounds are tightened by branch and bound over the earlier layers' ReLUs
   (`_tighten_chain`, `relu_bab.tighten_rows`) and the open disjuncts are searched again with
   the rest of the time; a disjunct it gives up on (a fully split domain it cannot close) goes
   on to step 4's MILP with the time left;
4. the remaining disjuncts, most promising first, each become one MILP in the same Pyomo model
   (`build_model`): min t s.t. t >= a_i . y - b_i for the disjunct's rows, over the network's
   encoding (`milp_encoding`) with one binary per unstable ReLU. `solve` runs HiGHS
   (persistent, through pyomo.contrib.appsi) with the time limit of the shared deadline and a
   cutoff, and stops at the first incumbent below zero;
5. an incumbent below zero gives x; `results.sat_outcome` replays it with ONNX Runtime (zero
   tolerance). A candidate that does not replay is never reported: the disjunct is re-solved
   asking for a deeper violation, then given up as unknown;
6. `unsat` only when every disjunct of every case is proven: by a sound bound (step 2), by the
   branch and bound (every domain closed by a sound bound), or by
   HiGHS's dual bound (or its cutoff-infeasibility) above `unsat_margin`, which covers the
   solver's tolerances (derivation in docs/exact.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..deadline import expired
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome
from .milp_encoding import Encoding

ENGINE = "exact"

# HiGHS tolerances set explicitly (the margin below depends on them)
PRIMAL_FEAS_TOL = 1e-7
DUAL_FEAS_TOL = 1e-9
MIP_FEAS_TOL = 1e-6
# sub-MIP heuristics (RINS, RENS, root reduced cost) spend most of the time on these models
# without helping either answer; branching and cheap heuristics stay on
HIGHS_SEARCH_OPTIONS = {"mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                        "mip_heuristic_run_root_reduced_cost": False}
# share of the remaining time spent on LP bound tightening before the MILP
LP_TIGHTEN_SHARE = 0.35
# inputs with at most this many free dims are split (CROWN on every box) before the MILP; a box
# goes to the MILP when CROWN leaves at most LEAF_UNSTABLE unstable ReLUs in it
SPLIT_MAX_FREE_DIMS = 8
LEAF_UNSTABLE = 30
MIN_LEAF_SECONDS = 5.0
SPLIT_BATCH = 64
# --mode exact alone runs the falsifier first for at most this long (share of the time)
FALSIFY_SECONDS = 10.0
FALSIFY_SHARE = 0.1
# spurious incumbents: re-solve at most this many times asking for a deeper violation
SPURIOUS_RETRIES = 3
# a MILP solve is told to stop this much (at most 5 % of its time) before its deadline
MILP_EARLY_STOP = 1.0
# affine/ReLU chains with at least this many unstable ReLUs after alpha-CROWN go to the
# ReLU-split branch and bound (relu_bab.py) before the MILP (with those bounds: no LPs)
BAB_MIN_UNSTABLE = 60
# on chains with two or more ReLU layers, the first ReLU-split search gets this share of the
# time; the disjuncts it leaves open wait for the intermediate bounds to be tightened by
# branch and bound (`_tighten_chain`, this share of the time left) and are searched again
BAB_QUICK_SHARE = 0.05
TIGHTEN_SHARE = 0.5
# optimisation steps of the alpha-CROWN bounds of each ReLU layer's unstable rows (chains only),
# before LP tightening (converged by then on mnist_fc: 60 or 150 steps move the BaB's root
# bounds by < 0.01)
REFINE_ITERS = 30
# ... in the LP route, on layers with at least this many unstable rows, or any once the LP share
# is spent (the first, LP-free pass over a chain refines every layer)
REFINE_MIN_ROWS = 128
# the dense weights of an affine/ReLU chain taken by the BaB and alpha-CROWN (float64: 240 MB)
CHAIN_MAX_ELEMENTS = 30_000_000


def _pyomo():
    import pyomo.environ as pyo

    return pyo


# ---- model building ------------------------------------------------------------------------------
@dataclass
class MilpModel:
    """A Pyomo model of an `Encoding`: one Pyomo variable per encoding column."""

    model: object
    cols: List[object]  # Pyomo VarData per column
    enc: Encoding
    build_seconds: float
    objective_block: Optional[object] = None
    stats: Dict[str, float] = field(default_factory=dict)

    def input_vars(self):
        return [self.cols[c] for c in self.enc.input_cols()]

    def output_vars(self):
        return [self.cols[c] for c in self.enc.output_cols()]


_KIND_NAMES = {"x": "x", "v": "pre", "z": "relu", "y": "out", "m": "max", "d": "active", "dm": "argmax"}


def build_model(enc: Encoding) -> MilpModel:
    """The Pyomo model of enc: variables (continuous per neuron, binary per unstable ReLU / max
    candidate), rows as constraints. No objective (see `set_disjunct`)."""
    pyo = _pyomo()
    from pyomo.core.expr.numeric_expr import LinearExpression

    t0 = time.monotonic()
    m = pyo.ConcreteModel(name="vnncert")
    n = enc.n_cols
    lb = np.asarray(enc.col_lb, np.float64)
    ub = np.asarray(enc.col_ub, np.float64)
    integer = np.asarray(enc.col_int, bool)
    # one indexed Var per (kind, layer): x, pre<k>, relu<k>, active<k>, max<k>, out
    groups: Dict[Tuple[str, int], List[int]] = {}
    for c, (kind, layer, _) in enumerate(enc.col_label):
        groups.setdefault((kind, layer), []).append(c)
    cols: List[object] = [None] * n
    for (kind, layer), members in groups.items():
        name = _KIND_NAMES.get(kind, kind) + ("" if kind in ("x", "y") else str(layer))
        is_int = bool(integer[members[0]])

        var = pyo.Var(range(len(members)), domain=pyo.Binary if is_int else pyo.Reals)
        m.add_component(name, var)
        for j, c in enumerate(members):
            v = var[j]
            v.setlb(float(lb[c]) if np.isfinite(lb[c]) else None)
            v.setub(float(ub[c]) if np.isfinite(ub[c]) else None)
            cols[c] = v
    A, lo, hi = enc.matrix(0)
    A = A.tocsr()
    m.rows = pyo.ConstraintList()
    indptr, indices, data = A.indptr, A.indices, A.data
    for r in range(A.shape[0]):
        s, e = indptr[r], indptr[r + 1]
        expr = LinearExpression(constant=0.0, linear_coefs=data[s:e].tolist(), linear_vars=[cols[c] for c in indices[s:e]])
        lo_r = float(lo[r]) if np.isfinite(lo[r]) else None
        hi_r = float(hi[r]) if np.isfinite(hi[r]) else None
        if lo_r is not None and hi_r is not None and lo_r == hi_r:
            m.rows.add(expr == lo_r)
        else:
            m.rows.add((lo_r, expr, hi_r))
    mm = MilpModel(m, cols, enc, time.monotonic() - t0)
    mm.stats.update(cols=n, rows=int(A.shape[0]), nnz=int(A.nnz), binaries=int(integer.sum()))
    return mm


def set_disjunct(mm: MilpModel, A: np.ndarray, b: np.ndarray, t_lower: float = -np.inf) -> object:
    """Objective of one output disjunct: min t s.t. t >= A_i . y - b_i (replaces the previous one)."""
    pyo = _pyomo()
    from pyomo.core.expr.numeric_expr import LinearExpression

    m = mm.model
    A, b = np.atleast_2d(np.asarray(A, np.float64)), np.atleast_1d(np.asarray(b, np.float64))
    if A.shape[0] == 0 or A.size == 0:  # no rows: every output is unsafe, any feasible point is a witness
        A, b = np.zeros((1, len(mm.enc.output_cols()))), np.ones(1)
    if mm.objective_block is not None:
        m.del_component(mm.objective_block)
    blk = pyo.Block()
    m.add_component("disjunct", blk)
    blk.t = pyo.Var(bounds=(float(t_lower) if np.isfinite(t_lower) else None, None))
    ys = mm.output_vars()
    blk.rows = pyo.ConstraintList()
    for a_i, b_i in zip(np.atleast_2d(A), np.atleast_1d(b)):
        nz = np.flatnonzero(a_i)
        expr = LinearExpression(constant=0.0, linear_coefs=[-float(a_i[j]) for j in nz] + [1.0],
                                linear_vars=[ys[j] for j in nz] + [blk.t])
        blk.rows.add(expr >= -float(b_i))
    blk.obj = pyo.Objective(expr=blk.t, sense=pyo.minimize)
    mm.objective_block = blk
    return blk


def unsat_margin(enc: Encoding, A: np.ndarray) -> float:
    """How far above zero HiGHS's dual bound must be before we call a disjunct impossible.

    dual feasibility tolerance x sum of column ranges (an LP basis accepted with reduced costs
    off by tau_d can overstate the LP value by at most tau_d * sum_j (u_j - l_j)), times 10,
    plus a relative floor 1e-6 (1 + |A| * max|y|) for factorisation residuals and big-M rows.
    """
    lb = np.asarray(enc.col_lb, np.float64)
    ub = np.asarray(enc.col_ub, np.float64)
    rng = np.where(np.isfinite(ub - lb), ub - lb, 0.0).sum()
    ycols = enc.output_cols()
    ymax = float(np.max(np.maximum(np.abs(lb[ycols]), np.abs(ub[ycols])))) if ycols.size else 1.0
    A = np.atleast_2d(np.asarray(A, np.float64))
    scale = (float(np.abs(A).sum(axis=1).max()) if A.size else 0.0) * ymax
    return 10.0 * DUAL_FEAS_TOL * rng + 1e-6 * (1.0 + scale)


# ---- solving -------------------------------------------------------------------------------------
@dataclass
class SolveResult:
    status: str  # "negative" (incumbent below stop_below), "proven" (bound >= cutoff), "optimal", "timeout", "error"
    incumbent: Optional[float] = None
    bound: Optional[float] = None
    x: Optional[np.ndarray] = None
    seconds: float = 0.0
    nodes: int = 0
    message: str = ""


class Solver:
    """A persistent HiGHS (pyomo.contrib.appsi) instance for one MilpModel."""

    def __init__(self, mm: MilpModel, threads: int = 1):
        import logging

        from pyomo.contrib.appsi.solvers.highs import Highs

        # an interrupted run (our callback) is not a status the interface maps; we read HiGHS's own
        logging.getLogger("pyomo.contrib.appsi.solvers.highs").setLevel(logging.ERROR)

        self.mm = mm
        self.opt = Highs()
        self.opt.config.load_solution = False
        self.opt.config.stream_solver = False
        self.threads = max(0, int(threads))  # 0: HiGHS chooses (--threads 0 = all cores)
        self._instance = False
        self.set_instance_seconds = 0.0
        self.overrun = 0.0  # how late a solve returned past its deadline, at worst (seconds)

    def _ensure_instance(self):
        t0 = time.monotonic()
        if not self._instance:
            self.opt.set_instance(self.mm.model)
            self._instance = True
            uc = self.opt.update_config
            # the caller tells the solver about changes (the disjunct block) explicitly
            uc.check_for_new_or_removed_constraints = False
            uc.check_for_new_or_removed_vars = False
            uc.check_for_new_or_removed_params = False
            uc.update_constraints = False
            uc.update_vars = False
            uc.update_params = False
            uc.update_named_expressions = False
        self.set_instance_seconds += time.monotonic() - t0

    def set_disjunct(self, A, b, t_lower=-np.inf):
        """Swap in the objective block of a disjunct (model and solver)."""
        old = self.mm.objective_block
        if self._instance and old is not None:
            self.opt.remove_block(old)
        blk = set_disjunct(self.mm, A, b, t_lower)
        if self._instance:
            t0 = time.monotonic()
            self.opt.add_block(blk)
            self.opt.set_objective(blk.obj)
            self.set_instance_seconds += time.monotonic() - t0

    def solve(self, deadline: float, cutoff: float, stop_below: float, gap: float = 1e-4) -> SolveResult:
        """Minimise the current objective until: an incumbent < stop_below (-> "negative"),
        everything below `cutoff` is pruned (-> "proven"), optimality, or the deadline."""
        import highspy

        self._ensure_instance()
        h = self.opt._solver_model  # the highspy object behind the Pyomo interface (for the callback)
        # HiGHS checks its time limit only between phases: on mnist_fc 256x4 (686 binaries) every
        # solve took >= 4 s whatever the limit (the root LP and its cuts). The worst lateness seen
        # so far (`overrun`) is kept off the limit, and no solve starts without time for it
        remaining = deadline - time.monotonic() - self.overrun
        if remaining <= 0.05:
            return SolveResult("timeout", message="no time left for another MILP solve")
        remaining -= min(MILP_EARLY_STOP, 0.05 * remaining)
        deadline = time.monotonic() + remaining
        # HiGHS's time_limit is against its run clock, which adds up over the runs of a persistent
        # instance: the limit is that clock plus this solve's time
        self.opt.config.time_limit = h.getRunTime() + max(0.05, remaining)
        self.opt.config.mip_gap = gap
        self.opt.highs_options = {
            "threads": self.threads, "objective_bound": float(cutoff),
            "primal_feasibility_tolerance": PRIMAL_FEAS_TOL, "dual_feasibility_tolerance": DUAL_FEAS_TOL,
            "mip_feasibility_tolerance": MIP_FEAS_TOL, "mip_abs_gap": 0.0, "random_seed": 0,
        }
        self.opt.highs_options.update(HIGHS_SEARCH_OPTIONS)
        state = {"incumbent": np.inf, "bound": -np.inf}

        def on_interrupt(e):
            out = e.data_out
            inc = float(out.objective_function_value)
            state["incumbent"] = inc
            state["bound"] = float(out.mip_dual_bound)
            # always write the flag: HiGHS keeps it between runs of a persistent instance
            e.interrupt(bool(inc < stop_below or time.monotonic() >= deadline))

        h.cbMipInterrupt.subscribe(on_interrupt)
        t0 = time.monotonic()
        try:
            self.opt.solve(self.mm.model)
        except Exception as exc:  # HiGHS or Pyomo failure: never an answer
            return SolveResult("error", seconds=time.monotonic() - t0, message=f"{type(exc).__name__}: {exc}")
        finally:
            h.cbMipInterrupt.unsubscribe(on_interrupt)
        seconds = time.monotonic() - t0
        if time.monotonic() > deadline:
            self.overrun = max(self.overrun, time.monotonic() - deadline)
        status = h.getModelStatus()
        info = h.getInfo()
        sol = h.getSolution()
        nodes = int(max(0, info.mip_node_count))
        has_sol = bool(sol.value_valid) and np.isfinite(info.objective_function_value) and info.primal_solution_status == 2
        inc = float(info.objective_function_value) if has_sol else None
        bound = float(info.mip_dual_bound) if info.mip_node_count >= 0 else (inc if status == highspy.HighsModelStatus.kOptimal else None)
        x = None
        if has_sol:
            xs = self.mm.input_vars()
            vals = self.opt.get_primals(vars_to_load=xs)
            x = np.array([vals[v] for v in xs], dtype=np.float64)
        if status == highspy.HighsModelStatus.kInfeasible:
            # with objective_bound = cutoff: nothing below the cutoff exists (up to tolerances)
            return SolveResult("proven", inc, cutoff, None, seconds, nodes, "infeasible below the cutoff")
        if status == highspy.HighsModelStatus.kObjectiveBound:
            # a model without binaries is an LP: dual simplex stopped once its (dual feasible,
            # so lower-bounding) objective passed the cutoff
            return SolveResult("proven", inc, cutoff, None, seconds, nodes, "LP objective above the cutoff")
        if inc is not None and inc < stop_below:
            return SolveResult("negative", inc, bound, x, seconds, nodes)
        if status == highspy.HighsModelStatus.kOptimal:
            return SolveResult("optimal", inc, bound, x, seconds, nodes)
        if status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt) or time.monotonic() >= deadline:
            return SolveResult("timeout", inc, bound, x, seconds, nodes)
        return SolveResult("error", inc, bound, x, seconds, nodes, f"HiGHS status {status}")


def minimize(lg, region, A: np.ndarray, b: np.ndarray, deadline: float, threads: int = 1,
             binaries: bool = True) -> SolveResult:
    """min over the region of max_i (A_i . f(x) - b_i), solved to optimality (no cutoff): the
    MILP's optimum (binaries=True) or the LP relaxation's (binaries=False). For tests and
    callers that need the value rather than a verdict; `bound` is HiGHS's dual bound."""
    from .milp_bounds import compute_bounds

    bounds = compute_bounds(lg, region, deadline, method="lp", threads=threads)
    enc = bounds.enc
    enc.add_binaries(relax=not binaries)
    mm = build_model(enc)
    solver = Solver(mm, threads=threads)
    solver.set_disjunct(np.atleast_2d(A), np.atleast_1d(b))
    return solver.solve(deadline, cutoff=np.inf, stop_below=-np.inf, gap=0.0)


# ---- the engine ------------------------------------------------------------------------------
@dataclass
class CaseResult:
    verdict: Verdict
    outcome: Optional[Outcome] = None
    detail: str = ""


def _row_proven(lb: np.ndarray, strict: np.ndarray) -> np.ndarray:
    """Rows a.y - b whose sound lower bound rules them out (> 0, or >= 0 for strict rows)."""
    return (lb > 0) | (strict & (lb >= 0))


def _region_empty(region) -> bool:
    return bool(np.any(region.lower > region.upper))


def _try_points(network, spec, case, xs: np.ndarray, ci: int, source: str = "an LP-relaxation optimum") -> Optional[Outcome]:
    from .attack import snap_into_box

    xs = np.stack([snap_into_box(x, case.region.lower, case.region.upper, network.input_dtype) for x in xs])
    ys = network.evaluate(xs).astype(np.float64)
    for i in np.flatnonzero(case.unsafe(ys)):
        out = sat_outcome(network, spec, xs[i], ENGINE,
                          detail=f"witness at {source} (case {ci}), replayed with ONNX Runtime on the original model")
        if out is not None:
            return out
    return None


def disjunct_bounds(lg, case, bounds, deadline) -> Tuple[List[float], List[bool]]:
    """Per disjunct: sound lower bound of max_i (a_i . y - b_i) and whether it is ruled out."""
    from .milp_bounds import output_lower_bounds

    lbs, proven = [], []
    for hs in case.output:
        if hs.rows == 0:
            lbs.append(-np.inf)
            proven.append(False)
            continue
        lb = output_lower_bounds(lg, hs.A, bounds, use_lp=True, deadline=deadline) - hs.b
        lbs.append(float(lb.max()))
        proven.append(bool(_row_proven(lb, np.asarray(hs.strict, bool)).any()))
    return lbs, proven


def check_case(network, spec, ci: int, lg, deadline: float, options: Options, stats: dict, milp: bool = True) -> CaseResult:
    from .milp_bounds import compute_bounds

    case = spec.cases[ci]
    region = case.region
    cs = stats.setdefault("cases", {}).setdefault(ci, {})
    if _region_empty(region):
        return CaseResult(Verdict.UNSAT, detail="empty input box")
    t0 = now = time.monotonic()
    lp_deadline = now + LP_TIGHTEN_SHARE * max(0.0, deadline - now) if milp else deadline
    bounds = fast = None
    has_G = region.G is not None and region.G.shape[0] > 0
    if milp and not has_G and _chain_of(lg) is not None and \
            sum(compute_bounds(lg, region, deadline, method="crown", encode=False).unstable) >= BAB_MIN_UNSTABLE:
        # an affine/ReLU chain that CROWN leaves to the branch and bound (milliseconds; alpha-CROWN
        # only stabilises more): alpha-CROWN on every layer (seconds). When the BaB still takes the
        # case, the LPs are skipped: with fixed earlier bounds, converged alpha-CROWN reaches the
        # triangle LP's optimum (docs/exact.md §2)
        fast = compute_bounds(lg, region, deadline, method="crown", threads=options.threads or 1,
                              refine=_refiner(lg, region, deadline, lp_deadline=now))
        if sum(fast.unstable) >= BAB_MIN_UNSTABLE:
            bounds = fast
            cs["bounds_method"] = "alpha-crown"
    if bounds is None:
        bounds = compute_bounds(lg, region, deadline, method="lp", lp_deadline=lp_deadline, threads=options.threads or 1,
                                refine=_refiner(lg, region, deadline, lp_deadline))
        cs["bounds_method"] = "lp"
    if bounds.empty:
        cs["bounds_s"] = time.monotonic() - t0
        return CaseResult(Verdict.UNSAT, detail="input region proven empty")
    # the LPs over the output rows are part of the LP share (on a deep net each takes seconds,
    # and the branch and bound's root bounds the same rows nearly as tightly)
    lbs, proven = disjunct_bounds(lg, case, bounds, lp_deadline)
    cs["bounds_s"] = time.monotonic() - t0
    cs["unstable_relus"] = bounds.unstable
    cs["lp_solved"] = int(bounds.stats.get("lp_solved", 0))
    runs = [bounds] if fast is None or fast is bounds else [bounds, fast]  # an alpha pass the LP route replaced counts too
    for key in ("crown_s", "refine_s", "lp_s"):  # where bounds_s went (the rest: IBP, output-row LPs)
        cs[key] = sum(float(r.stats.get(key, 0.0)) for r in runs)
    cs["disjuncts"] = len(case.output)
    cs["disjuncts_by_bounds"] = int(sum(proven))
    # the LP optima over the output rows are cheap candidate counterexamples
    if bounds.lp is not None and bounds.lp.points:
        out = _try_points(network, spec, case, np.stack(bounds.lp.points), ci)
        if out is not None:
            cs["witness_from"] = "lp"
            return CaseResult(Verdict.SAT, outcome=out)
    open_d = [i for i in range(len(case.output)) if not proven[i]]
    if not open_d:
        return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out by sound LP/CROWN bounds")
    if not milp:
        return _lp_disjuncts(network, spec, case, ci, bounds, open_d, lbs, deadline, options, cs)
    if expired(deadline):
        return CaseResult(Verdict.TIMEOUT, detail="deadline reached during bounds")
    open_d.sort(key=lambda i: lbs[i])
    # ---- branch and bound on ReLU splits, when the MILP would be large ----
    if sum(bounds.unstable) >= BAB_MIN_UNSTABLE and _chain_of(lg) is not None:
        chain = _chain_of(lg)
        relu_inputs = [L.source for L in lg.layers if L.kind == "relu"]
        lows = [bounds.layers[k][0] for k in relu_inputs]
        ups = [bounds.layers[k][1] for k in relu_inputs]
        deep = chain.n_relu >= 2
        # a first, short search on alpha-CROWN's bounds (most cases close here); then the
        # intermediate bounds are tightened by branch and bound and the search starts again
        now = time.monotonic()
        first = now + BAB_QUICK_SHARE * max(0.0, deadline - now) if deep else deadline
        r = _bab_disjuncts(network, spec, case, ci, chain, lows, ups, open_d, first, cs)
        if r is not None:
            return r
        if deep and open_d and not expired(deadline):
            now = time.monotonic()
            lows, ups = _tighten_chain(chain, region, lows, ups, now + TIGHTEN_SHARE * max(0.0, deadline - now), cs,
                                       out_A=np.vstack([case.output[d].A for d in open_d]))
            r = _bab_disjuncts(network, spec, case, ci, chain, lows, ups, open_d, deadline, cs)
            if r is not None:
                return r
        if not open_d:
            return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out (bounds or ReLU-split branch and bound)")
        if expired(deadline):
            return CaseResult(Verdict.TIMEOUT, detail=f"{len(open_d)} disjunct(s) open when the ReLU-split branch and bound ran out of time")
    # ---- the MILP ----
    enc = bounds.enc
    enc.add_binaries(relax=False)
    mm = build_model(enc)
    cs["build_s"] = mm.build_seconds
    cs["binaries"] = enc.n_binaries
    cs.update({f"model_{k}": v for k, v in mm.stats.items()})
    solver = Solver(mm, threads=options.threads)
    pending = list(open_d)
    unresolved: List[str] = []
    for pass_no in (1, 2):
        still = []
        for pos, di in enumerate(pending):
            if expired(deadline):
                still.append(di)
                continue
            hs = case.output[di]
            left = len(pending) - pos
            share = (deadline - time.monotonic()) / left if pass_no == 1 else deadline - time.monotonic()
            d_deadline = min(deadline, time.monotonic() + max(1.0 + solver.overrun, share))
            solver.set_disjunct(hs.A, hs.b, t_lower=lbs[di])
            verdict, outcome, note = _solve_disjunct(network, spec, case, ci, di, solver, enc, d_deadline, cs)
            if verdict == Verdict.SAT:
                cs["set_instance_s"] = solver.set_instance_seconds
                return CaseResult(Verdict.SAT, outcome=outcome)
            if verdict == Verdict.TIMEOUT:
                still.append(di)  # a second pass gives it the time the others left
                if pass_no == 2 or expired(deadline):
                    unresolved.append(f"disjunct {di}: {note or 'MILP time limit'}")
            elif verdict == Verdict.UNKNOWN:
                unresolved.append(f"disjunct {di}: {note or 'unresolved'}")
        pending = still
        if not pending:
            break
    cs["set_instance_s"] = solver.set_instance_seconds
    if not pending and not unresolved:
        return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out (bounds or MILP dual bound above the margin)")
    if pending:
        return CaseResult(Verdict.TIMEOUT, detail="; ".join(unresolved) or "deadline reached")
    return CaseResult(Verdict.UNKNOWN, detail="; ".join(unresolved))


def _lp_disjuncts(network, spec, case, ci: int, bounds, open_d: List[int], lbs: List[float], deadline: float,
                  options: Options, cs: dict) -> CaseResult:
    """The LP relaxation's answer for the disjuncts no row bound rules out: per disjunct, the LP
    min t s.t. t >= a_i . y - b_i over the encoding with its binaries relaxed (the triangle
    relaxation; a conjunction of rows is decided together, not row by row). `unsat` when HiGHS's
    bound is above the margin (as in the MILP), `sat` when the LP optimum replays, else unknown.
    On an encoding without binaries (an affine network, or every ReLU stable on the box) the LP
    is the problem itself, so this decides it."""
    enc = bounds.enc
    enc.add_binaries(relax=True)
    mm = build_model(enc)
    cs["build_s"] = mm.build_seconds
    cs["binaries_relaxed"] = sum(len(ur.neuron) for ur in enc.unstable) + sum(mg.cands.size for mg in enc.max_groups)
    solver = Solver(mm, threads=options.threads)
    unresolved: List[str] = []
    for pos, di in enumerate(sorted(open_d, key=lambda i: lbs[i])):
        if expired(deadline):
            return CaseResult(Verdict.TIMEOUT, detail=f"{len(open_d) - pos} disjunct(s) open at the deadline (LP relaxation)")
        hs = case.output[di]
        share = (deadline - time.monotonic()) / (len(open_d) - pos)
        solver.set_disjunct(hs.A, hs.b, t_lower=lbs[di])
        # an LP optimum that does not replay is not retried deeper: the relaxation proves nothing below zero
        verdict, outcome, note = _solve_disjunct(network, spec, case, ci, di, solver, enc,
                                                 min(deadline, time.monotonic() + max(1.0, share)), cs, retries=0,
                                                 source="an LP-relaxation optimum")
        if verdict == Verdict.SAT:
            cs["witness_from"] = "lp"
            return CaseResult(Verdict.SAT, outcome=outcome)
        if verdict != Verdict.UNSAT:
            unresolved.append(f"disjunct {di}: {note or verdict.value}")
    cs["set_instance_s"] = solver.set_instance_seconds
    if not unresolved:
        return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out by the LP relaxation")
    return CaseResult(Verdict.UNKNOWN, detail=f"{len(unresolved)} of {len(case.output)} disjuncts not ruled out by the LP "
                                              f"relaxation ({'; '.join(unresolved)[:500]})")


def _bab_disjuncts(network, spec, case, ci: int, chain, lows, ups, open_d: List[int], deadline: float, cs: dict) -> Optional[CaseResult]:
    """Run `relu_bab.SplitBaB` on the open disjuncts (in place: proven ones leave `open_d`) with
    the pre-activation bounds (lows, ups) of the ReLU layers, in two passes like the MILP: equal
    shares first, then the time left over, continuing each disjunct's tree where pass 1 left it.
    A SAT CaseResult when a witness replays, else None (what is left open goes to the MILP with
    the time that is left)."""
    from .relu_bab import SplitBaB

    region = case.region
    latest: Dict[int, dict] = {}  # per disjunct, its search's statistics after its last run
    earlier = cs.get("bab", [])  # runs of an earlier search of this case (before tightening)
    t0 = time.monotonic()

    def try_points(xs):
        return _try_points(network, spec, case, xs, ci, source="the minimiser of a ReLU-split domain's bound")

    given_up: List[int] = []
    searches: Dict[int, SplitBaB] = {}
    for pass_no in (1, 2):
        todo = [di for di in open_d if di not in given_up]
        for pos, di in enumerate(todo):
            if expired(deadline):
                break
            hs = case.output[di]
            left = len(todo) - pos
            share = (deadline - time.monotonic()) / left if pass_no == 1 else deadline - time.monotonic()
            if di not in searches:
                searches[di] = SplitBaB(chain, region.lower, region.upper, lows, ups, hs.A, hs.b)
            r = searches[di].run(min(deadline, time.monotonic() + share), try_points)
            latest[di] = {**r.stats, "disjunct": di, "status": r.status, "passes": pass_no, "search": 2 if earlier else 1}
            cs["bab"] = earlier + list(latest.values())
            if r.status == "sat":
                cs["witness_from"] = "bab"
                cs["bab_s"] = cs.get("bab_s", 0.0) + time.monotonic() - t0
                return CaseResult(Verdict.SAT, outcome=r.outcome)
            if r.status == "proven":
                open_d.remove(di)
            elif r.status == "unknown":
                given_up.append(di)
            if r.status != "timeout":
                del searches[di]  # only an unfinished tree is kept (for pass 2)
        if len(open_d) == len(given_up):
            break
    cs["bab_s"] = cs.get("bab_s", 0.0) + time.monotonic() - t0
    return None


def _tighten_chain(chain, region, lows: List[np.ndarray], ups: List[np.ndarray], deadline: float, cs: dict,
                   out_A: Optional[np.ndarray] = None):
    """Tighter pre-activation bounds of the ReLU layers 2.. of a chain: layer by layer, alpha-CROWN
    again on the rows still unstable (the layers before are tighter now), then
    `relu_bab.tighten_rows` (branch and bound over the ReLUs before the layer) on those rows, each
    layer with an equal share of the time left to `deadline`. New arrays, each the intersection
    with the old bounds, widened like every other bound (docs/exact.md §2).

    With `out_A` (the rows of the disjuncts still open, stacked), the last ReLU layer's rows that
    no disjunct's bound reads are left as they are: a lower bound of a.y reads neuron k's upper
    chord only where (a W_L)_k < 0, and elsewhere its lower slope alone, which needs no bounds
    (slope 1 or 0 is as good as knowing the neuron active or inactive)."""
    from .milp_bounds import widen
    from .relu_bab import optimised_rows, tighten_rows

    t0 = time.monotonic()
    lows = [np.array(v, np.float64) for v in lows]
    ups = [np.array(v, np.float64) for v in ups]
    st: dict = {}  # tighten_rows' counts (rounds, domains)
    skipped = 0  # rows of the last layer no open disjunct reads
    n = len(lows)
    for j in range(1, n):
        if expired(deadline):
            break
        rows = np.flatnonzero((lows[j] < 0) & (ups[j] > 0))
        if j > 1 and rows.size:
            rl, ru = widen(*optimised_rows(chain, region.lower, region.upper, lows, ups, j, rows, REFINE_ITERS, deadline))
            lows[j][rows] = np.maximum(lows[j][rows], rl)
            ups[j][rows] = np.minimum(ups[j][rows], ru)
            rows = np.flatnonzero((lows[j] < 0) & (ups[j] > 0))
        if j == n - 1 and out_A is not None and rows.size:
            lam = np.asarray(out_A, np.float64) @ chain.W[-1].numpy()
            read = (lam[:, rows] < 0).any(axis=0)
            skipped = int((~read).sum())
            rows = rows[read]
        if not rows.size:
            continue
        share = (deadline - time.monotonic()) / (n - j)
        tl, tu = widen(*tighten_rows(chain, region.lower, region.upper, lows, ups, j, rows,
                                     min(deadline, time.monotonic() + share), st))
        lows[j][rows] = np.maximum(lows[j][rows], tl)
        ups[j][rows] = np.minimum(ups[j][rows], tu)
    cs["tighten_s"] = time.monotonic() - t0
    cs["tighten_domains"] = int(st.get("domains", 0))
    cs["unstable_tightened"] = [int(((l < 0) & (u > 0)).sum()) for l, u in zip(lows, ups)]
    cs["tighten_rows_skipped"] = skipped
    return lows, ups


def _solve_disjunct(network, spec, case, ci: int, di: int, solver: "Solver", enc: Encoding, deadline: float, cs: dict,
                    retries: int = SPURIOUS_RETRIES, source: str = "MILP"):
    """(verdict, outcome, note) for one disjunct whose objective is in the solver.

    UNSAT only when nothing lies below `proof_cutoff` = 2 * margin (HiGHS's dual bound or its
    cutoff-infeasibility); SAT only for an incumbent that replays. An incumbent that does not
    replay makes the next solve ask for a deeper violation (the cutoff moves below zero, so
    that solve can no longer prove anything)."""
    from .attack import snap_into_box

    hs = case.output[di]
    region = case.region
    margin = unsat_margin(enc, hs.A)
    proof_cutoff = 2.0 * margin
    cutoff, stop_below = proof_cutoff, -margin
    note = ""
    for _ in range(retries + 1):
        r = solver.solve(deadline, cutoff=cutoff, stop_below=stop_below)
        cs["solve_s"] = cs.get("solve_s", 0.0) + r.seconds
        cs.setdefault("milp", []).append({"disjunct": di, "status": r.status, "incumbent": r.incumbent, "bound": r.bound,
                                          "cutoff": cutoff, "nodes": r.nodes, "seconds": round(r.seconds, 3)})
        if r.status == "proven" or (r.bound is not None and r.bound >= cutoff):
            if cutoff >= proof_cutoff:
                return Verdict.UNSAT, None, ""
            return Verdict.UNKNOWN, None, (f"incumbents did not replay and nothing lies below {cutoff:.3g}: "
                                           f"the optimum is within the solver's tolerance of zero")
        if r.x is not None and r.incumbent is not None and r.incumbent <= margin:
            x = snap_into_box(r.x, region.lower, region.upper, network.input_dtype)
            out = sat_outcome(network, spec, x, ENGINE,
                              detail=f"{source} witness (disjunct {di} of case {ci}), replayed with ONNX Runtime on the original model")
            if out is not None:
                return Verdict.SAT, out, ""
            # not a real witness (solver tolerance or float32 rounding): ask for a deeper violation
            cs["spurious"] = cs.get("spurious", 0) + 1
            stop_below = min(stop_below, 4.0 * min(r.incumbent, 0.0) - margin)
            cutoff = stop_below
            note = "MILP incumbents did not replay with ONNX Runtime"
            if r.status != "timeout":
                continue
        if r.status == "optimal" and not note:
            note = f"optimum within the solver margin ({margin:.2g}) of zero"
        elif r.status == "timeout":
            return Verdict.TIMEOUT, None, note or "MILP time limit"
        elif r.status == "error":
            note = r.message
        return Verdict.UNKNOWN, None, note
    return Verdict.UNKNOWN, None, note


def _sub_spec(spec, case, lower, upper, disjuncts=None):
    from ..spec.model import Case, InputRegion

    reg = case.region
    sub = InputRegion(np.maximum(np.asarray(lower, np.float64), reg.lower), np.minimum(np.asarray(upper, np.float64), reg.upper),
                      reg.G, reg.h, reg.lower_strict, reg.upper_strict, reg.G_strict)
    out = case.output if disjuncts is None else [case.output[i] for i in disjuncts]
    return type(spec)(spec.n_inputs, spec.n_outputs, [Case(sub, out)], spec.source, spec.version)


def _refiner(lg, region, deadline: float, lp_deadline: float):
    """For `milp_bounds.compute_bounds`: alpha-CROWN bounds (`relu_bab.optimised_rows`,
    REFINE_ITERS steps) of a layer's unstable rows when the graph is an affine/ReLU chain and
    either the layer has at least REFINE_MIN_ROWS of them or the LP share is spent (the LP is
    tighter, and on a few rows cheap enough); else None. Over the input box (extra constraints
    G x <= h left out: valid, only weaker)."""
    affine = [L.index for L in lg.layers if L.kind == "affine"]
    relu_src = [L.source for L in lg.layers if L.kind == "relu"]
    position = {k: j for j, k in enumerate(affine)}

    def refine(k, rows, bounds):
        if rows.size < REFINE_MIN_ROWS and time.monotonic() < lp_deadline:
            return None
        chain = _chain_of(lg)
        if chain is None:
            return None
        from .relu_bab import optimised_rows

        j = position[k]
        lows = [bounds[s][0] for s in relu_src[:j]]
        ups = [bounds[s][1] for s in relu_src[:j]]
        return optimised_rows(chain, region.lower, region.upper, lows, ups, j, rows, REFINE_ITERS, deadline)

    return refine


def _chain_of(lg):
    """The layer graph as `relu_chain.AffineReluChain` (batched CROWN over boxes, torch float64)
    when it is a plain chain input -> affine -> relu -> ... -> affine whose dense weights hold at
    most CHAIN_MAX_ELEMENTS numbers (a convolution becomes a dense matrix here), else None.
    Built once per layer graph."""
    if "_vnncert_chain" not in lg.__dict__:
        lg.__dict__["_vnncert_chain"] = _build_chain(lg)
    return lg.__dict__["_vnncert_chain"]


def _build_chain(lg):
    Ws, bs = [], []
    prev = 0
    layers = lg.layers[1:]
    size = 0
    for i, L in enumerate(layers):
        want = "affine" if i % 2 == 0 else "relu"
        if L.kind != want:
            return None
        if L.kind == "affine":
            if len(L.terms) != 1 or L.terms[0][0] != prev:
                return None
            size += int(np.prod(L.terms[0][1].shape))
            if size > CHAIN_MAX_ELEMENTS:
                return None
            from ..network.layers import as_dense

            Ws.append(as_dense(L.terms[0][1]))
            bs.append(np.asarray(L.bias, np.float64))
        else:
            if L.source != L.index - 1:
                return None
            prev = L.index
    if not layers or layers[-1].index != lg.output or layers[-1].kind != "affine":
        return None
    from .relu_chain import AffineReluChain

    return AffineReluChain(Ws, bs)


class _BoxBounder:
    """CROWN lower bounds of C y on many boxes at once: (lb (B, R), A (B, R, n_in), unstable (B,),
    state per box for its children). Batched through the ReLU chain when the graph is one."""

    def __init__(self, lg, C: np.ndarray):
        self.lg = lg
        self.C = C
        self.chain = None
        try:
            self.chain = _chain_of(lg)
        except Exception:
            self.chain = None

    def _bound_chain(self, los, his, parents):
        import torch

        lo, hi = torch.as_tensor(np.stack(los)), torch.as_tensor(np.stack(his))
        par = None
        if any(p is not None for p in parents):
            n_layers = self.chain.n_relu
            lows, ups = [], []
            for k in range(n_layers):
                w = self.chain.widths[k]
                lows.append(torch.as_tensor(np.stack([p[0][k] if p is not None else np.full(w, -np.inf) for p in parents])))
                ups.append(torch.as_tensor(np.stack([p[1][k] if p is not None else np.full(w, np.inf) for p in parents])))
            par = (lows, ups)
        C = torch.as_tensor(np.broadcast_to(self.C, (len(los),) + self.C.shape).copy())
        with torch.no_grad():
            lb, A, (lows, ups), _ = self.chain.lower(lo, hi, C, par)
        lows = [t.numpy() for t in lows]
        ups = [t.numpy() for t in ups]
        # (B,) even for a chain without ReLUs (an affine network: sum() of nothing is 0)
        unstable = np.zeros(len(los), np.int64) + sum(((l < 0) & (u > 0)).sum(axis=1) for l, u in zip(lows, ups))
        states = [([l[i] for l in lows], [u[i] for u in ups]) for i in range(len(los))]
        return lb.numpy(), A.numpy(), np.asarray(unstable), states

    def bound(self, los, his, parents, region):
        from ..spec.model import InputRegion
        from .milp_bounds import compute_bounds, crown_lower

        if self.chain is not None:
            try:
                return self._bound_chain(los, his, parents)
            except Exception:  # the chain bounder's interface changed or failed: box by box instead
                self.chain = None
                parents = [None] * len(los)
        lbs, As, unst = [], [], []
        for lo, hi in zip(los, his):
            bnd = compute_bounds(self.lg, InputRegion(lo, hi, region.G, region.h), np.inf, method="crown", encode=False)
            lb, A = crown_lower(self.lg, self.lg.output, self.C, bnd.layers, want_A=True)
            lbs.append(lb)
            As.append(A)
            unst.append(sum(bnd.unstable))
        return np.stack(lbs), np.stack(As), np.asarray(unst), [None] * len(los)


def _split_case(network, spec, ci: int, lg, deadline: float, options: Options, stats: dict) -> CaseResult:
    """Input splitting in front of the MILP, for inputs with few free dims (ACAS Xu-like).

    Best-first over boxes (smallest CROWN lower bound of an open disjunct first), bounded in
    batches of SPLIT_BATCH: a box's centre is replayed when the float64 model says it is unsafe;
    disjuncts CROWN rules out on a box are dropped for its sub-boxes; a box with at most
    LEAF_UNSTABLE unstable ReLUs (or too thin to split) goes to the MILP (`check_case`: LP
    tightening, then HiGHS) with a share of the remaining time; otherwise, or when that MILP
    runs out of time, it is bisected along the input with the largest smear
    (|coefficient of the CROWN bound| x width)."""
    import heapq

    from .attack import snap_into_box
    from .milp_bounds import REL_SLACK

    case = spec.cases[ci]
    reg = case.region
    ss = stats.setdefault("split", {"boxes": 0, "leaves": 0, "leaf_unsat": 0, "max_depth": 0})
    if not case.output or any(hs.rows == 0 for hs in case.output):  # only a witness decides those
        return check_case(network, spec, ci, lg, deadline, options, stats)
    C = np.concatenate([hs.A for hs in case.output])
    b = np.concatenate([hs.b for hs in case.output])
    strict = np.concatenate([np.asarray(hs.strict, bool) for hs in case.output])
    owner = np.concatenate([np.full(hs.rows, i) for i, hs in enumerate(case.output)])
    n_dis = len(case.output)
    bounder = _BoxBounder(lg, C)
    ss["batched"] = bounder.chain is not None
    width0 = np.maximum(reg.upper - reg.lower, 1e-300)
    heap = [(-np.inf, 0, reg.lower.copy(), reg.upper.copy(), np.ones(n_dis, bool), 0, None)]
    counter, given_up = 1, 0
    while heap:
        if expired(deadline):
            return CaseResult(Verdict.TIMEOUT, detail=f"deadline reached during input splitting ({ss['boxes']} boxes, "
                                                      f"{len(heap)} open)")
        batch = [heapq.heappop(heap) for _ in range(min(SPLIT_BATCH, len(heap)))]
        ss["boxes"] += len(batch)
        los = [e[2] for e in batch]
        his = [e[3] for e in batch]
        centres = (np.stack(los) + np.stack(his)) / 2.0
        bad = np.flatnonzero(case.unsafe(lg.evaluate(centres)) & reg.contains(centres))
        for i in bad:
            x = snap_into_box(centres[i], los[i], his[i], network.input_dtype)
            out = sat_outcome(network, spec, x, ENGINE, detail=f"box centre during input splitting (case {ci}), "
                                                                "replayed with ONNX Runtime on the original model")
            if out is not None:
                return CaseResult(Verdict.SAT, outcome=out)
        lbs, As, unstable, states = bounder.bound(los, his, [e[6] for e in batch], reg)
        for j, (_, _, lo, hi, open_d, depth, _) in enumerate(batch):
            ss["max_depth"] = max(ss["max_depth"], depth)
            lb = lbs[j] - REL_SLACK * (1.0 + np.abs(lbs[j])) - b
            still = open_d.copy()
            still[np.unique(owner[_row_proven(lb, strict)])] = False
            if not still.any():
                continue
            keep = still[owner]
            key = float(min(lb[keep & (owner == d)].max() for d in np.flatnonzero(still)))
            thin = bool(np.all(hi - lo <= 1e-7 * width0))
            if unstable[j] <= LEAF_UNSTABLE or thin:
                ss["leaves"] += 1
                budget = max(MIN_LEAF_SECONDS, (deadline - time.monotonic()) / (len(heap) + 1))
                sub = _sub_spec(spec, case, lo, hi, np.flatnonzero(still))
                leaf_stats: dict = {}
                r = check_case(network, sub, 0, lg, min(deadline, time.monotonic() + budget), options, leaf_stats)
                stats.setdefault("cases", {})[f"{ci}.{ss['leaves']}"] = leaf_stats.get("cases", {}).get(0, {})
                if r.verdict == Verdict.SAT:
                    out = sat_outcome(network, spec, r.outcome.counterexample[0], ENGINE, detail=r.outcome.detail)
                    if out is not None:
                        return CaseResult(Verdict.SAT, outcome=out)
                elif r.verdict == Verdict.UNSAT:
                    ss["leaf_unsat"] += 1
                    continue
                if thin:
                    given_up += 1
                    continue
            smear = (np.abs(As[j][keep]) * (hi - lo)).sum(axis=0)
            d = int(np.argmax(smear)) if smear.max() > 0 else int(np.argmax((hi - lo) / width0))
            mid = (lo[d] + hi[d]) / 2.0
            left_hi, right_lo = hi.copy(), lo.copy()
            left_hi[d] = mid
            right_lo[d] = mid
            for a, z in ((lo, left_hi), (right_lo, hi)):
                heapq.heappush(heap, (key, counter, a.copy(), z.copy(), still.copy(), depth + 1, states[j]))
                counter += 1
    if given_up:
        return CaseResult(Verdict.UNKNOWN, detail=f"{given_up} boxes too thin to split that the MILP did not decide")
    return CaseResult(Verdict.UNSAT, detail=f"input splitting and MILP leaves ruled out every box ({ss['boxes']} boxes, "
                                            f"{ss['leaves']} MILP leaves)")


def check_box(network, spec, ci: int, lower: np.ndarray, upper: np.ndarray, deadline: float, options: Options,
              stats: Optional[dict] = None) -> Outcome:
    """Decide case `ci` of `spec` restricted to the sub-box [lower, upper] of its region (for a
    branch and bound that hands hard leaves to the MILP). `unsat` is about that box only; `sat`
    carries a witness replayed against the whole spec."""
    from ..network.layers import layer_graph

    t0 = time.monotonic()
    box_spec = _sub_spec(spec, spec.cases[ci], lower, upper)
    st = stats if stats is not None else {}
    r = check_case(network, box_spec, 0, layer_graph(network), deadline, options, st, milp=True)
    if r.verdict == Verdict.SAT:
        x = r.outcome.counterexample[0]
        out = sat_outcome(network, spec, x, ENGINE, detail=r.outcome.detail)
        if out is not None:
            out.seconds = time.monotonic() - t0
            return out
        return Outcome(Verdict.UNKNOWN, engine=ENGINE, seconds=time.monotonic() - t0, detail="sub-box witness did not replay")
    return Outcome(r.verdict, engine=ENGINE, seconds=time.monotonic() - t0, detail=r.detail, stats=_summary(st))


def _run(network, spec, deadline: float, options: Options, milp: bool, engine: str) -> Outcome:
    from ..network.layers import layer_graph

    t0 = time.monotonic()
    stats: dict = {}
    lg = layer_graph(network)  # UnsupportedOperator goes to the router, which names the op
    stats["relus"] = lg.n_relus
    if milp and options.mode == "exact":
        # alone (not behind the falsifier, as in --mode auto), a short falsification pass first:
        # the MILP's own primal heuristics are slow to find witnesses on the larger nets
        from . import attack

        budget = min(FALSIFY_SECONDS, FALSIFY_SHARE * max(0.0, deadline - time.monotonic()))
        out = attack.check(network, spec, min(deadline, time.monotonic() + budget), options)
        stats["falsify_s"] = round(time.monotonic() - t0, 3)
        if out.verdict == Verdict.SAT and out.witness_checked:
            out.engine = engine
            out.detail = "falsifier witness (run by the exact engine before the MILP): " + out.detail
            out.seconds = time.monotonic() - t0
            out.stats = stats
            return out
    verdicts = []
    details = []
    order = list(range(len(spec.cases)))
    for ci in order:
        if expired(deadline):
            verdicts.append(Verdict.TIMEOUT)
            break
        reg = spec.cases[ci].region
        free = int(np.sum(reg.upper > reg.lower))
        if milp and 0 < free <= SPLIT_MAX_FREE_DIMS and not _region_empty(reg):
            r = _split_case(network, spec, ci, lg, deadline, options, stats)
        else:
            r = check_case(network, spec, ci, lg, deadline, options, stats, milp=milp)
        if r.verdict == Verdict.SAT:
            out = r.outcome
            out.engine = engine
            out.seconds = time.monotonic() - t0
            out.stats = _summary(stats)
            return out
        verdicts.append(r.verdict)
        if r.verdict != Verdict.UNSAT:
            details.append(f"case {ci}: {r.detail}")
    seconds = time.monotonic() - t0
    summary = _summary(stats)
    if len(verdicts) == len(spec.cases) and all(v == Verdict.UNSAT for v in verdicts):
        how = ("ReLU-split BaB / MILP" if summary.get("bab_runs") else "MILP") if milp else "LP relaxation"
        return Outcome(Verdict.UNSAT, engine=engine, seconds=seconds, stats=summary,
                       detail=f"all {len(spec.cases)} case(s) proven by sound bounds / {how}")
    verdict = Verdict.TIMEOUT if (expired(deadline) or Verdict.TIMEOUT in verdicts) else Verdict.UNKNOWN
    return Outcome(verdict, engine=engine, seconds=seconds, stats=summary, detail="; ".join(details)[:2000])


def _summary(stats: dict) -> dict:
    cases = stats.get("cases", {})
    out = {k: v for k, v in stats.items() if k != "cases"}
    for key in ("bounds_s", "crown_s", "refine_s", "lp_s", "tighten_s", "build_s", "set_instance_s", "solve_s", "lp_solved",
                "binaries", "spurious", "tighten_domains", "tighten_rows_skipped"):
        vals = [c[key] for c in cases.values() if key in c]
        if vals:
            out[key] = round(float(sum(vals)), 4) if isinstance(vals[0], float) else int(sum(vals))
    methods = sorted({c["bounds_method"] for c in cases.values() if "bounds_method" in c})
    if methods:
        out["bounds_method"] = methods[0] if len(methods) == 1 else methods
    unstable = [c.get("unstable_relus") for c in cases.values() if c.get("unstable_relus") is not None]
    if unstable:
        out["unstable_relus"] = unstable[0] if len(unstable) == 1 else unstable
    tightened = [c["unstable_tightened"] for c in cases.values() if "unstable_tightened" in c]
    if tightened:
        out["unstable_tightened"] = tightened[0] if len(tightened) == 1 else tightened
    out["cases"] = len(cases)
    bab = [r for c in cases.values() for r in c.get("bab", [])]
    if bab:
        out["bab_s"] = round(float(sum(c.get("bab_s", 0.0) for c in cases.values())), 4)
        out["bab_domains"] = int(sum(r["domains"] for r in bab))
        out["bab_proven"] = sum(r["status"] == "proven" for r in bab)
        out["bab_runs"] = len(bab)
        out["bab_max_depth"] = max(r["max_depth"] for r in bab)
    milp = [m for c in cases.values() for m in c.get("milp", [])]
    if milp:
        out["milp_solves"] = len(milp)
        out["milp_nodes"] = int(sum(m["nodes"] for m in milp))
    return out


def check(network, spec, deadline: float, options: Options) -> Outcome:
    """Complete: sat (replayed witness) or unsat (every disjunct proven), else timeout/unknown."""
    return _run(network, spec, deadline, options, milp=True, engine=ENGINE)


def lp_check(network, spec, deadline: float, options: Options) -> Outcome:
    """`--relaxed-method lp`: the LP relaxation alone (binaries relaxed: the triangle relaxation,
    with LP-tightened intermediate bounds): unsat, sat only for a replayed LP optimum, else unknown."""
    out = _run(network, spec, deadline, options, milp=False, engine="relaxed")
    out.detail = "lp: " + out.detail
    return out
