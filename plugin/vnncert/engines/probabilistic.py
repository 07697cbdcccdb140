"""Randomized smoothing on ONNX Runtime (Cohen, Rosenfeld, Kolter 2019): CERTIFY, PREDICT, VNN-LIB queries.

The smoothed classifier is g(x) = argmax_c P(f(x + e) = c) where f(x) = argmax of the network's
outputs (first index on ties) and e is noise of scale `scale` (sigma for Gaussian, lambda for
Laplace / uniform). Every claim made here is about g, with confidence 1 - alpha; none is a
proof about f. A `sat` for a VNN-LIB query only ever comes from a real witness of f seen while
sampling (replayed on the original model by `results.sat_outcome`).

Noise           norm  certified radius from the lower bound pA of P(f(x+e) = cA)
gaussian sigma  L2    sigma * Phi^-1(pA)                    (Cohen et al. 2019)
laplace lambda  L1    -lambda * ln(2 (1 - pA))              (Teng et al. 2020)
uniform lambda  L1    2 * lambda * (pA - 1/2)  on [-lambda, lambda]^d (Yang et al. 2020)

Speed: one ONNX Runtime session (Network.batched_session: a fixed batch dim of 1 is rewritten
to a symbolic one), float32 noise drawn in parallel parts by independent numpy Generators into a
reused buffer, large batches, counts by np.bincount. For many certifications in a row (data
sets) a noise bank can be used instead: see `NoiseBank` and docs/probabilistic.md for why its
certificates keep the 1 - alpha guarantee.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpecError
from ..results import Certificate, Outcome, Verdict, sat_outcome

ENGINE = "probabilistic"
ABSTAIN = -1
NOISES = {"gaussian": "l2", "laplace": "l1", "uniform": "l1"}
PARTS = 8  # fixed number of generator streams per draw: results do not depend on the thread count
MAX_BATCH_VALUES = 1 << 25  # noisy input values per batch at most (128 MiB of float32): caps the batch of big inputs
# numpy's uniforms are k * 2^-24 (float32) or k * 2^-53 (float64); 2u - 1 + step makes them symmetric
_HALF_STEP = {np.dtype(np.float32): 2.0 ** -24, np.dtype(np.float64): 2.0 ** -53}


# ---- statistics ----------------------------------------------------------------------------------
def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    This is scipy.stats.beta.ppf(alpha, count, n - count + 1) (statsmodels' proportion_confint(count,
    n, alpha=2*alpha, method="beta")[0], as in the reference implementation), computed by the function
    behind it, scipy.special.betaincinv, which imports in a fifth of the time of scipy.stats.
    """
    from scipy.special import betaincinv

    if count <= 0:
        return 0.0
    return float(betaincinv(count, n - count + 1, alpha))


def certified_radius(noise: str, scale: float, pA_lower: float) -> float:
    """Radius (L2 for gaussian, L1 otherwise) within which g is constant, given pA_lower >= 1/2."""
    if pA_lower < 0.5:
        return 0.0
    if noise == "gaussian":
        from scipy.special import ndtri  # = scipy.stats.norm.ppf

        return float(scale * ndtri(pA_lower))
    if noise == "laplace":
        return float(-scale * math.log(2.0 * (1.0 - pA_lower)))
    if noise == "uniform":
        return float(2.0 * scale * (pA_lower - 0.5))
    raise ValueError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}")


def binomial_pvalue(k: int, n: int) -> float:
    """Two-sided binomial test of k successes in n trials against p = 1/2 (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    return float(binomtest(int(k), int(n), 0.5).pvalue)


# ---- noise ---------------------------------------------------------------------------------------
def _standard_fill(gen: np.random.Generator, noise: str, out: np.ndarray, tmp: np.ndarray) -> None:
    """Fill `out` with standard noise: N(0, 1), Laplace(0, 1) or U(-1, 1), in out's dtype.

    Laplace and uniform come from one uniform draw u = k 2^-24 (float32; 2^-53 for float64) on the
    symmetric grid v = 2u - 1 + 2^-24 in (-1, 1) (exact in float32), so the noise is symmetric and
    finite: uniform = v, Laplace = -sign(v) ln(1 - |v|) (inverse CDF).
    """
    if noise == "gaussian":
        gen.standard_normal(out=out, dtype=out.dtype)
        return
    gen.random(out=out, dtype=out.dtype)
    np.multiply(out, out.dtype.type(2.0), out=out)
    np.subtract(out, out.dtype.type(1.0 - _HALF_STEP[out.dtype]), out=out)
    if noise == "uniform":
        return
    np.abs(out, out=tmp)
    np.subtract(out.dtype.type(1.0), tmp, out=tmp)
    np.log(tmp, out=tmp)
    np.negative(tmp, out=tmp)
    np.copysign(tmp, out, out=out)


class _Pool:
    """A small thread pool for the noise parts (numpy releases the GIL while filling arrays)."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self._ex = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._ex = ThreadPoolExecutor(self.threads, thread_name_prefix="vnncert-noise")

    def run(self, fn: Callable[[int], None], parts: int) -> None:
        if self._ex is None:
            for k in range(parts):
                fn(k)
        else:
            for f in [self._ex.submit(fn, k) for k in range(parts)]:
                f.result()

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True)
            self._ex = None


