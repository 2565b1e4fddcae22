import sys
from pathlib import Path

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
