import sys
from pathlib import Path

import numpy as np
import pytest

# tests import their shared registry as `from tests.helpers import ...` or `from helpers import ...`
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def data():
    """The theory data set (n = 20, d = 5) of the quick preset's width ladders."""
    import ntkdyn

    return ntkdyn.load_dataset("gaussian:d=5", n=20)


@pytest.fixture(scope="session")
def init_models(data):
    """Kernel models of real initial networks on the quick ladder, keyed by (width, seed)."""
    from ladder import LADDER, SEEDS, kernel_model_of, theory_net

    return {(m, s): kernel_model_of(theory_net(m, s), data) for m in LADDER for s in SEEDS}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny sweep (tests/sweep_cases.py), run once for all sweep tests: (config path, out
    dir, runs by id)."""
    from ntkdyn.experiments.store import Store
    from ntkdyn.experiments.sweep import run_sweep

    from sweep_cases import TINY

    root = tmp_path_factory.mktemp("tiny")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY)
    out = root / "out"
    result = run_sweep(cfg, out, progress=False)
    assert (result.total, result.trained, result.skipped, result.diverged) == (12, 12, 0, 0)
    with Store(out, readonly=True) as s:
        runs = {r.id: r for r in s.load_runs()}
    return cfg, out, runs


@pytest.fixture(scope="module")
def mnist_arrays():
    """Nine random 28 x 28 images and their labels, for the hand-written MNIST files of the data
    tests (tests/data_cases.py)."""
    from data_cases import IMG_SHAPE

    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, size=(9, *IMG_SHAPE), dtype=np.uint8)
    images[:, 0, 0] = 255  # no all-zero image
    labels = rng.integers(0, 10, size=9).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="module")
def kernel():
    """(H^inf spectrum with eigenvectors, e0 = -y) of docs/mathematics.md §6's data, for the
    report tests."""
    from ntkdyn.data import load_dataset
    from ntkdyn.kernels import spectrum, two_layer_gram

    ds = load_dataset("gaussian:d=5", n=20, seed=0)
    return spectrum(two_layer_gram(ds.X), vectors=True), -ds.y


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a whole test module (the engine tests use it through pytestmark)."""
    import torch

    # Tiny problems: thread barriers on a loaded 2-core machine cost more than the arithmetic.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def test_set() -> np.ndarray:
    """docs/mathematics.md §6's set: n = 20, d = 5 normalised Gaussians (numpy seed 0); V = 18.16,
    lambda_0 = 0.04473, lambda_max(H^inf) = 1.956."""
    from kernel_cases import _unit_rows

    return _unit_rows(np.random.default_rng(0).standard_normal((20, 5)))
