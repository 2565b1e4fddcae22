"""The ``ntkdyn`` command: a thin shell over the library.

Every bad input becomes one line on stderr and exit code 2; success exits 0.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Bad command-line input (reported as one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)


# --------------------------------------------------------------------------------------------
# Shared pieces.


def _loss_factor(loss: str, n: int) -> float:
    """c in loss = c/2 sum e^2: half-sum c = 1, torch MSELoss(mean) c = 2/n (docs/mathematics.md 0)."""
    return 1.0 if loss == "half-sum" else 2.0 / n


def _load(args):
    from .data import load_dataset

    return load_dataset(args.data, n=args.n, seed=args.data_seed)


def _theory_net(data, width: int, seed: int):
    import torch

    from .models import TwoLayerReLU

    gen = torch.Generator().manual_seed(seed)
    return TwoLayerReLU(data.d, width, parameterization="theory", generator=gen)


def _positive_int(name):
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{name}` must be an integer, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"`{name}` must be > 0, got {value}")
        return value

    return convert


def _nonneg_int(name):
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{name}` must be an integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"`{name}` must be >= 0, got {value}")
        return value

    return convert


def _positive_float(name):
    def convert(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{name}` must be a number, got {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"`{name}` must be a finite number > 0, got {text}")
        return value

    return convert


def _add_data_args(p):
    p.add_argument(
        "--data", required=True, help="synthetic | gaussian | digits[:opts] | mnist:PATH | csv:PATH"
    )
    p.add_argument("--n", type=_positive_int("--n"), default=None, help="number of rows")
    p.add_argument("--data-seed", type=int, default=0, help="seed of generated/subsampled data")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def _print_json(payload) -> None:
    print(json.dumps(payload, indent=2, default=_json_default))


# --------------------------------------------------------------------------------------------
# ntkdyn kernel


def _cmd_kernel(args) -> int:
    from .dynamics.stability import stability, stability_table
    from .kernels import deep_relu_ntk, empirical_ntk, spectrum, two_layer_gram
    from .optim import GD, NesterovTorch

    data = _load(args)
    if args.depth is None:
        H = two_layer_gram(data.X, layer="first")
        what = "H^inf (two-layer, first layer trained)"
    else:
        H = deep_relu_ntk(data.X, args.depth)
        what = f"deep ReLU NTK (depth {args.depth})"
    spec = spectrum(H)
    c = _loss_factor(args.loss, data.n)
    out = {
        "data": data.name,
        "n": data.n,
        "d": data.d,
        "kernel": what,
        "lambda_min": spec.lambda_min,
        "lambda_max": spec.lambda_max,
        "condition": spec.condition,
        "loss": args.loss,
        "loss_factor": c,
    }
    if args.width is not None:
        if args.depth is not None:
            import torch

            from .models import DeepReLU

            gen = torch.Generator().manual_seed(args.seed)
            net = DeepReLU(data.d, args.width, args.depth, generator=gen)
        else:
            net = _theory_net(data, args.width, args.seed)
        H0 = empirical_ntk(net, data.X)
        s0 = spectrum(H0)
        out["empirical"] = {
            "width": args.width,
            "seed": args.seed,
            "lambda_min": s0.lambda_min,
            "lambda_max": s0.lambda_max,
            "distance_fro": float(np.linalg.norm(H0 - H)),
            "distance_2": float(np.linalg.norm(H0 - H, 2)),
        }
    K_eigs = c * spec.eigenvalues
    rows = stability_table(K_eigs)
    out["stability"] = [
        {
            "optimizer": r.label,
            "max_stable_lr": r.max_stable_lr,
            "max_stable_h": r.max_stable_h,
            "bound": r.bound,
        }
        for r in rows
    ]
    best = stability(K_eigs, GD(1.0))
    out["optimal"] = {
        "gd": {"lr": best.gd_lr, "rate": best.gd_rate},
        "hb": {"lr": best.hb_lr, "beta": best.hb_beta, "rate": best.hb_rate},
    }
    if args.lr is not None:
        nag = stability(K_eigs, NesterovTorch(args.lr, r=args.r))
        out["nesterov_crossover"] = {
            "lr": args.lr,
            "r": args.r,
            "h0": nag.h_min,
            "step": nag.crossover_step,
            "loss_rel": nag.crossover_loss,
        }
    if args.json:
        _print_json(out)
        return 0
    print(f"{what} on {data.name}: n = {data.n}, d = {data.d}")
    print(
        f"  lambda_min = {spec.lambda_min:.6g}   lambda_max = {spec.lambda_max:.6g}   "
        f"condition = {spec.condition:.6g}"
    )
    if "empirical" in out:
        e = out["empirical"]
        print(
            f"  empirical Gram at init (width {e['width']}, seed {e['seed']}): "
            f"lambda_min = {e['lambda_min']:.6g}, lambda_max = {e['lambda_max']:.6g}, "
            f"||H(0) - H^inf||_F = {e['distance_fro']:.4g}, ||.||_2 = {e['distance_2']:.4g}"
        )
    print(f"  largest stable lr with the {args.loss} loss (K = {c:.6g} H):")
    print(f"    {'optimizer':<28} {'max lr':>12} {'max h':>9}  bound")
    for r in out["stability"]:
        print(
            f"    {r['optimizer']:<28} {r['max_stable_lr']:>12.6g} {r['max_stable_h']:>9.6g}  "
            f"{r['bound']}"
        )
    o = out["optimal"]
    print(f"  optimal GD: lr = {o['gd']['lr']:.6g}, error factor per step {o['gd']['rate']:.6g}")
    print(
        f"  optimal HB: lr = {o['hb']['lr']:.6g}, beta = {o['hb']['beta']:.6g}, "
        f"error factor per step {o['hb']['rate']:.6g}"
    )
    if "nesterov_crossover" in out:
        x = out["nesterov_crossover"]
        print(
            f"  scheduled Nesterov (r = {x['r']:g}, lr = {x['lr']:g}, h0 = {x['h0']:.3g}): "
            f"linear after step ~{x['step']:.4g}, at L/L0 ~ {x['loss_rel']:.3g}"
        )
    return 0


def _row_dict(row) -> dict:
    if isinstance(row, dict):
        return row
    from dataclasses import asdict, is_dataclass

    return asdict(row) if is_dataclass(row) else dict(row)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# --------------------------------------------------------------------------------------------
# ntkdyn predict


def _cmd_predict(args) -> int:
    from .dynamics import predict_discrete, predict_ode
    from .kernels import empirical_ntk, spectrum, two_layer_gram
    from .optim import parse

    rule = parse(args.optimizer)
    if not rule.is_linear:
        raise UsageError(f"`--optimizer` {rule.name} has no linear prediction (train it instead)")
    data = _load(args)
    if args.width is not None:
        import torch

        net = _theory_net(data, args.width, args.seed)
        H = empirical_ntk(net, data.X)
        with torch.no_grad():
            u0 = net(torch.tensor(data.X, dtype=torch.float64)).numpy()
        e0 = u0 - data.y
    else:
        H = two_layer_gram(data.X, layer="first")
        e0 = -data.y  # infinite-width convention: zero output at initialisation
    c = _loss_factor(args.loss, data.n)
    spec = spectrum(c * H, vectors=True)
    steps = np.arange(args.steps + 1)
    losses = predict_discrete(spec, e0, rule, args.steps)
    columns = {"step": steps, "loss": losses}
    ode = rule.ode()
    if args.ode:
        times = ode.times(rule.lr, steps)
        columns["time"] = times
        columns["ode_loss"] = predict_ode(spec, e0, rule, times)
    if args.loss == "mse":  # report torch's MSELoss(mean) = (2/n) * 1/2 ||e||^2
        for key in ("loss", "ode_loss"):
            if key in columns:
                columns[key] = columns[key] * c
    _write_csv(Path(args.out), columns)
    final = columns["loss"][-1]
    print(
        f"wrote {args.out}: {rule.spec}, {args.steps} steps, {args.loss} loss "
        f"{columns['loss'][0]:.6g} -> {final:.6g}"
    )
    return 0


def _write_csv(path: Path, columns: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    keys = list(columns)
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for row in zip(*(columns[k] for k in keys)):
            w.writerow([int(v) if k == "step" else repr(float(v)) for k, v in zip(keys, row)])
    tmp.replace(path)  # never leave a half-written curve behind


# --------------------------------------------------------------------------------------------
# ntkdyn rates


def _read_curve(path: Path):
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


def _cmd_rates(args) -> int:
    from .rates import fit_rate

    losses, times = _read_curve(Path(args.curve))
    fit = fit_rate(losses, times, floor_rel=args.floor)
    payload = _row_dict(fit)
    if args.json:
        _print_json(payload)
        return 0
    print(f"{args.curve}: {fit.kind}")
    for key, value in payload.items():
        if key != "kind":
            print(f"  {key} = {_fmt(value)}")
    return 0


# --------------------------------------------------------------------------------------------
# Parser and entry point.


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ntkdyn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("kernel", help="NTK Gram spectrum and stable learning rates")
    _add_data_args(p)
    p.add_argument(
        "--depth",
        type=_positive_int("--depth"),
        default=None,
        help="deep ReLU NTK with this many hidden layers (default: two-layer H^inf)",
    )
    p.add_argument(
        "--width",
        type=_positive_int("--width"),
        default=None,
        help="also the empirical Gram of a network of this width at init",
    )
    p.add_argument("--seed", type=int, default=0, help="network seed for --width")
    p.add_argument("--loss", choices=["half-sum", "mse"], default="half-sum")
    p.add_argument(
        "--lr",
        type=_positive_float("--lr"),
        default=None,
        help="also the scheduled-Nesterov crossover step at this lr",
    )
    p.add_argument(
        "--r",
        type=_positive_float("--r"),
        default=3.0,
        help="damping r for the crossover (default 3)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_kernel)

    p = sub.add_parser("predict", help="exact kernel prediction of a loss curve (no training)")
    _add_data_args(p)
    p.add_argument("--optimizer", required=True, help="e.g. hb:lr=0.1,beta=0.9")
    p.add_argument("--steps", type=_nonneg_int("--steps"), required=True)
    p.add_argument(
        "--width",
        type=_positive_int("--width"),
        default=None,
        help="use H(0) and e0 of a theory-mode network of this width",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", choices=["half-sum", "mse"], default="half-sum")
    p.add_argument("--ode", action="store_true", help="add the limiting ODE's curve")
    p.add_argument("--out", required=True, help="CSV file (columns step, loss[, time, ode_loss])")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("rates", help="classify a measured loss curve (linear or sublinear)")
    p.add_argument("curve", help="CSV with columns step (or time) and loss")
    p.add_argument("--floor", type=float, default=1e-20, help="relative rounding floor")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_rates)

    if importlib.util.find_spec("ntkdyn.experiments.commands") is not None:
        from .experiments.commands import register

        register(sub)  # reproduce, sweep, report, export
    return parser


def _version() -> str:
    from . import __version__

    return f"ntkdyn {__version__}"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # a user of the command needs the message, not the library line that raised it
    print(f"ntkdyn: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return args.func(args)
    except BrokenPipeError:  # e.g. `ntkdyn kernel --json | head`
        sys.stderr.close()
        return 0
    except (UsageError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ntkdyn: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ntkdyn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
