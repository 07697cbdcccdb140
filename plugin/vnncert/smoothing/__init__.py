"""Randomized smoothing (Cohen, Rosenfeld, Kolter 2019) on ONNX Runtime: the public smoothing API.

- `stats`: the Clopper-Pearson lower bound, the two-sided binomial test, the certified radius;
- `noise`: the noise laws (Gaussian: L2 radii; Laplace, uniform: L1 radii), fresh noise, the noise bank;
- `sampling`: the sampling graph (the network's batched model with the noise added inside it);
- `classifier`: `SmoothedClassifier`, g(x) = argmax_c P(f(x + e) = c), with `certify` and `predict`;
- `report`: data sets, certify / predict files in the reference format, certified-accuracy tables
  and plots (`vnncert smooth`).

Every claim made here is about the smoothed classifier g, with confidence 1 - alpha; none is a
proof about the network f. `engines/probabilistic.py` answers VNN-LIB queries with it.
"""
from .classifier import ABSTAIN, CertifyResult, DeadlineReached, PredictResult, SmoothedClassifier, StopSampling
from .noise import NOISES
from .stats import binomial_pvalue, certified_radius, lower_confidence_bound

__all__ = ["ABSTAIN", "NOISES", "SmoothedClassifier", "CertifyResult", "PredictResult", "DeadlineReached",
           "StopSampling", "lower_confidence_bound", "certified_radius", "binomial_pvalue"]
