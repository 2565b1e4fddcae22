"""Width study: when does a depth-2 MLP leave its kernel prediction, and is it flagged first?

What it shows: for one-hidden-layer ReLU MLPs of growing width on scikit-learn's digits (ten
classes, cross-entropy), trained by gradient descent and by heavy ball, the step at which the
network's loss leaves a band fixed in advance around ``ntkdyn.linearize(...).predict``, and
whether the validity record of a short probe (``ntkdyn.validity.probe``) flags the network
before that step. The results of the full run are in docs/width-study.md.

Setup (all fixed before any run):

* network ``f(x) = V relu(W x + b) / sqrt(m) + c`` (NTK parameterisation: every entry of
  ``W, b, V`` drawn N(0, 1), ``c = 0``; all four trained), built from ``nn.Linear`` layers;
* data: ``n`` digits drawn by ``ntkdyn.load_dataset("digits", n=n, seed=0)``, rows scaled to
  unit norm, integer labels 0-9; the mean cross-entropy over the rows;
* learning rates: a fraction (``LR_FRACTION``) of each rule's largest stable step on the
  curvature of the linearised loss at initialisation, ``S^1/2 K S^1/2`` with ``K`` the
  empirical NTK and ``S`` the Hessian of the loss in the outputs (the softmax's
  ``(diag p - p p^T) / n`` per row), taken once at the widest width (seed 0) and then fixed
  for every width and seed; heavy ball with ``BETA = 0.9``;
* departure step: the first step with ``|L_net / L_pred - 1| > 0.10``
  (``ntkdyn.validity.VALIDITY_BAND``; ``validity.from_run`` on the run of ``ntkdyn.train``);
  None when the loss stays in the band for the whole run;
* validity record: ``ntkdyn.validity.probe`` over the whole run, with checkpoints at steps
  1, 2, 4, 8, 15, 30 and then every 25 steps; its warning step is the first checkpoint at which
  the kernel drift (relative Frobenius), the change of the kernel's least eigenvalue or the
  share of flipped ReLU gates crosses its threshold (5%, 5%, 2.5%, ``ntkdyn.validity``). The
  cheap check ``Linearized.validity(rule, steps=30)`` sees the same numbers up to step 30
  (same network, same steps): its warning is the record's when that comes by step 30.

Run: ``python docs/examples/width_study.py`` (13 minutes on 2 shared CPU cores;
``--help`` for the options; ``NTKDYN_EXAMPLE_QUICK=1`` for a run of seconds).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import ntkdyn
from ntkdyn import validity

CLASSES = 10
#: Fraction of each rule's largest stable step (at initialisation, widest width).
LR_FRACTION = 0.5
#: Heavy-ball momentum.
BETA = 0.9
#: Steps of the short probe (``Linearized.validity``'s default) and the record's checkpoints:
#: dense early, where narrow networks leave, then every ``LATE_EVERY`` steps.
PROBE_STEPS = 30
EARLY_CHECKPOINTS = (1, 2, 4, 8, 15, 30)
LATE_EVERY = 25


class MLP(nn.Module):
    """``V relu(W x + b) / sqrt(m) + c``, NTK parameterisation (module docstring)."""

    def __init__(self, d: int, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.width = width
        self.hidden = nn.Linear(d, width, dtype=torch.float64)
        self.out = nn.Linear(width, CLASSES, dtype=torch.float64)
        with torch.no_grad():
            for p in (self.hidden.weight, self.hidden.bias, self.out.weight):
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
            self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)) / math.sqrt(self.width))


@dataclass(frozen=True)
class Row:
    """One network and rule of the study (drifts and flips at the probe's last step and at the
    end of the run)."""

    width: int
    rule: str
    seed: int
    departure_step: int | None
    warning_step: int | None
    probe_warning_step: int | None
    drift_at_probe: float
    flips_at_probe: float
    drift_at_end: float
    flips_at_end: float
    exceeded: tuple[str, ...]
    ratio_at_end: float
    engine_vs_probe: float

    @property
    def flagged_first(self) -> bool | None:
        """Whether the record warned strictly before the departure (None: no departure)."""
        if self.departure_step is None:
            return None
        return self.warning_step is not None and self.warning_step < self.departure_step


def digits_task(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` unit-norm digit rows and their integer labels."""
    data = ntkdyn.load_dataset("digits", n=n, seed=0)
    return torch.tensor(data.X), torch.tensor(data.y.astype(np.int64))


