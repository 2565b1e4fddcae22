"""Effect of the reduced training precisions (``ntkdyn.training._precision``) on the notebook's
loss curves, against float64 from the same float32 initial weights.

A reduced slice of the ``paper`` preset's E1/E3/E5 (docs/paper.md): notebook-parameterised
two-layer networks on ``digits`` (n rows, pixels 0-16), MSELoss, lr 1e-4, GD, HB beta 0.8 and
torch-style scheduled Nesterov (r = 3), widths 1000, 2000 and 4000, one seed. Every precision
trains all networks in one ``train`` call. Per run and precision it prints:

* ``dev``: max over steps of ``|L - L64| / L64`` while ``L64 > FLOOR32 * L64[0]`` (the float32
  floor of ``ntkdyn.verdicts.tolerances.FLOOR_REL``; these curves do not reach it);
* ``final``: ``L[-1] / L64[-1]``;
* ``leaves``: the first step with ``|L - L64| / L64 > LEAVE_RTOL`` ("-" if none): where the
  curve has left float64's (a stalled, floored curve leaves it for good);
* and per precision the wall time of the whole call over float32's (same process, best of
  ``--repeats``).

``--storage`` adds ``bf16-storage``, the alternative design (everything stored and computed in
bfloat16; the width-1000 networks only, run through the engine's internals: real bfloat16 GEMMs
are ~50x slower than float32 on a CPU without bfloat16 units) to show why ``"bfloat16"`` keeps
float32 storage.

Usage: ``python bench/precision.py [--n 200] [--steps 2000] [--device cpu|cuda] [--repeats 1]
[--storage]``
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time, cpu_model  # noqa: E402

from ntkdyn import TwoLayerReLU, load_dataset, train  # noqa: E402
from ntkdyn.training.ensemble import TwoLayerEnsemble  # noqa: E402
from ntkdyn.training.loop import run_batch  # noqa: E402
from ntkdyn.verdicts.tolerances import FLOOR_REL  # noqa: E402

#: A curve "leaves" float64's at this relative deviation.
LEAVE_RTOL = 0.01
FLOOR32 = FLOOR_REL["float32"]
WIDTHS = (1000, 2000, 4000)
RULES = ("gd:lr=1e-4", "hb:lr=1e-4,beta=0.8", "nesterov-torch:lr=1e-4,r=3")


def _models(d: int) -> list[TwoLayerReLU]:
    return [
        TwoLayerReLU(
            d,
            w,
            parameterization="notebook",
            dtype=torch.float32,
            generator=torch.Generator().manual_seed(218),
        )
        for w in WIDTHS
        for _ in RULES
    ]


def _bf16_storage(models, X, y, rules, steps, device) -> np.ndarray:
    """The rejected design: weights, registers, inputs and GEMMs all in bfloat16."""
    from ntkdyn.optim.rules import parse

    bf = torch.bfloat16
    Xb = torch.as_tensor(np.array(X), dtype=bf, device=device)
    yb = torch.as_tensor(np.array(y), dtype=bf, device=device)
    batch = TwoLayerEnsemble(
        models, [parse(r) for r in rules], Xb, yb, steps=steps, loss="mse", reparametrize=False
    )
    with torch.no_grad():
        return run_batch(batch, steps, set()).losses.T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--storage", action="store_true", help="add the bf16-storage rows")
    args = ap.parse_args()
    data = load_dataset("digits", n=args.n)
    models = _models(data.d)
    rules = [r for _ in WIDTHS for r in RULES]
    labels = [f"{r.split(':')[0]} m={w}" for w in WIDTHS for r in RULES]
    device = torch.device(args.device)
    names = ["float64", "float32", "bfloat16"] + (["tf32"] if device.type == "cuda" else [])
    print(
        f"# bench/precision.py {datetime.date.today()} on {cpu_model()}"
        + (f" + {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
        + f", torch {torch.__version__}, digits n={args.n}, {args.steps} steps, notebook, mse"
    )
    curves, times = {}, {}
    for name in names:

        def fit(name: str = name) -> np.ndarray:
            res = train(
                models,
                data.X,
                data.y,
                rules,
                args.steps,
                loss="mse",
                dtype=name,
                device=device,
                diagnostics=False,
            )
            return np.array([r.losses for r in res])

        times[name], curves[name] = best_time(fit, device, args.repeats, warmup=False)
    if args.storage:
        names.append("bf16-storage")
        k = len(RULES)  # the width-1000 networks; NaN rows for the others
        times[names[-1]], first = best_time(
            lambda: _bf16_storage(models[:k], data.X, data.y, rules[:k], args.steps, device),
            device,
            1,
            warmup=False,
        )
        assert first is not None
        curves[names[-1]] = np.full_like(curves["float32"], np.nan)
        curves[names[-1]][:k] = first
    ref = curves["float64"]
    print(f"{'run':<22} {'precision':<13} {'dev':>9} {'final':>8} {'leaves':>7}  L64[-1]/L64[0]")
    for j, label in enumerate(labels):
        r = ref[j]
        live = r > FLOOR32 * r[0]
        for name in names[1:]:
            c = curves[name][j]
            if np.isnan(c[0]):
                continue  # bf16-storage: widths not run
            rel = np.abs(c - r) / r
            dev = float(np.max(rel[live]))
            out = np.flatnonzero(~(rel <= LEAVE_RTOL))  # NaN (diverged) counts as left
            leaves = str(out[0]) if out.size else "-"
            final = c[-1] / r[-1]
            print(f"{label:<22} {name:<13} {dev:9.2e} {final:8.4f} {leaves:>7}  {r[-1] / r[0]:.2e}")
    base = times["float32"]
    stored = times.pop("bf16-storage", None)
    print("time: " + ", ".join(f"{k} {v:.2f} s ({v / base:.2f}x)" for k, v in times.items()))
    if stored is not None:
        print(f"time: bf16-storage {stored:.2f} s for the width-{WIDTHS[0]} networks only")


if __name__ == "__main__":
    main()
