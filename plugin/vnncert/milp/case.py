"""One case (input region + output disjunction) decided by HiGHS: the MILP of each open disjunct,
or (`lp_case`) its LP relaxation.

`sat` only for a point that `results.sat_outcome` replays in ONNX Runtime; `unsat` for a disjunct
only when HiGHS proves that nothing lies below `2 * unsat_margin` (its dual bound or its
infeasibility under the cutoff). docs/exact.md §4-5.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional

import numpy as np

from ..deadline import expired
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome
from .encoding import add_binaries, relaxed_binaries
from .model import build_model
from .solver import Solver, unsat_margin


@dataclass
class CaseResult:
    verdict: Verdict
    outcome: Optional[Outcome] = None
    detail: str = ""


@dataclass
class CaseStats:
    """What deciding one case cost (the exact and LP engines add these up with `add`)."""

    bounds_method: str = ""  # alpha-crown (the LP-free route) or lp
    bounds_s: float = 0.0  # all bounds, of which:
    crown_s: float = 0.0
    refine_s: float = 0.0  # alpha-CROWN of intermediate rows
    lp_s: float = 0.0  # LP tightening of intermediate rows (the rest: IBP and the output-row LPs)
    lp_solved: int = 0
    unstable_relus: List[int] = field(default_factory=list)  # per ReLU layer, after the bounds
    disjuncts: int = 0
    disjuncts_by_bounds: int = 0  # disjuncts some row's bound refutes
    witness_from: str = ""  # lp | bab | milp
    build_s: float = 0.0  # Pyomo model
    set_instance_s: float = 0.0  # ... handed to HiGHS
    solve_s: float = 0.0  # HiGHS
    binaries: int = 0
    binaries_relaxed: int = 0
    spurious: int = 0  # incumbents that did not replay
    model: Dict[str, int] = field(default_factory=dict)  # cols, rows, nnz, binaries of the Pyomo model
    milp: List[dict] = field(default_factory=list)  # one entry per HiGHS solve

    def add(self, other: "CaseStats") -> None:
        """Add `other` in: numbers summed, lists joined, names collected, dicts summed per key
        (every field, so a new figure is never dropped)."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, list):
                a.extend(b)
            elif isinstance(a, dict):
                for k, v in b.items():
                    a[k] = a.get(k, 0) + v
            elif isinstance(a, str):
                names = [x for x in a.split(",") if x]
                setattr(self, f.name, ",".join(sorted(set(names + [x for x in b.split(",") if x]))))
            else:
                setattr(self, f.name, a + b)

    def summary(self) -> dict:
        """Every field (the list of HiGHS solves as their count and nodes)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "milp":
                if v:
                    out.update(milp_solves=len(v), milp_nodes=int(sum(m["nodes"] for m in v)))
            elif isinstance(v, float):
                out[f.name] = round(v, 4)
            else:
                out[f.name] = v
        return out


def region_empty(region) -> bool:
    return bool(np.any(region.lower > region.upper))


def try_points(network, spec, case, xs: np.ndarray, ci: int, engine: str,
               source: str = "an LP-relaxation optimum") -> Optional[Outcome]:
    """The first of the candidate inputs xs (k, n) that the float32 model puts in the case's unsafe
    set and ONNX Runtime confirms, as a sat Outcome; else None."""
    xs = case.region.snap_input(np.asarray(xs, np.float64), network.input_dtype)
    ys = network.evaluate(xs).astype(np.float64)
    for i in np.flatnonzero(case.unsafe(ys)):
        out = sat_outcome(network, spec, xs[i], engine,
                          detail=f"witness at {source} (case {ci}), replayed with ONNX Runtime on the original model")
        if out is not None:
            return out
    return None


def solve_disjunct(network, spec, case, ci: int, di: int, solver: Solver, enc, deadline: float, cs: CaseStats,
                   engine: str, retries: Optional[int] = None, source: str = "MILP"):
    """(verdict, outcome, note) for one disjunct whose objective is in the solver.

    UNSAT only when nothing lies below `proof_cutoff` = 2 * margin (HiGHS's dual bound or its
    cutoff-infeasibility); SAT only for an incumbent that replays. An incumbent that does not
    replay makes the next solve ask for a deeper violation (the cutoff moves below zero, so
    that solve can no longer prove anything)."""
    hs = case.output[di]
    if retries is None:
        retries = solver.options.spurious_retries
    margin = unsat_margin(enc, hs.A, solver.options)
    proof_cutoff = 2.0 * margin
    cutoff, stop_below = proof_cutoff, -margin
    note = ""
    for _ in range(retries + 1):
        r = solver.solve(deadline, cutoff=cutoff, stop_below=stop_below)
        cs.solve_s += r.seconds
        cs.milp.append({"disjunct": di, "status": r.status, "incumbent": r.incumbent, "bound": r.bound,
                                          "cutoff": cutoff, "nodes": r.nodes, "seconds": round(r.seconds, 3)})
        if r.status == "proven" or (r.bound is not None and r.bound >= cutoff):
            if cutoff >= proof_cutoff:
                return Verdict.UNSAT, None, ""
            return Verdict.UNKNOWN, None, (f"incumbents did not replay and nothing lies below {cutoff:.3g}: "
                                           f"the optimum is within the solver's tolerance of zero")
        if r.x is not None and r.incumbent is not None and r.incumbent <= margin:
            x = case.region.snap_input(r.x, network.input_dtype)[0]
            out = sat_outcome(network, spec, x, engine,
                              detail=f"{source} witness (disjunct {di} of case {ci}), replayed with ONNX Runtime on the original model")
            if out is not None:
                return Verdict.SAT, out, ""
            # not a real witness (solver tolerance or float32 rounding): ask for a deeper violation
            cs.spurious += 1
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


def milp_disjuncts(network, spec, case, ci: int, enc, open_d: List[int], lbs: List[float], deadline: float,
                   options: Options, cs: CaseStats, engine: str) -> CaseResult:
    """The MILP of each open disjunct (most promising first), in two passes: an equal share of the
    time each, then what is left to those that ran out of it."""
    add_binaries(enc, relax=False)
    mm = build_model(enc)
    cs.build_s += mm.build_seconds
    cs.binaries += enc.n_binaries
    cs.model = dict(mm.stats)
    solver = Solver(mm, threads=options.threads, options=options.milp)
    pending = sorted(open_d, key=lambda i: lbs[i])
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
            verdict, outcome, note = solve_disjunct(network, spec, case, ci, di, solver, enc, d_deadline, cs, engine)
            if verdict == Verdict.SAT:
                cs.set_instance_s += solver.set_instance_seconds
                cs.witness_from = "milp"
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
    cs.set_instance_s += solver.set_instance_seconds
    if not pending and not unresolved:
        return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out (bounds or MILP dual bound above the margin)")
    if pending:
        return CaseResult(Verdict.TIMEOUT, detail="; ".join(unresolved) or "deadline reached")
    return CaseResult(Verdict.UNKNOWN, detail="; ".join(unresolved))


def lp_disjuncts(network, spec, case, ci: int, enc, open_d: List[int], lbs: List[float], deadline: float,
                 options: Options, cs: CaseStats, engine: str) -> CaseResult:
    """The LP relaxation's answer for the disjuncts no row bound rules out: per disjunct, the LP
    min t s.t. t >= a_i . y - b_i over the encoding with its binaries relaxed (the triangle
    relaxation; a conjunction of rows is decided together, not row by row). `unsat` when HiGHS's
    bound is above the margin (as in the MILP), `sat` when the LP optimum replays, else unknown.
    On an encoding without binaries (an affine network, or every ReLU stable on the box) the LP
    is the problem itself, so this decides it."""
    add_binaries(enc, relax=True)
    mm = build_model(enc)
    cs.build_s += mm.build_seconds
    cs.binaries_relaxed += relaxed_binaries(enc)
    solver = Solver(mm, threads=options.threads, options=options.milp)
    unresolved: List[str] = []
    for pos, di in enumerate(sorted(open_d, key=lambda i: lbs[i])):
        if expired(deadline):
            return CaseResult(Verdict.TIMEOUT, detail=f"{len(open_d) - pos} disjunct(s) open at the deadline (LP relaxation)")
        hs = case.output[di]
        share = (deadline - time.monotonic()) / (len(open_d) - pos)
        solver.set_disjunct(hs.A, hs.b, t_lower=lbs[di])
        # an LP optimum that does not replay is not retried deeper: the relaxation proves nothing below zero
        verdict, outcome, note = solve_disjunct(network, spec, case, ci, di, solver, enc,
                                                min(deadline, time.monotonic() + max(1.0, share)), cs, engine,
                                                retries=0, source="an LP-relaxation optimum")
        if verdict == Verdict.SAT:
            cs.witness_from = "lp"
            return CaseResult(Verdict.SAT, outcome=outcome)
        if verdict != Verdict.UNSAT:
            unresolved.append(f"disjunct {di}: {note or verdict.value}")
    cs.set_instance_s += solver.set_instance_seconds
    if not unresolved:
        return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out by the LP relaxation")
    return CaseResult(Verdict.UNKNOWN, detail=f"{len(unresolved)} of {len(case.output)} disjuncts not ruled out by the LP "
                                              f"relaxation ({'; '.join(unresolved)[:500]})")


def bound_case(network, spec, ci: int, lg, bounds, deadline: float, cs: CaseStats, engine: str, row_bounds: bool = True):
    """What the bounds of a case decide: (CaseResult or None, per-disjunct lower bounds, open disjuncts).

    Each disjunct's rows get sound lower bounds (CROWN and, when the bounds carry it, the LP); the
    LP optima over the output rows are replayed as candidate witnesses. Without `row_bounds` no
    disjunct is ruled out here (HiGHS decides every one)."""
    from ..bounds.region import disjunct_bounds

    case = spec.cases[ci]
    if bounds.empty:
        return CaseResult(Verdict.UNSAT, detail="input region proven empty"), [], []
    if row_bounds:
        lbs, proven = disjunct_bounds(lg, case, bounds, deadline)
    else:
        lbs, proven = [-np.inf] * len(case.output), [False] * len(case.output)
    cs.disjuncts += len(case.output)
    cs.disjuncts_by_bounds += int(sum(proven))
    if bounds.lp is not None and bounds.lp.points:
        out = try_points(network, spec, case, np.stack(bounds.lp.points), ci, engine)
        if out is not None:
            cs.witness_from = "lp"
            return CaseResult(Verdict.SAT, outcome=out), lbs, []
    open_d = [i for i in range(len(case.output)) if not proven[i]]
    if not open_d:
        return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out by sound LP/CROWN bounds"), lbs, []
    return None, lbs, open_d


def lp_case(network, spec, ci: int, lg, deadline: float, options: Options, cs: CaseStats, engine: str,
            crown=None) -> CaseResult:
    """The LP relaxation's answer for case `ci`: LP-tightened bounds (the whole time may go to
    them), the row bounds, then one LP per open disjunct (`lp_disjuncts`). `crown`: the numpy
    CROWN of lg when the caller keeps one."""
    from ..bounds.crown import Expired
    from ..bounds.region import compute_bounds

    case = spec.cases[ci]
    if region_empty(case.region):
        return CaseResult(Verdict.UNSAT, detail="empty input box")
    t0 = time.monotonic()
    try:
        bounds = compute_bounds(lg, case.region, deadline, method="lp", lp_deadline=deadline, threads=options.threads or 1,
                                crown=crown)
    except Expired:
        return CaseResult(Verdict.TIMEOUT, detail="deadline reached during the CROWN pass")
    cs.bounds_method = "lp"
    done, lbs, open_d = bound_case(network, spec, ci, lg, bounds, deadline, cs, engine)
    record_bounds(cs, [bounds], time.monotonic() - t0)
    if done is not None:
        return done
    return lp_disjuncts(network, spec, case, ci, bounds.enc, open_d, lbs, deadline, options, cs, engine)


def record_bounds(cs: CaseStats, runs, seconds: float) -> None:
    """The bounds' figures of a case: time, unstable ReLUs, LPs, and where the time went."""
    cs.bounds_s += seconds
    cs.unstable_relus = list(runs[0].unstable)
    cs.lp_solved += int(runs[0].stats.get("lp_solved", 0))
    cs.crown_s += sum(float(r.stats.get("crown_s", 0.0)) for r in runs)
    cs.refine_s += sum(float(r.stats.get("refine_s", 0.0)) for r in runs)
    cs.lp_s += sum(float(r.stats.get("lp_s", 0.0)) for r in runs)