def curvature_eigenvalues(lin: ntkdyn.Linearized) -> np.ndarray:
    """Eigenvalues of ``S^1/2 K S^1/2``: the linearised cross-entropy's Hessian in the
    parameters, seen in function space, at initialisation (module docstring)."""
    n, C = lin.kernel.shape
    F0 = lin.F0
    p = np.exp(F0 - F0.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    S = np.zeros((n * C, n * C))
    for i in range(n):
        block = (np.diag(p[i]) - np.outer(p[i], p[i])) / n
        S[i * C : (i + 1) * C, i * C : (i + 1) * C] = block
    w, Q = np.linalg.eigh(S)
    root = (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T
    return np.clip(np.linalg.eigvalsh(root @ lin.kernel.K @ root), 0.0, None)


def study_rules(lin: ntkdyn.Linearized) -> list[ntkdyn.Rule]:
    """GD and heavy ball at ``LR_FRACTION`` of their largest stable steps on ``lin``."""
    # only the largest eigenvalue sets a limit (the softmax's null direction gives zeros)
    lam_max = np.array([curvature_eigenvalues(lin).max()])
    gd = ntkdyn.stability(lam_max, "gd:lr=1").max_stable_lr
    hb = ntkdyn.stability(lam_max, f"hb:lr=1,beta={BETA}").max_stable_lr
    return [ntkdyn.GD(lr=LR_FRACTION * gd), ntkdyn.HeavyBall(lr=LR_FRACTION * hb, beta=BETA)]


def checkpoints(steps: int, probe_steps: int) -> list[int]:
    """The record's checkpoints (module docstring), within ``steps``."""
    early = [k for k in EARLY_CHECKPOINTS if k < probe_steps] + [probe_steps]
    late = range(LATE_EVERY * (probe_steps // LATE_EVERY + 1), steps + 1, LATE_EVERY)
    return sorted({k for k in [*early, *late, steps] if k <= steps})


def measure(
    width: int,
    seed: int,
    rules: Sequence[ntkdyn.Rule],
    X: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    probe_steps: int,
) -> list[Row]:
    """Linearise one network, then per rule: predict, train, record (module docstring)."""
    net = MLP(X.shape[1], width, torch.Generator().manual_seed(seed))
    lin = ntkdyn.linearize(net, X, y, loss="cross-entropy")
    marks = checkpoints(steps, probe_steps)
    rows = []
    for rule in rules:
        prediction = lin.predict(rule, steps, outputs_at=[0])
        (run,) = ntkdyn.train(net, X, y, rule, steps, loss="cross-entropy", diagnostics=False)
        departure = validity.from_run(prediction, run.losses).departure_step
        record = validity.probe(lin, rule, steps, checkpoints=marks)
        assert record.kernel_drift is not None and record.pattern_flips is not None
        at_probe = int(np.searchsorted(record.checkpoints, probe_steps))
        warning = record.warning_step
        rows.append(
            Row(
                width=width,
                rule=rule.name,
                seed=seed,
                departure_step=departure,
                warning_step=warning,
                probe_warning_step=warning
                if warning is not None and warning <= probe_steps
                else None,
                drift_at_probe=float(record.kernel_drift[at_probe]),
                flips_at_probe=float(record.pattern_flips[at_probe]),
                drift_at_end=float(record.kernel_drift[-1]),
                flips_at_end=float(record.pattern_flips[-1]),
                exceeded=record.exceeded,
                ratio_at_end=float(run.losses[-1] / prediction.loss[-1]),
                # the engine's run and the probe's plain torch loop train the same network
                engine_vs_probe=float(np.max(np.abs(record.network_loss / run.losses - 1))),
            )
        )
    return rows


def run_study(
    widths: Sequence[int],
    seeds: Sequence[int],
    *,
    steps: int,
    n: int,
    probe_steps: int = PROBE_STEPS,
    progress: bool = False,
) -> tuple[list[Row], list[ntkdyn.Rule]]:
    """Every width x seed x rule; the rules' steps are fixed on the widest width, seed 0."""
    X, y = digits_task(n)
    widest = MLP(X.shape[1], max(widths), torch.Generator().manual_seed(seeds[0]))
    rules = study_rules(ntkdyn.linearize(widest, X, y, loss="cross-entropy"))
    rows: list[Row] = []
    for width in widths:
        for seed in seeds:
            start = time.perf_counter()
            rows += measure(width, seed, rules, X, y, steps, probe_steps)
            if progress:
                print(f"  width {width} seed {seed}: {time.perf_counter() - start:.1f} s")
    return rows, rules


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""

    def step(value: int | None) -> str:
        return "never" if value is None else str(value)

    lines = [
        "| width | optimizer | seed | departure step | warning, 30-step probe | warning, record "
        "| flagged first | kernel drift at 30 | ReLU flips at 30 | kernel drift at end "
        "| ReLU flips at end | L_net/L_pred at end |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        flagged = {None: "no departure", True: "yes", False: "**no**"}[r.flagged_first]
        lines.append(
            f"| {r.width} | {r.rule} | {r.seed} | {step(r.departure_step)} | "
            f"{step(r.probe_warning_step)} | {step(r.warning_step)} | {flagged} | "
            f"{r.drift_at_probe:.2%} | {r.flips_at_probe:.2%} | {r.drift_at_end:.2%} | "
            f"{r.flips_at_end:.2%} | {r.ratio_at_end:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, quick: bool | None = None) -> list[Row]:
    """Run the study and print the table (``--help`` for the options)."""
    if quick is None:
        quick = os.environ.get("NTKDYN_EXAMPLE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024, 4096, 8192])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--probe-steps", type=int, default=PROBE_STEPS)
    args = parser.parse_args(argv if argv is not None else [])
    if quick:
        args.widths, args.seeds, args.steps, args.n, args.probe_steps = [16, 1024], [0], 40, 20, 20
    start = time.perf_counter()
    rows, rules = run_study(
        args.widths,
        args.seeds,
        steps=args.steps,
        n=args.n,
        probe_steps=args.probe_steps,
        progress=True,
    )
    print(f"\nn = {args.n} digits, {args.steps} steps, rules: {', '.join(r.spec for r in rules)}")
    print(table(rows))
    gap = max(r.engine_vs_probe for r in rows)
    print(f"\nlargest |probe loss / engine loss - 1| over all runs and steps: {gap:.1e}")
    print(
        f"\n{time.perf_counter() - start:.0f} s on {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
