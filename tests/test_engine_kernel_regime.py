"""Training engine: a trained wide network against the exact discrete kernel prediction
(docs/mathematics.md §3, 6), and the error falling with the width (slow).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ntkdyn.dynamics.discrete import predict_discrete
from ntkdyn.kernels import ntk_gram
from ntkdyn.models import TwoLayerReLU
from ntkdyn.optim import GD, HeavyBall, HigherOrderMomentum, Nesterov, NesterovSC, NesterovTorch
from ntkdyn.training import train

from engine_cases import _closed_form_gram

# Tiny problems: one torch thread per module (the single_thread fixture, conftest.py).
pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------------------------
# A wide network against the exact discrete kernel prediction (docs/mathematics.md §6).

LAMBDA0 = 0.04473  # docs/mathematics.md §6: lambda_min(H^inf) of this data set (numpy seed 0)
NET_LR = 0.1
ABS_HORIZON, REL_HORIZON = 1e-4, 1e-2  # prediction / L0 down to which abs and rel are taken


def _math6_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.sign(rng.standard_normal(20))
    return torch.tensor(X), torch.tensor(y)


def _math6_rules(nesterov=(("nesterov-torch", 3.0),)):
    beta = 1.0 - 2.0 * math.sqrt(LAMBDA0 * NET_LR)
    rules = {
        "gd": GD(NET_LR),
        "hb": HeavyBall(NET_LR, beta=beta),
        "nesterov-sc": NesterovSC(NET_LR, beta=beta),
        "hom": HigherOrderMomentum(NET_LR, b1=beta - 0.2, b2=0.2),
    }
    for kind, r in nesterov:
        cls = NesterovTorch if kind == "nesterov-torch" else Nesterov
        rules[f"{kind}-r{r:g}"] = cls(NET_LR, r=r)
    return rules


def _prediction_errors(net, pred):
    """docs/mathematics.md §6 metrics: abs up to pred <= 1e-4 L0; rel to the suffix-max envelope to 1e-2 L0."""
    L0 = pred[0]
    k_abs = int(np.argmax(pred <= ABS_HORIZON * L0))
    k_rel = int(np.argmax(pred <= REL_HORIZON * L0))
    assert pred[k_abs] <= ABS_HORIZON * L0, "the run is too short for the abs horizon"
    # E_k = max_{j >= k} L_j (docs/mathematics.md §5)
    envelope = np.maximum.accumulate(pred[::-1])[::-1]
    diff = np.abs(net - pred)
    return diff[: k_abs + 1].max() / L0, (diff[: k_rel + 1] / envelope[: k_rel + 1]).max()


def _network_vs_prediction(width, seeds, rules, device="cpu"):
    """Per seed and rule, (abs, rel) of a trained theory-mode network vs ``predict_discrete``.

    Every rule trains a copy of the same initial network (one per seed); all of them run in one
    engine call. The prediction uses ``K = H(0)`` of the actual init and ``e0 = u(W0) - y``.
    """
    X, y = _math6_data()
    models, preds = [], []
    for seed in seeds:
        model = TwoLayerReLU(5, width, generator=torch.Generator().manual_seed(seed))
        K = _closed_form_gram(model, X)  # H(0); half-sum loss, so c = 1
        e0 = (model(X) - y).detach().numpy()
        for rule in rules.values():
            long = predict_discrete(K, e0, rule, 20000)
            preds.append(long[: int(np.argmax(long <= ABS_HORIZON * long[0])) + 1])
            models.append(model)
    steps = max(len(p) for p in preds) - 1
    results = train(models, X, y, list(rules.values()) * len(seeds), steps, device=device)
    errors = [
        _prediction_errors(r.losses[: len(p)], p) for r, p in zip(results, preds, strict=True)
    ]
    return [
        dict(zip(rules, errors[i * len(rules) : (i + 1) * len(rules)], strict=True))
        for i in range(len(seeds))
    ]


def test_math6_data_matches_spec():
    X, _ = _math6_data()
    assert np.linalg.eigvalsh(ntk_gram(X.numpy()))[0] == pytest.approx(LAMBDA0, abs=5e-6)


# docs/mathematics.md §6's m = 4096 column, medians of 3 seeds (abs with H(0), rel with H(0)).
M4096 = {
    "gd": (1.7e-3, 0.12),
    "hb": (3.3e-3, 0.06),
    "nesterov-sc": (2.0e-3, 0.12),
    "nesterov-torch-r3": (1.8e-3, 0.13),
    "hom": (3.3e-3, 0.08),
}
# Our seeds are not docs/mathematics.md's: a 3-seed median of a max-type error scatters around its
# expectation. The factor 2 is what halving the width does (m^-1/2: the m=1024 column is about
# 2x the m=4096 one), i.e. the test fails if the engine's error looks like a 4x narrower net.
MEDIAN_SPREAD = 2.0


def test_wide_network_follows_discrete_prediction():
    per_seed = _network_vs_prediction(4096, (0, 1, 2), _math6_rules())
    for key, (abs_ref, rel_ref) in M4096.items():
        abs_err, rel_err = np.median([s[key] for s in per_seed], axis=0)
        assert abs_err <= MEDIAN_SPREAD * abs_ref, f"{key}: abs {abs_err:.3g}"
        assert rel_err <= MEDIAN_SPREAD * rel_ref, f"{key}: rel {rel_err:.3g}"


SLOW_WIDTHS = (1024, 2048, 4096, 8192, 16384)
ABS_16384, REL_16384 = 3e-3, 0.12  # issue bounds on the 3-seed median at m = 16384
SLOPE_RANGE = (-0.8, -0.35)


@pytest.mark.slow
def test_wide_network_error_falls_with_width():
    nesterov = [(kind, r) for kind in ("nesterov-torch", "nesterov") for r in (2.0, 3.0, 8.0)]
    rules = _math6_rules(nesterov)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    table = {key: [] for key in rules}  # per width: median (abs, rel) over 3 seeds
    for width in SLOW_WIDTHS:
        per_seed = _network_vs_prediction(width, (0, 1, 2), rules, device)
        for key in rules:
            table[key].append(np.median([s[key] for s in per_seed], axis=0))
    logm = np.log(SLOW_WIDTHS)
    report = []
    for key, rows in table.items():
        rows = np.array(rows)
        slopes = [np.polyfit(logm, np.log(rows[:, i]), 1)[0] for i in (0, 1)]
        report.append(f"{key}: abs {rows[:, 0]} rel {rows[:, 1]} slopes {slopes}")
    print("\n".join(report))
    for key, rows in table.items():
        rows = np.array(rows)
        slopes = [np.polyfit(logm, np.log(rows[:, i]), 1)[0] for i in (0, 1)]
        assert rows[-1, 0] <= ABS_16384, key
        assert rows[-1, 1] <= REL_16384, key
        for s in slopes:
            assert SLOPE_RANGE[0] <= s <= SLOPE_RANGE[1], (key, slopes)
