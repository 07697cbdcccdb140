"""The dense chain view of a layer graph: input -> affine -> relu -> ... -> affine, float64 torch.

The one chain extraction of the project (the alpha/beta bound of `bounds.alpha_beta`, which the
activation-split search runs on, needs a plain chain of dense layers). Read off the layer graph,
refused beyond `BoundsOptions.dense_max_elements` weights in all (a convolution becomes a dense
matrix here).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np


def chain_layers(lg) -> Optional[List[int]]:
    """The affine layers of `lg` in order when it is a plain chain input -> affine -> relu -> ... ->
    affine (each affine layer reads only the variable layer just before it), else None."""
    layers = lg.layers[1:]
    prev = 0
    out = []
    for i, L in enumerate(layers):
        want = "affine" if i % 2 == 0 else "relu"
        if L.kind != want:
            return None
        if L.kind == "affine":
            if len(L.terms) != 1 or L.terms[0][0] != prev:
                return None
            out.append(L.index)
        else:
            if L.source != L.index - 1:
                return None
            prev = L.index
    if not layers or layers[-1].index != lg.output or layers[-1].kind != "affine":
        return None
    return out


def dense_size(lg) -> int:
    """Entries of every affine term made dense (what a dense float64 copy of the graph holds)."""
    return sum(int(np.prod(W.shape)) for L in lg.layers if L.kind == "affine" for _, W in L.terms)


class ChainView:
    """z_1 = W_1 x + b_1, h_k = relu(z_k), z_{k+1} = W_{k+1} h_k + b_{k+1}; y = z_L (flat float64 torch)."""

    def __init__(self, Ws: List[np.ndarray], bs: List[np.ndarray]):
        import torch

        self.W = [torch.as_tensor(np.asarray(w, np.float64)) for w in Ws]
        self.b = [torch.as_tensor(np.asarray(b, np.float64)) for b in bs]
        self.n_relu = len(Ws) - 1
        self.widths = [w.shape[0] for w in Ws[:-1]]

    @staticmethod
    def of(lg, max_elements: int) -> Optional["ChainView"]:
        """The chain view of `lg`, or None when it is not a plain chain or too large."""
        from ..network.layers import as_dense

        idx = chain_layers(lg)
        if idx is None or dense_size(lg) > max_elements:
            return None
        Ws = [as_dense(lg.layers[k].terms[0][1]) for k in idx]
        bs = [np.asarray(lg.layers[k].bias, np.float64) for k in idx]
        return ChainView(Ws, bs)

    def forward(self, x):
        import torch

        h = x
        for k in range(self.n_relu):
            h = torch.relu(h @ self.W[k].T + self.b[k])
        return h @ self.W[-1].T + self.b[-1]

    def prefix(self, j: int) -> "ChainView":
        """The first j + 1 affine layers (the chain up to affine layer j)."""
        view = ChainView.__new__(ChainView)
        view.W, view.b = self.W[:j + 1], self.b[:j + 1]
        view.n_relu = j
        view.widths = self.widths[:j]
        return view
