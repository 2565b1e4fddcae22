"""Field checks of config values; every message names the field path in backticks.

The generic checks (an integer, a choice) are ``ntkdyn._validate``'s, called with the path;
these are the config's own kinds of value (tables, key sets, string lists, data specs).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .._validate import choice

if TYPE_CHECKING:
    from ..data import Dataset


def unknown_keys(where: str, table: Mapping, allowed: Collection[str]) -> None:
    """Reject keys not in ``allowed`` (with a did-you-mean hint)."""
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            path = f"{where}.{key}" if where else str(key)
            raise ValueError(f"`{path}` is not a known key{hint}; allowed keys: {list(allowed)}")


def table(where: str, value: object) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"`{where}` must be a table, got {value!r}")
    return value


def string(where: str, value: object, *, allowed: Collection[str] | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{where}` must be a non-empty string, got {value!r}")
    return value if allowed is None else choice(where, value, allowed)


def int_list(where: str, value: object, *, minimum: int) -> tuple[int, ...]:
    what = "positive ints" if minimum == 1 else f"ints >= {minimum}"
    if (
        not isinstance(value, (list, tuple))
        or not value
        or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value)
    ):
        raise ValueError(f"`{where}` must be a non-empty list of {what}, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"`{where}` lists a value twice: {value!r}")
    return tuple(value)


def depths(where: str, value: object, mode: str) -> tuple[int, ...] | None:
    """The ``depth`` key: None, an int >= 1 or a list of them (like ``widths``); deep
    networks exist in the theory parameterisation only (``models.DeepReLU``)."""
    if value is None:
        return None
    if mode != "theory":
        raise ValueError(
            f'`{where}` needs mode = "theory" (models.DeepReLU has the NTK '
            f"parameterisation only), got depth {value!r} with mode {mode!r}"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"`{where}` must be an int >= 1 or a list of them, got {value!r}")
    return int_list(where, value, minimum=1)


def boolean(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{where}` must be true or false, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Data specs: validated without loading big files.


def data_spec(where: str, spec: object, n: int | None, data_seed: int, normalize: bool) -> str:
    """Canonical data spec. Embedded sources are small and are loaded (checks option values
    and ``n``); ``mnist:PATH`` / ``csv:PATH`` are only checked to exist and be readable."""
    from ..data import parse_data_spec  # the loader's own spec grammar

    if not isinstance(spec, str):
        raise ValueError(f"`{where}` must be a dataset spec string, got {spec!r}")
    try:
        parsed = parse_data_spec(spec)
    except ValueError as exc:
        raise ValueError(f"`{where}`: {exc}") from None
    if parsed.path is not None:
        _readable(where, parsed.source, parsed.path)
        return parsed.canonical
    canonical = parsed.canonical
    try:
        load_data(canonical, n, data_seed, normalize)
    except ValueError as exc:
        raise ValueError(f"`{where}` {spec!r}: {exc}") from None
    return canonical


def _readable(where: str, source: str, path: str) -> None:
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"`{where}` {source} path {path!r} does not exist")
    try:
        if p.is_dir():
            names = os.listdir(p)
            if source == "mnist" and not any(s.startswith("train-images") for s in names):
                raise ValueError(
                    f"`{where}` mnist folder {path!r} holds no 'train-images-idx3-ubyte' file"
                )
        else:
            from .._datafiles import regular_file  # before opening: a FIFO's open blocks

            regular_file(f"`{where}` {source} path {path!r}", p)
            with p.open("rb") as fh:
                fh.read(1)
    except OSError as exc:
        raise ValueError(
            f"`{where}` {source} path {path!r} cannot be read: {exc.strerror}"
        ) from None


@lru_cache(maxsize=16)
def load_data(data: str, n: int | None, data_seed: int, normalize: bool) -> Dataset:
    """``data.load_dataset``, cached (datasets are read-only records)."""
    from ..data import load_dataset

    return load_dataset(data, n=n, seed=data_seed, normalize=normalize)