def _part_bounds(rows: int, parts: int) -> List[Tuple[int, int]]:
    edges = [rows * k // parts for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts)]


class FreshNoise:
    """Fresh standard noise for one certification: PARTS independent Generators spawned from (seed, key)."""

    def __init__(self, noise: str, seed: int, key: Sequence[int], pool: _Pool, scale: float, dim: int, dtype):
        ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
        self.noise = noise
        self.gens = [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(PARTS)]
        self.pool = pool
        self.mult = np.full(dim, scale, dtype=dtype)
        self.tmp: Optional[np.ndarray] = None

    def draw(self, m: int, buf: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        """m new standard noise rows (in buf) and the per-coordinate multiplier: noisy = x + mult * z."""
        out = buf[:m]
        if self.noise == "laplace" and (self.tmp is None or self.tmp.shape[0] < m):
            self.tmp = np.empty(out.shape, out.dtype)
        bounds = _part_bounds(m, PARTS)

        def part(k: int) -> None:
            a, b = bounds[k]
            if a < b:
                _standard_fill(self.gens[k], self.noise, out[a:b], self.tmp[a:b] if self.tmp is not None else None)

        self.pool.run(part, PARTS)
        return [(out, self.mult)]


class NoiseBank:
    """Standard noise rows drawn once (seeded), reused across certifications, never within one.

    Each certification (`stream`) takes its own random sign vector s in {-1, 1}^d and a random
    cyclic offset o, and uses the rows (o + t) mod M, t = 0, 1, ..., as s * bank[row], each row at
    most once. Given s and o, distinct iid rows multiplied coordinate-wise by a fixed sign vector
    are again iid from the same (coordinate-wise symmetric) distribution, so within one
    certification the noise has exactly the distribution of fresh noise. See docs/probabilistic.md.
    """

    def __init__(self, noise: str, rows: int, dim: int, dtype, seed: int, pool: _Pool):
        self.noise = noise
        self.rows = int(rows)
        self.dim = int(dim)
        self.data = np.empty((self.rows, self.dim), dtype=dtype)
        tmp = np.empty_like(self.data) if noise == "laplace" else None
        ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(0xBA4C,))
        gens = [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(PARTS)]
        bounds = _part_bounds(self.rows, PARTS)

        def part(k: int) -> None:
            a, b = bounds[k]
            if a < b:
                _standard_fill(gens[k], noise, self.data[a:b], tmp[a:b] if tmp is not None else None)

        pool.run(part, PARTS)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def stream(self, seed: int, key: Sequence[int], scale: float) -> "BankStream":
        ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key) + (0x5164,))
        g = np.random.Generator(np.random.PCG64(ss))
        signs = np.where(g.random(self.dim) < 0.5, -1.0, 1.0)
        offset = int(g.integers(0, self.rows))
        return BankStream(self, (signs * scale).astype(self.data.dtype), offset)


class BankStream:
    """The rows of a NoiseBank one certification uses (each at most once: more is an error)."""

    def __init__(self, bank: NoiseBank, mult: np.ndarray, offset: int):
        self.bank = bank
        self.mult = mult
        self.offset = offset
        self.used = 0

    def draw(self, m: int, buf: Optional[np.ndarray] = None) -> List[Tuple[np.ndarray, np.ndarray]]:
        if self.used + m > self.bank.rows:
            raise RuntimeError(f"noise bank of {self.bank.rows} rows exhausted: one certification needs "
                               f"{self.used + m} (rows are never reused within a certification)")
        start = (self.offset + self.used) % self.bank.rows
        self.used += m
        first = min(m, self.bank.rows - start)
        pieces = [(self.bank.data[start:start + first], self.mult)]
        if first < m:
            pieces.append((self.bank.data[:m - first], self.mult))
        return pieces


