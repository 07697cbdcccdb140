"""auto_LiRPA (0.3, public API only) behind the bounds layer's interface: IBP, CROWN, alpha-CROWN.

A float64 copy of the network's torch module in a `BoundedModule` (`BoundedModule`,
`BoundedTensor`, `PerturbationLpNorm`, `compute_bounds(C=...)`); conv nets in patches mode with
the image-shaped input, falling back to matrix mode when patches fails. `bounds.compute` widens
its bounds by the one margin rule like every other method's. None of our own bounds code uses
it; it is the backend for graphs the layer graph cannot lower (the `--relaxed-method`
methods of the relaxed engine).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Optional, Tuple

import numpy as np

from ..options import BoundsOptions

METHODS = {"ibp": "IBP", "crown": "CROWN", "alpha": "alpha-CROWN"}


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


class LirpaGraph:
    """A float64 BoundedModule of the network; `lower(lo, hi, C)` bounds C f(x) over boxes."""

    is_lirpa = True  # (bounds.compute tells the backends apart without importing this module)

    def __init__(self, network, options: BoundsOptions = BoundsOptions()):
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
        self.options = options
        self.bm = None
        self.mode = None
        self._build(self.modes[0])

    def _build(self, mode: str) -> None:
        from auto_LiRPA import BoundedModule

        torch = self._torch
        o = self.options
        # alpha-CROWN in auto_LiRPA 0.3 crashes with the sparse variants on these graphs
        opts = {"sparse_intermediate_bounds": False, "sparse_features_alpha": False, "sparse_spec_alpha": False,
                "optimize_bound_args": {"iteration": o.lirpa_iterations, "lr_alpha": o.lirpa_lr,
                                        "early_stop_patience": o.lirpa_patience}, "conv_mode": mode}
        with float64_default(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about the module's shape check
            self.bm = BoundedModule(self.module, torch.zeros((1,) + self.rest, dtype=torch.float64),
                                    bound_opts=opts, device="cpu", verbose=False)
        self.mode = mode

    def lower(self, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, method: str = "crown",
              want_A: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Lower bounds (K, R) of C[k] f(x) over lo[k] <= x <= hi[k]; with want_A also the
        linear coefficients (K, R, n_in) of the lower bound in x (CROWN-type methods only).
        method: ibp | crown | alpha."""
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
