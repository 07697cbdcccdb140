"""The layer graph as the optimised bounds read it: terms, readers, ancestors, and its size.

The alpha/beta bound of `bounds.alpha_beta` (and the activation-split search on it) runs over the
layer graph itself, any DAG of its kinds: affine layers with any number of terms (residual adds,
concatenations and splits are terms), ReLUs and max nodes. `GraphView` holds what that bound needs
of the graph once per network: each affine term as the layer graph keeps it (dense or CSR), who
reads whom, and the layers each layer depends on. The per-search restriction to the neurons that
matter (live ReLUs, the rows their readers need) and the torch copies are made by `AlphaBeta`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import numpy as np


def stored_size(lg) -> int:
    """Entries the graph's terms hold as they are kept (dense entries, or a CSR term's nonzeros)."""
    import scipy.sparse as sp

    return sum(int(W.nnz) if sp.issparse(W) else int(np.prod(W.shape))
               for L in lg.layers if L.kind == "affine" for _, W in L.terms)


class GraphView:
    """What the optimised bounds read of a layer graph (see the module docstring)."""

    def __init__(self, lg):
        self.lg = lg
        self.layers = lg.layers
        self.output = lg.output
        # affine layer -> the nonlinear layers reading it; variable layer -> the affine layers reading it
        self.readers: Dict[int, List[int]] = {}
        for L in lg.layers:
            if L.kind == "affine":
                for s, _ in L.terms:
                    self.readers.setdefault(s, []).append(L.index)
            elif L.kind in ("relu", "max"):
                self.readers.setdefault(L.source, []).append(L.index)
        self.relus = [L.index for L in lg.layers if L.kind == "relu"]
        self.maxes = [L.index for L in lg.layers if L.kind == "max"]
        # every layer each layer depends on (the layers are in topological order)
        self._ancestors: List[frozenset] = []
        for L in lg.layers:
            srcs = [s for s, _ in L.terms] if L.kind == "affine" else ([] if L.kind == "input" else [L.source])
            out: Set[int] = set(srcs)
            for s in srcs:
                out |= self._ancestors[s]
            self._ancestors.append(frozenset(out))

    @staticmethod
    def of(lg, max_elements: int) -> Optional["GraphView"]:
        """The view of `lg`, or None when its terms hold more than `max_elements` entries."""
        if stored_size(lg) > max_elements:
            return None
        return GraphView(lg)

    def ancestors(self, k: int) -> frozenset:
        """Every layer layer `k` depends on (k excluded)."""
        return self._ancestors[k]

    def relus_before(self, k: int) -> List[int]:
        """The ReLU layers layer `k` depends on, in order."""
        anc = self.ancestors(k)
        return [j for j in self.relus if j in anc]

    def input_only(self, k: int) -> bool:
        """Affine layer `k` reads the input alone (its interval bounds are exact)."""
        return all(s == 0 for s, _ in self.layers[k].terms)

    @property
    def relu_sources(self) -> List[int]:
        """The affine layers the ReLUs read, in order (each once)."""
        out: List[int] = []
        for j in self.relus:
            k = self.layers[j].source
            if k not in out:
                out.append(k)
        return out

    def deep(self) -> bool:
        """Some ReLU reads a layer that depends on another nonlinear layer (its bounds can be tightened)."""
        return any(not self.input_only(k) for k in self.relu_sources)

    def forward(self, xs: np.ndarray) -> np.ndarray:
        """float64 outputs (B, n_out) of flat inputs (B, n_in)."""
        return self.lg.evaluate(np.asarray(xs, np.float64))

    def evaluate_layer(self, xs: np.ndarray, k: int) -> np.ndarray:
        """float64 values (B, n_k) of layer k at flat inputs (B, n_in)."""
        return self.lg.evaluate(np.asarray(xs, np.float64), all_layers=True)[k]
