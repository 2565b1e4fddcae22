"""A user's network from ``MODULE:FACTORY`` and the labels each loss needs (``ntkdyn predict``
and ``ntkdyn kernel --model``).

``MODULE`` is an importable module name (imported with the current directory on the path) or
the path of a ``.py`` file; ``FACTORY`` names a callable in it (dotted names reach into
classes). The factory is called with the keywords it declares among ``input_dim`` (the data's
``d``) and ``outputs`` (the outputs per row the loss needs), with all of them when it takes
``**kwargs``, and with no arguments otherwise; torch's global generator is seeded with ``seed``
for the call and restored afterwards. It must return a ``torch.nn.Module`` that maps ``(n, d)``
inputs to ``(n,)`` or ``(n, outputs)``.

Every failure is a ValueError naming the option (``field``) in backticks, with what went wrong
(the exception the user's code raised, by type and first line), never a traceback.

Labels (:func:`loss_labels`): squared losses take the data's labels as one output; the logistic
loss needs labels ``+-1`` (one output); cross-entropy numbers the distinct label values in
ascending order ``0..C-1`` (digits keep their digit order, ``+-1`` becomes ``0, 1``) and needs
``C`` outputs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validate import output_width
from .conventions import LOSSES, SQUARED_LOSSES

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FACTORY_KEYWORDS", "build_model", "load_factory", "loss_labels", "output_count"]

#: The keywords a factory may declare, in the order documented.
FACTORY_KEYWORDS = ("input_dim", "outputs")


def _said(exc: BaseException) -> str:
    """An exception as ``Type: first line`` (one line whatever the user's code raised)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@contextmanager
def _on_path(folder: str) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration (a file's siblings stay importable),
    writing no ``__pycache__`` beside the user's files."""
    sys.path.insert(0, folder)
    no_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        yield
    finally:
        sys.dont_write_bytecode = no_bytecode
        try:
            sys.path.remove(folder)
        except ValueError:  # the user's code removed it itself
            pass


def _split(spec: str, field: str) -> tuple[str, str]:
    where, sep, name = spec.rpartition(":")  # the last ':' (a Windows drive keeps its own)
    if not sep or not where or not name:
        raise ValueError(
            f"`{field}` must be MODULE:FACTORY or PATH.py:FACTORY (e.g. nets.py:make_net), "
            f"got {spec!r}"
        )
    return where, name


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def _import_file(path: Path, field: str) -> Any:
    if not path.is_file():
        why = "is not a file" if path.exists() else "does not exist"
        raise ValueError(f"`{field}` file {str(path)!r} {why}")
    # a private module name per file, so that two files called nets.py do not collide
    name = f"_ntkdyn_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"`{field}` file {str(path)!r} cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        with _on_path(str(path.resolve().parent)):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise ValueError(f"`{field}` file {str(path)!r} failed to import: {_said(exc)}") from None
    return module


def _import_module(name: str, field: str) -> Any:
    try:
        with _on_path(os.getcwd()):
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ValueError(
                f"`{field}` module {name!r} cannot be found (not importable, and not a .py path)"
            ) from None
        raise ValueError(f"`{field}` module {name!r} failed to import: {_said(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise ValueError(f"`{field}` module {name!r} failed to import: {_said(exc)}") from None


def load_factory(spec: str, *, field: str = "model") -> Callable[..., Any]:
    """The callable named by ``spec`` (module docstring), imported but not called."""
    where, name = _split(spec, field)
    module = _import_file(Path(where), field) if _is_path(where) else _import_module(where, field)
    target: Any = module
    for part in name.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"`{field}` {where!r} has no attribute {name!r}") from None
    if not callable(target):
        raise ValueError(f"`{field}` {spec!r} is not callable (of type {type(target).__name__})")
    return target


def _keywords(factory: Callable[..., Any], spec: str, field: str) -> tuple[str, ...]:
    """The documented keywords ``factory`` accepts; ValueError if it needs any other."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): call it without arguments
        return ()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return FACTORY_KEYWORDS
    accepted = tuple(
        k
        for k in FACTORY_KEYWORDS
        if any(p.name == k and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
    )
    required = [
        p.name
        for p in params
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in accepted
    ]
    if required:
        raise ValueError(
            f"`{field}` factory {spec!r} requires argument(s) {', '.join(required)}; it may "
            f"only require {' and '.join(FACTORY_KEYWORDS)} (or take no arguments)"
        )
    return accepted


def build_model(
    spec: str,
    *,
    input_dim: int,
    outputs: int,
    seed: int,
    field: str = "model",
    seed_field: str = "seed",
) -> nn.Module:
    """Load the factory of ``spec`` and call it under ``torch.manual_seed(seed)`` (module
    docstring); the global generator is restored afterwards."""
    import torch

    factory = load_factory(spec, field=field)
    values = {"input_dim": input_dim, "outputs": outputs}
    kwargs = {k: values[k] for k in _keywords(factory, spec, field)}
    with torch.random.fork_rng(devices=[]):
        try:
            torch.manual_seed(seed)
        except (ValueError, RuntimeError, OverflowError):
            raise ValueError(f"`{seed_field}` must be a 64-bit integer, got {seed}") from None
        try:
            net = factory(**kwargs)
        except (Exception, SystemExit) as exc:
            raise ValueError(f"`{field}` factory {spec!r} raised {_said(exc)}") from None
    if not isinstance(net, torch.nn.Module):
        raise ValueError(
            f"`{field}` factory {spec!r} returned {type(net).__name__}, not a torch.nn.Module"
        )
    return net


def output_count(net: nn.Module, X: np.ndarray, spec: str, *, field: str = "model") -> int:
    """Outputs per row of ``net`` on the rows ``X`` (evaluated on a float64 copy, no
    gradients); ValueError naming ``field`` if it raises or does not map rows to rows."""
    import copy

    import torch

    try:
        probe = copy.deepcopy(net).to(torch.float64)
        with torch.no_grad():
            out = probe(torch.tensor(np.array(X), dtype=torch.float64))
    except (Exception, SystemExit) as exc:
        raise ValueError(
            f"`{field}` {spec!r} fails on inputs of shape {tuple(X.shape)}: {_said(exc)}"
        ) from None
    return output_width(out, X.shape[0], field, f"its inputs ({spec!r})")


def loss_labels(
    loss: str, y: np.ndarray, data: str, *, field: str = "loss"
) -> tuple[np.ndarray, int]:
    """The labels ``loss`` trains on and the outputs per row it needs (module docstring).

    Returns ``(labels, C)``: ``y`` itself and 1 for squared losses and the logistic loss,
    integer classes ``0..C-1`` and their count for cross-entropy. ValueError naming ``field``
    when the data's labels do not suit the loss.
    """
    if loss not in LOSSES:
        raise ValueError(f"`{field}` must be one of {', '.join(LOSSES)}, got {loss!r}")
    y = np.asarray(y, dtype=np.float64)
    if loss in SQUARED_LOSSES:
        return y, 1
    values = np.unique(y)
    if loss == "logistic":
        if not np.all(np.isin(values, (-1.0, 1.0))):
            raise ValueError(
                f"`{field}` logistic needs labels +1/-1; {data!r} has {_listing(values)} "
                "(a digits pair: digits:classes=A/B)"
            )
        return y, 1
    if not np.all(values == np.round(values)):
        raise ValueError(
            f"`{field}` cross-entropy needs integer class labels; {data!r} has {_listing(values)}"
        )
    if values.size < 2:
        raise ValueError(f"`{field}` cross-entropy needs two or more classes; {data!r} has one")
    return np.searchsorted(values, y).astype(np.int64), int(values.size)


def _listing(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:6])
    return f"labels {shown}{', ...' if values.size > 6 else ''} ({values.size} distinct)"
