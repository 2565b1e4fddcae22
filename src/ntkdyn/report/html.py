"""One self-contained ``report.html``: inline CSS, figures as base64 PNG data URIs, no script,
no external resource, every string from the store or the config HTML-escaped.

The page is a pure function of the summary (``summary.build_summary``), the figure PNGs and the
experiments' config tables, and reads like a verdict sheet:

1. *Verdicts at a glance*: the claims of C1-C7 whose runs the store holds, then the notebook
   findings E1-E6 (id linking to its section, coloured verdict, statement, one-line
   criterion), and the sentence naming the claims left out (``claims_note``);
2. one section per claim: statement, hypothesis, criterion, pre-registered tolerances, verdict
   with its reason, evidence; its figures beside the per-width table (median and spread of the
   judged quantity), then the per-run table (collapsed when long);
3. one section per finding: statement, the paper's numbers, criterion, constants, verdict,
   evidence, its figures and its table (the union of the row dicts' keys as columns);
4. *Figures* not shown with a claim or finding, with captions (every figure appears once);
5. fitted vs predicted rates and all runs (collapsed);
6. environment and provenance (ntkdyn version, git commit and whether the tree was dirty,
   torch, numpy, devices, the experiments' dtypes, platform, python) and the experiments.

Every key of a claim or finding except ``id``, ``verdict`` and ``statement`` is optional, so
summaries written by older versions still render.

Rendering check (also a test, ``tests/test_report_results.py``, skipped without ``chromium``): copy the
report, add ``<script>`` that sets ``data-images-ok`` on ``<body>`` to the number of ``<img>``
with ``complete && naturalWidth > 0`` (and ``data-images`` to the total), then run
``chromium --headless --no-sandbox --disable-gpu --disable-background-networking
--disable-component-update --disable-sync --no-first-run --user-data-dir=TMP --dump-dom
file:///.../copy.html``; both counts must be equal and >= 8.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._html_environment import environment_section
from ._html_parts import (
    CSS,
    VERDICT_COLORS,
    Anchors,
    badge,
    esc,
    facts,
    figure,
    generic_table,
    num,
    table,
    tone,
    value,
)

__all__ = ["VERDICT_COLORS", "render_html"]

_NONE = "&ndash;"
#: Fragment ids of the page's sections, in order (the contents line).
_SECTIONS = ("verdicts", "claims", "findings", "figures", "rates", "runs", "environment")


class _Figures:
    """The figures of the page, each rendered at its first placement only."""

    def __init__(self, shown, anchors: Anchors):
        self.items = {name: (png, caption) for name, png, caption in shown}
        self.order = [name for name, _, _ in shown]
        self.anchors = anchors
        self.placed: dict[str, tuple[str, str]] = {}  # name -> (label, section anchor)

    def take(
        self, names: Iterable[object] | None, label: str, section: str
    ) -> tuple[list[str], list[str]]:
        """(figures to show here, links to figures already shown elsewhere); absent names are
        skipped."""
        shown, links = [], []
        for name in dict.fromkeys(str(n) for n in names or ()):
            if name not in self.items:
                continue
            fid = self.anchors("fig", name)
            if name in self.placed:
                where, sec = self.placed[name]
                links.append(
                    f'<a href="#{esc(fid)}">{esc(name)}</a> (shown with '
                    f'<a href="#{esc(sec)}">{esc(where)}</a>)'
                )
                continue
            self.placed[name] = (label, section)
            png, caption = self.items[name]
            shown.append(figure(fid, name, png, caption))
        return shown, links

    def rest(self) -> list[str]:
        return self.take([n for n in self.order if n not in self.placed], "Figures", "figures")[0]


def _link(anchor: str, text) -> str:
    return f'<a href="#{esc(anchor)}">{esc(text)}</a>'


def _glance(items, anchor_of, kind: str) -> str:
    rows = [
        f'<tr><td class="id">{_link(anchor_of(x), x["id"])}</td>'
        f'<td class="vcell">{badge(x["verdict"])}</td><td>{esc(x["statement"])}</td>'
        f"<td>{esc(x.get('criterion')) or _NONE}</td></tr>"
        for x in items
    ]
    return table([kind, "verdict", "statement", "criterion"], rows, "glance")


def _tolerances(tol) -> str:
    if not isinstance(tol, dict) or not tol:
        return ""
    return ", ".join(f"<code>{esc(k)} = {value(v, 6)}</code>" for k, v in tol.items())


def _verdict_line(x: dict) -> str:
    reason = x.get("reason")
    return badge(x["verdict"]) + (f" {esc(reason)}" if reason else "")


def _records(rows) -> list[dict]:
    """The row dicts of a stored table (anything else skipped)."""
    return [r for r in rows or () if isinstance(r, dict)]


def _quantity(quantity) -> str:
    """The judged quantity's caption above a table, if it has one."""
    return f'<p class="muted">{esc(quantity)}</p>' if quantity else ""


