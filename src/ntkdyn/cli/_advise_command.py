"""``ntkdyn advise``: which optimizer reaches the target fastest, before training
(``ntkdyn.advisor.advise``), and with ``--verify`` the check by training
(``ntkdyn._advise_verify.verify_advice``).

Prints the ranked table; with ``--verify`` the predicted-against-measured table with each run's
validity summary; with ``--out DIR`` writes ``advice.json``, ``advice.csv`` and
``advice.png``. A refuted advice is a result (exit 0, said in the output), not an error.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import UsageError
from ._theory_common import csv_text, load_data, write_text

if TYPE_CHECKING:
    from .._advise_verify import Verification
    from ..advisor import Advice

__all__ = ["FILES", "cmd_advise"]

#: What ``--out DIR`` holds afterwards.
FILES = ("advice.json", "advice.csv", "advice.png")

#: The library's argument names and the options that set them, so that a library refusal
#: names the option the user typed.
_OPTIONS = {
    "data": "--data",
    "n": "--n",
    "data_seed": "--data-seed",
    "model": "--model",
    "width": "--width",
    "depth": "--depth",
    "seed": "--seed",
    "loss": "--loss",
    "target": "--target",
    "budget": "--budget",
    "families": "--families",
    "probe_steps": "--probe",
    "steps": "--budget",
    "device": "--device",
}


def cmd_advise(args: argparse.Namespace) -> int:
    from ..advisor import advise

    out = _out_dir(args.out)
    if args.model is not None:
        for flag in ("--width", "--depth"):
            if getattr(args, flag[2:]) is not None:
                raise UsageError(
                    f"`{flag}` does not apply with `--model` (its network is the model)"
                )
    else:
        from .theory_commands import _without_model

        _without_model(args, ())
    if args.depth is not None and args.width is None:
        raise UsageError("`--depth` needs `--width` (the depth of a network of that width)")
    if args.device is not None and not args.verify:
        raise UsageError("`--device` applies with `--verify` only (advice trains nothing)")
    with _named_options():
        data = load_data(args)
        advice = advise(
            data,
            model=args.model,
            width=args.width,
            depth=args.depth,
            seed=args.seed,
            loss=args.loss,
            target=args.target,
            budget=args.budget,
            families=args.families,
            probe_steps=args.probe,
        )
    print(advice.table())
    verification = None
    if args.verify:
        if advice.model is None:
            raise UsageError(
                "`--verify` needs a network to train: give `--width` or `--model` "
                "(without them the advice is for infinite width)"
            )
        from .._advise_verify import verify_advice

        with _named_options():
            checked = verify_advice(advice, device=args.device)
        print()
        print(checked.table())
        verification = checked
    if out is not None:
        _write(out, advice, verification)
        print(f"wrote {', '.join(str(out / f) for f in FILES)}")
    return 0


class _named_options:
    """Re-words a library ``ValueError`` naming an argument (```target```) to name its
    option (```--target```)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> None:
        if isinstance(exc, ValueError) and not isinstance(exc, UsageError):

            def option(match: re.Match[str]) -> str:
                return f"`{_OPTIONS.get(match.group(1), match.group(1))}`"

            raise UsageError(re.sub(r"`([a-z_]+)`", option, str(exc))) from None


def _out_dir(text: str | None) -> Path | None:
    """``--out`` checked before any work: a directory (created if missing), not a file."""
    if text is None:
        return None
    out = Path(text)
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"`--out` {text!r}: {str(blocked)!r} is a file; give a directory")
    return out


def _write(out: Path, advice: Advice, verification: Verification | None) -> None:
    payload: dict[str, Any] = dict(advice.as_dict())
    if verification is not None:
        payload["verification"] = verification.as_dict()
    write_text(out / "advice.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    write_text(out / "advice.csv", _csv(advice, verification))
    try:
        advice.figure(out / "advice.png")
    except OSError as exc:
        raise UsageError(f"`--out` {str(out)!r} cannot be written: {exc.strerror}") from None


def _csv(advice: Advice, verification: Verification | None) -> str:
    """One row per candidate; empty cells for what is unknown."""

    def cell(value: object) -> object:
        return "" if value is None else value

    rows = list(advice.candidates)
    columns: dict[str, list[object]] = {
        "rank": [cell(c.rank) for c in rows],
        "family": [c.family for c in rows],
        "optimizer": [c.rule.spec for c in rows],
        "lr": [c.rule.lr for c in rows],
        "lr_max": [c.lr_max for c in rows],
        "margin": [c.margin for c in rows],
        "predicted_steps": [cell(c.predicted_steps) for c in rows],
        "expected_error": [cell(c.expected_error) for c in rows],
        "holds": [str(c.holds).lower() for c in rows],
    }
    if verification is not None:
        runs = [verification.run_of(c) for c in rows]
        columns["measured_steps"] = [cell(r.measured_steps) for r in runs]
        columns["relative_error"] = [cell(r.relative_error) for r in runs]
        columns["run_holds"] = [str(r.holds).lower() for r in runs]
    integers = ("rank", "predicted_steps", "measured_steps")
    return csv_text(columns, integers=integers)
