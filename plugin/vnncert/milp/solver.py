"""HiGHS (persistent, through pyomo.contrib.appsi) on a `milp.model.MilpModel`, and its soundness margin.

`Solver.solve` minimises the current disjunct's objective until an incumbent below `stop_below`,
a proof that nothing lies below `cutoff` (HiGHS's dual bound, or infeasibility under the
objective bound), optimality, or the deadline. `unsat_margin` is how far above zero HiGHS's dual
bound must be before a disjunct counts as impossible (docs/exact.md: derivation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..bounds.encoding import Encoding
from ..bounds.lp import highs_threads
from ..options import MilpOptions
from .model import MilpModel, build_model, set_disjunct


def unsat_margin(enc: Encoding, A: np.ndarray, options: MilpOptions = MilpOptions()) -> float:
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
    return 10.0 * options.dual_feas_tol * rng + 1e-6 * (1.0 + scale)


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

    def __init__(self, mm: MilpModel, threads: int = 1, options: MilpOptions = MilpOptions()):
        import logging

        from pyomo.contrib.appsi.solvers.highs import Highs

        # an interrupted run (our callback) is not a status the interface maps; we read HiGHS's own
        logging.getLogger("pyomo.contrib.appsi.solvers.highs").setLevel(logging.ERROR)

        self.mm = mm
        self.options = options
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

    def solve(self, deadline: float, cutoff: float, stop_below: float, gap: Optional[float] = None) -> SolveResult:
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
        o = self.options
        remaining -= min(o.early_stop, 0.05 * remaining)
        deadline = time.monotonic() + remaining
        # HiGHS's time_limit is against its run clock, which adds up over the runs of a persistent
        # instance: the limit is that clock plus this solve's time
        self.opt.config.time_limit = h.getRunTime() + max(0.05, remaining)
        self.opt.config.mip_gap = o.mip_gap if gap is None else gap
        self.opt.highs_options = {
            "threads": self.threads, "objective_bound": float(cutoff),
            "primal_feasibility_tolerance": o.primal_feas_tol, "dual_feasibility_tolerance": o.dual_feas_tol,
            "mip_feasibility_tolerance": o.mip_feas_tol, "mip_abs_gap": 0.0, "random_seed": 0,
        }
        if not o.sub_mips:
            self.opt.highs_options.update({"mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                                           "mip_heuristic_run_root_reduced_cost": False})
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
        highs_threads(self.threads)
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
             binaries: bool = True, options: MilpOptions = MilpOptions()) -> SolveResult:
    """min over the region of max_i (A_i . f(x) - b_i), solved to optimality (no cutoff): the
    MILP's optimum (binaries=True) or the LP relaxation's (binaries=False). For tests and
    callers that need the value rather than a verdict; `bound` is HiGHS's dual bound."""
    from ..bounds.region import compute_bounds
    from .encoding import add_binaries

    bounds = compute_bounds(lg, region, deadline, method="lp", threads=threads)
    enc = bounds.enc
    add_binaries(enc, relax=not binaries)
    mm = build_model(enc)
    solver = Solver(mm, threads=threads, options=options)
    solver.set_disjunct(np.atleast_2d(A), np.atleast_1d(b))
    return solver.solve(deadline, cutoff=np.inf, stop_below=-np.inf, gap=0.0)
