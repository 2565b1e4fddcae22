"""``ntkdyn reproduce``, ``sweep``, ``report`` and ``export``: parse, call the library, print.

Each command validates its input before writing anything; the library raises ValueError
naming the field, which ``ntkdyn.cli.main`` prints as one line with exit code 2. The library
is imported inside each command, so that building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["cmd_export", "cmd_report", "cmd_reproduce", "cmd_sweep"]


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..experiments.presets import get_preset

    config = get_preset(args.preset, data=args.data, dtype=args.dtype, device=args.device)
    return _sweep_and_report(config, args.out, resume=args.resume, report=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..experiments.config import load_config

    path = Path(args.config)
    if not path.is_file():
        raise ValueError(f"`CONFIG` {args.config!r} is not a file")
    config = load_config(path)
    return _sweep_and_report(config, args.out, resume=args.resume, report=not args.no_report)


def cmd_report(args: argparse.Namespace) -> int:
    _build_report(_results_dir(args.dir))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..experiments.store import Store

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
    from ..experiments.store import STORE_NAME

    out = Path(text)
    if not (out / STORE_NAME).is_file():
        raise ValueError(f"`DIR` {text!r} holds no {STORE_NAME} (run `ntkdyn sweep` first)")
    return out


def _sweep_and_report(config: Any, out: str, *, resume: bool, report: bool) -> int:
    from ..experiments.sweep import run_sweep

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


def _print_claims(summary: dict[str, Any]) -> None:
    claims = summary.get("claims") or []
    if not claims:
        return
    print("claims:")
    width = max(len(str(c.get("id", ""))) for c in claims)
    for claim in claims:
        verdict = str(claim.get("verdict", "?"))
        line = f"  {claim.get('id', '')!s:<{width}}  {verdict:<12}  {claim.get('statement', '')}"
        print(line.rstrip())
