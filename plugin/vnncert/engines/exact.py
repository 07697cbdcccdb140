"""The exact engine: a mixed-integer program per input region, modelled in Pyomo, solved by HiGHS.

Pipeline for one case (input region + output disjunction), see docs/exact.md:

1. bounds (`bounds.region.compute_bounds`): IBP, CROWN, on affine/ReLU chains alpha-CROWN
   (`relu_bab.optimised_rows`), then LP tightening of unstable ReLUs; every bound is sound (LP
   values are turned into weak-duality bounds, never taken on trust). An affine/ReLU chain
   without extra input constraints gets IBP, CROWN and alpha-CROWN on every layer first, and
   when that leaves at least BAB_MIN_UNSTABLE unstable ReLUs (step 3's branch and bound) no LPs;
2. each disjunct's rows get sound lower bounds (CROWN and the LP); a disjunct whose bound is
   positive is impossible (with binaries relaxed this is the LP engine, engines/lp.py);
3. on an affine/ReLU chain with at least BAB_MIN_UNSTABLE unstable ReLUs left, the remaining
   disjuncts first go to the ReLU-split branch and bound (`relu_bab.SplitBaB`, on the same
   bounds); with two or more ReLU layers that first search is short (BAB_QUICK_SHARE), then
   the intermediate bounds are tightened by branch and bound over the earlier layers' ReLUs
   (`_tighten_chain`, `relu_bab.tighten_rows`) and the open disjuncts are searched again with
   the rest of the time; a disjunct it gives up on (a fully split domain it cannot close) goes
   on to step 4's MILP with the time left;
4. the remaining disjuncts, most promising first, each become one MILP in the same Pyomo model
   (`milp.model.build_model`): min t s.t. t >= a_i . y - b_i for the disjunct's rows, over the network's
   encoding (`bounds.encoding` + `milp.encoding`) with one binary per unstable ReLU. `solve` runs HiGHS
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
from typing import Dict, List, Optional

import numpy as np

from ..deadline import expired
from ..milp.case import CaseResult, bound_case, milp_disjuncts, record_bounds, region_empty, try_points
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome

ENGINE = "exact"

# share of the remaining time spent on LP bound tightening before the MILP
LP_TIGHTEN_SHARE = 0.35
# inputs with at most this many free dims are split (CROWN on every box) before the MILP; a box
# goes to the MILP when CROWN leaves at most LEAF_UNSTABLE unstable ReLUs in it
SPLIT_MAX_FREE_DIMS = 8
LEAF_UNSTABLE = 30
MIN_LEAF_SECONDS = 5.0
SPLIT_BATCH = 64
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


def check_case(network, spec, ci: int, lg, deadline: float, options: Options, stats: dict) -> CaseResult:
    """Decide case `ci`: sound bounds, then (large chains) the ReLU-split branch and bound, then one
    MILP per disjunct still open (module docstring)."""
    from ..bounds.region import compute_bounds

    case = spec.cases[ci]
    region = case.region
    cs = stats.setdefault("cases", {}).setdefault(ci, {})
    if region_empty(region):
        return CaseResult(Verdict.UNSAT, detail="empty input box")
    t0 = now = time.monotonic()
    lp_deadline = now + LP_TIGHTEN_SHARE * max(0.0, deadline - now)
    bounds = fast = None
    has_G = region.G is not None and region.G.shape[0] > 0
    if not has_G and _chain_of(lg) is not None and \
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
    # the LPs over the output rows are part of the LP share (on a deep net each takes seconds,
    # and the branch and bound's root bounds the same rows nearly as tightly)
    done, lbs, open_d = bound_case(network, spec, ci, lg, bounds, lp_deadline, cs, ENGINE, options.exact.row_bounds)
    # an alpha pass the LP route replaced counts too
    record_bounds(cs, [bounds] if fast is None or fast is bounds else [bounds, fast], time.monotonic() - t0)
    if done is not None:
        return done
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
    return milp_disjuncts(network, spec, case, ci, bounds.enc, open_d, lbs, deadline, options, cs, ENGINE)


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

    def try_points_(xs):
        return try_points(network, spec, case, xs, ci, ENGINE, source="the minimiser of a ReLU-split domain's bound")

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
            r = searches[di].run(min(deadline, time.monotonic() + share), try_points_)
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
    from ..bounds.margin import widen
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


def _sub_spec(spec, case, lower, upper, disjuncts=None):
    from ..spec.model import Case, InputRegion

    reg = case.region
    sub = InputRegion(np.maximum(np.asarray(lower, np.float64), reg.lower), np.minimum(np.asarray(upper, np.float64), reg.upper),
                      reg.G, reg.h, reg.lower_strict, reg.upper_strict, reg.G_strict)
    out = case.output if disjuncts is None else [case.output[i] for i in disjuncts]
    return type(spec)(spec.n_inputs, spec.n_outputs, [Case(sub, out)], spec.source, spec.version)


def _refiner(lg, region, deadline: float, lp_deadline: float):
    """For `bounds.region.compute_bounds`: alpha-CROWN bounds (`relu_bab.optimised_rows`,
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
        from ..bounds.region import compute_bounds, crown_lower

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

    from ..bounds.margin import REL_SLACK
    from ..bounds.region import row_proven

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
            x = reg.snap_input(centres[i], network.input_dtype)[0]
            out = sat_outcome(network, spec, x, ENGINE, detail=f"box centre during input splitting (case {ci}), "
                                                                "replayed with ONNX Runtime on the original model")
            if out is not None:
                return CaseResult(Verdict.SAT, outcome=out)
        lbs, As, unstable, states = bounder.bound(los, his, [e[6] for e in batch], reg)
        for j, (_, _, lo, hi, open_d, depth, _) in enumerate(batch):
            ss["max_depth"] = max(ss["max_depth"], depth)
            lb = lbs[j] - REL_SLACK * (1.0 + np.abs(lbs[j])) - b
            still = open_d.copy()
            still[np.unique(owner[row_proven(lb, strict)])] = False
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


def check(network, spec, deadline: float, options: Options) -> Outcome:
    """Complete: sat (replayed witness) or unsat (every disjunct proven), else timeout/unknown."""
    from ..network.layers import layer_graph

    t0 = time.monotonic()
    stats: dict = {}
    lg = layer_graph(network)  # UnsupportedOperator goes to the router, which names the op
    stats["relus"] = lg.n_relus
    verdicts = []
    details = []
    for ci in range(len(spec.cases)):
        if expired(deadline):
            verdicts.append(Verdict.TIMEOUT)
            break
        reg = spec.cases[ci].region
        free = int(np.sum(reg.upper > reg.lower))
        if 0 < free <= SPLIT_MAX_FREE_DIMS and not region_empty(reg):
            r = _split_case(network, spec, ci, lg, deadline, options, stats)
        else:
            r = check_case(network, spec, ci, lg, deadline, options, stats)
        if r.verdict == Verdict.SAT:
            out = r.outcome
            out.engine = ENGINE
            out.seconds = time.monotonic() - t0
            out.stats = _summary(stats)
            return out
        verdicts.append(r.verdict)
        if r.verdict != Verdict.UNSAT:
            details.append(f"case {ci}: {r.detail}")
    seconds = time.monotonic() - t0
    summary = _summary(stats)
    if len(verdicts) == len(spec.cases) and all(v == Verdict.UNSAT for v in verdicts):
        how = "ReLU-split BaB / MILP" if summary.get("bab_runs") else "MILP"
        return Outcome(Verdict.UNSAT, engine=ENGINE, seconds=seconds, stats=summary,
                       detail=f"all {len(spec.cases)} case(s) proven by sound bounds / {how}")
    verdict = Verdict.TIMEOUT if (expired(deadline) or Verdict.TIMEOUT in verdicts) else Verdict.UNKNOWN
    return Outcome(verdict, engine=ENGINE, seconds=seconds, stats=summary, detail="; ".join(details)[:2000])


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
