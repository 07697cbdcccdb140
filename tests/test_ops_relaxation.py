"""The ops' linear relaxations (network/ops): relu_relaxation and max_relaxation, numpy and torch."""
from __future__ import annotations

import numpy as np
import pytest

from vnncert.network.ops import handler, supported_ops
from vnncert.network.ops.pool import max_relaxation
from vnncert.network.ops.relu import relu_relaxation


def _bounds(rng, n):
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    l, u = np.minimum(a, b), np.maximum(a, b)
    # some stable, some degenerate, and the tie u == -l
    l[:3], u[:3] = 0.0, 0.0
    l[3:6], u[3:6] = -1.5, 1.5
    return l, u


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_relu_relaxation_is_sound_and_crowns_choice(backend):
    rng = np.random.default_rng(0)
    l, u = _bounds(rng, 400)
    if backend == "torch":
        torch = _torch()
        ls, us, ub = (t.numpy() for t in relu_relaxation(torch.as_tensor(l), torch.as_tensor(u)))
    else:
        ls, us, ub = relu_relaxation(l, u)
    assert ls.shape == us.shape == ub.shape == l.shape
    t = rng.uniform(0, 1, (64, 1))
    z = l + t * (u - l)  # points of every box
    relu = np.maximum(z, 0)
    assert np.all(ls * z <= relu + 1e-12)
    assert np.all(relu <= us * z + ub + 1e-12)
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    assert np.all(ls[active] == 1) and np.all(us[active] == 1) and np.all(ub[active] == 0)
    assert np.all(ls[inactive & ~active] == 0) and np.all(us[inactive & ~active] == 0)
    # the chord is exact at both ends; the lower slope is 1 exactly where u >= -l (ties take 1)
    assert np.allclose((us * u + ub)[unstable], u[unstable])
    assert np.allclose((us * l + ub)[unstable], 0, atol=1e-12)
    assert np.array_equal(ls[unstable], (u >= -l)[unstable].astype(float))
    assert np.all(ls[3:6] == 1)


def test_relu_relaxation_backends_agree_bit_for_bit():
    torch = _torch()
    l, u = _bounds(np.random.default_rng(1), 300)
    got = relu_relaxation(torch.as_tensor(l), torch.as_tensor(u), torch)
    for a, b in zip(relu_relaxation(l, u, np), got):
        assert np.array_equal(a, b.numpy())


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_max_relaxation(backend):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((200, 4)), rng.standard_normal((200, 4))
    l, u = np.minimum(a, b), np.maximum(a, b)
    l[:50, 0] = u[:50, 1:].max(axis=1) + 0.1  # entry 0 dominates
    u[:50, 0] = l[:50, 0] + 1
    l[50:60, 3] = u[50:60, 3] = -np.inf  # padding
    l[60, :] = 1.0  # ties take the first entry
    u[60, :] = 2.0
    if backend == "torch":
        torch = _torch()
        idx, exact, upper = (t.numpy() for t in max_relaxation(torch.as_tensor(l), torch.as_tensor(u)))
    else:
        idx, exact, upper = max_relaxation(l, u)
    assert np.array_equal(idx, l.argmax(axis=1)) and idx[60] == 0
    assert exact[:50].all() and np.array_equal(idx[:50], np.zeros(50))
    assert np.array_equal(upper, u.max(axis=1))
    t = rng.uniform(0, 1, (32, 1, 1))
    z = np.where(np.isfinite(l), l + t * (np.where(np.isfinite(u), u, 0) - np.where(np.isfinite(l), l, 0)), -np.inf)
    y = z.max(axis=2)
    zi = np.take_along_axis(z, np.broadcast_to(idx[None, :, None], (32, 200, 1)), axis=2)[..., 0]
    assert np.all(zi <= y) and np.all(y <= upper)
    assert np.all(y[:, exact] == zi[:, exact])


def test_the_registry_knows_which_ops_have_a_relaxation():
    assert {"Relu", "MaxPool"} <= set(supported_ops("relaxation"))
    l, u = np.array([-1.0, 2.0]), np.array([3.0, 4.0])
    for a, b in zip(handler("Relu", "relaxation").relaxation(l, u), relu_relaxation(l, u)):
        assert np.array_equal(a, b)