# ---- the sampling graph --------------------------------------------------------------------------
def _add_argmax_output(g, network) -> None:
    """Append `vnncert_argmax` (B,) int64, the first index of the maximum of the model's output."""
    from onnx import TensorProto, helper

    g.node.extend([helper.make_node("Flatten", [network.output_name], ["vnncert_flat"], axis=1, name="vnncert_flatten"),
                   helper.make_node("ArgMax", ["vnncert_flat"], ["vnncert_argmax"], axis=1, keepdims=0, name="vnncert_argmax")])
    g.output.extend([helper.make_tensor_value_info("vnncert_argmax", TensorProto.INT64, ["vnncert_batch"])])


def sampling_model(network) -> Optional[bytes]:
    """The batched model with noise added inside the graph, or None when the model cannot batch.

    Inputs: z (B, ...) standard noise, mult (1, ...) and shift (1, ...) in the model's input dtype;
    the model sees shift + mult * z (an ONNX Mul then Add, rounded like numpy's float ops).
    Outputs: the model's output and `vnncert_argmax` (B,) int64, the first index of the maximum.
    """
    import onnx
    from onnx import helper

    data = network.batched_model_bytes
    if data is None:
        return None
    m = onnx.load_from_string(data)
    g = m.graph
    elem = network.input_info.type.tensor_type.elem_type
    rest = [int(d) for d in network.input_shape[1:]]
    keep = [i for i in g.input if i.name != network.input_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("vnncert_z", elem, ["vnncert_batch"] + rest),
                    helper.make_tensor_value_info("vnncert_mult", elem, [1] + rest),
                    helper.make_tensor_value_info("vnncert_shift", elem, [1] + rest)] + keep)
    nodes = [helper.make_node("Mul", ["vnncert_z", "vnncert_mult"], ["vnncert_scaled"], name="vnncert_noise_mul"),
             helper.make_node("Add", ["vnncert_scaled", "vnncert_shift"], [network.input_name], name="vnncert_noise_add")]
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    _add_argmax_output(g, network)
    return m.SerializeToString()


