"""``ntkdyn kernel``, ``predict`` and ``rates``: parse, call one library function, print.

The library is imported inside each command, so that building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import UsageError

__all__ = ["cmd_kernel", "cmd_predict", "cmd_rates"]


def _load(args: argparse.Namespace):
    from .._budget import check_fits, kernel_bytes
    from ..data import load_dataset

    if args.n is not None:  # before the data is made: a huge n fails at once, not after minutes
        what = "the n x n kernel and its eigendecomposition"
        check_fits("--n", args.n, what, kernel_bytes(args.n), "lower --n")
    data = load_dataset(args.data, n=args.n, seed=args.data_seed)
    check_fits(
        "--data",
        args.data,
        f"the kernel of its {data.n} rows",
        kernel_bytes(data.n),
        "choose fewer rows with --n",
    )
    return data


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def _print_json(payload: Mapping[str, Any]) -> None:
    print(json.dumps(payload, indent=2, default=_json_default))


# --------------------------------------------------------------------------------------------
# ntkdyn kernel


def cmd_kernel(args: argparse.Namespace) -> int:
    from ..kernel_summary import kernel_summary

    s = kernel_summary(
        _load(args),
        depth=args.depth,
        width=args.width,
        seed=args.seed,
        loss=args.loss,
        nesterov_lr=args.lr,
        nesterov_r=args.r,
    )
    if args.json:
        _print_json(s.to_dict())
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
    print(f"    {'optimizer':<28} {'max lr':>12} {'max h':>9}  bound")
    for r in s.stability:
        print(f"    {r.label:<28} {r.max_stable_lr:>12.6g} {r.max_stable_h:>9.6g}  {r.bound}")
    o = s.optimal
    print(f"  optimal GD: lr = {o.gd_lr:.6g}, error factor per step {o.gd_rate:.6g}")
    print(
        f"  optimal HB: lr = {o.hb_lr:.6g}, beta = {o.hb_beta:.6g}, "
        f"error factor per step {o.hb_rate:.6g}"
    )
    if s.nesterov_crossover is not None:
        x = s.nesterov_crossover
        print(
            f"  scheduled Nesterov (r = {x.r:g}, lr = {x.lr:g}, h0 = {x.h0:.3g}): "
            f"linear after step ~{x.step:.4g}, at L/L0 ~ {x.loss_rel:.3g}"
        )
    return 0


# --------------------------------------------------------------------------------------------
# ntkdyn predict


def cmd_predict(args: argparse.Namespace) -> int:
    from .._io import atomic_write_text
    from ..optim import parse
    from ..prediction import predict_from_network

    out = Path(args.out)
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if out.is_dir() or blocked is not None:  # say so before the prediction, not after
        why = "is a directory" if out.is_dir() else f"is under {str(blocked)!r}, a file"
        raise UsageError(f"`--out` {args.out!r} {why}; give the path of a CSV file")
    rule = parse(args.optimizer)
    if not rule.is_linear:
        raise UsageError(f"`--optimizer` {rule.name} has no linear prediction (train it instead)")
    if args.ode and rule.ode() is None:
        raise UsageError(f"`--ode`: {rule.name} has no limiting ODE")
    from .._budget import check_fits, curve_bytes

    check_fits(
        "--steps", args.steps, "the predicted curves", curve_bytes(args.steps), "use fewer --steps"
    )
    data = _load(args)
    model = None
    if args.width is not None:  # H(0) and e0 of this network; else H^inf and e0 = -y
        from ..models import seeded_network

        model = seeded_network(data.d, args.width, seed=args.seed)
    prediction = predict_from_network(data, args.loss, rule, args.steps, model=model, ode=args.ode)
    curves = prediction.curves
    columns = {"step": curves.steps, "loss": curves.loss}
    if args.ode:
        assert curves.times is not None and curves.ode_loss is not None  # ode=True fills them
        columns["time"], columns["ode_loss"] = curves.times, curves.ode_loss
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, _csv_text(columns))
    except OSError as exc:
        raise UsageError(f"`--out` {args.out!r} cannot be written: {exc.strerror}") from None
    print(
        f"wrote {args.out}: {rule.spec}, {args.steps} steps, {args.loss} loss "
        f"{curves.loss[0]:.6g} -> {curves.loss[-1]:.6g}"
    )
    return 0


def _csv_text(columns: Mapping[str, Any]) -> str:
    """Steps as integers, values as ``repr`` (round-trips every float64 exactly)."""
    import io

    keys = list(columns)
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer)
    w.writerow(keys)
    for row in zip(*(columns[k] for k in keys), strict=True):
        w.writerow(
            [int(v) if k == "step" else repr(float(v)) for k, v in zip(keys, row, strict=True)]
        )
    return buffer.getvalue()


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
        _print_json(payload)
        return 0
    print(f"{args.curve}: {fit.kind}")
    for key, value in payload.items():
        if key != "kind":
            print(f"  {key} = {_fmt(value)}")
    return 0
