"""Relaxed engine: linear bounds (IBP, CROWN, alpha-CROWN) with an input-split branch and bound.

For every case, the rows of all its output disjuncts `A y <= b` become one spec matrix C, and
C f(x) is bounded from below over the input box (auto_LiRPA, or `relu_chain` for networks that
are a chain of affine maps and ReLUs). A disjunct is refuted on a box when one of its rows has
`lower(A_i y) - b_i > margin_i`; a case is refuted when every disjunct is refuted on every box
that covers its region. All bounds are computed in float64 on a float64 copy of the network
(docs/relaxed.md: why, and the margin).

A case left open on whose region the network is affine (no ReLU or max at all; or, when the
input has too many free dims to split, no ReLU unstable on its box) is a linear program: the
exact engine's LP of each disjunct decides it (`_affine_cases`, `_lp_cases`).

When the first bounds do not refute everything and the input has few free dimensions, the
engine splits input boxes (batched CROWN over many sub-boxes at once, alpha on the boxes CROWN
leaves open), evaluates cheap candidates from every open box in ONNX Runtime (box centres and
the corners that minimise the linear lower bounds) and, from time to time, runs the falsifier's
PGD on the most promising boxes. It stops at the first witness (replayed through
`results.sat_outcome`), when every box is refuted, or at the deadline.

Verdicts: `unsat` (every box refuted), `sat` (only with a replayed witness), else `unknown` /
`timeout`. The region's extra linear constraints `G x <= h`, when present, are over-approximated
by the box, which is sound for `unsat`.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from ..deadline import expired, remaining
from ..errors import UnsupportedOperator
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome

METHODS = {"ibp": "IBP", "crown": "CROWN", "alpha-crown": "alpha-CROWN"}

# a row refutes a disjunct when lower(A_i y) - b_i > MARGIN_ABS + MARGIN_REL * (|b_i| + |lower(A_i y)|)
MARGIN_ABS = 1e-7
MARGIN_REL = 1e-6

CHAIN_CHUNK_VALUES = 1 << 22  # values (32 MiB of float64) of one back-substitution matrix per relu-chain CROWN call
SPLIT_MAX_DIMS = 16          # input-split BaB only for at most this many free input dims
MAX_OPEN_BOXES = 2_000_000   # memory bound: past this, the search gives up (unknown)
MAX_STATE_BYTES = 1 << 30    # and at most this much memory for the open boxes' intermediate bounds
MIN_WIDTH = 1e-9             # a box narrower than this in every dim is not split further
ALPHA_ITERS = 8              # relu chains: Adam steps on the final pass's lower slopes for boxes CROWN leaves open
MAX_AFFINE_CHECKS = 64       # open cases checked for "no ReLU unstable on the region" (one numpy CROWN pass each)


# ---- the spec as rows --------------------------------------------------------------------------
@dataclass
class CaseRows:
    """All rows of a case's disjuncts: C (R, n_out), b (R,), owner (R,) = disjunct index."""

    C: np.ndarray
    b: np.ndarray
    owner: np.ndarray
    n_disjuncts: int
    empty_disjunct: bool  # a disjunct with no rows (every output unsafe): never refutable

    @staticmethod
    def of(case, n_outputs: int) -> "CaseRows":
        Cs, bs, own = [], [], []
        empty = False
        for k, hs in enumerate(case.output):
            if hs.rows == 0:
                empty = True
            Cs.append(np.asarray(hs.A, dtype=np.float64).reshape(-1, n_outputs))
            bs.append(np.asarray(hs.b, dtype=np.float64).reshape(-1))
            own.append(np.full(hs.rows, k))
        C = np.concatenate(Cs, axis=0) if Cs else np.zeros((0, n_outputs))
        b = np.concatenate(bs) if bs else np.zeros(0)
        owner = np.concatenate(own).astype(np.int64) if own else np.zeros(0, np.int64)
        return CaseRows(C, b, owner, len(case.output), empty)


