"""The presets of ``ntkdyn reproduce``: ``quick`` (default), ``paper`` and ``theory``.

Each preset is a plain dict in the TOML schema of :mod:`.config` and goes through
``config.load_config``, so it is validated exactly like a user's file. Experiments carry a
``kind`` that the report understands: ``theory-ladder``, ``theory-curves`` and
``theory-point`` (claims C1-C7, docs/verdicts.md), ``theory-depth`` (claim C8, deep networks:
``theory`` preset only) and ``E1`` .. ``E6`` (the notebook's experiments, findings).

What each preset runs, and why these widths, step counts and learning rates (the theory
experiments in the setting of docs/mathematics.md §6; notebook miniatures that keep ``h_max``
of every network), is in docs/paper.md, "How ntkdyn maps them".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

from .._validate import choice
from .config import Config, load_config

__all__ = [
    "DEPTHS",
    "DEPTH_LADDER",
    "FULL_LADDER",
    "MINI_E4_SEEDS",
    "MINI_EPOCHS",
    "MINI_WIDTH_DIVISOR",
    "PRESETS",
    "QUICK_LADDER",
    "get_preset",
    "preset_dict",
]

PRESETS = ("quick", "paper", "theory")
#: quick: the authors' widths / 4 and learning rates x 4 (h_max unchanged, module docstring).
MINI_WIDTH_DIVISOR = 4
#: quick: epochs of the E1/E3/E5 curves (the authors: 5000; E6 always runs their 5000).
MINI_EPOCHS = 1000
#: quick: seeds of the width sweeps E2 and E4 (the authors: 1 and 10); a standard error needs
#: >= 2, and 4 keep the two sweeps under a CPU minute.
MINI_E4_SEEDS = 4
#: docs/mathematics.md §6's theory setting.
_THEORY = {
    "mode": "theory",
    "data": "gaussian:d=5",
    "n": 20,
    "data_seed": 0,
    "loss": "half-sum",
    "dtype": "float64",
    "predict": True,
}
_LR = 0.1
#: The width of the point tests: modest, where lambda-sensitive rates still deviate 10-20%.
_POINT_WIDTH = 4096
#: Width ladders (>= 4 widths over >= 1.5 decades) and seeds of the kernel claims.
QUICK_LADDER = [512, 2048, 8192, 32768]
FULL_LADDER = [1024, 4096, 16384, 65536]
#: Claim C8 (docs/verdicts.md §9): depths, widths (up to its DEPTH_WIDTH, over 1.2 decades),
#: n = 32 rows of the theory data, and a step of h_max = 0.5 on each depth's analytic NTK
#: (GD reaches 1e-2 L0 of its prediction within ~350 steps at every depth; HB and scheduled
#: NAG within ~45).
DEPTHS = [1, 2, 3, 4]
DEPTH_LADDER = [256, 1024, 4096]
_DEPTH_N = 32
_DEPTH_HMAX = 0.5
#: The authors' torch seed (docs/paper.md).
_AUTHORS_SEED = 218


class _AuthorsSettings(TypedDict):
    curve_width: int
    curve_lr: float
    curve_epochs: int
    width_lr: float
    width_epochs: int
    e2_widths: list[int]
    e4_widths: list[int]
    e4_seeds: list[int]


#: docs/paper.md's settings: width, lr, epochs and grids of E1-E6.
_AUTHORS: _AuthorsSettings = {
    "curve_width": 3000,
    "curve_lr": 1e-4,
    "curve_epochs": 5000,
    "width_lr": 5e-5,
    "width_epochs": 200,
    "e2_widths": list(range(2000, 8001, 500)),
    "e4_widths": list(range(1000, 8001, 1000)),
    "e4_seeds": list(range(10)),
}


def _theory_experiments(*, ladder: list[int], seeds: list[int]) -> list[dict]:
    """Claims C1-C7 (module docstring): width ladders, scheduled Nesterov at one width, and
    the underdamped point tests."""
    crit, one = "critical", [ladder[-2]]
    ladder_exp = {**_THEORY, "kind": "theory-ladder", "widths": ladder, "seeds": seeds}
    return [
        {
            **ladder_exp,
            "id": "T-gd",
            "steps": 2000,
            "diagnostics_every": 100,
            "title": "Theory: GD, width ladder",
            "optimizers": [f"gd:lr={_LR}"],
        },
        {
            **ladder_exp,
            "id": "T-nag",
            "steps": 2100,
            "diagnostics_every": 100,
            "title": "Theory: scheduled Nesterov (torch, r = 2), width ladder",
            "optimizers": [f"nesterov-torch:lr={_LR},r=2"],
        },
        {
            **ladder_exp,
            "id": "T-momentum",
            "steps": 500,
            "diagnostics_every": 25,
            "title": "Theory: HB, NAG-SC (critical beta) and HOM (beta - 0.2, 0.2), width ladder",
            "optimizers": [
                f"hb:lr={_LR},beta={crit}",
                f"nesterov-sc:lr={_LR},beta={crit}",
                f"hom:lr={_LR},b1={crit},b2=0.2",
            ],
        },
        {
            **_THEORY,
            "id": "T-nag-r",
            "kind": "theory-curves",
            "widths": one,
            "seeds": seeds,
            "steps": 3100,
            "diagnostics_every": 100,
            "title": f"Theory: scheduled Nesterov (torch, r = 3, 8), m = {one[0]}",
            "optimizers": [f"nesterov-torch:lr={_LR},r={r}" for r in (3, 8)],
        },
        {
            **_THEORY,
            "id": "T-point",
            "kind": "theory-point",
            "widths": [_POINT_WIDTH],
            "seeds": seeds,
            "steps": 1000,
            "diagnostics_every": 50,
            "title": f"Theory: underdamped HB, NAG-SC (beta 0.95) and HOM (0.75, 0.2), "
            f"m = {_POINT_WIDTH}",
            "optimizers": [
                f"hb:lr={_LR},beta=0.95",
                f"nesterov-sc:lr={_LR},beta=0.95",
                f"hom:lr={_LR},b1=0.75,b2=0.2",
            ],
        },
    ]


def _depth_experiments(*, seeds: list[int]) -> list[dict]:
    """Claim C8: GD, HB (critical beta) and scheduled NAG (r = 3) on DeepReLU of depth 1-4
    (module constants); GD runs longer, so it is an experiment of its own."""
    lr = f"hmax={_DEPTH_HMAX}"
    base = {
        **_THEORY,
        "n": _DEPTH_N,
        "kind": "theory-depth",
        "depth": DEPTHS,
        "widths": DEPTH_LADDER,
        "seeds": seeds,
    }
    return [
        {
            **base,
            "id": "T-depth-gd",
            "steps": 400,
            "title": "Deep networks: GD, depth 1-4",
            "optimizers": [f"gd:lr={lr}"],
        },
        {
            **base,
            "id": "T-depth-momentum",
            "steps": 150,
            "title": "Deep networks: HB (critical beta) and scheduled Nesterov (r = 3), depth 1-4",
            "optimizers": [f"hb:lr={lr},beta=critical", f"nesterov-torch:lr={lr},r=3"],
        },
    ]


def _paper_experiments(
    base: dict,
    *,
    scale: int,
    curve_epochs: int,
    e4_seeds: list[int],
    lr_of: Callable[[float, str], float | str],
    note: str,
) -> list[dict]:
    """E1-E6 with widths / scale and lr from ``lr_of(authors_lr, kind)``; E2 uses E4's seeds
    (one seed cannot separate an interior minimum from seed noise) and E6 the authors' 5000
    epochs (their (0.2, 0.8) blow-up came near epoch 3800)."""
    a = _AUTHORS
    m = a["curve_width"] // scale
    lr_c, lr_w = lr_of(a["curve_lr"], "curve"), lr_of(a["width_lr"], "width")
    e2 = [w // scale for w in a["e2_widths"]][:: 2 if scale > 1 else 1]
    e4 = [w // scale for w in a["e4_widths"]]
    seed = [_AUTHORS_SEED]
    curves = {**base, "widths": [m], "seeds": seed, "steps": curve_epochs}
    sweep = {**base, "steps": a["width_epochs"]}
    return [
        {
            **curves,
            "id": "E1",
            "kind": "E1",
            "optimizers": [f"gd:lr={lr_c}"],
            "title": f"E1: GD loss vs epoch{note}",
        },
        {
            **sweep,
            "id": "E2",
            "kind": "E2",
            "widths": e2,
            "seeds": e4_seeds,
            "title": f"E2: HB loss at epoch {a['width_epochs']} vs width, mean of "
            f"{len(e4_seeds)} seeds{note}",
            "grid": [{"optimizer": "hb", "lr": [lr_w], "beta": [0.0, 0.6, 0.9]}],
        },
        {
            **curves,
            "id": "E3",
            "kind": "E3",
            "title": f"E3: HB loss vs epoch{note}",
            "grid": [{"optimizer": "hb", "lr": [lr_c], "beta": [0.2, 0.5, 0.8]}],
        },
        {
            **sweep,
            "id": "E4",
            "kind": "E4",
            "widths": e4,
            "seeds": e4_seeds,
            "title": f"E4: NAG loss at epoch {a['width_epochs']} vs width, mean of "
            f"{len(e4_seeds)} seeds{note}",
            "grid": [{"optimizer": "nesterov-torch", "lr": [lr_w], "r": [2.0, 4.0, 10.0]}],
        },
        {
            **curves,
            "id": "E5",
            "kind": "E5",
            "title": f"E5: NAG loss vs epoch with GD{note}",
            "optimizers": [f"gd:lr={lr_c}"],
            "grid": [{"optimizer": "nesterov-torch", "lr": [lr_c], "r": [2.0, 3.0, 6.0, 8.0]}],
        },
        {
            **curves,
            "id": "E6",
            "kind": "E6",
            "steps": a["curve_epochs"],
            "title": f"E6: higher-order momentum with GD and HB 0.2{note}",
            "optimizers": [f"gd:lr={lr_c}", f"hb:lr={lr_c},beta=0.2"],
            "grid": [{"optimizer": _hom(base), "lr": [lr_c], "b1": [0.2], "b2": [0.2, 0.5, 0.8]}],
        },
    ]


def _hom(base: dict) -> str:
    # the authors' cascaded optimizer in their parameterisation, the exact HOM in theory mode
    return "hom-notebook" if base["mode"] == "notebook" else "hom"


def _notebook_base(data: str | None, n: int) -> dict:
    return {
        "mode": "notebook",
        "data": data or "digits",
        "n": n,
        "data_seed": 0,
        "loss": "mse",
        "dtype": "float32",
        "predict": False,
    }


def preset_dict(name: str = "quick", *, data: str | None = None) -> dict:
    """The preset as a plain config dict (TOML schema of :mod:`.config`), before overrides of
    dtype and device."""
    choice("preset", name, PRESETS)
    if name == "quick":
        k = MINI_WIDTH_DIVISOR
        experiments = _theory_experiments(ladder=QUICK_LADDER, seeds=[0, 1, 2])
        experiments += _paper_experiments(
            _notebook_base(data, 60),
            scale=k,
            curve_epochs=MINI_EPOCHS,
            e4_seeds=list(range(MINI_E4_SEEDS)),
            lr_of=lambda lr, _: lr * k,
            note=f" (miniature: digits n = 60, pixels / 16, widths / {k}, lr x {k})",
        )
        description = (
            "Every claim on embedded data in a few CPU minutes: docs/mathematics.md §6's theory "
            "setting and notebook-mode miniatures of docs/paper.md's E1-E6."
        )
    elif name == "paper":
        experiments = _theory_experiments(ladder=FULL_LADDER, seeds=[0, 1, 2, 3, 4])
        experiments += _paper_experiments(
            _notebook_base(data, 600),
            scale=1,
            curve_epochs=_AUTHORS["curve_epochs"],
            e4_seeds=_AUTHORS["e4_seeds"],
            lr_of=lambda lr, _: lr,
            note="",
        )
        description = "docs/paper.md's E1-E6 at the notebook's sizes (meant for a GPU)."
    else:
        base = {
            "mode": "theory",
            "data": data or "digits",
            "n": 600,
            "data_seed": 0,
            "loss": "mse",
            "dtype": "float64",
            "predict": True,
        }
        h = {"curve": 1.0, "width": 0.5}  # h_max = lr lambda_max(K) (module docstring)
        experiments = _theory_experiments(ladder=FULL_LADDER, seeds=[0, 1, 2, 3, 4])
        experiments += _depth_experiments(seeds=[0, 1, 2])
        experiments += _paper_experiments(
            base,
            scale=1,
            curve_epochs=_AUTHORS["curve_epochs"],
            e4_seeds=_AUTHORS["e4_seeds"],
            lr_of=lambda lr, kind: f"hmax={h[kind]}",
            note=" (theory mode)",
        )
        description = (
            "E1-E6 in the paper's own setting with overlays, the claims at full size, and deep "
            "networks (claim C8)."
        )
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
        data: dataset spec for the docs/paper.md experiments E1-E6 (e.g. ``mnist:PATH``); the
            theory experiments always use docs/mathematics.md §6's data.
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