def _by_width(rows, quantity) -> str:
    rows = _records(rows)
    if not rows:
        return ""
    body = [
        f'<tr><td class="num">{num(r.get("width"))}</td><td class="num">{num(r.get("n"))}</td>'
        f'<td class="num">{num(r.get("median"))}</td>'
        f'<td class="num">{num(r.get("low"))} .. {num(r.get("high"))}</td></tr>'
        for r in rows
    ]
    head = ["width", "seeds", "median", "spread"]
    return "<h4>Per width</h4>" + _quantity(quantity) + table(head, body)


def _per_run(rows, quantity) -> str:
    rows = _records(rows)
    if not rows:
        return ""
    body = [
        f'<tr><td class="num">{num(r.get("width"))}</td><td class="num">{num(r.get("seed"))}</td>'
        f'<td>{esc(r.get("spec"))}</td><td class="num">{num(r.get("measured"))}</td>'
        f'<td class="num">{num(r.get("reference"))}</td>'
        f'<td class="num">{num(r.get("deviation"), 3)}</td>'
        f'<td class="vcell">{badge(r.get("verdict"))}</td><td>{esc(r.get("note"))}</td></tr>'
        for r in rows
    ]
    head = ["width", "seed", "optimizer", "measured", "reference", "deviation", "verdict", "note"]
    is_open = " open" if len(rows) <= 8 else ""
    return (
        f"<details{is_open}><summary>Per run ({len(rows)})</summary>{_quantity(quantity)}"
        f"{table(head, body)}</details>"
    )


def _columns(figs: list[str], links: list[str], side: str) -> str:
    """Figures beside the side content (a narrow table); either may be missing."""
    if links:
        side += f'<p class="muted">See also: {"; ".join(links)}.</p>'
    if not figs:
        return side
    if not side:
        return "".join(figs)
    figs_html = f'<div class="figs">{"".join(figs)}</div>'
    return f'<div class="cols">{figs_html}<div class="side">{side}</div></div>'


def _claim(c: dict, anchor: str, figures: _Figures) -> str:
    head = facts(
        [
            ("Hypothesis", esc(c.get("hypothesis"))),
            ("Criterion", esc(c.get("criterion"))),
            ("Tolerances", _tolerances(c.get("tolerances"))),
            ("Verdict", _verdict_line(c)),
            ("Evidence", esc(c.get("evidence"))),
        ]
    )
    figs, links = figures.take(c.get("figures"), str(c["id"]), anchor)
    quantity = c.get("quantity")
    body = _columns(figs, links, _by_width(c.get("by_width"), quantity))
    return (
        f'<section class="item t-{tone(c["verdict"])}" id="{esc(anchor)}">'
        f"<h3>{esc(c['id'])} &middot; {esc(c['statement'])}</h3>{head}{body}"
        f"{_per_run(c.get('runs'), quantity)}</section>"
    )


