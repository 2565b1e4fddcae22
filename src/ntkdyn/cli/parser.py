"""The ``ntkdyn`` argument parser and its argument checkers.

Import-light on purpose: ``ntkdyn --help`` and ``--version`` build this parser and must not
import torch, scipy or matplotlib; the command modules import the library inside each command.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from functools import partial
from typing import NoReturn, TypeVar

from .._validate import finite_number, integer, unit_interval
from ..conventions import DTYPES, LOSSES
from ._errors import UsageError

__all__ = [
    "DEFAULT_OUT",
    "PRESETS",
    "STRUCTURES",
    "build_parser",
    "nonneg_int",
    "positive_float",
    "positive_int",
]

_DESCRIPTION = "The ``ntkdyn`` command: a thin shell over the library."
#: Where ``ntkdyn reproduce`` writes unless ``--out`` is given.
DEFAULT_OUT = "ntkdyn-out"
#: The presets of ``ntkdyn reproduce`` (ntkdyn.experiments.presets).
PRESETS = ("quick", "paper", "theory")
#: Kernel structures of ``--model`` (ntkdyn._kernel_operator.STRUCTURES, restated here so that
#: building the parser imports no NumPy; a test checks that the two agree).
STRUCTURES = ("full", "block-diagonal", "trace")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise UsageError(_name_the_field(message))


_INVALID = re.compile(r"^argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)$")
_REQUIRED = "the following arguments are required: "


def _name_the_field(message: str) -> str:
    """argparse's messages in the project's form: the option (or command) in backticks."""
    invalid = _INVALID.match(message)
    if invalid:
        name, value, allowed = invalid.groups()
        if name == "command":
            return f"`{value}` is not a command; choose from {allowed}"
        return f"`{name}` must be one of {allowed}, got {value!r}"
    checked = re.match(r"^argument \S+: (`.*)$", message)
    if checked:  # our own checker's message already names the option
        return checked.group(1)
    if message.startswith(_REQUIRED):
        names = [f"`{n.strip()}`" for n in message[len(_REQUIRED) :].split(",")]
        return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} required"
    return message


T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Argument checkers: each names its option in the message.


def _argument(
    flag: str, parse: Callable[[str], T], check: Callable[[str, object], T]
) -> Callable[[str], T]:
    """An argparse ``type``: ``parse`` the text, then ``check`` it (ntkdyn._validate)."""

    def convert(text: str) -> T:
        value: object
        try:
            value = parse(text)
        except ValueError:
            value = text  # the check refuses it with a message naming the flag
        try:
            return check(flag, value)
        except ValueError as exc:  # argparse prints an ArgumentTypeError's message as is
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def positive_int(flag: str) -> Callable[[str], int]:
    return _argument(flag, int, partial(integer, minimum=1))


def nonneg_int(flag: str) -> Callable[[str], int]:
    return _argument(flag, int, partial(integer, minimum=0))


def positive_float(flag: str) -> Callable[[str], float]:
    return _argument(flag, float, finite_number)


def _add_option(
    p: argparse.ArgumentParser,
    flag: str,
    checker: Callable[[str], Callable[[str], object]],
    default: object,
    description: str,
) -> None:
    """``--flag VALUE`` checked by ``checker(flag)`` (one of the three above)."""
    p.add_argument(flag, type=checker(flag), default=default, help=description)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, help="synthetic | gaussian | digits[:opts] | mnist:PATH | csv:PATH"
    )
    _add_option(p, "--n", positive_int, None, "number of rows")
    p.add_argument(
        "--data-seed",
        type=nonneg_int("--data-seed"),
        default=0,
        help="seed of generated/subsampled data",
    )


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
    _add_advise_command(sub)
    _add_experiment_commands(sub, exp)
    return parser


_LOSS_HELP = (
    "half-sum (default) | mse | with --model also logistic (labels +-1) and cross-entropy "
    "(classes: the distinct labels in ascending order)"
)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        metavar="MODULE:FACTORY",
        help="your network: MODULE (importable, or PATH.py) and a factory in it, called with "
        "the keywords it takes of input_dim and outputs, under torch.manual_seed(--seed)",
    )
    p.add_argument(
        "--structure",
        choices=list(STRUCTURES),
        default=None,
        help="kernel of a multi-output --model (default full)",
    )


def _add_theory_commands(sub, theory) -> None:
    p = sub.add_parser("kernel", help="NTK Gram spectrum and stable learning rates")
    _add_data_args(p)
    _add_model_args(p)
    depth_help = "deep ReLU NTK with this many hidden layers (default: two-layer H^inf)"
    _add_option(p, "--depth", positive_int, None, depth_help)
    width_help = "also the empirical Gram of a network of this width at init"
    _add_option(p, "--width", positive_int, None, width_help)
    p.add_argument("--seed", type=int, default=0, help="network seed for --width or --model")
    p.add_argument("--loss", choices=list(LOSSES), default="half-sum", help=_LOSS_HELP)
    _add_option(
        p, "--lr", positive_float, None, "also the scheduled-Nesterov crossover step at this lr"
    )
    _add_option(p, "--r", positive_float, 3.0, "damping r for the crossover (default 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=theory.cmd_kernel)

    p = sub.add_parser("predict", help="exact kernel prediction of a loss curve (no training)")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--optimizer", required=True, help="e.g. hb:lr=0.1,beta=0.9")
    p.add_argument("--steps", type=nonneg_int("--steps"), required=True)
    _add_option(
        p, "--width", positive_int, None, "use H(0) and e0 of a theory-mode network of this width"
    )
    p.add_argument("--seed", type=int, default=0, help="network seed for --width or --model")
    p.add_argument("--loss", choices=list(LOSSES), default="half-sum", help=_LOSS_HELP)
    p.add_argument("--ode", action="store_true", help="add the limiting ODE's curve")
    p.add_argument(
        "--test-fraction",
        type=_argument("--test-fraction", float, partial(unit_interval, closed_low=False)),
        default=None,
        help="with --model: hold out this share of the rows (drawn with --data-seed) and "
        "predict their outputs too",
    )
    _add_option(
        p,
        "--outputs-at",
        positive_int,
        None,
        "with --model: outputs at about N + 1 evenly spaced steps (default 100)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="an lr above the largest stable lr is an error, not a warning",
    )
    p.add_argument(
        "--probe",
        type=nonneg_int("--probe"),
        default=30,
        help="with --model: train the network itself for this many steps first and say "
        "whether it follows its kernel model (0: skip; default 30)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="CSV file (columns step, loss[, time, ode_loss]); with --model also "
        "FILE.outputs.csv (columns split, step, row, output, value)",
    )
    p.set_defaults(func=theory.cmd_predict)

    p = sub.add_parser("rates", help="classify a measured loss curve (linear or sublinear)")
    p.add_argument("curve", help="CSV with columns step (or time) and loss")
    p.add_argument(
        "--floor",
        type=_argument("--floor", float, unit_interval),
        default=1e-20,
        help="relative rounding floor",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=theory.cmd_rates)


def _families(text: str) -> tuple[str, ...]:
    """``--families gd,hb``: a non-empty comma list (the advisor checks the names)."""
    names = tuple(part.strip() for part in text.split(","))
    if not text.strip() or any(not name for name in names):
        raise argparse.ArgumentTypeError(
            f"`--families` must be a comma list of optimizer families such as gd,hb, got {text!r}"
        )
    return names


def _add_advise_command(sub) -> None:
    from ._advise_command import cmd_advise

    p = sub.add_parser(
        "advise", help="rank optimizers by predicted steps to a target loss (no training)"
    )
    _add_data_args(p)
    p.add_argument(
        "--model",
        default=None,
        metavar="MODULE:FACTORY",
        help="your network (as for predict --model); default: the paper's two-layer network",
    )
    _add_option(p, "--width", positive_int, None, "a theory-mode network of this width")
    _add_option(p, "--depth", positive_int, None, "with --width: a deep ReLU network")
    p.add_argument("--seed", type=int, default=0, help="network seed for --width or --model")
    p.add_argument("--loss", choices=list(LOSSES), default="half-sum", help=_LOSS_HELP)
    p.add_argument(
        "--target",
        type=_argument("--target", float, partial(unit_interval, closed_low=False)),
        default=1e-6,
        help="the target loss as a share of L0 (default 1e-6)",
    )
    _add_option(p, "--budget", positive_int, None, "most steps a candidate may take")
    p.add_argument(
        "--families",
        type=_families,
        default=None,
        help="e.g. gd,hb,nesterov-sc,nesterov,hom (default: every family)",
    )
    p.add_argument(
        "--probe",
        type=nonneg_int("--probe"),
        default=30,
        help="train the network this many steps per candidate to judge its kernel model "
        "(0: skip; default 30)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="train every candidate and print predicted against measured steps",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="with --verify")
    p.add_argument("--out", default=None, help="directory for advice.json, .csv and .png")
    p.set_defaults(func=cmd_advise)


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
    p.add_argument("--fresh", action="store_true", help="delete finished runs of DIR first")
    p.add_argument("--yes", action="store_true", help="run a config past the size limits")
    _add_run_options(p)
    p.set_defaults(func=exp.cmd_reproduce)

    p = sub.add_parser("sweep", help="run the runs of a TOML config and write the report")
    p.add_argument("config", help="CONFIG.toml")
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--resume", action="store_true", help="keep finished runs of DIR")
    p.add_argument("--fresh", action="store_true", help="delete finished runs of DIR first")
    p.add_argument("--no-report", action="store_true", help="only train and store the runs")
    p.add_argument("--yes", action="store_true", help="run a config past the size limits")
    _add_run_options(p)
    p.set_defaults(func=exp.cmd_sweep)

    p = sub.add_parser("merge", help="unite shard stores (sweep --shard i/N) into one store")
    p.add_argument("out", help="results directory to write (created if needed)")
    p.add_argument("dirs", nargs="+", metavar="SHARD_DIR", help="results directories of shards")
    p.add_argument("--no-report", action="store_true", help="only merge the stores")
    p.set_defaults(func=exp.cmd_merge)

    p = sub.add_parser("report", help="rebuild the report of a results directory")
    p.add_argument("dir", help="results directory (holds results.sqlite)")
    p.set_defaults(func=exp.cmd_report)

    p = sub.add_parser("export", help="export a results store to CSV or Parquet")
    p.add_argument("dir", help="results directory (holds results.sqlite)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--to", default=None, help="output folder (default: DIR)")
    p.set_defaults(func=exp.cmd_export)

    p = sub.add_parser("doctor", help="check a results store and salvage its intact runs")
    p.add_argument("dir", help="results directory (holds results.sqlite)")
    p.add_argument("--to", default=None, help="where to salvage (default: DIR/salvaged)")
    p.set_defaults(func=exp.cmd_doctor)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Where and how much of a sweep runs (docs/distributed.md)."""
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print runs, batches, memory per batch and an estimated time; train nothing",
    )
    p.add_argument("--backend", default="local", help="local (default) | dask")
    p.add_argument(
        "--workers", type=positive_int("--workers"), default=None, help="Dask: local workers"
    )
    p.add_argument("--scheduler", default=None, help="Dask: scheduler address (tcp://HOST:8786)")
    p.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=1,
        help="Dask: torch threads per worker process (default 1)",
    )
    p.add_argument("--shard", default=None, help="train only shard i of N (i/N); see merge")


def _version() -> str:
    from .._version import __version__

    return f"ntkdyn {__version__}"