def margin(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    return MARGIN_ABS + MARGIN_REL * (np.abs(b) + np.abs(lower))


def refuted_rows(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows whose lower bound proves `A_i y <= b_i` (and so `<`) impossible, with the margin."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(lower) & ((lower - b) > margin(lower, b))


def refuted_disjuncts(rows: CaseRows, row_ok: np.ndarray) -> np.ndarray:
    """(K, n_disjuncts) bool from (K, R) row refutations."""
    K = row_ok.shape[0]
    out = np.zeros((K, rows.n_disjuncts), dtype=bool)
    for k in range(rows.n_disjuncts):
        sel = rows.owner == k
        if sel.any():
            out[:, k] = row_ok[:, sel].any(axis=1)
    return out


# ---- auto_LiRPA in float64 -----------------------------------------------------------------------
@contextlib.contextmanager
def float64_default():
    """auto_LiRPA 0.3 makes identity matrices in the default dtype: make that float64 while bounding."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


BOUND_OPTS = {
    # alpha-CROWN in auto_LiRPA 0.3 crashes with the sparse variants on these graphs
    "sparse_intermediate_bounds": False,
    "sparse_features_alpha": False,
    "sparse_spec_alpha": False,
    "optimize_bound_args": {"iteration": 20, "lr_alpha": 0.1, "early_stop_patience": 5},
}


class Bounder:
    """A float64 BoundedModule of the network; `lower(lo, hi, C)` bounds C f(x) over boxes."""

    def __init__(self, network):
        import copy

        import torch

        from ..network.ops.torch_layers import Conv

        base = network.torch_module()
        self.module = copy.deepcopy(base).double().eval()
        self.rest = tuple(self.module.input_rest)
        self.n_in = network.n_inputs
        has_conv2d = any(isinstance(s, Conv) and not s.as_1d for s in self.module.steps)
        # patches mode is the fast one for Conv2d; it needs the image-shaped input (no reshape in front)
        self.modes = ["patches", "matrix"] if has_conv2d else ["matrix"]
        self._torch = torch
        self.bm = None
        self.mode = None
        self._build(self.modes[0])

    def _build(self, mode: str) -> None:
        from auto_LiRPA import BoundedModule

        torch = self._torch
        opts = dict(BOUND_OPTS, conv_mode=mode)
        with float64_default(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about the module's shape check
            self.bm = BoundedModule(self.module, torch.zeros((1,) + self.rest, dtype=torch.float64),
                                    bound_opts=opts, device="cpu", verbose=False)
        self.mode = mode

    def lower(self, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, method: str = "crown",
              want_A: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Lower bounds (K, R) of C[k] f(x) over lo[k] <= x <= hi[k]; with want_A also the
        linear coefficients (K, R, n_in) of the lower bound in x (CROWN-type methods only)."""
        try:
            return self._lower(lo, hi, C, method, want_A)
        except Exception:
            if self.mode == self.modes[-1]:
                raise
            self._build(self.modes[-1])  # patches mode failed on this graph: matrix mode
            return self._lower(lo, hi, C, method, want_A)

    def _lower(self, lo, hi, C, method, want_A):
        from auto_LiRPA import BoundedTensor, PerturbationLpNorm

        torch = self._torch
        K = lo.shape[0]
        with float64_default():
            xl = torch.as_tensor(np.ascontiguousarray(lo), dtype=torch.float64).reshape((K,) + self.rest)
            xu = torch.as_tensor(np.ascontiguousarray(hi), dtype=torch.float64).reshape((K,) + self.rest)
            x = BoundedTensor((xl + xu) / 2, PerturbationLpNorm(x_L=xl, x_U=xu))
            Ct = torch.as_tensor(C, dtype=torch.float64)
            name = METHODS[method]
            get_A = want_A and method != "ibp"
            ctx = torch.no_grad() if name != "alpha-CROWN" else contextlib.nullcontext()
            with ctx:
                if get_A:
                    out_node, in_node = self.bm.output_name[0], self.bm.input_name[0]
                    lb, _, A = self.bm.compute_bounds(x=(x,), C=Ct, method=name, bound_upper=False,
                                                      return_A=True, needed_A_dict={out_node: [in_node]})
                    lA = A[out_node][in_node]["lA"]
                    lA = lA.detach().reshape(K, C.shape[1], -1).numpy() if lA is not None else None
                else:
                    lb, _ = self.bm.compute_bounds(x=(x,), C=Ct, method=name, bound_upper=False)
                    lA = None
        lb = lb.detach().numpy().astype(np.float64)
        lb = np.where(np.isnan(lb), -np.inf, lb)
        return lb, lA


# ---- the engine --------------------------------------------------------------------------------
def _batch_C(rows: CaseRows, K: int) -> np.ndarray:
    return np.broadcast_to(rows.C[None], (K,) + rows.C.shape).copy()


def _pad_rows(rows: CaseRows) -> CaseRows:
    """auto_LiRPA needs at least one row: a zero row with b = +inf never refutes."""
    if rows.C.shape[0]:
        return rows
    return CaseRows(np.zeros((1, rows.C.shape[1])), np.array([np.inf]), np.array([-1]), rows.n_disjuncts,
                    rows.empty_disjunct)


def _take_state(state, idx):
    if state is None:
        return None
    import torch

    t = torch.as_tensor(idx, dtype=torch.long)
    return [x[t] for x in state[0]], [x[t] for x in state[1]]


class _Boxes:
    """Open boxes: lo/hi (K, n) float64, alive (K, n_disjuncts), optional per-box bounder state."""

    def __init__(self, lo, hi, alive, state):
        self.lo, self.hi, self.alive, self.state = lo, hi, alive, state

    def __len__(self) -> int:
        return self.lo.shape[0]

    def take(self, idx) -> "_Boxes":
        return _Boxes(self.lo[idx], self.hi[idx], self.alive[idx], _take_state(self.state, idx))

    @staticmethod
    def cat(parts: List["_Boxes"]) -> "_Boxes":
        if len(parts) == 1:
            return parts[0]
        state = None
        if parts[0].state is not None:
            import torch

            n = len(parts[0].state[0])
            state = ([torch.cat([p.state[0][j] for p in parts]) for j in range(n)],
                     [torch.cat([p.state[1][j] for p in parts]) for j in range(n)])
        return _Boxes(np.concatenate([p.lo for p in parts]), np.concatenate([p.hi for p in parts]),
                      np.concatenate([p.alive for p in parts]), state)


class _Search:
    """Input-split branch and bound for one case."""

    def __init__(self, network, spec, case_index: int, rows: CaseRows, bounder: Bounder, options: Options,
                 deadline: float, stats: dict, chain=None):
        self.network = network
        self.spec = spec
        self.ci = case_index
        self.case = spec.cases[case_index]
        self.rows = rows
        self.bounder = bounder
        self.options = options
        self.deadline = deadline
        self.stats = stats
        self.rng = np.random.default_rng(options.seed + case_index)
        reg = self.case.region
        self.lo0, self.hi0 = reg.lower.astype(np.float64), reg.upper.astype(np.float64)
        self.width0 = np.where(self.hi0 > self.lo0, self.hi0 - self.lo0, 1.0)
        self.heuristic = options.input_split.heuristic
        self.chain = chain if options.relaxed.method == "crown" else None
        self.alpha_iters = ALPHA_ITERS
        per_box = 2 * 8 * sum(chain.widths) if self.chain is not None else 0
        self.max_open = int(min(MAX_OPEN_BOXES, MAX_STATE_BYTES // max(1, per_box)))

    # candidates -> witness
    def try_points(self, xs: np.ndarray) -> Tuple[Optional[Outcome], np.ndarray]:
        """(sat outcome or None, per-point violation: max row of A y - b, min over disjuncts; <= 0 is unsafe)."""
        from .attack import snap_into_box

        if not xs.shape[0]:
            return None, np.zeros(0)
        xs = snap_into_box(xs, self.lo0, self.hi0, self.network.input_dtype)
        ys = self.network.evaluate(xs).astype(np.float64)
        self.stats["candidates"] = self.stats.get("candidates", 0) + xs.shape[0]
        hits = np.flatnonzero(self.case.unsafe(ys))
        for i in hits[:8]:
            out = sat_outcome(self.network, self.spec, xs[i], engine="relaxed",
                              detail="witness found during input splitting, replayed with ONNX Runtime on the original model")
            if out is not None:
                return out, np.zeros(0)
        viol = np.stack([hs.violation(ys) for hs in self.case.output], axis=1).min(axis=1)
        return None, viol

    def _scores(self, xs: np.ndarray) -> np.ndarray:
        ys = self.network.evaluate(xs).astype(np.float64)
        return np.stack([hs.violation(ys) for hs in self.case.output], axis=1).min(axis=1)

    def _bound(self, boxes: "_Boxes"):
        """(lb (K, R), lA (K, R, n_in) or None, per-box state for the children)."""
        K = len(boxes)
        C = _batch_C(self.rows, K)
        if self.chain is not None:
            import torch

            want = self.heuristic == "slack"  # the scores cost about a third more per box
            lb, A, state, scores = self.chain.lower(torch.as_tensor(boxes.lo), torch.as_tensor(boxes.hi),
                                                    torch.as_tensor(C), parent=boxes.state, want_scores=want)
            lb = lb.numpy()
            self._scores_now = scores.numpy() if scores is not None else None
            return np.where(np.isnan(lb), -np.inf, lb), A.numpy(), state
        self._scores_now = None
        lb, lA = self.bounder.lower(boxes.lo, boxes.hi, C, self.options.relaxed.method, want_A=True)
        return lb, lA, None

    def run(self, lo: np.ndarray, hi: np.ndarray, alive: np.ndarray) -> Tuple[Optional[Outcome], str]:
        """BaB from the given open boxes. Returns (sat outcome or None, 'refuted'|'unknown'|'timeout')."""
        rows = self.rows
        stack: List[_Boxes] = [_Boxes(lo, hi, alive, None)]
        n_open = lo.shape[0]
        batch = 256
        unresolved = 0
        last_pgd = time.monotonic()
        while n_open:
            if expired(self.deadline):
                return None, "timeout"
            if n_open > self.max_open:
                self.stats["gave_up_open_boxes"] = n_open
                return None, "unknown"
            # pop up to `batch` boxes from the top of the stack (depth first: bounded memory)
            parts = [stack.pop()]
            have = len(parts[0])
            while have < batch and stack:
                parts.append(stack.pop())
                have += len(parts[-1])
            boxes = _Boxes.cat(parts)
            if len(boxes) > batch:
                stack.append(boxes.take(np.arange(batch, len(boxes))))
                boxes = boxes.take(np.arange(batch))
            K = len(boxes)
            n_open -= K
            t0 = time.monotonic()
            lb, lA, state = self._bound(boxes)
            dt = time.monotonic() - t0
            self.stats["bounded_boxes"] = self.stats.get("bounded_boxes", 0) + K
            self.stats["bound_seconds"] = self.stats.get("bound_seconds", 0.0) + dt
            # grow the batch while one call stays short (deadline checks happen between calls)
            if dt < 0.2 and batch < 4096:
                batch *= 2
            elif dt > 0.8 and batch > 16:
                batch //= 2
            ok = refuted_rows(lb, rows.b[None, :])
            dis = refuted_disjuncts(rows, ok) | ~boxes.alive
            open_mask = ~dis.all(axis=1) if not rows.empty_disjunct else np.ones(K, bool)
            if not open_mask.any():
                continue
            idx = np.flatnonzero(open_mask)
            olo, ohi, oal, olb = boxes.lo[idx], boxes.hi[idx], ~dis[idx], lb[idx]
            oA = lA[idx] if lA is not None else None
            oS = self._scores_now[idx] if self._scores_now is not None else None
            ostate = _take_state(state, idx)
            # alpha: optimise the final pass's lower slopes on the boxes CROWN left open
            if self.chain is not None and self.alpha_iters > 0 and ostate is not None:
                import torch

                t1 = time.monotonic()
                la = self.chain.optimize_final(torch.as_tensor(olo), torch.as_tensor(ohi),
                                               torch.as_tensor(_batch_C(rows, olo.shape[0])), ostate[0], ostate[1],
                                               iters=self.alpha_iters).numpy()
                la = np.where(np.isnan(la), -np.inf, la)
                self.stats["alpha_seconds"] = self.stats.get("alpha_seconds", 0.0) + time.monotonic() - t1
                olb = np.maximum(olb, la)
                dis2 = refuted_disjuncts(rows, refuted_rows(olb, rows.b[None, :])) | ~oal
                still = ~dis2.all(axis=1) if not rows.empty_disjunct else np.ones(olo.shape[0], bool)
                self.stats["alpha_refuted"] = self.stats.get("alpha_refuted", 0) + int((~still).sum())
                if not still.all():
                    k_idx = np.flatnonzero(still)
                    olo, ohi, oal, olb = olo[k_idx], ohi[k_idx], ~dis2[k_idx], olb[k_idx]
                    oA = oA[k_idx] if oA is not None else None
                    oS = oS[k_idx] if oS is not None else None
                    ostate = _take_state(ostate, k_idx)
                    if not olo.shape[0]:
                        continue
            # cheap candidates: centres and the corners minimising the open rows' linear lower bounds
            cands = [(olo + ohi) / 2]
            if oA is not None:
                best_row = self._best_open_rows(olb, oal)
                a = oA[np.arange(olo.shape[0]), best_row]  # (k, n_in)
                cands.append(np.where(a > 0, olo, ohi))
            out, _ = self.try_points(np.concatenate(cands))
            if out is not None:
                return out, "sat"
            if time.monotonic() - last_pgd > 2.0 and remaining(self.deadline) > 1.0:
                out = self._pgd(olo, ohi, oal)
                last_pgd = time.monotonic()
                if out is not None:
                    return out, "sat"
            # split
            w = ohi - olo
            splittable = (w > MIN_WIDTH).any(axis=1)
            if not splittable.all():
                unresolved += int((~splittable).sum())
                keep = np.flatnonzero(splittable)
                olo, ohi, oal, olb, w = olo[keep], ohi[keep], oal[keep], olb[keep], w[keep]
                oA = oA[keep] if oA is not None else None
                oS = oS[keep] if oS is not None else None
                ostate = _take_state(ostate, keep)
                if not olo.shape[0]:
                    continue
            dim = self._split_dims(olo, ohi, oal, olb, oA, oS)
            k = olo.shape[0]
            mid = (olo[np.arange(k), dim] + ohi[np.arange(k), dim]) / 2
            left_hi = ohi.copy()
            left_hi[np.arange(k), dim] = mid
            right_lo = olo.copy()
            right_lo[np.arange(k), dim] = mid
            both = np.concatenate([np.arange(k), np.arange(k)])
            stack.append(_Boxes(np.concatenate([olo, right_lo]), np.concatenate([left_hi, ohi]),
                                np.concatenate([oal, oal]), _take_state(ostate, both)))
            n_open += 2 * k
            self.stats["splits"] = self.stats.get("splits", 0) + k
        if unresolved:
            self.stats["unresolved_tiny_boxes"] = unresolved
            return None, "unknown"
        return None, "refuted"

    def _best_open_rows(self, lb: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Per box, the row of an open disjunct whose bound is closest to refuting it."""
        rows = self.rows
        gap = lb - rows.b[None, :]
        row_alive = alive[:, np.clip(rows.owner, 0, None)] & (rows.owner[None, :] >= 0)
        gap = np.where(row_alive, gap, -np.inf)
        return gap.argmax(axis=1)

    def _split_dims(self, lo, hi, alive, lb, lA, slack=None) -> np.ndarray:
        """The input dim to halve, per open box (docs/relaxed.md compares the heuristics).

        slack: where the relaxation's looseness comes from (relu-chain bounder only; the triangle
               gap of every unstable neuron, weighted by the row's back-substituted coefficients and
               shared out over the input dims the neuron depends on);
        smear: |coefficient of the linear lower bound| x width;
        width: width relative to the case's box; abswidth: absolute width."""
        w = hi - lo
        per_row = None
        if self.heuristic == "slack" and slack is not None:
            per_row = slack
        elif self.heuristic == "smear" and lA is not None:
            per_row = np.abs(lA) * w[:, None, :]
        if per_row is not None:
            # sum over the open disjuncts of their best row's scores
            rows = self.rows
            gap = lb - rows.b[None, :]
            row_alive = alive[:, np.clip(rows.owner, 0, None)] & (rows.owner[None, :] >= 0)
            score = np.zeros_like(w)
            k = np.arange(lo.shape[0])
            for d in range(rows.n_disjuncts):
                sel = np.flatnonzero(rows.owner == d)
                if not sel.size:
                    continue
                g = np.where(row_alive[:, sel], gap[:, sel], -np.inf)
                best = sel[g.argmax(axis=1)]
                score += np.where(alive[:, d:d + 1], per_row[k, best], 0.0)
            score = np.where(w > MIN_WIDTH, score, 0.0)
            flat = ~(score.max(axis=1) > 0)
            if flat.any():  # nothing to go on (no unstable neuron, zero coefficients): widest dim
                score[flat] = (w / self.width0)[flat]
        elif self.heuristic == "abswidth":
            score = w.copy()
        else:
            score = w / self.width0
        score = np.where(w > MIN_WIDTH, score, -np.inf)
        return score.argmax(axis=1)

    def _pgd(self, lo, hi, alive) -> Optional[Outcome]:
        """PGD from the attack engine on the few most promising open boxes."""
        try:
            from . import attack
        except ImportError:
            return None
        from ..spec.model import Case, InputRegion, Spec

        if not hasattr(attack, "pgd_search"):
            return None
        k = min(4, lo.shape[0])
        scores = self._scores((lo + hi) / 2)
        pick = np.argsort(scores)[:k]
        m = max(1, max(hs.rows for hs in self.case.output))
        cases = []
        for i in pick:
            outs = [hs for d, hs in enumerate(self.case.output) if alive[i, d]] or list(self.case.output)
            cases.append(Case(InputRegion(lo[i].copy(), hi[i].copy()), outs))
        sub = attack._padded_spec(Spec(self.spec.n_inputs, self.spec.n_outputs, cases), m)
        opts = self.options.with_(pgd_restarts=8, pgd_steps=20)
        self.stats["pgd_calls"] = self.stats.get("pgd_calls", 0) + 1
        out = attack.pgd_search(self.network, sub, self.deadline, opts, self.rng, list(range(len(cases))), {})
        if out is None:
            return None
        return sat_outcome(self.network, self.spec, out.counterexample[0], engine="relaxed",
                           detail="PGD witness in a sub-box during input splitting, replayed with ONNX Runtime")


def check(network, spec, deadline: float, options: Options) -> Outcome:
    t0 = time.monotonic()
    stats: dict = {}
    method = (options.relaxed.method or "crown").lower()
    if method not in METHODS:  # (lp is the router's: engines/lp.py)
        return Outcome(Verdict.ERROR, engine="relaxed", detail=f"unknown relaxed method {method!r} (ibp, crown, alpha-crown)")

    def done(verdict, detail, out=None):
        o = out or Outcome(verdict, engine="relaxed", detail=detail)
        o.seconds = time.monotonic() - t0
        o.stats = {**stats, **(o.stats or {})}
        return o

    # CROWN on a plain chain of affine maps and ReLUs runs without auto_LiRPA (same bounds,
    # tests/test_relaxed.py), which also saves importing it; anything else goes through auto_LiRPA
    chain = _relu_chain(network) if method == "crown" else None
    bounders: list = []

    def bounder() -> Bounder:
        if not bounders:
            bounders.append(Bounder(network))
            stats["conv_mode"] = bounders[0].mode
        return bounders[0]

    def first_lower(lo, hi, C):
        if chain is not None:
            import torch

            lb = chain.lower(torch.as_tensor(lo), torch.as_tensor(hi), torch.as_tensor(C))[0].numpy()
            return np.where(np.isnan(lb), -np.inf, lb)
        return bounder().lower(lo, hi, C, method)[0]

    stats["first_bounder"] = "relu-chain CROWN" if chain is not None else "auto_LiRPA"
    try:
        if chain is None:
            bounder()
    except UnsupportedOperator:  # the router records which op kept this engine out
        raise
    except Exception as e:  # an auto_LiRPA limitation: no proof, no answer
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return done(Verdict.UNKNOWN, f"cannot bound this network: {msg}")
    if expired(deadline):
        return done(Verdict.TIMEOUT, "deadline reached while building the bounded module")

    # 1) one bound per case (batched over cases with the same row count)
    all_rows = [_pad_rows(CaseRows.of(c, spec.n_outputs)) for c in spec.cases]
    open_cases: List[int] = []
    bounded = 0
    # the relu-chain CROWN holds (boxes, 2 x width, width) float64 back-substitution matrices: boxes
    # per call are capped so that one stays near CHAIN_CHUNK_VALUES values (memory; 3000 cases of a
    # 128-wide net at once, as in nn4sys lindex_3000, would need 0.8 GB per matrix when all unstable)
    per_box = 2 * max(chain.widths) ** 2 if chain is not None and chain.widths else 1
    for R, members in _group_by_rows(all_rows).items():
        for chunk in _chunks(members, max(1, min(4096 // max(1, R), CHAIN_CHUNK_VALUES // per_box))):
            if expired(deadline):
                return done(Verdict.TIMEOUT, f"deadline reached after bounding {bounded} of {len(spec.cases)} cases")
            lo = np.stack([spec.cases[i].region.lower for i in chunk]).astype(np.float64)
            hi = np.stack([spec.cases[i].region.upper for i in chunk]).astype(np.float64)
            empty = (lo > hi).any(axis=1)
            C = np.stack([all_rows[i].C for i in chunk])
            try:
                lb = first_lower(np.minimum(lo, hi), np.maximum(lo, hi), C)
            except Exception as e:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                return done(Verdict.UNKNOWN, f"bounding failed ({method}): {msg}")
            bounded += len(chunk)
            for j, i in enumerate(chunk):
                rows = all_rows[i]
                dis = refuted_disjuncts(rows, refuted_rows(lb[j:j + 1], rows.b[None, :]))[0]
                if not (empty[j] or (dis.all() and not rows.empty_disjunct)):
                    open_cases.append(i)
    stats["cases"] = len(spec.cases)
    stats["cases_open_after_first_bound"] = len(open_cases)
    if not open_cases:
        return done(Verdict.UNSAT, f"{method} bounds refute every disjunct of all {len(spec.cases)} case(s) (float64)")

    # 2) cases on whose region the network is affine (no ReLU or max at all, or none unstable there)
    #    are linear programs: the LP of each disjunct decides them, sat (replayed) or unsat
    free = max(int((spec.cases[i].region.upper > spec.cases[i].region.lower).sum()) for i in open_cases)
    linear = _affine_cases(network, spec, open_cases, deadline,
                           everywhere_only=free <= options.input_split.max_dims)
    if linear:
        out, proven = _lp_cases(network, spec, linear, deadline, options, stats)
        if out is not None:
            return done(out.verdict, out.detail, out)
        open_cases = [i for i in open_cases if i not in set(proven)]
        if not open_cases:
            return done(Verdict.UNSAT, f"{method} bounds and, where the network is affine on the region, the exact LP "
                                       f"refute every disjunct of all {len(spec.cases)} case(s)")

    # 3) input-split BaB on the cases left open, when the input has few free dims
    free = max(int((spec.cases[i].region.upper > spec.cases[i].region.lower).sum()) for i in open_cases)
    if free > options.input_split.max_dims:
        return done(Verdict.UNKNOWN, f"{len(open_cases)} of {len(spec.cases)} case(s) not refuted by {method}; "
                                     f"{free} free input dims is too many for input splitting")
    with _torch_threads(1):  # small batched matmuls: extra threads only add synchronisation
        return _split_cases(network, spec, deadline, options, bounder, chain, all_rows, open_cases, method, stats, done)


def _affine_cases(network, spec, cases: List[int], deadline: float, everywhere_only: bool) -> List[int]:
    """The cases among `cases` on whose region the network is an affine map: all of them when its
    layer graph has no ReLU and no max; otherwise (unless `everywhere_only`) those on whose box
    numpy CROWN leaves no ReLU unstable, in a graph without max (at most MAX_AFFINE_CHECKS cases
    are looked at, one CROWN pass each). [] when the network has no layer graph."""
    from ..errors import VnncertError
    from ..bounds.region import compute_bounds
    from ..network.layers import layer_graph

    try:
        lg = layer_graph(network)
    except VnncertError:
        return []
    kinds = {L.kind for L in lg.layers}
    if "max" in kinds:
        return []
    if "relu" not in kinds:
        return list(cases)
    if everywhere_only:
        return []
    out = []
    for i in cases[:MAX_AFFINE_CHECKS]:
        if expired(deadline):
            break
        if sum(compute_bounds(lg, spec.cases[i].region, deadline, method="crown", encode=False).unstable) == 0:
            out.append(i)
    return out


def _lp_cases(network, spec, cases: List[int], deadline: float, options: Options,
              stats: dict) -> Tuple[Optional[Outcome], List[int]]:
    """Decide cases on whose region the network is affine with the LP (`milp.case.lp_case`: no
    binaries there, so the LP of each disjunct is the problem itself): (a sat Outcome, replayed,
    or None; the cases proven). A case the LP leaves open (optimum within the solver's margin of
    zero, or the deadline) is neither."""
    from ..milp.case import lp_case
    from ..network.layers import layer_graph

    lg = layer_graph(network)
    st: dict = {}
    proven: List[int] = []
    for i in cases:
        if expired(deadline):
            break
        stats["lp_cases"] = stats.get("lp_cases", 0) + 1
        r = lp_case(network, spec, i, lg, deadline, options, st, "relaxed")
        if r.verdict == Verdict.SAT:
            out = sat_outcome(network, spec, r.outcome.counterexample[0], engine="relaxed",
                              detail=f"the network is affine on case {i}'s region: {r.outcome.detail}")
            if out is not None:
                return out, proven
        elif r.verdict == Verdict.UNSAT:
            proven.append(i)
    stats["lp_unsat_cases"] = len(proven)
    return None, proven


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def _split_cases(network, spec, deadline, options, bounder, chain, all_rows, open_cases, method, stats, done):
    bab_method = "crown" if method == "ibp" else method
    if bab_method == "crown" and chain is None:
        chain = _relu_chain(network)
    if bab_method != "crown":
        chain = None
    stats["bab_bounder"] = "relu-chain CROWN" if chain is not None else "auto_LiRPA"
    try:
        bab_bounder = bounder() if chain is None else None
    except UnsupportedOperator:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return done(Verdict.UNKNOWN, f"cannot bound this network: {msg}")
    verdicts = []
    for i in sorted(open_cases, key=lambda i: -np.prod(np.maximum(spec.cases[i].region.upper - spec.cases[i].region.lower, 0) + 1e-12)):
        rows = all_rows[i]
        reg = spec.cases[i].region
        search = _Search(network, spec, i, rows, bab_bounder, options.with_(relaxed_method=bab_method), deadline, stats,
                         chain=chain)
        out, status = search.run(reg.lower[None, :].astype(np.float64), reg.upper[None, :].astype(np.float64),
                                 np.ones((1, rows.n_disjuncts), dtype=bool))
        if out is not None:
            return done(Verdict.SAT, "", out)
        if status == "timeout":
            return done(Verdict.TIMEOUT, f"deadline reached during input splitting ({stats.get('bounded_boxes', 0)} boxes bounded)")
        verdicts.append(status)
    if all(v == "refuted" for v in verdicts):
        return done(Verdict.UNSAT, f"input splitting refuted every box ({stats.get('bounded_boxes', 0)} boxes bounded, "
                                   f"{bab_method}, float64)")
    return done(Verdict.UNKNOWN, "input splitting left boxes it could not refute or split further")


def _relu_chain(network):
    """The network as an AffineReluChain (float64), or None when it is not one."""
    import copy

    from .relu_chain import AffineReluChain

    try:
        module = copy.deepcopy(network.torch_module()).double().eval()
        return AffineReluChain.from_module(module, network.n_inputs)
    except Exception:
        return None


def _group_by_rows(all_rows: List[CaseRows]) -> dict:
    groups: dict = {}
    for i, r in enumerate(all_rows):
        groups.setdefault(r.C.shape[0], []).append(i)
    return groups


def _chunks(xs: list, n: int):
    for i in range(0, len(xs), n):
        yield xs[i:i + n]
