"""The ``ntkdyn`` argument parser and its argument checkers.

Import-light on purpose: ``ntkdyn --help`` and ``--version`` build this parser and must not
import torch, scipy or matplotlib; the command modules import the library inside each command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..conventions import DTYPES, LOSSES
from ._errors import UsageError

__all__ = ["DEFAULT_OUT", "PRESETS", "build_parser", "nonneg_int", "positive_float", "positive_int"]

_DESCRIPTION = "The ``ntkdyn`` command: a thin shell over the library."
#: Where ``ntkdyn reproduce`` writes unless ``--out`` is given.
DEFAULT_OUT = "ntkdyn-out"
#: The presets of ``ntkdyn reproduce`` (ntkdyn.experiments.presets).
PRESETS = ("quick", "paper", "theory")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


# --------------------------------------------------------------------------------------------
# Argument checkers: each names its option in the message.


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{name}` must be an integer, got {text!r}") from None


def positive_int(name: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = _integer(name, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"`{name}` must be > 0, got {value}")
        return value

    return convert


def nonneg_int(name: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = _integer(name, text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"`{name}` must be >= 0, got {value}")
        return value

    return convert


def positive_float(name: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{name}` must be a number, got {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"`{name}` must be a finite number > 0, got {text}")
        return value

    return convert


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, help="synthetic | gaussian | digits[:opts] | mnist:PATH | csv:PATH"
    )
    p.add_argument("--n", type=positive_int("--n"), default=None, help="number of rows")
    p.add_argument("--data-seed", type=int, default=0, help="seed of generated/subsampled data")


# --------------------------------------------------------------------------------------------
# The parser.


def build_parser() -> argparse.ArgumentParser:
    """The ``ntkdyn`` parser; each subcommand's ``func`` takes the parsed args, returns 0."""
    from . import experiment_commands as exp
    from . import theory_commands as theory

    parser = _Parser(prog="ntkdyn", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_theory_commands(sub, theory)
    _add_experiment_commands(sub, exp)
    return parser


def _add_theory_commands(sub, theory) -> None:
    p = sub.add_parser("kernel", help="NTK Gram spectrum and stable learning rates")
    _add_data_args(p)
    p.add_argument(
        "--depth",
        type=positive_int("--depth"),
        default=None,
        help="deep ReLU NTK with this many hidden layers (default: two-layer H^inf)",
    )
    p.add_argument(
        "--width",
        type=positive_int("--width"),
        default=None,
        help="also the empirical Gram of a network of this width at init",
    )
    p.add_argument("--seed", type=int, default=0, help="network seed for --width")
    p.add_argument("--loss", choices=list(LOSSES), default="half-sum")
    p.add_argument(
        "--lr",
        type=positive_float("--lr"),
        default=None,
        help="also the scheduled-Nesterov crossover step at this lr",
    )
    p.add_argument(
        "--r",
        type=positive_float("--r"),
        default=3.0,
        help="damping r for the crossover (default 3)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=theory.cmd_kernel)

    p = sub.add_parser("predict", help="exact kernel prediction of a loss curve (no training)")
    _add_data_args(p)
    p.add_argument("--optimizer", required=True, help="e.g. hb:lr=0.1,beta=0.9")
    p.add_argument("--steps", type=nonneg_int("--steps"), required=True)
    p.add_argument(
        "--width",
        type=positive_int("--width"),
        default=None,
        help="use H(0) and e0 of a theory-mode network of this width",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", choices=list(LOSSES), default="half-sum")
    p.add_argument("--ode", action="store_true", help="add the limiting ODE's curve")
    p.add_argument("--out", required=True, help="CSV file (columns step, loss[, time, ode_loss])")
    p.set_defaults(func=theory.cmd_predict)

    p = sub.add_parser("rates", help="classify a measured loss curve (linear or sublinear)")
    p.add_argument("curve", help="CSV with columns step (or time) and loss")
    p.add_argument("--floor", type=float, default=1e-20, help="relative rounding floor")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=theory.cmd_rates)


def _add_experiment_commands(sub, exp) -> None:
    p = sub.add_parser(
        "reproduce", help="run a preset (the paper's experiments) and write the report"
    )
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default="quick",
        help="quick (default, a few minutes on a CPU) | paper | theory",
    )
    p.add_argument(
        "--out", default=DEFAULT_OUT, help=f"results directory (default ./{DEFAULT_OUT})"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--dtype", choices=list(DTYPES), default=None)
    p.add_argument("--data", default=None, help="dataset override, e.g. mnist:PATH or digits")
    p.add_argument("--resume", action="store_true", help="keep finished runs of DIR")
    p.set_defaults(func=exp.cmd_reproduce)

    p = sub.add_parser("sweep", help="run the runs of a TOML config and write the report")
    p.add_argument("config", help="CONFIG.toml")
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--resume", action="store_true", help="keep finished runs of DIR")
    p.add_argument("--no-report", action="store_true", help="only train and store the runs")
    p.set_defaults(func=exp.cmd_sweep)

    p = sub.add_parser("report", help="rebuild the report of a results directory")
    p.add_argument("dir", help="results directory (holds results.sqlite)")
    p.set_defaults(func=exp.cmd_report)

    p = sub.add_parser("export", help="export a results store to CSV or Parquet")
    p.add_argument("dir", help="results directory (holds results.sqlite)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--to", default=None, help="output folder (default: DIR)")
    p.set_defaults(func=exp.cmd_export)


def _version() -> str:
    from .._version import __version__

    return f"ntkdyn {__version__}"
