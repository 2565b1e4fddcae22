"""``ntkdyn kernel``, ``predict`` and ``rates``: parse, call one library function, print.

The library is imported inside each command, so that building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

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

__all__ = ["cmd_kernel", "cmd_predict", "cmd_rates"]


# --------------------------------------------------------------------------------------------
# ntkdyn kernel


def cmd_kernel(args: argparse.Namespace) -> int:
    if args.model is not None:
        from ._model_commands import kernel_with_model

        return kernel_with_model(args)
    _without_model(args, ("--structure",))
    from ..kernel_summary import kernel_summary

    s = kernel_summary(
        load_data(args),
        depth=args.depth,
        width=args.width,
        seed=args.seed,
        loss=args.loss,
        nesterov_lr=args.lr,
        nesterov_r=args.r,
    )
    if args.json:
        print_json(s.to_dict())
        return 0
    print(f"{s.kernel} on {s.data}: n = {s.n}, d = {s.d}")
    print(
        f"  lambda_min = {s.lambda_min:.6g}   lambda_max = {s.lambda_max:.6g}   "
        f"condition = {s.condition:.6g}"
    )
    if s.empirical is not None:
        e = s.empirical
        print(
            f"  empirical Gram at init (width {e.width}, seed {e.seed}): "
            f"lambda_min = {e.lambda_min:.6g}, lambda_max = {e.lambda_max:.6g}, "
            f"||H(0) - H^inf||_F = {e.distance_fro:.4g}, ||.||_2 = {e.distance_2:.4g}"
        )
    print(f"  largest stable lr with the {s.loss} loss (K = {s.loss_factor:.6g} H):")
    print_stability(s.stability, s.optimal, s.nesterov_crossover)
    return 0


def _without_model(args: argparse.Namespace, flags: tuple[str, ...]) -> None:
    """Options of the ``--model`` path are errors without it; so are non-squared losses (the
    paper's network is predicted for the squared losses only)."""
    from ..conventions import SQUARED_LOSSES

    for flag in flags:
        if getattr(args, flag[2:].replace("-", "_")) is not None:
            raise UsageError(f"`{flag}` applies to a network given with `--model` only")
    if args.loss not in SQUARED_LOSSES:
        raise UsageError(
            f"`--loss` {args.loss} needs a network given with `--model`; the paper's "
            f"network is predicted for {' and '.join(SQUARED_LOSSES)}"
        )


# --------------------------------------------------------------------------------------------
# ntkdyn predict


def cmd_predict(args: argparse.Namespace) -> int:
    from .._budget import check_fits, curve_bytes
    from ..optim import NO_KERNEL_PREDICTION, LinearRule, parse

    out = Path(args.out)
    check_out_path(out)
    rule = parse(args.optimizer)
    if not isinstance(rule, LinearRule):  # the rules with a linear prediction
        raise UsageError(
            f"`--optimizer` {rule.name}: {NO_KERNEL_PREDICTION}; train it and fit its rate "
            "instead (docs/adaptive.md)"
        )
    if args.ode and rule.ode() is None:
        raise UsageError(f"`--ode`: {rule.name} has no limiting ODE")
    check_fits(
        "--steps", args.steps, "the predicted curves", curve_bytes(args.steps), "use fewer --steps"
    )
    if args.model is not None:
        from ._model_commands import predict_with_model

        return predict_with_model(args, rule, out)
    _without_model(args, ("--structure", "--test-fraction", "--outputs-at"))
    return _predict_paper_network(args, rule, out)


def _predict_paper_network(args: argparse.Namespace, rule, out: Path) -> int:
    """The paper's network: ``H^inf`` and ``e0 = -y``, or ``H(0)`` and ``e0`` with --width."""
    import numpy as np

    from ..function_space import floor_step, loss_floor
    from ..prediction import kernel_at_init, predict_curves

    data = load_data(args)
    model = None
    if args.width is not None:
        from ..models import seeded_network

        model = seeded_network(data.d, args.width, seed=args.seed)
    kernel = kernel_at_init(model, data, args.loss)
    check_step(kernel.eigenvalues, rule, bound=None, strict=args.strict)
    curves = predict_curves(kernel, rule, args.steps, ode=args.ode)
    assert kernel.e0 is not None  # kernel_at_init builds it from the residual
    scale = max(float(np.abs(data.y).max()), float(np.abs(kernel.e0 + data.y).max()))
    floor = loss_floor(kernel.loss_factor, data.n, scale)
    stop = floor_step(curves.loss, floor)
    keep = curves.steps.size if stop is None else stop + 1
    columns = {"step": curves.steps[:keep], "loss": curves.loss[:keep]}
    if args.ode:
        assert curves.times is not None and curves.ode_loss is not None  # ode=True fills them
        columns["time"], columns["ode_loss"] = curves.times[:keep], curves.ode_loss[:keep]
    write_text(out, csv_text(columns))
    print(
        f"wrote {args.out}: {rule.spec}, {args.steps} steps, {args.loss} loss "
        f"{curves.loss[0]:.6g} -> {curves.loss[keep - 1]:.6g}"
    )
    if stop is not None:
        print(floor_note(stop, floor, float(curves.loss[-1])))
    return 0


# --------------------------------------------------------------------------------------------
# ntkdyn rates


def _read_curve(path: Path):
    import numpy as np

    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"`CURVE` cannot be read: {path}: {exc.strerror}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise UsageError(f"`CURVE` {path} is empty")
    header = [h.strip().lower() for h in rows[0]]
    if "loss" not in header:
        raise UsageError(f"`CURVE` {path} needs a header with a `loss` column, got {rows[0]}")
    body = [r for r in rows[1:] if r]
    try:
        table = {h: np.array([float(r[i]) for r in body]) for i, h in enumerate(header)}
    except (ValueError, IndexError):
        raise UsageError(f"`CURVE` {path} has a non-numeric or short row") from None
    if len(body) < 3:
        raise UsageError(f"`CURVE` {path} has {len(body)} rows; at least 3 are needed")
    times = table.get("time", table.get("step"))
    return table["loss"], times


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def cmd_rates(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..rates import fit_rate

    losses, times = _read_curve(Path(args.curve))
    fit = fit_rate(losses, times, floor_rel=args.floor)
    payload = asdict(fit)
    if args.json:
        print_json(payload)
        return 0
    print(f"{args.curve}: {fit.kind}")
    for key, value in payload.items():
        if key != "kind":
            print(f"  {key} = {_fmt(value)}")
    return 0
