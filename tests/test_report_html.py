"""Report: the HTML page rendered from hand-made summaries (verdicts at a glance, claim and finding
sections with their figures and tables, environment and provenance, escaping, old summaries), and
the environment recorded by a sweep.
"""

from __future__ import annotations

import json
import re

from report_cases import EVIL

# Hand-made summaries in the shape of Claim.as_dict / Finding.as_dict.


def _png(seed: int) -> bytes:
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.0, 0.8), dpi=30)
    fig.subplots().plot([0, 1], [seed, -seed])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _claim_dict(cid, verdict="supported", *, figures=(), text=""):
    return {
        "id": cid,
        "statement": f"statement of {cid}{text}",
        "hypothesis": f"hypothesis of {cid}{text}",
        "criterion": f"criterion of {cid}{text}",
        "tolerances": {f"RTOL{text}": 0.05, "BAND": [-0.8, -0.3]},
        "verdict": verdict,
        "reason": f"reason of {cid}{text}",
        "evidence": f"evidence of {cid}{text}",
        "figures": list(figures),
        "by_width": [
            {"width": 256, "n": 3, "median": 0.125, "low": 0.1, "high": 0.15},
            {"width": 16384, "n": 3, "median": None, "low": None, "high": None},
        ],
        "runs": [
            {
                "width": 256,
                "seed": 0,
                "spec": f"gd:lr=0.1{text}",
                "measured": -0.00893,
                "reference": -0.009,
                "deviation": 0.0078,
                "verdict": "supported",
                "note": f"note{text}",
            },
        ],
        "quantity": f"rate per step{text}",
    }


def _finding_dict(fid, experiment, verdict="reproduced", *, text=""):
    return {
        "id": fid,
        "experiment": experiment,
        "statement": f"finding {fid}{text}",
        "paper": f"paper numbers {fid}{text}",
        "verdict": verdict,
        "evidence": f"measured {fid}{text}",
        "criterion": f"finding criterion {fid}{text}",
        "constants": {f"EPOCHS{text}": 200},
        "table": [{"beta": 0.2, "loss": 1.5}, {"beta": 0.5, "loss": 0.5, f"note{text}": "x"}],
    }


_ENV = {
    "ntkdyn": "0.1.0",
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "git_dirty": True,
    "torch": "2.13.0",
    "numpy": "2.4.6",
    "devices": {"auto": "cuda"},
    "cuda_device": "Some GPU",
    "platform": "Linux-x86_64",
    "python": "3.11.7",
    "created": "2026-01-01T00:00:00Z",
}
_EXPERIMENTS = {
    "T": {"kind": "theory-curves", "mode": "theory", "dtype": "float64", "device": "auto"},
    "W": {"kind": "theory-ladder", "mode": "theory", "dtype": "float64", "device": "auto"},
    "nb3": {"kind": "E3", "mode": "notebook", "dtype": "float32", "device": "auto"},
    "nb3_x": {"kind": "curves", "mode": "notebook", "dtype": "float32", "device": "auto"},
}


def _page(claims=None, findings=None, figures=None, environment=_ENV, experiments=_EXPERIMENTS):
    from ntkdyn.report.html import render_html

    if claims is None:
        claims = [_claim_dict(f"C{i}") for i in range(1, 8)]
        claims[0]["figures"] = ["T_overlay", "T_missing"]  # an absent figure is skipped
        claims[2]["verdict"], claims[2]["figures"] = "refuted", ["T_nag_loglog", "T_crossover"]
        claims[5]["figures"] = ["W_error_vs_width"]
        claims[6]["verdict"], claims[6]["figures"] = "inconclusive", ["T_crossover"]
    if findings is None:
        findings = [_finding_dict("E3", "nb3"), _finding_dict("E5", "nb5", "not reproduced")]
    if figures is None:
        names = [
            "T_overlay",
            "T_nag_loglog",
            "T_crossover",
            "T_rates",
            "W_error_vs_width",
            "nb3_hb_epoch",
            "nb3_x_curves",
        ]
        figures = [(n, _png(i), f"caption of {n}") for i, n in enumerate(names)]
    summary = {
        "config": "hand-made",
        "claims": claims,
        "findings": findings,
        "runs": [],
        "environment": environment,
    }
    return render_html(summary, figures, experiments), figures


def _section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def _alts(html_part: str) -> list[str]:
    return re.findall(r'<img\b[^>]*\balt="([^"]*)"', html_part)


def test_html_opens_with_the_verdicts_at_a_glance():
    page, _ = _page()
    heads = re.findall(r"<h2 id=\"([^\"]+)\"", page)
    assert heads[0] == "verdicts"
    glance = page[page.index('id="verdicts"') : page.index('<h2 id="claims"')]
    assert "<img" not in glance
    # claims C1..C7 in order, then the findings, each id linking to an existing section
    ids = re.findall(r'<td class="id"><a href="#(claim|finding)-([^"]+)">', glance)
    assert [i for _, i in ids] == [f"C{i}" for i in range(1, 8)] + ["E3", "E5"]
    for kind, i in ids:
        assert page.count(f'id="{kind}-{i}"') == 1
    # verdicts coloured, one-line criterion shown
    assert re.search(
        r'href="#claim-C3">C3</a></td><td class="vcell"><span class="badge b-bad">'
        r"refuted</span>",
        glance,
    )
    assert '<span class="badge b-unk">inconclusive</span>' in glance
    assert '<span class="badge b-ok">reproduced</span>' in glance
    assert "criterion of C6" in glance and "finding criterion E5" in glance


