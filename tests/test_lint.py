"""Lint and type checks as tests: ``ruff check``, ``ruff format --check`` and ``mypy`` (configured in pyproject.toml)
must pass, and the public API must be annotated. Both tools are pinned in the ``test`` extra,
so these tests never skip."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import ntkdyn

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"`{' '.join(args)}` failed:\n{done.stdout}{done.stderr}"


def test_ruff() -> None:
    _run("ruff", "check", "src", "tests", "bench")


def test_ruff_format() -> None:
    _run("ruff", "format", "--check", "src", "tests", "bench")  # one layout, no hand alignment


def test_mypy() -> None:
    _run("mypy")  # the files and settings of [tool.mypy]


def _missing_annotations(func: object, where: str) -> list[str]:
    if not inspect.isfunction(func) or not func.__module__.startswith("ntkdyn"):
        return []  # e.g. the __init__ that typing gives a Protocol
    sig = inspect.signature(func)
    missing = [
        f"{where}({p.name})"
        for p in sig.parameters.values()
        if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
    ]
    if sig.return_annotation is inspect.Signature.empty and func.__name__ != "__init__":
        missing.append(f"{where} -> ?")
    return missing


def test_public_api_is_annotated() -> None:
    """Every function, method and parameter that a public module exports has annotations
    (mypy checks them; this test checks that there is something to check)."""
    missing = []
    for info in pkgutil.walk_packages(ntkdyn.__path__, "ntkdyn."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            missing += _missing_annotations(obj, f"{info.name}.{name}")
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                elif isinstance(member, property):
                    member = member.fget
                missing += _missing_annotations(member, f"{info.name}.{name}.{attr}")
    assert not missing, "unannotated public API:\n" + "\n".join(sorted(set(missing)))
