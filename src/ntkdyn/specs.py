"""The one grammar of spec strings: ``name:key=value,key=value`` and ``name:PATH``.

Optimizers (``ntkdyn.optim.parse``, the experiment configs) and datasets
(``ntkdyn.data.parse_data_spec``) are written in it. The name is case-insensitive and ends at
the first ``:`` (so ``csv:C:\\data\\x.csv`` keeps its drive letter); items are separated by
``,``, blanks around names, keys and values are ignored, and empty items are skipped. A name
listed in ``path_names`` takes everything after the ``:`` as a path instead of items.

Parsing is two steps with one message style: :func:`parse_spec` checks the grammar and names
the spec's field (``\\`optimizer\\` item 'lr' in 'gd:lr' must look like key=value``);
:meth:`Spec.options` checks the keys and names the key (``\\`gamma\\` is not a parameter of
hb``). The meaning of the values is the caller's (numbers for optimizers, strings for data).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["Spec", "parse_spec"]


@dataclass(frozen=True)
class Spec:
    """A parsed spec: ``name`` (lower case), its ``items`` in order (duplicates kept, values
    as strings) or its ``path``; ``text`` is the spec as given (for messages)."""

    text: str
    name: str
    items: tuple[tuple[str, str], ...] = ()
    path: str | None = None

    def options(
        self, allowed: Sequence[str] | None = None, *, noun: str = "a parameter"
    ) -> dict[str, str]:
        """The items as a dict in order; ValueError naming the key when it is given twice or
        is not in ``allowed`` (None: any key)."""
        out: dict[str, str] = {}
        for key, value in self.items:
            if allowed is not None and key not in allowed:
                raise ValueError(
                    f"`{key}` is not {noun} of {self.name}; allowed keys: {list(allowed) or 'none'}"
                )
            if key in out:
                raise ValueError(f"`{key}` is given twice in {self.text!r}")
            out[key] = value
        return out


def parse_spec(
    text: object,
    *,
    field: str,
    example: str,
    names: Collection[str] | None = None,
    path_names: Collection[str] = (),
) -> Spec:
    """Parse ``text`` (module docstring); ValueError naming ``field`` when the grammar fails.

    Args:
        text: the spec string.
        field: the name of the spec in messages (``"optimizer"``, ``"data"``, a config path).
        example: a valid spec shown when ``text`` is not a spec at all.
        names: the known names (None: any name).
        path_names: names whose spec is ``name:PATH``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"`{field}` must be a spec such as {example!r}, got {text!r}")
    name, _, rest = text.strip().partition(":")
    name = name.strip().lower()
    if names is not None and name not in names:
        raise ValueError(f"`{field}` name {name!r} is unknown; choose one of {sorted(names)}")
    if name in path_names:
        if not rest.strip():
            raise ValueError(f"`{field}` spec {text!r} needs a path: '{name}:PATH'")
        return Spec(text, name, path=rest.strip())
    items = []
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not (key and eq and value):
            raise ValueError(f"`{field}` item {item!r} in {text!r} must look like key=value")
        items.append((key, value))
    return Spec(text, name, tuple(items))
