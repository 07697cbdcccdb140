"""Randomized smoothing over a data set: certify / predict files in the reference format, tables, plots.

`certify_dataset` writes what the reference implementation's certify.py writes (Cohen et al.
2019, github locuslab/smoothing): a header `idx	label	predict	radius	correct	time`, then one
line per example, radius with 3 significant digits ("{:.3}"), -1 for an abstention, time as
datetime.timedelta. `predict_dataset` writes predict.py's `idx	label	predict	correct	time`.
Next to FILE.tsv a small FILE.tsv.json records how it was made (model, noise, sigma, n0, n,
alpha, seed, noise bank), which `report` uses to label rows.

Every number here is a claim about the smoothed classifier g (confidence 1 - alpha per example),
not about the network f.
"""
from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from ..errors import VnncertError
from ..options import SmoothingOptions
from .classifier import SmoothedClassifier
from .stats import binomial_pvalue, lower_confidence_bound

CERTIFY_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime"
PREDICT_HEADER = "idx\tlabel\tpredict\tcorrect\ttime"
DEFAULT_RADII = tuple(np.round(np.arange(0.0, 3.0 + 1e-9, 0.5), 10))  # the table's columns unless asked


# ---- data ----------------------------------------------------------------------------------------
def load_dataset(path: str, n_inputs: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """x (N, n_inputs) float64 and y (N,) int64 from an .npz with `x` (one row per example, the model's
    input shape or flat) and `y` (integer labels)."""
    try:
        with np.load(path, allow_pickle=False) as d:
            if "x" not in d or "y" not in d:
                raise VnncertError(f"{path}: the .npz needs arrays 'x' and 'y' (has {', '.join(d.files) or 'none'})")
            x = np.asarray(d["x"])
            y = np.asarray(d["y"])
    except (OSError, ValueError) as e:
        raise VnncertError(f"{path}: cannot read the data set: {e}") from None
    if x.ndim < 1 or x.shape[0] != y.reshape(-1).shape[0]:
        raise VnncertError(f"{path}: x has {x.shape[0] if x.ndim else 0} rows but y has {y.size} labels")
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise VnncertError(f"{path}: y must hold integer labels")
    y = y.reshape(-1).astype(np.int64)
    if n_inputs is not None and x.shape[1] != n_inputs:
        raise VnncertError(f"{path}: examples have {x.shape[1]} values but the model takes {n_inputs}")
    return x, y


def _indices(count: int, skip: int, max_index: int) -> List[int]:
    """Every skip-th index below max_index (-1: no limit), as the reference loop means it.

    (The reference tests `i == max` after skipping, which never fires when max is not a
    multiple of skip; here the examples stop at index max in every case.)
    """
    stop = count if max_index is None or max_index < 0 else min(count, max_index)
    return list(range(0, stop, skip))


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="ex", dynamic_ncols=True, leave=True)


def _smoother(network, sigma: float, noise: str, batch: int, seed: int, threads: int, bank: bool, bank_rows: int,
              bank_limit_bytes: int):
    t0 = time.perf_counter()
    lower_confidence_bound(1, 2, 0.5)  # import scipy now, not inside the first example's time
    g = SmoothedClassifier(network, noise=noise, scale=sigma, batch=batch, seed=seed, threads=threads)
    note = "fresh noise for every certification"
    if bank:
        # rows of the noise the sampler draws: the input size, or the first layer's width when projected
        need = bank_rows * g.noise_dim * g.dtype.itemsize
        if need <= bank_limit_bytes:
            g.use_bank(bank_rows)
            note = f"noise bank of {bank_rows} rows ({need / 2**20:.1f} MiB), fresh signs and offset per certification"
        else:
            note = (f"fresh noise for every certification (a noise bank would need {need / 2**30:.2f} GiB, "
                    f"more than {bank_limit_bytes / 2**30:.0f} GiB)")
    return g, note, time.perf_counter() - t0


def _meta(path: Optional[str], meta: Dict) -> None:
    if path:
        from ..results import atomic_write

        atomic_write(path + ".json", json.dumps(meta, indent=2) + "\n")


def _open_out(out) -> Tuple[Optional[TextIO], bool]:
    if out is None:
        return None, False
    if isinstance(out, (str, os.PathLike)):
        return open(out, "w"), True
    return out, False


@dataclass
class Row:
    idx: int
    label: int
    predict: int
    radius: float
    correct: int
    seconds: float


def _timedelta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=seconds))


