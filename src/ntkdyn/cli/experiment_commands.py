"""``ntkdyn reproduce``, ``sweep``, ``report``, ``export``, ``doctor``: parse, call, print.

Each command validates its input before writing anything; the library raises ValueError
naming the field, which ``ntkdyn.cli.main`` prints as one line with exit code 2. The library
is imported inside each command, so that building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "cmd_doctor",
    "cmd_export",
    "cmd_merge",
    "cmd_report",
    "cmd_reproduce",
    "cmd_sweep",
]


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..experiments.presets import get_preset

    config = get_preset(args.preset, data=args.data, dtype=args.dtype, device=args.device)
    return _sweep_and_report(config, args, report=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..experiments.config import load_config

    path = Path(args.config)
    if not path.is_file():
        raise ValueError(f"`CONFIG` {args.config!r} is not a file")
    config = load_config(path)
    return _sweep_and_report(config, args, report=not args.no_report)


def cmd_merge(args: argparse.Namespace) -> int:
    from ..experiments.merge import merge_stores

    result = merge_stores(args.dirs, args.out, say=_say)
    for line in result.lines():
        print(line)
    if not args.no_report:
        _build_report(Path(args.out))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    _build_report(_results_dir(args.dir))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..experiments.store import Store

    out = _results_dir(args.dir)
    target = Path(args.to) if args.to is not None else out
    if target.exists() and not target.is_dir():
        raise ValueError(f"`--to` {str(target)!r} is not a directory")
    with Store(out, readonly=True, check=True) as store:
        paths = store.export(target, format=args.format)
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check DIR's store: exit 0 when healthy; else a line per problem, the salvage, exit 2."""
    from ..experiments.doctor import doctor

    lines, healthy = doctor(_results_dir(args.dir), to=args.to)
    for line in lines:
        print(line)
    return 0 if healthy else 2


# --------------------------------------------------------------------------------------------
# Shared pieces.


def _results_dir(text: str) -> Path:
    from ..experiments.store import STORE_NAME

    out = Path(text)
    if not (out / STORE_NAME).is_file():
        raise ValueError(f"`DIR` {text!r} holds no {STORE_NAME} (run `ntkdyn sweep` first)")
    return out


def _say(line: str) -> None:
    print(f"[report] {line}", file=sys.stderr, flush=True)


def _backend(args: argparse.Namespace) -> Any:
    from ..experiments.sweep import Backend

    return Backend(
        args.backend, workers=args.workers, scheduler=args.scheduler, threads=args.threads
    )


def _sweep_and_report(config: Any, args: argparse.Namespace, *, report: bool) -> int:
    from ..experiments.sweep import run_sweep

    backend = _backend(args)  # refused (one line, exit 2) before anything else
    if args.dry_run:
        from ..experiments.estimate import dry_run

        print(dry_run(config, args.out, backend=backend, shard=args.shard, yes=args.yes).text())
        return 0
    # yes: a config past the size limits of ntkdyn.experiments.runs (check_size) runs anyway
    result = run_sweep(
        config,
        args.out,
        resume=args.resume,
        fresh=args.fresh,
        confirm_large=args.yes,
        backend=backend,
        shard=args.shard,
    )
    parts = [f"{result.trained} runs trained"]
    if result.deleted:
        parts.append(f"{result.deleted} finished runs deleted first (--fresh)")
    if result.skipped:
        parts.append(f"{result.skipped} already finished")
    if result.diverged:
        parts.append(f"{result.diverged} diverged")
    print(
        f"stored {result.total} runs in {result.store} ({', '.join(parts)}; {result.elapsed:.1f} s)"
    )
    if report:
        _build_report(Path(args.out))
    return 0


def _build_report(out: Path) -> None:
    from ..report import build_report

    build_report(out, say=_say)
    html, summary = out / "report.html", out / "summary.json"
    print(f"report: {html.resolve()}")
    if summary.is_file():
        _print_claims(json.loads(summary.read_text()))


def _print_claims(summary: dict[str, Any]) -> None:
    """Each claim with its verdict, the reason (measured numbers against the named
    tolerances) and its evidence per setting and width (median [range] over n seeds); then
    the notebook findings. report.html has the same with figures."""
    claims = summary.get("claims") or []
    if claims:
        print("claims (docs/verdicts.md):")
        for claim in claims:
            _print_verdict(claim, claim.get("statement", ""))
            if claim.get("hypothesis"):
                print(f"      tested: {claim['hypothesis']}")
            print(f"      why: {claim.get('reason', '')}")
            tol = ", ".join(f"{k} = {v}" for k, v in (claim.get("tolerances") or {}).items())
            if tol:
                print(f"      tolerances: {tol}")
            for setting, cells in _by_setting(claim.get("by_width") or []).items():
                print(f"      {setting}: {'; '.join(cells)}")
    if summary.get("claims_note"):
        print(summary["claims_note"])
    findings = summary.get("findings") or []
    if findings:
        print("findings of the authors' notebook (docs/paper.md):")
        for finding in findings:
            _print_verdict(finding, finding.get("statement", ""))


def _print_verdict(item: dict[str, Any], statement: str) -> None:
    print(f"  {item.get('id', '')!s}  {item.get('verdict', '?')!s:<15}  {statement}".rstrip())


def _by_setting(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """``m = 512: 47.7% [46.6, 51.5] (3)`` per width, grouped by setting."""
    out: dict[str, list[str]] = {}
    for row in rows:
        if row.get("median") is None:
            cell = f"m = {row['width']}: none of {row['n']} measurable"
        else:
            cell = (
                f"m = {row['width']}: {100 * row['median']:.1f}% "
                f"[{100 * row['low']:.1f}, {100 * row['high']:.1f}] ({row['n']})"
            )
        out.setdefault(str(row.get("setting", "")), []).append(cell)
    return out