def test_html_claim_sections_carry_their_figures_and_tables():
    page, figures = _page()
    c1 = _section(page, "claim-C1")
    for text in (
        "statement of C1",
        "hypothesis of C1",
        "criterion of C1",
        "reason of C1",
        "evidence of C1",
        "rate per step",
    ):
        assert text in c1
    assert "<code>RTOL = 0.05</code>" in c1 and "<code>BAND = [-0.8, -0.3]</code>" in c1
    assert _alts(c1) == ["T_overlay"]  # the absent T_missing is skipped
    # the figure comes before (beside) the per-width table, then the per-run table
    assert c1.index("<img") < c1.index("<h4>Per width</h4>") < c1.index("Per run (1)")
    assert re.search(
        r'<td class="num">256</td><td class="num">3</td><td class="num">0.125'
        r'</td><td class="num">0.1 .. 0.15</td>',
        c1,
    )
    assert re.search(r"<td>gd:lr=0.1</td><td class=\"num\">-0.00893</td>", c1)
    assert _alts(_section(page, "claim-C3")) == ["T_nag_loglog", "T_crossover"]
    assert _alts(_section(page, "claim-C6")) == ["W_error_vs_width"]
    # a figure shared by two claims is shown once and linked from the second
    c7 = _section(page, "claim-C7")
    assert _alts(c7) == [] and 'href="#fig-T_crossover"' in c7 and 'href="#claim-C3"' in c7
    # findings: figures of their experiment (not of an experiment with a longer id), table
    e3 = _section(page, "finding-E3")
    assert _alts(e3) == ["nb3_hb_epoch"]
    assert "paper numbers E3" in e3 and "<code>EPOCHS = 200</code>" in e3
    assert re.search(r"<th>beta</th><th>loss</th><th>note</th>", e3)
    # the rest in "Figures"; every figure exactly once
    rest = page[page.index('<h2 id="figures"') : page.index('<h2 id="rates"')]
    assert _alts(rest) == ["T_rates", "nb3_x_curves"]
    assert sorted(_alts(page)) == sorted(n for n, _, _ in figures)
    assert "caption of T_rates" in rest


def test_html_ends_with_the_environment_and_provenance():
    page, _ = _page()
    heads = re.findall(r"<h2 id=\"([^\"]+)\"", page)
    assert heads == ["verdicts", "claims", "findings", "figures", "rates", "runs", "environment"]
    env = page[page.index('<h2 id="environment"') :]
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td>(.*?)</td></tr>", env))
    assert rows["ntkdyn version"] == "0.1.0"
    assert rows["git commit"] == _ENV["git_commit"]
    assert rows["uncommitted changes"] == "yes"
    assert rows["torch"] == "2.13.0" and rows["numpy"] == "2.4.6"
    assert rows["device(s)"] == "auto &rarr; cuda; Some GPU"
    assert rows["dtype(s)"] == "float32 (nb3, nb3_x); float64 (T, W)"
    assert rows["platform"] == "Linux-x86_64" and rows["python"] == "3.11.7"
    assert rows["created"] == "2026-01-01T00:00:00Z"
    # an old store: what is missing says so; a store without git says why
    old, _ = _page(environment={"python": "3.10", "git_commit": None}, experiments={})
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td>(.*?)</td></tr>", old))
    assert "not recorded" in rows["ntkdyn version"] and "not recorded" in rows["dtype(s)"]
    assert rows["git commit"].startswith("none")


def test_html_escapes_every_string():
    text = EVIL
    claims = [_claim_dict("C1", figures=[f"fig{text}"], text=text)]
    claims[0]["verdict"] = f"odd{text}"
    findings = [_finding_dict("E3", f"nb{text}", text=text)]
    figures = [(f"fig{text}", _png(0), f"caption{text}"), (f"nb{text}_x", _png(1), text)]
    env = {**_ENV, "platform": text, f"key{text}": {"nested": text}}
    experiments = {f"nb{text}": {"kind": text, "title": text, "dtype": text, "device": text}}
    page, _ = _page(claims, findings, figures, env, experiments)
    assert "<script" not in page and "://" not in page
    assert '"quoted"' not in page  # quotes escaped too (attributes)
    assert page.count("&lt;script&gt;") >= 20
    assert len(_alts(page)) == 2


def test_html_tolerates_summaries_without_the_optional_keys():
    claims = [
        {"id": "C1", "statement": "s", "verdict": "supported"},
        {
            "id": "C2",
            "statement": "t",
            "verdict": "refuted",
            "evidence": "old style",
            "figures": None,
            "by_width": None,
            "runs": [],
            "tolerances": None,
        },
    ]
    findings = [{"id": "E1", "statement": "f", "verdict": "inconclusive"}]
    page, figures = _page(claims, findings, environment={}, experiments={})
    assert 'href="#claim-C2"' in page and "old style" in page
    assert len(_alts(page)) == len(figures)  # all in "Figures"
    from ntkdyn.report.html import render_html

    empty = render_html({}, [])
    assert "No claims apply" in empty and '<h2 id="environment"' in empty


def test_sweep_environment_records_provenance(monkeypatch):
    from ntkdyn import __version__
    from ntkdyn.experiments._setup import environment

    env = environment({"auto": "cpu"})
    assert env["ntkdyn"] == __version__ and env["devices"] == {"auto": "cpu"}
    assert {"torch", "numpy", "platform", "python", "git_commit", "git_dirty"} <= set(env)
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])
    assert env["git_dirty"] in (None, True, False)
    json.dumps(env)  # stored as JSON
    monkeypatch.setenv("PATH", "")  # no git: quietly None, the sweep goes on
    env = environment({"auto": "cpu"})
    assert env["git_commit"] is None and env["git_dirty"] is None