def certify_dataset(network, x: np.ndarray, y: np.ndarray, sigma: float, n0: int = 100, n: int = 100_000,
                    alpha: float = 0.001, batch: int = 10_000, skip: int = 1, max: int = -1, seed: int = 0,
                    progress: bool = True, out=None, noise: str = "gaussian", threads: int = 0,
                    bank: bool = True, model_name: str = "",
                    bank_limit_bytes: int = SmoothingOptions.bank_limit_bytes) -> List[Row]:
    """CERTIFY every `skip`-th example (index < max unless max = -1); rows written to `out` (path or stream).

    Example i uses the noise stream keyed (seed, i), so a result does not depend on skip or max.
    bank=True reuses one noise bank of n0 + n rows across examples (see docs/probabilistic.md);
    it falls back to fresh noise when the bank would exceed `bank_limit_bytes` (1 GiB by default).
    """
    if skip < 1:
        raise ValueError("skip must be >= 1")
    idx = _indices(len(y), skip, max)
    g, note, setup = _smoother(network, sigma, noise, batch, seed, threads, bank, n0 + n, bank_limit_bytes)
    f, close = _open_out(out)
    rows: List[Row] = []
    try:
        if f is not None:
            print(CERTIFY_HEADER, file=f, flush=True)
        with _progress(len(idx), progress, f"certify sigma={sigma:g}") as bar:
            for i in idx:
                label = int(y[i])
                t0 = time.perf_counter()
                res = g.certify(x[i], n0, n, alpha, key=(i,))
                dt = time.perf_counter() - t0
                correct = int(res.prediction == label)
                rows.append(Row(i, label, int(res.prediction), float(res.radius), correct, dt))
                if f is not None:
                    print(f"{i}\t{label}\t{res.prediction}\t{res.radius:.3}\t{correct}\t{_timedelta(dt)}", file=f, flush=True)
                bar.update(1)
                bar.set_postfix(acc=f"{np.mean([r.correct for r in rows]):.3f}", refresh=False)
    finally:
        g.close()
        if close:
            f.close()
    if isinstance(out, (str, os.PathLike)):
        _meta(str(out), {"kind": "certify", "model": model_name or getattr(network, "name", ""), "noise": noise,
                         "norm": g.norm, "sigma": sigma, "n0": n0, "n": n, "alpha": alpha, "batch": batch, "skip": skip,
                         "max": max, "seed": seed, "examples": len(rows), "noise_source": note, "sampling_path": g.path,
                         "setup_seconds": round(setup, 4),
                         "claim": "certificates of the smoothed classifier g, each with confidence 1-alpha; not about f"})
    return rows


def predict_dataset(network, x: np.ndarray, y: np.ndarray, sigma: float, n: int = 100_000, alpha: float = 0.001,
                    batch: int = 10_000, skip: int = 1, max: int = -1, seed: int = 0, progress: bool = True, out=None,
                    noise: str = "gaussian", threads: int = 0, bank: bool = True, model_name: str = "",
                    bank_limit_bytes: int = SmoothingOptions.bank_limit_bytes) -> List[Row]:
    """PREDICT every `skip`-th example; rows in predict.py's format (radius left 0 in the returned rows)."""
    if skip < 1:
        raise ValueError("skip must be >= 1")
    idx = _indices(len(y), skip, max)
    binomial_pvalue(1, 2)  # import scipy.stats now, not inside the first example's time
    g, note, setup = _smoother(network, sigma, noise, batch, seed, threads, bank, n, bank_limit_bytes)
    f, close = _open_out(out)
    rows: List[Row] = []
    try:
        if f is not None:
            print(PREDICT_HEADER, file=f, flush=True)
        with _progress(len(idx), progress, f"predict sigma={sigma:g}") as bar:
            for i in idx:
                label = int(y[i])
                t0 = time.perf_counter()
                res = g.predict(x[i], n, alpha, key=(i,))
                dt = time.perf_counter() - t0
                correct = int(res.prediction == label)
                rows.append(Row(i, label, int(res.prediction), 0.0, correct, dt))
                if f is not None:
                    print(f"{i}\t{label}\t{res.prediction}\t{correct}\t{_timedelta(dt)}", file=f, flush=True)
                bar.update(1)
    finally:
        g.close()
        if close:
            f.close()
    if isinstance(out, (str, os.PathLike)):
        _meta(str(out), {"kind": "predict", "model": model_name or getattr(network, "name", ""), "noise": noise,
                         "sigma": sigma, "n": n, "alpha": alpha, "batch": batch, "skip": skip, "max": max, "seed": seed,
                         "examples": len(rows), "noise_source": note, "sampling_path": g.path,
                         "setup_seconds": round(setup, 4)})
    return rows


