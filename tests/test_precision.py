"""The opt-in reduced training precisions ``"tf32"`` and ``"bfloat16"``
(``ntkdyn.training._precision``): accepted and refused names, TF32 off CUDA, bfloat16 curves
against float64, and float64 predictions in a bfloat16 sweep."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ntkdyn import TwoLayerReLU, load_dataset, train
from ntkdyn.conventions import DTYPES, itemsize, storage_dtype, torch_dtype
from ntkdyn.experiments.config import load_config
from ntkdyn.experiments.store import Store
from ntkdyn.experiments.sweep import run_sweep
from ntkdyn.training import _precision

#: bfloat16's unit roundoff: 8 significant bits, round to nearest.
U_BF16 = 2.0**-8
#: Each GEMM operand is rounded by <= u, so each product term by <= 2u; an output (a sum of such
#: terms, no cancellation at initialisation where |u - y| ~ |y|) by <= 2u, and the loss, a
#: square of residuals, by <= 4u; a factor 2 for the drift of FIRST_STEPS steps at lr * lambda_max
#: well below 1 (each step adds a rounded increment to a float32 weight).
BF16_RTOL = 8 * U_BF16
#: The steps over which the bound above is claimed.
FIRST_STEPS = 20
#: A float32 curve stays within ~1e-6 of float64's over these steps (float32's eps is 1.2e-7): a
#: "bfloat16" curve closer than this was not rounded to bfloat16 at all.
FLOAT32_LEVEL = 1e-5

_CONFIG = {
    "name": "p",
    "experiment": [
        {
            "id": "A",
            "data": "gaussian:d=5",
            "n": 10,
            "widths": [8],
            "steps": 5,
            "optimizers": ["gd:lr=0.5"],
        }
    ],
}


def _nets(d: int, widths=(256, 512), mode: str = "notebook") -> list[TwoLayerReLU]:
    return [
        TwoLayerReLU(
            d,
            w,
            parameterization=mode,
            dtype=torch.float32,
            generator=torch.Generator().manual_seed(w),
        )
        for w in widths
    ]


def _tracks_in_bfloat16(curve: np.ndarray, ref: np.ndarray) -> bool:
    """``curve`` is a bfloat16 curve of ``ref`` (float64): within BF16_RTOL over the first steps,
    and farther than float32 rounding (so the rounding really happened)."""
    rel = np.abs(curve[: FIRST_STEPS + 1] - ref[: FIRST_STEPS + 1]) / ref[: FIRST_STEPS + 1]
    return bool(FLOAT32_LEVEL < rel.max() < BF16_RTOL)


# --------------------------------------------------------------------------------------------
# Names accepted and refused.


def test_every_precision_name_is_a_config_dtype_and_others_are_refused():
    for name in DTYPES:
        cfg = {**_CONFIG, "experiment": [{**_CONFIG["experiment"][0], "dtype": name}]}
        assert load_config(cfg).experiments[0].dtype == name
    cfg = {**_CONFIG, "experiment": [{**_CONFIG["experiment"][0], "dtype": "float16"}]}
    with pytest.raises(ValueError, match=r"`experiment\[0\]\.dtype` must be one of"):
        load_config(cfg)


def test_storage_of_each_precision():
    assert [storage_dtype(d) for d in DTYPES] == ["float32", "float64", "float32", "float32"]
    assert [itemsize(d) for d in DTYPES] == [4, 8, 4, 4]
    assert torch_dtype("bfloat16") is torch.float32 and torch_dtype("float64") is torch.float64
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        storage_dtype("half")


@pytest.mark.parametrize("bad", ["float16", torch.float16, torch.int32, 32])
def test_train_refuses_other_dtypes_naming_the_field(bad):
    data = load_dataset("gaussian:d=5", n=10)
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        train(_nets(5, (8,)), data.X, data.y, "gd:lr=0.1", 2, dtype=bad)


# --------------------------------------------------------------------------------------------
# TF32 without CUDA.


@pytest.mark.skipif(torch.cuda.is_available(), reason="TF32 changes results on CUDA")
def test_tf32_off_cuda_is_float32_with_one_warning(monkeypatch):
    data = load_dataset("digits", n=40)
    monkeypatch.setattr(_precision, "_warned_tf32_off_cuda", False)
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    args = (_nets(data.d), data.X, data.y, "hb:lr=1e-4,beta=0.8", 30)
    f32 = train(*args, loss="mse", dtype="float32")
    with pytest.warns(RuntimeWarning, match="'tf32' trains in plain float32 on 'cpu'"):
        tf32 = train(*args, loss="mse", dtype="tf32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        again = train(*args, loss="mse", dtype="tf32")
    for a, b, c in zip(f32, tf32, again, strict=True):
        assert np.array_equal(a.losses, b.losses) and np.array_equal(a.losses, c.losses)
        assert b.params["W"].dtype == torch.float32
    after = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    assert after == before  # the global flags were restored after each call


# --------------------------------------------------------------------------------------------
# bfloat16 against float64.


@pytest.mark.parametrize("reparametrize", [False, True])
def test_bfloat16_two_layer_curves_track_float64_in_float32_storage(reparametrize):
    data = load_dataset("digits", n=40)
    rules = ["gd:lr=1e-4", "hb:lr=1e-4,beta=0.8"]
    args = (_nets(data.d), data.X, data.y, rules, FIRST_STEPS)
    kw = {"loss": "mse", "reparametrize": reparametrize}
    ref = train(*args, dtype="float64", **kw)
    f32 = train(*args, dtype="float32", **kw)
    bf16 = train(*args, dtype="bfloat16", **kw)
    also = train(*args, dtype=torch.bfloat16, **kw)
    for r, a, b, c in zip(ref, f32, bf16, also, strict=True):
        assert _tracks_in_bfloat16(b.losses, r.losses)
        assert not _tracks_in_bfloat16(a.losses, r.losses)  # float32 is too close
        assert not _tracks_in_bfloat16(r.losses, r.losses)  # a float64 map would be too
        assert np.array_equal(b.losses, c.losses)
        assert b.params["W"].dtype == torch.float32 and b.params["a"].dtype == torch.float32


class _MLP(nn.Module):
    def __init__(self, d: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_bfloat16_generic_path_runs_under_autocast_in_float32_storage():
    data = load_dataset("gaussian:d=5", n=20)
    models = [_MLP(5, 0), _MLP(5, 1)]
    args = (models, data.X, data.y, "gd:lr=0.01", FIRST_STEPS)
    ref = train(*args, dtype="float64")
    bf16 = train(*args, dtype="bfloat16")
    f32 = train(*args, dtype="float32")
    for r, b, a in zip(ref, bf16, f32, strict=True):
        assert _tracks_in_bfloat16(b.losses, r.losses)
        assert not _tracks_in_bfloat16(a.losses, r.losses)
        assert all(p.dtype == torch.float32 for p in b.params.values())


# --------------------------------------------------------------------------------------------
# Sweeps: predictions stay float64.


def test_bfloat16_theory_sweep_stores_float64_predictions(tmp_path):
    exp = {**_CONFIG["experiment"][0], "steps": 30, "widths": [64]}
    cfg = {
        "name": "p",
        "experiment": [{**exp, "id": "B", "dtype": "bfloat16"}, {**exp, "dtype": "float32"}],
    }
    run_sweep(cfg, tmp_path, progress=False)
    with Store(tmp_path, readonly=True) as s:
        (b,), (a,) = s.load_runs("B"), s.load_runs("A")
    assert b.id != a.id  # the precision is part of the run's content
    for name in ("pred_discrete", "pred_discrete_inf", "pred_ode"):
        p = getattr(b, name)
        assert p.dtype == np.float64
        # from the same float32 init, in float64: equal to the float32 run's, and not rounded
        assert np.array_equal(p, getattr(a, name))
        assert np.any(p != p.astype(np.float32).astype(np.float64))
    assert not np.array_equal(b.losses, a.losses)  # the training itself was rounded
