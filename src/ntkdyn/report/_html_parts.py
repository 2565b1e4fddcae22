"""Building blocks of ``report.html`` (:mod:`.html`): escaping, numbers, verdict badges, tables,
anchors and figures. Every value that reaches the page goes through :func:`esc`."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Iterable

__all__ = [
    "CSS",
    "VERDICT_COLORS",
    "Anchors",
    "badge",
    "esc",
    "facts",
    "figure",
    "generic_table",
    "num",
    "table",
    "tone",
    "value",
]

VERDICT_COLORS = {
    "supported": "#1b7f3b",
    "reproduced": "#1b7f3b",
    "refuted": "#b3261e",
    "not reproduced": "#b3261e",
    "inconclusive": "#8a6d00",
}
_TONES = {"#1b7f3b": "ok", "#b3261e": "bad", "#8a6d00": "unk"}

# No url(), no @import: the page loads nothing.
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;
max-width:1180px;padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}
h2{margin-top:1.8em;border-bottom:2px solid #ddd;padding-bottom:.1em}
h3{margin:0 0 .5em;font-size:1.12em}h4{margin:1em 0 .3em;font-size:.95em}
a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%;font-size:.86em;margin:.5em 0}
th,td{border:1px solid #d0d0d0;padding:.28em .45em;vertical-align:top;text-align:left}
th{background:#f3f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}td.id{font-weight:600;white-space:nowrap;width:3.5em}
td.vcell{white-space:nowrap;width:8.5em}
table.glance{table-layout:fixed}table.glance th:nth-child(1){width:4.5em}
table.glance th:nth-child(2){width:9.5em}table.glance th:nth-child(3){width:50%}
.badge{display:inline-block;padding:.05em .5em;border-radius:3px;font-weight:600;
font-size:.85em;white-space:nowrap;color:#fff;background:#666}
.b-ok{background:#1b7f3b}.b-bad{background:#b3261e}.b-unk{background:#8a6d00}
section.item{border:1px solid #e0e0e4;border-left:6px solid #888;border-radius:4px;
padding:.8em 1em;margin:1.2em 0}
section.t-ok{border-left-color:#1b7f3b}section.t-bad{border-left-color:#b3261e}
section.t-unk{border-left-color:#8a6d00}
dl.facts{display:grid;grid-template-columns:8.5em 1fr;gap:.3em .9em;margin:.3em 0 .8em;
font-size:.93em}dl.facts dt{font-weight:600;color:#555}dl.facts dd{margin:0}
code{font-size:.92em;background:#f3f3f5;padding:0 .25em;border-radius:3px}
.cols{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.cols>.figs{flex:1 1 560px;min-width:0}.cols>.side{flex:1 1 340px;min-width:0}
figure{margin:0 0 .8em;padding:.5em;border:1px solid #e3e3e3;border-radius:4px}
figure img{max-width:100%;height:auto;display:block;margin:auto}
figcaption{font-size:.84em;color:#444;margin-top:.4em}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600;font-size:.92em}
.muted{color:#666;font-size:.86em}.env td:first-child{font-weight:600;width:15em}
"""


def esc(v: object) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attributes); None -> ""."""
    return html.escape("" if v is None else str(v), quote=True)


def num(v: object, digits: int = 4) -> str:
    """A number for a table cell: ints as they are, floats to ``digits`` significant digits."""
    if v is None:
        return "&ndash;"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return esc(v)
    if isinstance(v, float):
        return esc(f"{v:.{digits}g}") if math.isfinite(v) else esc(repr(v))
    return esc(v)


def value(v: object, digits: int = 4) -> str:
    """Any JSON-like value as escaped text: numbers via :func:`num`, ``[lo, hi]`` as a range."""
    if v is None or isinstance(v, (bool, int, float)):
        return num(v, digits)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x, digits) for x in v) + "]"
    if isinstance(v, dict):
        return esc(json.dumps(v, sort_keys=True, default=str))
    return esc(v)


def tone(verdict: object) -> str:
    """``ok`` / ``bad`` / ``unk`` for a known verdict, ``other`` for anything else."""
    return _TONES.get(VERDICT_COLORS.get(str(verdict), ""), "other")


def badge(verdict: object) -> str:
    return f'<span class="badge b-{tone(verdict)}">{esc(verdict or "?")}</span>'


def table(head: list[str], rows: list[str], cls: str = "") -> str:
    """``rows`` are ready ``<tr>`` strings; ``head`` is escaped here."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def generic_table(rows: Iterable[object] | None) -> str:
    """Row dicts as a table: the union of their keys (first-seen order) as columns."""
    dicts = [r for r in rows or () if isinstance(r, dict)]
    if not dicts:
        return ""
    cols: list[str] = []
    for r in dicts:
        cols += [k for k in r if k not in cols]
    body = []
    for r in dicts:
        cells = []
        for k in cols:
            v = r.get(k)
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{value(v)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return table([str(c) for c in cols], body)


def facts(items: list[tuple[str, str]]) -> str:
    """A definition list of (label, ready HTML) pairs, skipping empty values."""
    parts = [f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items if v]
    return f'<dl class="facts">{"".join(parts)}</dl>' if parts else ""


class Anchors:
    """Unique, attribute-safe fragment ids: the same ``(kind, key)`` always gets the same id."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._used: set[str] = set()

    def __call__(self, kind: str, key: object) -> str:
        k = (kind, str(key))
        if k not in self._ids:
            base = f"{kind}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", str(key)).strip("-") or "x")
            anchor, i = base, 2
            while anchor in self._used:
                anchor, i = f"{base}-{i}", i + 1
            self._used.add(anchor)
            self._ids[k] = anchor
        return self._ids[k]


def figure(anchor: str, name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{esc(anchor)}"><img src="data:image/png;base64,{data}" alt="{esc(name)}">'
        f"<figcaption><b>{esc(name)}</b>: {esc(caption)}</figcaption></figure>"
    )
