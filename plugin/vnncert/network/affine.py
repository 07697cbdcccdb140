"""The symbolic affine tensor the ops lower to: `Sym`, an affine function of earlier variable layers.

While the layer graph is built (`vnncert.network.layers`), every tensor is a `Sym`: the value
`sum_s terms[s] @ v_s + bias` of the outputs `v_s` of earlier variable layers (the input, ReLUs,
max nodes), flat in C order, matrices dense or CSR sparse (whichever suits their fill). Each op's
`to_affine` (in `vnncert.network.ops`) composes these maps; nothing here knows an ONNX op.

Everything is float64: exact real arithmetic on the model's float32 constants up to rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import NetworkError

# Representation thresholds (hard data-structure policy, not verification tuning): a product
# filling more than DENSE_FRACTION of its entries is kept dense (faster, and as small), unless the
# dense matrix would exceed DENSE_MAX_ENTRIES entries (bounded memory: 400 MB of float64).
DENSE_FRACTION = 0.25
DENSE_MAX_ENTRIES = 50_000_000


def sparse():
    import scipy.sparse as sp

    return sp


Matrix = Union[np.ndarray, "scipy.sparse.csr_matrix"]  # noqa: F821


def tidy(m):
    """Keep a matrix dense or CSR sparse, whichever suits its fill."""
    sp = sparse()
    if sp.issparse(m):
        rows, cols = m.shape
        if rows * cols and m.nnz > DENSE_FRACTION * rows * cols and rows * cols <= DENSE_MAX_ENTRIES:
            return np.asarray(m.toarray(), dtype=np.float64)
        return m.tocsr()
    return np.asarray(m, dtype=np.float64)


def matmul(a, b):
    """a @ b for any mix of dense and sparse operands, tidied."""
    sp = sparse()
    if sp.issparse(a) and not sp.issparse(b):
        return tidy(np.asarray(a @ b))
    if not sp.issparse(a) and sp.issparse(b):
        return tidy(np.asarray((b.T @ a.T).T))
    return tidy(a @ b)


def as_dense(m) -> np.ndarray:
    sp = sparse()
    return np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)


def _take_rows(m, idx: np.ndarray):
    sp = sparse()
    if sp.issparse(m):
        return tidy(m[idx])
    return m[idx]


def _scale_rows(m, s: np.ndarray):
    sp = sparse()
    if sp.issparse(m):
        return tidy(sp.diags(s) @ m)
    return m * s[:, None]


@dataclass
class Sym:
    """An affine function of variable layers: value = sum_s terms[s] @ v_s + bias (flat, C order)."""

    shape: Tuple[int, ...]
    terms: Dict[int, Matrix]
    bias: np.ndarray

    @property
    def size(self) -> int:
        return int(self.bias.size)

    @staticmethod
    def constant(value: np.ndarray) -> "Sym":
        v = np.asarray(value, dtype=np.float64)
        return Sym(tuple(v.shape), {}, v.reshape(-1).copy())

    @property
    def is_constant(self) -> bool:
        return not self.terms

    def reshaped(self, shape: Sequence[int]) -> "Sym":
        shape = tuple(int(d) for d in shape)
        if int(np.prod(shape)) != self.size:
            raise NetworkError(f"internal: reshape of {self.size} entries to {list(shape)}")
        return Sym(shape, self.terms, self.bias)

    def take(self, idx: np.ndarray) -> "Sym":
        """Entries idx (an int array of flat indices; its shape is the new shape)."""
        idx = np.asarray(idx, dtype=np.int64)
        flat = idx.reshape(-1)
        return Sym(tuple(idx.shape), {s: _take_rows(m, flat) for s, m in self.terms.items()}, self.bias[flat].copy())

    def linear(self, M, c: Optional[np.ndarray], shape: Sequence[int]) -> "Sym":
        """M @ self + c with M (n_out, size) dense or sparse."""
        shape = tuple(int(d) for d in shape)
        terms = {s: matmul(M, m) for s, m in self.terms.items()}
        bias = np.asarray(M @ self.bias).reshape(-1)
        if c is not None:
            bias = bias + np.broadcast_to(np.asarray(c, np.float64).reshape(-1), bias.shape)
        return Sym(shape, terms, bias)

    def scaled(self, scale: np.ndarray, shift: Optional[np.ndarray] = None) -> "Sym":
        """Elementwise scale * self + shift (both flat, of this size)."""
        scale = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (self.size,))
        terms = {s: _scale_rows(m, scale) for s, m in self.terms.items()}
        bias = self.bias * scale
        if shift is not None:
            bias = bias + np.broadcast_to(np.asarray(shift, np.float64).reshape(-1), bias.shape)
        return Sym(self.shape, terms, bias)

    def __add__(self, other: "Sym") -> "Sym":
        if self.size != other.size:
            raise NetworkError("internal: adding tensors of different sizes")
        terms = dict(self.terms)
        for s, m in other.terms.items():
            terms[s] = tidy(terms[s] + m) if s in terms else m
        return Sym(self.shape, terms, self.bias + other.bias)

    def __neg__(self) -> "Sym":
        return self.scaled(-np.ones(self.size))

    def __sub__(self, other: "Sym") -> "Sym":
        return self + (-other)


def index_grid(shape: Sequence[int]) -> np.ndarray:
    """np.arange over the flat C-order positions of `shape`, in that shape (index maps start here)."""
    n = int(np.prod(shape)) if len(shape) else 1
    return np.arange(n, dtype=np.int64).reshape(tuple(shape))


def broadcast_to(s: Sym, shape: Sequence[int]) -> Sym:
    shape = tuple(int(d) for d in shape)
    if s.shape == shape:
        return s
    try:
        idx = np.broadcast_to(index_grid(s.shape), shape)
    except ValueError:
        raise NetworkError(f"cannot broadcast shape {list(s.shape)} to {list(shape)}") from None
    return s.take(np.ascontiguousarray(idx))


def broadcast_shape(*shapes) -> Tuple[int, ...]:
    """The ONNX (numpy) broadcast of shapes; shapes that do not broadcast are a NetworkError."""
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise NetworkError(f"shapes {[list(s) for s in shapes]} do not broadcast") from None
