"""One self-contained ``report.html``: inline CSS, figures as base64 PNG data URIs, no script,
no external resource, every string from the store or the config HTML-escaped.

The page is a pure function of the summary (``summary.build_summary``) and the figure PNGs:
header (config name, environment), claims table, notebook findings, fitted vs predicted rates,
all runs (collapsed), figures with captions.

Rendering check (also a test, ``tests/test_report.py``, skipped without ``chromium``): copy the
report, add ``<script>`` that sets ``data-images-ok`` on ``<body>`` to the number of ``<img>``
with ``complete && naturalWidth > 0`` (and ``data-images`` to the total), then run
``chromium --headless --no-sandbox --disable-gpu --disable-background-networking
--disable-component-update --disable-sync --no-first-run --user-data-dir=TMP --dump-dom
file:///.../copy.html``; both counts must be equal and >= 8.
"""

from __future__ import annotations

import base64
import html
import math

__all__ = ["VERDICT_COLORS", "render_html"]

VERDICT_COLORS = {
    "supported": "#1b7f3b", "reproduced": "#1b7f3b",
    "refuted": "#b3261e", "not reproduced": "#b3261e",
    "inconclusive": "#8a6d00",
}  # fmt: skip

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.86em;margin:.6em 0}
th,td{border:1px solid #d0d0d0;padding:.3em .45em;vertical-align:top;text-align:left}
th{background:#f3f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{font-weight:600;white-space:nowrap}.env td:first-child{font-weight:600;width:14em}
figure{margin:1.2em 0;padding:.6em;border:1px solid #e3e3e3;border-radius:4px}
figure img{max-width:100%;height:auto;display:block;margin:auto}
figcaption{font-size:.85em;color:#444;margin-top:.4em}.muted{color:#666;font-size:.85em}
"""


def _e(value) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float) and not math.isfinite(value):
        return _e(repr(value))
    if isinstance(value, (int, float)):
        return _e(f"{value:.{digits}g}")
    return _e(value)


def _verdict(v: str) -> str:
    color = VERDICT_COLORS.get(v, "#333")
    return f'<td class="verdict" style="color:{color}">{_e(v)}</td>'


def _table(head: list[str], rows: list[str]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _claims(claims) -> str:
    if not claims:
        return '<p class="muted">No claims evaluated.</p>'
    rows = [
        f"<tr><td>{_e(c['id'])}</td><td>{_e(c['statement'])}</td>{_verdict(c['verdict'])}"
        f"<td>{_e(c['evidence'])}</td></tr>"
        for c in claims
    ]
    return _table(["claim", "statement", "verdict", "evidence"], rows)


def _findings(findings) -> str:
    if not findings:
        return '<p class="muted">No notebook-mode experiments (kinds E1-E6) in this store.</p>'
    rows = [
        f"<tr><td>{_e(f['id'])}</td><td>{_e(f['statement'])}</td><td>{_e(f['paper'])}</td>"
        f"{_verdict(f['verdict'])}<td>{_e(f['evidence'])}</td></tr>"
        for f in findings
    ]
    return _table(["exp.", "finding", "paper", "verdict", "measured"], rows)


def _fit_cell(fit) -> str:
    if not fit or fit.get("kind") is None:
        return "<td>&ndash;</td>"
    kind = fit["kind"]
    if kind == "linear":
        return f"<td>linear, {_num(fit.get('rate'))}/step</td>"
    if kind == "sublinear":
        return f"<td>sublinear, p = {_num(fit.get('exponent'), 3)}</td>"
    return f"<td>{_e(kind)}</td>"


def _rates(runs, kinds: dict) -> str:
    chosen = [r for r in runs if kinds.get(r["experiment"]) == "theory-curves"]
    if not chosen:
        chosen = [r for r in runs if r.get("predicted", {}).get("kind")]
    if not chosen:
        return '<p class="muted">No runs with a rate prediction.</p>'
    rows = []
    for r in chosen:
        p = r.get("predicted") or {}
        pe = r.get("prediction_error") or {}
        pred = "&ndash;"
        if p.get("kind") == "linear":
            pred = f"linear, log q = {_num(p.get('rate'))}/step"
        elif p.get("kind") == "sublinear":
            pred = (
                f"t^-{_num(p.get('exponent'), 3)} (ODE); eventually log q = {_num(p.get('rate'))}"
            )
        rows.append(
            f"<tr><td>{_e(r['experiment'])}</td><td>{_e(r['spec'])}</td>"
            f"<td class='num'>{_num(r['width'])}</td><td class='num'>{_num(r['seed'])}</td>"
            f"{_fit_cell(r.get('fit'))}{_fit_cell(r.get('fit_kernel'))}<td>{pred}</td>"
            f"<td class='num'>{_num(pe.get('abs'), 3)}</td>"
            f"<td class='num'>{_num(pe.get('rel'), 3)}</td></tr>"
        )
    return _table(
        [
            "experiment",
            "optimizer",
            "width",
            "seed",
            "measured (network)",
            "kernel model H(0), same fit",
            "predicted",
            "abs err",
            "rel err",
        ],
        rows,
    )


def _all_runs(runs) -> str:
    rows = [
        f"<tr><td>{_e(r['id'])}</td><td>{_e(r['experiment'])}</td><td>{_e(r['spec'])}</td>"
        f"<td class='num'>{_num(r['width'])}</td><td class='num'>{_num(r['seed'])}</td>"
        f"<td>{_e(r['status'])}</td><td class='num'>{_num(r['steps'])}</td>"
        f"<td class='num'>{_num(r.get('final_loss'), 4)}</td>{_fit_cell(r.get('fit'))}</tr>"
        for r in runs
    ]
    table = _table(
        ["id", "experiment", "optimizer", "width", "seed", "status", "steps", "final loss", "fit"],
        rows,
    )
    return f"<details><summary>{len(runs)} runs</summary>{table}</details>"


def _environment(summary) -> str:
    env = summary.get("environment") or {}
    rows = [f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(env.items())]
    k = summary.get("kernel")
    if k:
        rows.append(
            f"<tr><td>kernel H^inf ({_e(k.get('key'))})</td><td>n = {_num(k.get('n'))}, "
            f"lambda_min = {_num(k.get('lambda_min'))}, lambda_max = "
            f"{_num(k.get('lambda_max'))}</td></tr>"
        )
    return f'<table class="env"><tbody>{"".join(rows)}</tbody></table>'


def _figures(figures) -> str:
    parts = []
    for name, png, caption in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="fig-{_e(name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{_e(name)}"><figcaption><b>{_e(name)}</b>: {_e(caption)}'
            "</figcaption></figure>"
        )
    return "\n".join(parts) or '<p class="muted">No figures.</p>'


def render_html(summary: dict, figures, experiments: dict | None = None) -> str:
    """The report page.

    Args:
        summary: the summary.json payload.
        figures: ``(name, png_bytes, caption)`` triples in display order.
        experiments: experiment id -> config table (for ``kind`` and ``title``).
    """
    experiments = experiments or {}
    kinds = {eid: e.get("kind") for eid, e in experiments.items()}
    name = summary.get("config") or "ntkdyn results"
    exp_rows = [
        f"<tr><td>{_e(eid)}</td><td>{_e(e.get('kind'))}</td><td>{_e(e.get('mode'))}</td>"
        f"<td>{_e(e.get('title'))}</td></tr>"
        for eid, e in sorted(experiments.items())
    ]
    body = [
        f"<h1>ntkdyn report: {_e(name)}</h1>",
        (
            '<p class="muted">Bu, Xu &amp; Chen (AISTATS 2021), "A Dynamical View on Optimization '
            'Algorithms of Overparameterized Neural Networks": claims checked against finite '
            "networks and their exact kernel predictions (MATH.md).</p>"
        ),
        "<h2>Environment</h2>",
        _environment(summary),
        "<h2>Claims</h2>",
        _claims(summary.get("claims", [])),
        "<h2>Notebook-mode findings (PAPER.md E1-E6)</h2>",
        _findings(summary.get("findings", [])),
        "<h2>Fitted vs predicted rates</h2>",
        (
            '<p class="muted">Rates are slopes of log L per optimizer step (MATH.md 5 classifier); '
            "abs/rel errors are MATH.md 6's metrics against the H(0) prediction.</p>"
        ),
        _rates(summary.get("runs", []), kinds),
        "<h2>Experiments</h2>",
        _table(["id", "kind", "mode", "title"], exp_rows),
        "<h2>Runs</h2>",
        _all_runs(summary.get("runs", [])),
        "<h2>Figures</h2>",
        _figures(figures),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ntkdyn report: {_e(name)}</title><style>{_CSS}</style></head>"
        f"<body>\n{chr(10).join(body)}\n</body></html>\n"
    )
