"""The ``reproduce``, ``sweep``, ``report`` and ``export`` subcommands of ``ntkdyn``.

``ntkdyn.cli.build_parser`` calls :func:`register`. Each command validates its input before
writing anything and raises ValueError naming the field; ``cli.main`` prints that as one line
and exits 2. This module imports nothing heavy at import time (the parser is built for every
``ntkdyn`` call).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DEFAULT_OUT", "register"]

#: Where ``ntkdyn reproduce`` writes unless ``--out`` is given.
DEFAULT_OUT = "ntkdyn-out"
_PRESETS = ("quick", "paper", "theory")


def register(subparsers) -> None:
    """Add the experiment subcommands to an argparse ``add_subparsers`` object."""
    p = subparsers.add_parser(
        "reproduce", help="run a preset (the paper's experiments) and write the report"
    )
    p.add_argument(
        "--preset",
        choices=_PRESETS,
        default="quick",
        help="quick (default, a few minutes on a CPU) | paper | theory",
    )
    p.add_argument(
        "--out", default=DEFAULT_OUT, help=f"results directory (default ./{DEFAULT_OUT})"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--dtype", choices=["float32", "float64"], default=None)
    p.add_argument("--data", default=None, help="dataset override, e.g. mnist:PATH or digits")
    p.add_argument("--resume", action="store_true", help="keep finished runs of DIR")
    p.set_defaults(func=_cmd_reproduce)

    p = subparsers.add_parser("sweep", help="run the runs of a TOML config and write the report")
    p.add_argument("config", help="CONFIG.toml")
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--resume", action="store_true", help="keep finished runs of DIR")
    p.add_argument("--no-report", action="store_true", help="only train and store the runs")
    p.set_defaults(func=_cmd_sweep)

    p = subparsers.add_parser("report", help="rebuild the report of a results directory")
    p.add_argument("dir", help="results directory (holds results.sqlite)")
    p.set_defaults(func=_cmd_report)

    p = subparsers.add_parser("export", help="export a results store to CSV or Parquet")
    p.add_argument("dir", help="results directory (holds results.sqlite)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--to", default=None, help="output folder (default: DIR)")
    p.set_defaults(func=_cmd_export)


# --------------------------------------------------------------------------------------------
# Commands.


def _cmd_reproduce(args) -> int:
    from .presets import get_preset

    config = get_preset(args.preset, data=args.data, dtype=args.dtype, device=args.device)
    return _sweep_and_report(config, args.out, resume=args.resume, report=True)


def _cmd_sweep(args) -> int:
    from .config import load_config

    path = Path(args.config)
    if not path.is_file():
        raise ValueError(f"`CONFIG` {args.config!r} is not a file")
    config = load_config(path)
    return _sweep_and_report(config, args.out, resume=args.resume, report=not args.no_report)


def _cmd_report(args) -> int:
    out = _results_dir(args.dir)
    _build_report(out)
    return 0


def _cmd_export(args) -> int:
    from .store import Store

    out = _results_dir(args.dir)
    target = Path(args.to) if args.to is not None else out
    if target.exists() and not target.is_dir():
        raise ValueError(f"`--to` {str(target)!r} is not a directory")
    with Store(out, readonly=True) as store:
        paths = store.export(target, format=args.format)
    for path in paths:
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------
# Shared pieces.


def _results_dir(text: str) -> Path:
    from .store import STORE_NAME

    out = Path(text)
    if not (out / STORE_NAME).is_file():
        raise ValueError(f"`DIR` {text!r} holds no {STORE_NAME} (run `ntkdyn sweep` first)")
    return out


def _sweep_and_report(config, out, *, resume: bool, report: bool) -> int:
    from .sweep import run_sweep

    result = run_sweep(config, out, resume=resume)
    parts = [f"{result.trained} runs trained"]
    if result.skipped:
        parts.append(f"{result.skipped} already finished")
    if result.diverged:
        parts.append(f"{result.diverged} diverged")
    print(f"stored {result.total} runs in {result.store} ({', '.join(parts)}; "
          f"{result.elapsed:.1f} s)")  # fmt: skip
    if report:
        _build_report(Path(out))
    return 0


def _build_report(out: Path) -> None:
    from ..report import build_report

    build_report(out)
    html, summary = out / "report.html", out / "summary.json"
    print(f"report: {html.resolve()}")
    if summary.is_file():
        _print_claims(json.loads(summary.read_text()))


def _print_claims(summary: dict) -> None:
    claims = summary.get("claims") or []
    if not claims:
        return
    print("claims:")
    width = max(len(str(c.get("id", ""))) for c in claims)
    for claim in claims:
        verdict = str(claim.get("verdict", "?"))
        line = f"  {claim.get('id', '')!s:<{width}}  {verdict:<12}  {claim.get('statement', '')}"
        print(line.rstrip())
