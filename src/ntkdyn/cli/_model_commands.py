"""``ntkdyn kernel --model`` and ``ntkdyn predict --model``: a user's network
(``ntkdyn._factory``) through ``ntkdyn.linearize``.

``kernel`` prints the spectrum of the network's empirical NTK at initialisation and the largest
stable lr of every optimizer family on its effective kernel; ``predict`` writes the exact loss
curve of the linearised network (cut at the float64 floor) and, beside it, its outputs on the
training rows (and on the held-out rows of ``--test-fraction``) in long form.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import UsageError
from ._theory_common import (
    check_out_path,
    check_step,
    csv_text,
    floor_note,
    load_data,
    print_json,
    print_stability,
    write_text,
)

if TYPE_CHECKING:
    from ..function_space import FunctionPrediction
    from ..linearized import Linearized
    from ..optim import LinearRule

__all__ = ["DEFAULT_OUTPUTS_AT", "kernel_with_model", "outputs_path", "predict_with_model"]

#: Outputs are written at about this many evenly spaced steps (plus step 0) by default.
DEFAULT_OUTPUTS_AT = 100


@dataclass(frozen=True)
class _Setup:
    """The data, the network and its linearisation, ready for a command."""

    data: Any  # ntkdyn.data.Dataset, all rows
    train: np.ndarray  # row indices trained on
    test: np.ndarray  # held-out row indices (empty without --test-fraction)
    lin: Linearized
    what: str  # how the kernel is named in the output


def _refuse(args: argparse.Namespace, flags: tuple[str, ...]) -> None:
    for flag in flags:
        if getattr(args, flag[2:]) is not None:
            raise UsageError(f"`{flag}` does not apply with `--model` (its network is the model)")


def _split(n: int, fraction: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows: a random ``fraction`` of the rows, drawn with ``seed``."""
    rows = np.arange(n)
    if fraction is None:
        return rows, rows[:0]
    held = round(fraction * n)
    if not 1 <= held <= n - 1:
        raise UsageError(
            f"`--test-fraction` {fraction:g} of {n} rows leaves {held} test and {n - held} "
            "training rows; each needs at least one"
        )
    test = np.sort(np.random.default_rng(seed).choice(n, size=held, replace=False))
    return np.setdiff1d(rows, test), test


def _setup(args: argparse.Namespace, *, test_fraction: float | None) -> _Setup:
    from .._budget import check_fits, kernel_bytes
    from .._factory import build_model, loss_labels, output_count
    from ..linearized import linearize

    data = load_data(args)
    labels, outputs = loss_labels(args.loss, data.y, data.name, field="--loss")
    structure = args.structure or "full"
    side = data.n * outputs if structure == "full" else data.n
    blocks = outputs if structure == "block-diagonal" else 1
    check_fits(
        "--structure",
        structure,
        f"the kernel of {data.n} rows x {outputs} outputs",
        kernel_bytes(side, blocks=blocks),
        "use --structure trace, or fewer rows with --n",
    )
    net = build_model(
        args.model,
        input_dim=data.d,
        outputs=outputs,
        seed=args.seed,
        field="--model",
        seed_field="--seed",
    )
    got = output_count(net, data.X[:2], args.model, field="--model")
    if got != outputs:
        raise UsageError(
            f"`--model` {args.model!r} gives {got} output(s) per row; the {args.loss} loss on "
            f"{data.name!r} needs {outputs} (the factory is called with outputs={outputs} "
            "when it takes that keyword)"
        )
    train, test = _split(data.n, test_fraction, args.data_seed)
    lin = linearize(
        net,
        np.array(data.X[train]),
        labels[train],
        loss=args.loss,
        X_test=np.array(data.X[test]) if test.size else None,
        structure=structure,
    )
    what = f"empirical NTK of {args.model} (seed {args.seed}, {outputs} output(s), {structure})"
    return _Setup(data, train, test, lin, what)


def _effective(lin: Linearized) -> tuple[np.ndarray, float, str | None]:
    """Eigenvalues of the effective kernel, its factor on ``K`` and, for a non-squared loss,
    the formula of the curvature bound that factor is (``Linearized.effective_eigenvalues``)."""
    return lin.effective_eigenvalues()


# --------------------------------------------------------------------------------------------
# ntkdyn kernel --model


