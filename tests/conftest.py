"""Shared fixtures. Tests pin every thread pool to 1 (2-core CI) and find ../shared/benchmarks."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "vnnlib_specs"
SHARED = ROOT.parent / "shared" / "benchmarks"


def shared_benchmark(name: str) -> Path:
    """Path of ../shared/benchmarks/<name>, or skip the test with the reason."""
    p = SHARED / name
    if not p.is_dir():
        pytest.skip(f"needs ../shared/benchmarks/{name} (not present beside this clone)")
    return p


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield
