"""The presets of ``ntkdyn reproduce``: ``quick`` (default), ``paper`` and ``theory``.

Each preset is a plain dict in the TOML schema of :mod:`.config` and goes through
``config.load_config``, so it is validated exactly like a user's file. Experiments carry a
``kind`` that the report understands: ``theory-curves`` and ``theory-width`` (claims C1-C7) and
``E1`` .. ``E6`` (PAPER.md's notebook experiments, findings).

Theory experiments (all presets): MATH.md 6's setting, ``gaussian:d=5``, n = 20, unit rows,
labels +-1, half-sum loss, float64, lr = 0.1 (``h_max = 0.196``, ``h0 = 0.0045``), HB and
NAG-SC at the critical ``beta = 1 - 2 sqrt(lambda_0 lr) = 0.8662``, HOM at
``(beta - 0.2, 0.2)``, scheduled Nesterov as torch implements it (``nesterov-torch``, the
authors' variant) with r in {2, 3, 8}. Step counts follow from the spectrum (lambda_0 =
0.0447): GD needs ~3000 steps to fall ~13 decades (``(1 - h0)^{2k}``), the crossover of
scheduled Nesterov ``k_x = r/h0`` is 447 / 670 / 1788 steps for r = 2 / 3 / 8 and C7 needs
``4 k_x`` (r = 8 meets the float64 fit floor first: C7 reports it as inconclusive, MATH.md 7.2);
HB, NAG-SC and HOM reach the 1e-20 fit floor within ~450 steps (500 are run); the width-error
metric needs the prediction to reach 1e-4 L_0, i.e. ~440 GD steps (500 are run).

Notebook miniatures (``quick``): PAPER.md's E1-E6 in the authors' parameterisation
(``mode = "notebook"``, MSELoss mean, float32, torch seed 218) on scikit-learn's digits with
n = 60 rows (the size of the authors' own "small" variant; d = 64), pixels in [0, 1]
(the loader's raw-pixel mode, ``normalize = False``; digits' 0..16 divided by 16). In this
parameterisation the effective kernel ``K = (2/n) H`` grows with the width: measured
``lambda_max(K) ~ 3.7 m`` on digits for n = 60..200 and m = 500..2000, independent of n
because ``lambda_max(H)`` grows like n (MATH.md 7.1). So the authors' widths are divided by
:data:`MINI_WIDTH_DIVISOR` and their learning rates multiplied by it, which keeps
``h_max = lr lambda_max(K)`` of every network (no n-correction is needed). Epochs: 200 for the
width sweeps (E2, E4, "loss at epoch 200" as in the paper), :data:`MINI_EPOCHS` for the curves
(the authors ran 5000). E4 averages :data:`MINI_E4_SEEDS` seeds (the paper: 10).

``paper``: E1-E6 at the notebook's sizes (n = 600 rows of ``mnist:PATH`` if given, else
digits; the authors' widths, lr, epochs and 10 seeds for E4), plus the theory experiments at
MATH.md 6's widths (256 .. 16384, 3 seeds); meant for a GPU.
``theory``: the theory experiments at full size and E1-E6 in the paper's own setting (theory
parameterisation, unit rows, MSELoss with the factor explicit, float64, prediction overlays);
lr is set through ``h_max = lr lambda_max(K)``: 1.0 for the curves, 0.5 for the width sweeps
(the authors' lr ratio E2 : E1 = 1 : 2).
"""

from __future__ import annotations

from .config import Config, load_config

__all__ = [
    "MINI_E4_SEEDS",
    "MINI_EPOCHS",
    "MINI_WIDTH_DIVISOR",
    "PRESETS",
    "get_preset",
    "preset_dict",
]  # fmt: skip

PRESETS = ("quick", "paper", "theory")
#: quick: the authors' widths / 4 and learning rates x 4 (h_max unchanged, module docstring).
MINI_WIDTH_DIVISOR = 4
#: quick: epochs of the E1/E3/E5/E6 curves (the authors: 5000).
MINI_EPOCHS = 1000
#: quick: seeds averaged in E4 (the authors: 10).
MINI_E4_SEEDS = 3
#: MATH.md 6's theory setting.
_THEORY = {"mode": "theory", "data": "gaussian:d=5", "n": 20, "data_seed": 0,
           "loss": "half-sum", "dtype": "float64", "predict": True}  # fmt: skip
_LR = 0.1
#: The authors' torch seed (PAPER.md).
_AUTHORS_SEED = 218
#: PAPER.md's settings: width, lr, epochs and grids of E1-E6.
_AUTHORS = {
    "curve_width": 3000, "curve_lr": 1e-4, "curve_epochs": 5000, "width_lr": 5e-5,
    "width_epochs": 200, "e2_widths": list(range(2000, 8001, 500)),
    "e4_widths": list(range(1000, 8001, 1000)), "e4_seeds": list(range(10)),
}  # fmt: skip


def _theory_experiments(*, width_grid: list[int], width_seeds: list[int]) -> list[dict]:
    """Claims C1-C7: long curves at one width, and the width sweep of C6 (module docstring)."""
    crit = "critical"
    return [
        {**_THEORY, "id": "T-curves", "kind": "theory-curves", "widths": [4096], "seeds": [0],
         "steps": 3000, "diagnostics_every": 100,
         "title": "Theory: GD and scheduled Nesterov (torch, r = 2, 3, 8), m = 4096, lr 0.1",
         "optimizers": [f"gd:lr={_LR}"] + [f"nesterov-torch:lr={_LR},r={r}" for r in (2, 3, 8)]},
        {**_THEORY, "id": "T-momentum", "kind": "theory-curves", "widths": [4096], "seeds": [0],
         "steps": 500, "diagnostics_every": 25,
         "title": "Theory: HB, NAG-SC (critical beta) and HOM (beta - 0.2, 0.2), m = 4096",
         "optimizers": [f"hb:lr={_LR},beta={crit}", f"nesterov-sc:lr={_LR},beta={crit}",
                        f"hom:lr={_LR},b1={crit},b2=0.2"]},
        {**_THEORY, "id": "T-width", "kind": "theory-width", "widths": width_grid,
         "seeds": width_seeds, "steps": 500, "diagnostics_every": 25,
         "title": "Theory: prediction error vs width (GD, HB, NAG r = 3)",
         "optimizers": [f"gd:lr={_LR}", f"hb:lr={_LR},beta={crit}",
                        f"nesterov-torch:lr={_LR},r=3"]},
    ]  # fmt: skip


def _paper_experiments(
    base: dict, *, scale: int, curve_epochs: int, e4_seeds: list[int], lr_of, note: str
) -> list[dict]:
    """E1-E6 with widths / scale and lr from ``lr_of(authors_lr, kind)``."""
    a = _AUTHORS
    m = a["curve_width"] // scale
    lr_c, lr_w = lr_of(a["curve_lr"], "curve"), lr_of(a["width_lr"], "width")
    e2 = [w // scale for w in a["e2_widths"]][:: 2 if scale > 1 else 1]
    e4 = [w // scale for w in a["e4_widths"]]
    seed = [_AUTHORS_SEED]
    curves = {**base, "widths": [m], "seeds": seed, "steps": curve_epochs}
    sweep = {**base, "steps": a["width_epochs"]}
    return [
        {**curves, "id": "E1", "kind": "E1", "optimizers": [f"gd:lr={lr_c}"],
         "title": f"E1: GD loss vs epoch{note}"},
        {**sweep, "id": "E2", "kind": "E2", "widths": e2, "seeds": seed,
         "title": f"E2: HB loss at epoch {a['width_epochs']} vs width{note}",
         "grid": [{"optimizer": "hb", "lr": [lr_w], "beta": [0.0, 0.6, 0.9]}]},
        {**curves, "id": "E3", "kind": "E3", "title": f"E3: HB loss vs epoch{note}",
         "grid": [{"optimizer": "hb", "lr": [lr_c], "beta": [0.2, 0.5, 0.8]}]},
        {**sweep, "id": "E4", "kind": "E4", "widths": e4, "seeds": e4_seeds,
         "title": f"E4: NAG loss at epoch {a['width_epochs']} vs width, mean of "
                  f"{len(e4_seeds)} seeds{note}",
         "grid": [{"optimizer": "nesterov-torch", "lr": [lr_w], "r": [2.0, 4.0, 10.0]}]},
        {**curves, "id": "E5", "kind": "E5", "title": f"E5: NAG loss vs epoch with GD{note}",
         "optimizers": [f"gd:lr={lr_c}"],
         "grid": [{"optimizer": "nesterov-torch", "lr": [lr_c], "r": [2.0, 3.0, 6.0, 8.0]}]},
        {**curves, "id": "E6", "kind": "E6",
         "title": f"E6: higher-order momentum with GD and HB 0.2{note}",
         "optimizers": [f"gd:lr={lr_c}", f"hb:lr={lr_c},beta=0.2"],
         "grid": [{"optimizer": _hom(base), "lr": [lr_c], "b1": [0.2], "b2": [0.2, 0.5, 0.8]}]},
    ]  # fmt: skip


def _hom(base: dict) -> str:
    # the authors' cascaded optimizer in their parameterisation, the exact HOM in theory mode
    return "hom-notebook" if base["mode"] == "notebook" else "hom"


def _notebook_base(data: str | None, n: int) -> dict:
    return {"mode": "notebook", "data": data or "digits", "n": n, "data_seed": 0, "loss": "mse",
            "dtype": "float32", "predict": False}  # fmt: skip


def preset_dict(name: str = "quick", *, data: str | None = None) -> dict:
    """The preset as a plain config dict (TOML schema of :mod:`.config`), before overrides of
    dtype and device."""
    if name not in PRESETS:
        raise ValueError(f"`preset` must be one of {list(PRESETS)}, got {name!r}")
    if name == "quick":
        k = MINI_WIDTH_DIVISOR
        experiments = _theory_experiments(width_grid=[256, 1024, 4096], width_seeds=[0, 1])
        experiments += _paper_experiments(
            _notebook_base(data, 60), scale=k, curve_epochs=MINI_EPOCHS,
            e4_seeds=list(range(MINI_E4_SEEDS)), lr_of=lambda lr, _: lr * k,
            note=f" (miniature: digits n = 60, pixels / 16, widths / {k}, lr x {k})",
        )  # fmt: skip
        description = (
            "Every claim on embedded data in a few CPU minutes: MATH.md 6's theory "
            "setting and notebook-mode miniatures of PAPER.md's E1-E6."
        )
    elif name == "paper":
        experiments = _theory_experiments(
            width_grid=[256, 1024, 4096, 16384], width_seeds=[0, 1, 2]
        )
        experiments += _paper_experiments(
            _notebook_base(data, 600), scale=1, curve_epochs=_AUTHORS["curve_epochs"],
            e4_seeds=_AUTHORS["e4_seeds"], lr_of=lambda lr, _: lr, note="",
        )  # fmt: skip
        description = "PAPER.md's E1-E6 at the notebook's sizes (meant for a GPU)."
    else:
        base = {"mode": "theory", "data": data or "digits", "n": 600, "data_seed": 0,
                "loss": "mse", "dtype": "float64", "predict": True}  # fmt: skip
        h = {"curve": 1.0, "width": 0.5}  # h_max = lr lambda_max(K) (module docstring)
        experiments = _theory_experiments(
            width_grid=[256, 1024, 4096, 16384], width_seeds=[0, 1, 2]
        )
        experiments += _paper_experiments(
            base, scale=1, curve_epochs=_AUTHORS["curve_epochs"], e4_seeds=_AUTHORS["e4_seeds"],
            lr_of=lambda lr, kind: f"hmax={h[kind]}", note=" (theory mode)",
        )  # fmt: skip
        description = "E1-E6 in the paper's own setting with overlays, and the claims at full size."
    return {"name": name, "description": description, "experiment": experiments}


def get_preset(
    name: str = "quick",
    *,
    data: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
) -> Config:
    """A validated preset config (module docstring).

    Args:
        name: "quick" (default), "paper" or "theory".
        data: dataset spec for the PAPER.md experiments E1-E6 (e.g. ``mnist:PATH``); the
            theory experiments always use MATH.md 6's data.
        dtype: "float32" or "float64" for every experiment (default: per experiment).
        device: "auto", "cpu" or "cuda" for every experiment.
    """
    raw = preset_dict(name, data=data)
    for exp in raw["experiment"]:
        if dtype is not None:
            exp["dtype"] = dtype
        if device is not None:
            exp["device"] = device
    return load_config(raw)