@dataclass
class Projection:
    """Gaussian noise pushed through the network's first linear layer (see `projected_sampling_model`).

    The first layer computes t = x M + c (M: n_in x h, h < n_in). With the SVD M = U S V^T
    (U: n_in x r, r = h), e ~ N(0, s^2 I) gives e M = (e U) S V^T, and e U ~ N(0, s^2 I_r): so
    t(x + e) has exactly the law of x M + c + zeta L with zeta ~ N(0, s^2 I_r), L = S V^T. The
    sampling graph draws zeta (r numbers a sample instead of n_in) and starts at t. The input
    x + zeta U^T has that very t, so it stands for the sample wherever an input is needed
    (witness replays, tests).
    """

    model: bytes
    M: np.ndarray  # n_in x h, float64
    c: np.ndarray  # h
    U: np.ndarray  # n_in x r

    @property
    def r(self) -> int:
        return int(self.U.shape[1])

    @property
    def h(self) -> int:
        return int(self.M.shape[1])

    def shift(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.M + self.c

    def inputs(self, x: np.ndarray, zeta: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) + np.asarray(zeta, np.float64) @ self.U.T


def projected_sampling_model(network) -> Optional[Projection]:
    """The batched model starting at its first linear layer, fed with projected Gaussian noise.

    Applies when the input reaches a Gemm or MatMul with a constant weight through Flatten /
    Reshape-to-(B, n_in) nodes only (nothing else reads the input or those tensors) and the layer
    has fewer outputs h than inputs. Inputs: z (B, r) standard noise, mult (1, r), shift (1, h);
    the graph computes (z * mult) @ L + shift in place of the layer's output. None otherwise.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    data = network.batched_model_bytes
    if data is None:
        return None
    m = onnx.load_from_string(data)
    g = m.graph
    n_in = int(network.n_inputs)
    inits = {t.name: t for t in g.initializer}
    consumers: dict = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in g.output}

    def only_consumer(name):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in outputs else None

    chain = []
    tensor = network.input_name
    node = only_consumer(tensor)
    while node is not None and node.op_type in ("Flatten", "Reshape"):
        if node.op_type == "Flatten":
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if axis != 1:
                return None
        else:
            shape = inits.get(node.input[1]) if len(node.input) > 1 else None
            if shape is None:
                return None
            s = numpy_helper.to_array(shape).reshape(-1)
            if s.size != 2 or int(s[1]) != n_in or int(s[0]) not in (-1, 0):
                return None
        chain.append(node)
        tensor = node.output[0]
        node = only_consumer(tensor)
    if node is None or node.input[0] != tensor:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        if attrs.get("transA", 0) or node.input[1] not in inits:
            return None
        B = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        if attrs.get("transB", 0):
            B = B.T
        M = float(attrs.get("alpha", 1.0)) * B
        c = np.zeros(M.shape[1] if M.ndim == 2 else 0)
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in inits:
                return None
            C = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64).reshape(-1)
            if C.size not in (1, c.size):
                return None
            c = c + float(attrs.get("beta", 1.0)) * C
    elif node.op_type == "MatMul":
        if node.input[1] not in inits:
            return None
        M = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        c = np.zeros(M.shape[1] if M.ndim == 2 else 0)
    else:
        return None
    if M.ndim != 2 or M.shape[0] != n_in or M.shape[1] >= n_in or not np.all(np.isfinite(M)):
        return None
    h = int(M.shape[1])
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    L = S[:, None] * Vt  # r x h
    r = int(S.size)
    elem = network.input_info.type.tensor_type.elem_type
    dtype = np.float64 if elem == TensorProto.DOUBLE else np.float32
    removed = chain + [node]
    used_by_removed = {name for n in removed for name in n.input[1:]}
    still_used = {name for n in g.node if n not in removed for name in n.input}
    graph_inputs = {i.name for i in g.input}
    keep_inits = [t for t in g.initializer if not (t.name in used_by_removed and t.name not in still_used
                                                   and t.name not in graph_inputs)]
    del g.initializer[:]
    g.initializer.extend(keep_inits + [numpy_helper.from_array(L.astype(dtype), "vnncert_L")])
    keep = [i for i in g.input if i.name != network.input_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("vnncert_z", elem, ["vnncert_batch", r]),
                    helper.make_tensor_value_info("vnncert_mult", elem, [1, r]),
                    helper.make_tensor_value_info("vnncert_shift", elem, [1, h])] + keep)
    rest = [n for n in g.node if n not in removed]
    del g.node[:]
    g.node.extend([helper.make_node("Mul", ["vnncert_z", "vnncert_mult"], ["vnncert_scaled"], name="vnncert_noise_mul"),
                   helper.make_node("MatMul", ["vnncert_scaled", "vnncert_L"], ["vnncert_proj"], name="vnncert_noise_proj"),
                   helper.make_node("Add", ["vnncert_proj", "vnncert_shift"], [node.output[0]], name="vnncert_noise_add")]
                  + rest)
    _add_argmax_output(g, network)
    return Projection(m.SerializeToString(), M, c, U)


# ---- the smoothed classifier ---------------------------------------------------------------------
class DeadlineReached(Exception):
    def __init__(self, samples: int):
        super().__init__(f"deadline reached after {samples} samples")
        self.samples = samples


class StopSampling(Exception):
    """Raised by a watch to end sampling early (a witness of f was found)."""


@dataclass
class CertifyResult:
    prediction: int  # ABSTAIN (-1) or a class
    radius: float
    pA_lower: float
    count: int  # nA: estimation samples of the selected class
    selected: int  # the class the n0 selection samples picked
    counts0: np.ndarray
    counts: np.ndarray
    seconds: float = 0.0


@dataclass
class PredictResult:
    prediction: int  # ABSTAIN (-1) or a class
    pvalue: float
    counts: np.ndarray
    seconds: float = 0.0


class SmoothedClassifier:
    """g for one network and noise; `certify` and `predict` follow Cohen et al. (2019) exactly.

    scale: sigma (gaussian) or lambda (laplace, uniform). threads: noise threads (0 = all cores).
    batch: noisy inputs per ONNX Runtime call, capped so that one batch holds at most
    MAX_BATCH_VALUES input values.
    bank_rows > 0 draws a NoiseBank of that many rows up front, which must be at least the samples
    of one certification (n0 + n, or n for predict). in_graph: add the noise inside the ONNX graph
    (one ORT call per batch, no numpy pass over the noisy inputs); falls back to numpy + the
    batched session, or to one-at-a-time evaluation, when the model does not allow it.
    project: with Gaussian noise and a first linear layer narrower than the input, draw the
    noise already pushed through that layer (`Projection`: same law, fewer numbers and flops).
    """

    def __init__(self, network, noise: str = "gaussian", scale: float = 0.25, batch: int = 10_000,
                 seed: int = 0, threads: int = 0, bank_rows: int = 0, in_graph: bool = True, project: bool = True):
        if noise not in NOISES:
            raise ValueError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}")
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the noise scale must be a positive number, got {scale!r}")
        if int(batch) < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.network = network
        self.noise = noise
        self.scale = scale
        self.batch = max(1, min(int(batch), MAX_BATCH_VALUES // max(1, int(network.n_inputs))))
        self.seed = int(seed)
        self.n_classes = int(network.n_outputs)
        self.dim = int(network.n_inputs)
        self.threads = int(threads) if threads and threads > 0 else (os.cpu_count() or 1)
        self.session = network.batched_session
        self._feed_shape = tuple(int(d) for d in network.input_shape[1:]) if self.session is not None else None
        in_dtype = np.dtype(network.input_dtype)
        self.dtype = in_dtype if in_dtype in (np.dtype(np.float32), np.dtype(np.float64)) else np.dtype(np.float32)
        self._pool = _Pool(min(self.threads, PARTS))
        self._zbuf: Optional[np.ndarray] = None
        self._xbuf: Optional[np.ndarray] = None
        self.graph_session = None
        self.projection: Optional[Projection] = None
        if in_graph and self.session is not None and self.dtype == in_dtype:
            if project and noise == "gaussian":
                self.graph_session, self.projection = self._make_projected_session()
            if self.graph_session is None:
                self.graph_session = self._make_graph_session()
        # numbers of noise per sample: the input size, or the first layer's rank when projected
        self.noise_dim = self.projection.r if self.projection is not None else self.dim
        if self.projection is not None:
            self.path = f"in-graph noise, projected through the first linear layer ({self.dim} -> {self.projection.h})"
        else:
            self.path = "in-graph noise" if self.graph_session is not None else (
                "numpy noise + batched session" if self.session is not None else "numpy noise + one input at a time")
        self.bank: Optional[NoiseBank] = None
        if bank_rows:
            self.use_bank(bank_rows)

    def use_bank(self, rows: int) -> None:
        """Draw a NoiseBank of `rows` standard noise rows (of noise_dim values) for the certifications to come."""
        self.bank = NoiseBank(self.noise, int(rows), self.noise_dim, self.dtype, self.seed, self._pool)

    @property
    def norm(self) -> str:
        return NOISES[self.noise]

    def close(self) -> None:
        self._pool.close()

    def _session(self, data: bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if self.network.threads > 0:
            so.intra_op_num_threads = self.network.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])

    def _make_graph_session(self):
        try:
            data = sampling_model(self.network)
            if data is None:
                return None
            sess = self._session(data)
            # it must compute exactly what the batched session computes on numpy's noisy inputs
            rng = np.random.default_rng(12345)
            z = rng.standard_normal((4, self.dim)).astype(self.dtype)
            mult = rng.uniform(0.1, 1.0, self.dim).astype(self.dtype)
            shift = rng.uniform(-1.0, 1.0, self.dim).astype(self.dtype)
            am, y = self._run_graph(sess, z, mult, shift, logits=True)
            y_ref = self._run_plain(z * mult + shift)
            if not (np.array_equal(am, y_ref.argmax(axis=1)) and np.allclose(y, y_ref, rtol=1e-5, atol=1e-6, equal_nan=True)):
                return None
            return sess
        except Exception:
            return None

    def _make_projected_session(self):
        try:
            proj = projected_sampling_model(self.network)
            if proj is None:
                return None, None
            sess = self._session(proj.model)
            # it must compute what the model computes on the inputs the noise stands for (up to rounding)
            rng = np.random.default_rng(12345)
            x = rng.uniform(-1.0, 1.0, self.dim)
            z = rng.standard_normal((4, proj.r)).astype(self.dtype)
            mult = rng.uniform(0.1, 1.0, proj.r).astype(self.dtype)
            feed = {"vnncert_z": z, "vnncert_mult": mult[None, :], "vnncert_shift": proj.shift(x).astype(self.dtype)[None, :]}
            y = np.asarray(sess.run([self.network.output_name], feed)[0], np.float64).reshape(4, -1)
            y_ref = self._run_plain(proj.inputs(x, z.astype(np.float64) * mult).astype(self.dtype)).astype(np.float64)
            tol = 1e-4 * (1.0 + np.abs(y_ref).max())
            if y.shape != y_ref.shape or not np.all(np.abs(y - y_ref) <= tol):
                return None, None
            return sess, proj
        except Exception:
            return None, None

    def _run_graph(self, sess, z, mult, shift, logits: bool):
        m = z.shape[0]
        if self.projection is not None:
            feed = {"vnncert_z": z, "vnncert_mult": mult.reshape(1, -1), "vnncert_shift": shift.reshape(1, -1)}
        else:
            feed = {"vnncert_z": z.reshape((m,) + self._feed_shape), "vnncert_mult": mult.reshape((1,) + self._feed_shape),
                    "vnncert_shift": shift.reshape((1,) + self._feed_shape)}
        if logits:
            am, y = sess.run(["vnncert_argmax", self.network.output_name], feed)
            return am, np.asarray(y).reshape(m, -1)
        return sess.run(["vnncert_argmax"], feed)[0], None

    def _run_plain(self, xs: np.ndarray) -> np.ndarray:
        m = xs.shape[0]
        if self.session is None:
            return np.asarray(self.network.evaluate(xs)).reshape(m, -1)
        feed = xs if xs.dtype == self.network.input_dtype else xs.astype(self.network.input_dtype)
        y = self.session.run([self.network.output_name], {self.network.input_name: feed.reshape((m,) + self._feed_shape)})[0]
        return np.asarray(y).reshape(m, -1)

    # -- sampling --
    def stream(self, key: Sequence[int] = (0,)):
        """The noise source of one certification; `key` (e.g. the example index) makes it reproducible."""
        if self.bank is not None:
            return self.bank.stream(self.seed, key, self.scale)
        return FreshNoise(self.noise, self.seed, key, self._pool, self.scale, self.noise_dim, self.dtype)

    def _pieces(self, num: int, stream):
        """(z, mult) pieces of at most `batch` rows, num rows in all."""
        done = 0
        while done < num:
            m = min(self.batch, num - done)
            if self._zbuf is None or self._zbuf.shape[0] < m:
                self._zbuf = np.empty((m, self.noise_dim), dtype=self.dtype)
            for z, mult in stream.draw(m, self._zbuf):
                yield z, mult
            done += m

    def _centre(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.dim:
            raise ValueError(f"input has {x.size} values, the network takes {self.dim}")
        return x.astype(self.dtype)

    def noisy_inputs(self, x: np.ndarray, num: int, stream) -> np.ndarray:
        """The noisy inputs x + mult * z (numpy) that `counts` classifies with an identical stream."""
        xc = self._centre(x)
        if self.projection is not None:
            rows = [self.projection.inputs(xc, z * mult).astype(self.dtype) for z, mult in self._pieces(num, stream)]
        else:
            rows = [z * mult + xc for z, mult in self._pieces(num, stream)]
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, self.dim), self.dtype)

    def counts(self, x: np.ndarray, num: int, stream, watch=None, deadline: Optional[float] = None) -> np.ndarray:
        """How often f(x + e) = c for each class c over `num` noise draws (int64, length n_classes).

        watch(logits, inputs_of) is called per batch when given; inputs_of(rows) returns those
        rows' noisy inputs (computed as the graph computes them).
        """
        xc = self._centre(x)
        shift = xc if self.projection is None else self.projection.shift(xc).astype(self.dtype)
        counts = np.zeros(self.n_classes, dtype=np.int64)
        done = 0
        for z, mult in self._pieces(num, stream):
            m = z.shape[0]
            if self.graph_session is not None:
                am, logits = self._run_graph(self.graph_session, z, mult, shift, logits=watch is not None)

                if self.projection is not None:
                    def inputs_of(rows, z=z, mult=mult):
                        return self.projection.inputs(xc, z[rows] * mult).astype(self.dtype)
                else:
                    def inputs_of(rows, z=z, mult=mult):
                        return z[rows] * mult + xc
            else:
                if self._xbuf is None or self._xbuf.shape[0] < m:
                    self._xbuf = np.empty((m, self.dim), dtype=self.dtype)
                xs = self._xbuf[:m]
                np.multiply(z, mult, out=xs)
                np.add(xs, xc, out=xs)
                logits = self._run_plain(xs)
                am = logits.argmax(axis=1)

                def inputs_of(rows, xs=xs):
                    return xs[rows]
            counts += np.bincount(am, minlength=self.n_classes)[:self.n_classes]
            done += m
            if watch is not None:
                watch(logits, inputs_of)
            if deadline is not None and done < num and time.monotonic() >= deadline:
                raise DeadlineReached(done)
        return counts

    # -- Cohen et al. (2019) --
    def certify(self, x: np.ndarray, n0: int, n: int, alpha: float, key: Sequence[int] = (0,),
                watch=None, deadline: Optional[float] = None) -> CertifyResult:
        """CERTIFY: n0 samples select cA, n fresh samples bound pA from below; abstain if pA < 1/2."""
        _check_counts(n0=n0, n=n, alpha=alpha)
        t0 = time.perf_counter()
        stream = self.stream(key)
        counts0 = self.counts(x, n0, stream, watch, deadline)
        cA = int(counts0.argmax())
        counts = self.counts(x, n, stream, watch, deadline)
        nA = int(counts[cA])
        pA = lower_confidence_bound(nA, n, alpha)
        if pA < 0.5:
            pred, radius = ABSTAIN, 0.0
        else:
            pred, radius = cA, certified_radius(self.noise, self.scale, pA)
        return CertifyResult(pred, radius, pA, nA, cA, counts0, counts, time.perf_counter() - t0)

    def predict(self, x: np.ndarray, n: int, alpha: float, key: Sequence[int] = (0,),
                watch=None, deadline: Optional[float] = None) -> PredictResult:
        """PREDICT: top two counts of n samples; abstain if the two-sided binomial test p-value > alpha."""
        _check_counts(n0=1, n=n, alpha=alpha)
        t0 = time.perf_counter()
        counts = self.counts(x, n, self.stream(key), watch, deadline)
        order = np.argsort(-counts, kind="stable")
        c1 = int(counts[order[0]])
        c2 = int(counts[order[1]]) if counts.size > 1 else 0
        p = binomial_pvalue(c1, c1 + c2)
        pred = ABSTAIN if p > alpha else int(order[0])
        return PredictResult(pred, p, counts, time.perf_counter() - t0)


def _check_counts(n0: int, n: int, alpha: float) -> None:
    if int(n0) < 1 or int(n) < 1:
        raise ValueError(f"n0 and n must be >= 1 (got n0={n0}, n={n})")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


# ---- VNN-LIB queries -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustnessQuery:
    label: int
    others: Tuple[int, ...]  # classes j with a disjunct "Y_j >= Y_label" (or >)
    lower: np.ndarray
    upper: np.ndarray


def robustness_query(spec) -> RobustnessQuery:
    """Read a local-robustness property off the normal form, or raise SpecError saying why not.

    Required: one input box (every case has the same box, no extra linear input constraints),
    and every output disjunct a single row "Y_j >= Y_label" (or ">") with one common label.
    """
    why = "the probabilistic mode answers local-robustness properties only (one input box; every disjunct 'Y_j >= Y_label' for one label)"
    if not spec.cases:
        raise SpecError(f"{why}: the property has no cases")
    box = spec.cases[0].region
    label: Optional[int] = None
    others = set()
    for ci, case in enumerate(spec.cases):
        r = case.region
        if r.G is not None and r.G.shape[0]:
            raise SpecError(f"{why}: case {ci} has {r.G.shape[0]} linear input constraints besides the box")
        if not (np.array_equal(r.lower, box.lower) and np.array_equal(r.upper, box.upper)):
            raise SpecError(f"{why}: the property has {len(spec.cases)} different input boxes")
        for di, hs in enumerate(case.output):
            if hs.rows != 1:
                raise SpecError(f"{why}: disjunct {di} of case {ci} has {hs.rows} output constraints")
            a, b = hs.A[0], hs.b[0]
            nz = np.flatnonzero(a)
            if b != 0 or nz.size != 2 or a[nz[0]] != -a[nz[1]]:
                raise SpecError(f"{why}: disjunct {di} of case {ci} is not a comparison of two outputs")
            lab = int(nz[0] if a[nz[0]] > 0 else nz[1])  # A y <= 0 with +c at the label: Y_j >= Y_label
            j = int(nz[1] if lab == nz[0] else nz[0])
            if label is not None and lab != label:
                raise SpecError(f"{why}: disjuncts compare against two labels ({label} and {lab})")
            label = lab
            others.add(j)
    if label is None:
        raise SpecError(f"{why}: the property has no output disjuncts")
    if not (np.all(np.isfinite(box.lower)) and np.all(np.isfinite(box.upper))):
        raise SpecError("the probabilistic mode needs a bounded input box (every X_i with a finite lower and upper bound)")
    if np.any(box.lower > box.upper):
        raise SpecError("the input box is empty (some lower bound exceeds its upper bound)")
    return RobustnessQuery(label, tuple(sorted(others)), box.lower.astype(np.float64), box.upper.astype(np.float64))


def needed_radius(query: RobustnessQuery, norm: str) -> float:
    """Distance from the box centre to its farthest corner in the certificate's norm."""
    half = (query.upper - query.lower) / 2.0
    return float(np.linalg.norm(half, 2)) if norm == "l2" else float(np.abs(half).sum())


class WitnessWatch:
    """Looks at every classified noise batch for a real witness of f inside the box."""

    def __init__(self, network, spec, query: RobustnessQuery, limit: int = 16):
        self.network = network
        self.spec = spec
        self.q = query
        self.others = np.array(query.others, dtype=np.int64)
        self.limit = limit  # replays tried at most (each is one ORT call on the original model)
        self.tried = 0
        self.outcome: Optional[Outcome] = None

    def __call__(self, logits: np.ndarray, inputs_of) -> None:
        if self.outcome is not None or self.tried >= self.limit:
            return
        # prefilter (superset of the unsafe rows): some other class reaches the label's logit
        cand = np.flatnonzero((logits[:, self.others] >= logits[:, [self.q.label]]).any(axis=1))
        if cand.size == 0:
            return
        xs = inputs_of(cand)
        inside = np.flatnonzero(np.all((xs >= self.q.lower) & (xs <= self.q.upper), axis=1))
        for i in inside[: self.limit - self.tried]:
            self.tried += 1
            out = sat_outcome(self.network, self.spec, xs[i].copy(), ENGINE,
                              detail="witness of f found among the smoothing samples, replayed with ONNX Runtime on the original model")
            if out is not None:
                self.outcome = out
                raise StopSampling()


def check(network, spec, deadline: float, options) -> Outcome:
    """--mode probabilistic: certify g at the box centre; `sat` only for a replayed witness of f, else `unknown`."""
    t0 = time.monotonic()
    query = robustness_query(spec)
    noise, scale = options.smoothing.noise, float(options.smoothing.sigma)
    if noise not in NOISES:
        raise SpecError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}")
    norm = NOISES[noise]
    centre = (query.lower + query.upper) / 2.0
    need = needed_radius(query, norm)
    stats = {"noise": noise, "scale": scale, "n0": options.smoothing.n0, "n": options.smoothing.n, "alpha": options.smoothing.alpha}

    # the centre is a point of the box: if f is already unsafe there, that is a witness
    hit = sat_outcome(network, spec, centre, ENGINE, detail="the box centre is a witness of f (replayed with ONNX Runtime)")
    if hit is not None:
        hit.seconds = time.monotonic() - t0
        return hit

    g = SmoothedClassifier(network, noise=noise, scale=scale, batch=options.smoothing.batch, seed=options.seed, threads=options.threads)
    watch = WitnessWatch(network, spec, query)
    try:
        res = g.certify(centre, options.smoothing.n0, options.smoothing.n, options.smoothing.alpha, key=(0,), watch=watch, deadline=deadline)
    except StopSampling:
        out = watch.outcome
        out.seconds = time.monotonic() - t0
        out.stats = stats
        return out
    except DeadlineReached as e:
        return Outcome(Verdict.TIMEOUT, engine=ENGINE, seconds=time.monotonic() - t0,
                       detail=f"smoothing stopped at the deadline after {e.samples} samples of one pass", stats=stats)
    finally:
        g.close()

    covered = bool(res.prediction == query.label and res.radius > need)
    what = {"l2": "L2", "l1": "L1"}[norm]
    scale_name = "sigma" if noise == "gaussian" else "lambda"
    if res.prediction == ABSTAIN:
        claim = (f"smoothed classifier g ({noise} noise, {scale_name}={scale:g}) abstains at the box centre: "
                 f"lower bound pA={res.pA_lower:.6g} < 1/2 for its top class {res.selected}; nothing is certified")
    else:
        claim = (f"claim about the smoothed classifier g ({noise} noise, {scale_name}={scale:g}), not the network f: "
                 f"g(x') = {res.prediction} for every x' with ||x' - centre||_{what[1]} < {res.radius:.6g}, "
                 f"with confidence 1-alpha = {1 - options.smoothing.alpha:g}; the box needs {need:.6g}: "
                 f"{'covered' if covered else 'not covered'}")
    cert = Certificate(sigma=scale, noise=noise, n0=int(options.smoothing.n0), n=int(options.smoothing.n), alpha=float(options.smoothing.alpha),
                       predicted=int(res.prediction), count=int(res.count), pA_lower=float(res.pA_lower),
                       radius=float(res.radius), norm=norm, needed_radius=need, covered=covered, claim=claim)
    samples = int(options.smoothing.n0) + int(options.smoothing.n)
    stats.update(samples=samples, sampling_seconds=res.seconds, samples_per_second=samples / max(res.seconds, 1e-9),
                 label=query.label, selected=res.selected)
    if covered:
        detail = (f"g certified robust on the box ({what} radius {res.radius:.4g} > needed {need:.4g}, confidence "
                  f"1-alpha); a probabilistic claim about g, not a proof about f, so the verdict stays unknown")
    elif res.prediction == ABSTAIN:
        detail = f"g abstains at the box centre (pA lower bound {res.pA_lower:.4g} < 1/2); no witness of f among {samples} samples"
    elif res.prediction != query.label:
        detail = f"g predicts class {res.prediction}, not the label {query.label}, at the box centre; no witness of f among the samples"
    else:
        detail = f"g certified only up to {what} radius {res.radius:.4g} < needed {need:.4g}; no witness of f among {samples} samples"
    return Outcome(Verdict.UNKNOWN, engine=ENGINE, seconds=time.monotonic() - t0, certificate=cert,
                   detail=detail, stats=stats)