def kernel_with_model(args: argparse.Namespace) -> int:
    """Spectrum of the network's empirical NTK and the stable steps on it."""
    from ..dynamics import optimal_parameters, stability, stability_table
    from ..kernel_summary import NesterovCrossover
    from ..optim import GD, HeavyBall, NesterovTorch

    _refuse(args, ("--depth", "--width"))
    s = _setup(args, test_fraction=None)
    K_eff, factor, bound = _effective(s.lin)
    if args.lr is not None and bound is not None:
        raise UsageError(f"`--lr` (the Nesterov crossover) needs a squared loss, not {args.loss}")
    raw = K_eff / factor
    lmin, lmax = float(raw[0]), float(raw[-1])
    rows = stability_table(K_eff)
    optimal = optimal_parameters(K_eff) if bound is None else None
    crossover = None
    if args.lr is not None:
        nag = stability(K_eff, NesterovTorch(args.lr, r=args.r))
        crossover = NesterovCrossover(
            args.lr, args.r, nag.h_min, nag.crossover_step, nag.crossover_loss
        )
    n, C = s.lin.kernel.shape
    if args.json:
        payload: dict[str, Any] = {
            "data": s.data.name,
            "n": n,
            "d": s.data.d,
            "kernel": s.what,
            "model": args.model,
            "seed": args.seed,
            "outputs": C,
            "structure": s.lin.kernel.structure,
            "lambda_min": lmin,
            "lambda_max": lmax,
            "condition": lmax / lmin if lmin > 0 else float("inf"),
            "loss": args.loss,
            "loss_factor": factor,
            "curvature_bound": bound,
            "stability": [
                {
                    "optimizer": r.label,
                    "max_stable_lr": r.max_stable_lr,
                    "max_stable_h": r.max_stable_h,
                    "bound": r.bound,
                }
                for r in rows
            ],
        }
        if optimal is not None:
            o = optimal  # keyed by the rules' own names, as ntkdyn kernel without --model
            payload["optimal"] = {
                GD.name: {"lr": o.gd_lr, "rate": o.gd_rate},
                HeavyBall.name: {"lr": o.hb_lr, "beta": o.hb_beta, "rate": o.hb_rate},
            }
        if crossover is not None:
            from dataclasses import asdict

            payload["nesterov_crossover"] = asdict(crossover)
        print_json(payload)
        return 0
    print(f"{s.what} on {s.data.name}: n = {n}, d = {s.data.d}")
    condition = lmax / lmin if lmin > 0 else float("inf")
    print(f"  lambda_min = {lmin:.6g}   lambda_max = {lmax:.6g}   condition = {condition:.6g}")
    if bound is None:
        print(f"  largest stable lr with the {args.loss} loss (K_eff = {factor:.6g} K):")
    else:
        print(
            f"  largest stable lr with the {args.loss} loss, a bound (K_eff = K x {bound} = "
            f"{factor:.6g} K, its steepest curvature):"
        )
    print_stability(rows, optimal, crossover)
    return 0


# --------------------------------------------------------------------------------------------
# ntkdyn predict --model


def outputs_path(out: Path) -> Path:
    """Where ``predict --model`` writes the outputs: ``F.csv`` -> ``F.outputs.csv``."""
    return out.with_suffix(".outputs.csv")


def predict_with_model(args: argparse.Namespace, rule: LinearRule, out: Path) -> int:
    """Loss curve and outputs of the linearised network trained by ``rule``."""
    _refuse(args, ("--width",))
    side = outputs_path(out)
    check_out_path(side)
    s = _setup(args, test_fraction=args.test_fraction)
    K_eff, _, bound = _effective(s.lin)
    check_step(K_eff, rule, bound=bound, strict=args.strict)
    at = args.outputs_at if args.outputs_at is not None else DEFAULT_OUTPUTS_AT
    record = None
    if args.probe:
        from ..validity import check

        record = check(s.lin, rule, min(args.probe, max(args.steps, 1)), warn=False)
    p = s.lin.predict(rule, args.steps, outputs_at=at)
    keep = p.loss.size if p.floor_step is None else p.floor_step + 1
    columns: dict[str, Any] = {"step": np.arange(keep), "loss": p.loss[:keep]}
    if args.ode:
        spec = rule.ode()
        assert spec is not None  # cmd_predict refused rules without one
        times = spec.times(rule.lr, np.arange(keep))
        columns["time"], columns["ode_loss"] = times, s.lin.ode(rule, times).loss
    write_text(out, csv_text(columns))
    write_text(side, _outputs_csv(p, s.train, s.test), "--out")
    n, C = s.lin.kernel.shape
    held = f", {s.test.size} held-out rows" if s.test.size else ""
    print(
        f"wrote {args.out} and {side}: {rule.spec}, {args.steps} steps, {args.loss} loss "
        f"{p.loss[0]:.6g} -> {p.loss[keep - 1]:.6g}; outputs of {n} rows x {C} at "
        f"{p.output_steps.size} steps{held}"
    )
    if p.floor_step is not None:
        print(floor_note(p.floor_step, p.floor, float(p.loss[-1])))
    if record is not None:
        if record.holds:
            print(f"validity probe: {record.summary()}")
        else:
            print(f"ntkdyn: warning: {record.summary()}", file=sys.stderr)
    return 0


def _outputs_csv(p: FunctionPrediction, train: np.ndarray, test: np.ndarray) -> str:
    """Long form ``split, step, row, output, value``: ``row`` is the data row (of the rows
    loaded), ``split`` is ``train`` or ``test``."""
    parts: list[tuple[str, np.ndarray, np.ndarray]] = [("train", train, p.outputs)]
    if p.test_outputs is not None:
        parts.append(("test", test, p.test_outputs))
    columns: dict[str, list[Any]] = {k: [] for k in ("split", "step", "row", "output", "value")}
    for split, rows, values in parts:
        k, n, C = values.shape
        columns["split"] += [split] * (k * n * C)
        columns["step"] += np.repeat(p.output_steps, n * C).tolist()
        columns["row"] += np.tile(np.repeat(rows, C), k).tolist()
        columns["output"] += np.tile(np.arange(C), k * n).tolist()
        columns["value"] += values.reshape(-1).tolist()
    return csv_text(columns, integers=("step", "row", "output"))
