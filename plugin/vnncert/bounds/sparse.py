"""Sparse-dense products of the torch bounds (CROWN's CSR terms, the alpha/beta bound's) with a
fast gradient.

torch 1.12 differentiates `csr @ X` with respect to X through a slow path (a 12,544 x 4,608
convolution matrix with 4.7 M nonzeros times 4 columns: 0.02 s forward, 0.94 s backward on one
core); `sparse_mm(A, AT, X)` computes `A @ X` with torch's sparse-dense kernel and X's gradient
as `AT @ G` with the same kernel (0.02 s), A and AT being the CSR tensors of a matrix and of its
transpose, both made once."""
from __future__ import annotations

import warnings

import numpy as np


def torch_csr(M, dtype=None):
    """A scipy sparse matrix as a torch CSR tensor (float64 unless `dtype`)."""
    import torch

    M = M.tocsr()
    M.sort_indices()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 1.12: "Sparse CSR tensor support is in beta state"
        return torch.sparse_csr_tensor(torch.as_tensor(M.indptr, dtype=torch.int64),
                                       torch.as_tensor(M.indices, dtype=torch.int64),
                                       torch.as_tensor(np.asarray(M.data, np.float64)).to(dtype or torch.float64),
                                       size=M.shape)


def cast_csr(A, dtype):
    """A torch CSR tensor with its values cast to `dtype`."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(A.crow_indices(), A.col_indices(), A.values().to(dtype), size=A.shape)


_Function = None


def sparse_mm(A, AT, X):
    """A @ X (A a torch CSR tensor, X dense (n, c)); when X needs a gradient, it is AT @ G."""
    global _Function
    if not X.requires_grad:
        return A @ X
    if _Function is None:
        import torch

        class _SparseMm(torch.autograd.Function):
            @staticmethod
            def forward(ctx, X, A, AT):
                ctx.AT = AT
                return A @ X

            @staticmethod
            def backward(ctx, G):
                return ctx.AT @ G.contiguous(), None, None

        _Function = _SparseMm
    return _Function.apply(X, A, AT)