def _finding_figures(f: dict, figures: _Figures, experiments: dict) -> list[str]:
    """The finding's figures: its ``figures`` key, else those of its experiment (a figure is
    named ``<experiment>_<what>``; the longest matching experiment id owns it)."""
    if f.get("figures") is not None:
        return list(f["figures"])
    exp = f.get("experiment")
    if not exp:
        return []
    ids = sorted(set(experiments) | {str(exp)}, key=len, reverse=True)

    def owner(name: str):
        return next((e for e in ids if name.startswith(f"{e}_")), None)

    return [n for n in figures.order if owner(n) == exp]


def _finding(f: dict, anchor: str, figures: _Figures, experiments: dict) -> str:
    head = facts(
        [
            ("Experiment", esc(f.get("experiment"))),
            ("Paper", esc(f.get("paper"))),
            ("Criterion", esc(f.get("criterion"))),
            ("Constants", _tolerances(f.get("constants"))),
            ("Verdict", _verdict_line(f)),
            ("Evidence", esc(f.get("evidence"))),
        ]
    )
    names = _finding_figures(f, figures, experiments)
    figs, links = figures.take(names, str(f["id"]), anchor)
    rows = [r for r in f.get("table") or () if isinstance(r, dict)]
    tab = generic_table(rows)
    narrow = len({k for r in rows for k in r}) <= 5
    body = _columns(figs, links, tab if narrow else "") + ("" if narrow else tab)
    return (
        f'<section class="item t-{tone(f["verdict"])}" id="{esc(anchor)}">'
        f"<h3>{esc(f['id'])} &middot; {esc(f['statement'])}</h3>{head}{body}</section>"
    )


def _fit_cell(fit) -> str:
    if not fit or fit.get("kind") is None:
        return f"<td>{_NONE}</td>"
    kind = fit["kind"]
    if kind == "linear":
        return f"<td>linear, {num(fit.get('rate'))}/step</td>"
    if kind == "sublinear":
        return f"<td>sublinear, p = {num(fit.get('exponent'), 3)}</td>"
    return f"<td>{esc(kind)}</td>"


def _rates(runs, kinds: dict) -> str:
    chosen = [r for r in runs if kinds.get(r.get("experiment")) == "theory-curves"]
    if not chosen:
        chosen = [r for r in runs if (r.get("predicted") or {}).get("kind")]
    if not chosen:
        return '<p class="muted">No runs with a rate prediction.</p>'
    rows = []
    for r in chosen:
        p = r.get("predicted") or {}
        pe = r.get("prediction_error") or {}
        pred = _NONE
        if p.get("kind") == "linear":
            pred = f"linear, log q = {num(p.get('rate'))}/step"
        elif p.get("kind") == "sublinear":
            pred = f"t^-{num(p.get('exponent'), 3)} (ODE); eventually log q = {num(p.get('rate'))}"
        elif p.get("note"):  # an adaptive rule: no kernel prediction, said so
            pred = esc(p["note"])
        rows.append(
            f"<tr><td>{esc(r.get('experiment'))}</td><td>{esc(r.get('spec'))}</td>"
            f'<td class="num">{num(r.get("width"))}</td><td class="num">{num(r.get("seed"))}</td>'
            f"{_fit_cell(r.get('fit'))}{_fit_cell(r.get('fit_kernel'))}<td>{pred}</td>"
            f'<td class="num">{num(pe.get("abs"), 3)}</td>'
            f'<td class="num">{num(pe.get("rel"), 3)}</td></tr>'
        )
    head = [
        "experiment",
        "optimizer",
        "width",
        "seed",
        "measured (network)",
        "kernel model H(0), same fit",
        "predicted",
        "abs err",
        "rel err",
    ]
    note = (
        '<p class="muted">Rates are slopes of log L per optimizer step; abs/rel errors compare '
        "the network's loss with the kernel-model prediction on H(0).</p>"
    )
    return f"<details><summary>{len(rows)} runs</summary>{note}{table(head, rows)}</details>"