# ---- reading and summarising ---------------------------------------------------------------------
def read_tsv(path: str) -> Dict[str, np.ndarray]:
    """Columns of a certify (or predict) file as arrays: idx, label, predict, correct, radius (0 if absent)."""
    try:
        with open(path) as fh:
            lines = [line.rstrip("\n") for line in fh if line.strip()]
    except OSError as e:
        raise VnncertError(f"{path}: cannot read: {e.strerror}") from None
    if not lines:
        raise VnncertError(f"{path}: empty file (expected the header {CERTIFY_HEADER!r})")
    head = lines[0].split("\t")
    for col in ("idx", "label", "predict", "correct"):
        if col not in head:
            raise VnncertError(f"{path}: header lacks column {col!r} (expected {CERTIFY_HEADER!r})")
    cols: Dict[str, list] = {c: [] for c in head}
    for k, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != len(head):
            raise VnncertError(f"{path}: line {k} has {len(parts)} fields, the header has {len(head)}")
        for c, v in zip(head, parts):
            cols[c].append(v)
    try:
        out = {c: np.array([int(v) for v in cols[c]], dtype=np.int64) for c in ("idx", "label", "predict", "correct")}
        out["radius"] = np.array([float(v) for v in cols["radius"]]) if "radius" in cols else np.zeros(len(out["idx"]))
    except ValueError as e:
        raise VnncertError(f"{path}: {e}") from None
    return out


def read_meta(path: str) -> Dict:
    try:
        with open(path + ".json") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def certified_accuracy(radius: np.ndarray, correct: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """Fraction of examples predicted correctly with certified radius >= r, for each r (analyze.py)."""
    radius = np.asarray(radius, dtype=np.float64)
    ok = np.asarray(correct).astype(bool)
    if radius.size == 0:
        return np.zeros(len(radii))
    return np.array([float(np.mean(ok & (radius >= r))) for r in radii])


def average_radius(radius: np.ndarray, correct: np.ndarray) -> float:
    """Average certified radius: mean over examples of the radius when correct, else 0 (ACR)."""
    radius = np.asarray(radius, dtype=np.float64)
    return float(np.mean(np.where(np.asarray(correct).astype(bool), radius, 0.0))) if radius.size else 0.0


def _label(path: str, meta: Dict) -> str:
    if meta.get("sigma") is not None:
        name = "sigma" if meta.get("noise", "gaussian") == "gaussian" else "lambda"
        noise = "" if meta.get("noise", "gaussian") == "gaussian" else f" {meta['noise']}"
        return f"{name}={meta['sigma']:g}{noise}"
    return os.path.splitext(os.path.basename(path))[0]


def report(paths: Sequence[str], radii: Optional[Sequence[float]] = None, plot: Optional[str] = None,
           labels: Optional[Sequence[str]] = None) -> str:
    """The certified-accuracy table (rows: one certify file each, columns r) with the average radius; a PNG when asked."""
    radii = list(DEFAULT_RADII if radii is None else radii)
    data = []
    for k, p in enumerate(paths):
        cols = read_tsv(p)
        meta = read_meta(p)
        name = labels[k] if labels and k < len(labels) else _label(p, meta)
        data.append((name, p, cols, meta))
    norms = sorted({m.get("norm", "l2") for _, _, _, m in data})
    norm_txt = " / ".join(n.upper() for n in norms)
    width = max([len("model"), *(len(d[0]) for d in data)])
    lines = [f"certified accuracy of the smoothed classifier g at {norm_txt} radius r "
             f"(fraction certified with radius >= r and correct; r = 0 is g's clean accuracy; confidence 1-alpha per example)"]
    head = f"{'':<{width}}  {'N':>5}  " + "  ".join(f"{'r=' + format(r, 'g'):>7}" for r in radii) + "  avg radius  abstain"
    lines.append(head)
    for name, p, cols, meta in data:
        acc = certified_accuracy(cols["radius"], cols["correct"], radii)
        acr = average_radius(cols["radius"], cols["correct"])
        abst = float(np.mean(cols["predict"] < 0)) if cols["predict"].size else 0.0
        lines.append(f"{name:<{width}}  {cols['idx'].size:>5}  " + "  ".join(f"{a:>7.3f}" for a in acc)
                     + f"  {acr:>10.3f}  {abst:>7.3f}")
    if plot:
        plot_certified_accuracy([(name, cols) for name, _, cols, _ in data], plot, norm_txt)
        lines.append(f"plot: {plot}")
    return "\n".join(lines)


def plot_certified_accuracy(curves: Sequence[Tuple[str, Dict[str, np.ndarray]]], path: str, norm_txt: str = "L2") -> None:
    """Certified accuracy against radius (a step curve per file) as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rmax = max([float(np.max(c["radius"])) if c["radius"].size else 0.0 for _, c in curves] + [0.5])
    grid = np.linspace(0.0, rmax * 1.05, 600)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, c in curves:
        ax.plot(grid, certified_accuracy(c["radius"], c["correct"], grid), label=name, drawstyle="steps-post")
    ax.set_xlabel(f"{norm_txt} radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlim(0.0, grid[-1])
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("smoothed classifier g: certified accuracy (confidence 1-alpha)", fontsize=10)
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