def _all_runs(runs) -> str:
    rows = [
        f"<tr><td>{esc(r.get('id'))}</td><td>{esc(r.get('experiment'))}</td>"
        f"<td>{esc(r.get('spec'))}</td><td class='num'>{num(r.get('width'))}</td>"
        f"<td class='num'>{num(r.get('seed'))}</td><td>{esc(r.get('status'))}</td>"
        f"<td class='num'>{num(r.get('steps'))}</td>"
        f"<td class='num'>{num(r.get('final_loss'))}</td>{_fit_cell(r.get('fit'))}</tr>"
        for r in runs
    ]
    head = [
        "id",
        "experiment",
        "optimizer",
        "width",
        "seed",
        "status",
        "steps",
        "final loss",
        "fit",
    ]
    return f"<details><summary>{len(runs)} runs</summary>{table(head, rows)}</details>"


def render_html(
    summary: dict, figures: Sequence[tuple[str, bytes, str]], experiments: dict | None = None
) -> str:
    """The report page (module docstring).

    Args:
        summary: the summary.json payload.
        figures: ``(name, png_bytes, caption)`` triples in display order.
        experiments: experiment id -> config table (``kind``, ``title``, ``dtype``, ...).
    """
    experiments = experiments or {}
    kinds = {eid: e.get("kind") for eid, e in experiments.items()}
    name = summary.get("config") or "ntkdyn results"
    claims = [c for c in summary.get("claims") or () if isinstance(c, dict)]
    findings = [f for f in summary.get("findings") or () if isinstance(f, dict)]
    runs = summary.get("runs") or []
    anchors = Anchors()
    figs = _Figures(figures, anchors)

    def claim_at(c: dict) -> str:
        return anchors("claim", c["id"])

    def finding_at(f: dict) -> str:
        return anchors("finding", f["id"])

    paper = (
        'Bu, Xu &amp; Chen (AISTATS 2021), "A Dynamical View on Optimization Algorithms of '
        'Overparameterized Neural Networks": claims checked against finite networks and their '
        "exact kernel predictions. "
        if claims or findings
        else ""
    )
    note = summary.get("claims_note")
    body = [
        f"<h1>ntkdyn report: {esc(name)}</h1>",
        (f'<p class="muted">{paper}{len(runs)} stored runs in {len(experiments)} experiments.</p>'),
        '<p class="muted">Contents: '
        + " &middot; ".join(f'<a href="#{a}">{a}</a>' for a in _SECTIONS)
        + "</p>",
        '<h2 id="verdicts">Verdicts at a glance</h2>',
        _glance(claims, claim_at, "claim")
        if claims
        else '<p class="muted">No claims apply to these runs.</p>',
        f'<p class="muted">{esc(note)}</p>' if note else "",
        _glance(findings, finding_at, "finding")
        if findings
        else '<p class="muted">No notebook-mode experiments (kinds E1-E6) in this store.</p>',
        '<h2 id="claims">Claims</h2>',
        *[_claim(c, claim_at(c), figs) for c in claims],
        '<h2 id="findings">Notebook findings</h2>',
        *[_finding(f, finding_at(f), figs, experiments) for f in findings],
    ]
    if not findings:
        body.append('<p class="muted">No notebook findings.</p>')
    rest = figs.rest()
    body += [
        '<h2 id="figures">Figures</h2>',
        "\n".join(rest) or '<p class="muted">Every figure is shown with its claim or finding.</p>',
        '<h2 id="rates">Fitted vs predicted rates</h2>',
        _rates(runs, kinds),
        '<h2 id="runs">All runs</h2>',
        _all_runs(runs),
        '<h2 id="environment">Environment and provenance</h2>',
        environment_section(summary, experiments),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ntkdyn report: {esc(name)}</title><style>{CSS}</style></head>"
        f"<body>\n{chr(10).join(body)}\n</body></html>\n"
    )
