"""Report: claims logic on synthetic stored runs, figures, self-contained HTML, stable summary.

Synthetic "measured" curves are exact kernel-model curves (docs/mathematics.md 3) on the H^inf spectrum of
docs/mathematics.md 6's data, or curves built to refute a claim (a power law for GD, a wrong rate, an error
that does not shrink with the width). The claims must come out supported / refuted /
inconclusive accordingly.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from ntkdyn.data import load_dataset
from ntkdyn.dynamics.discrete import predict_discrete
from ntkdyn.dynamics.ode import predict_ode
from ntkdyn.experiments.config import data_key
from ntkdyn.experiments.store import KernelRecord, RunRecord, Store
from ntkdyn.kernels import spectrum, two_layer_gram
from ntkdyn.optim import parse
from ntkdyn.report import build_report
from ntkdyn.report.claims import evaluate_claims
from ntkdyn.report.plots import figures_for
from ntkdyn.report.summary import analyze_run, prediction_error

LR = 0.1
DATA = {"mode": "theory", "data": "gaussian:d=5", "n": 20, "data_seed": 0, "loss": "half-sum"}
NB = {"mode": "notebook", "data": "digits", "n": 60, "data_seed": 0, "loss": "mse"}


@pytest.fixture(scope="module")
def kernel():
    ds = load_dataset("gaussian:d=5", n=20, seed=0)
    return spectrum(two_layer_gram(ds.X), vectors=True), -ds.y


def _record(
    experiment,
    spec,
    losses,
    *,
    width=4096,
    seed=0,
    pred=None,
    ode=None,
    h0=None,
    lam=None,
    base=DATA,
    status="ok",
    diagnostics=None,
    dtype="float64",
    model=None,
):
    losses = np.asarray(losses, dtype=float)
    cfg = {
        **base,
        "experiment": experiment,
        "width": width,
        "seed": seed,
        "optimizer": parse(spec).spec,
        "steps": losses.size - 1,
        "dtype": dtype,
        "device": "cpu",
        "predict": pred is not None,
        "diagnostics_every": None,
    }
    rid = f"{experiment}-{abs(hash((spec, width, seed))) % 10**12:012d}"
    ok = status == "ok"
    return RunRecord(
        id=rid, experiment=experiment, config=cfg, status=status,
        diverged_at=None if ok else int(np.argmax(~np.isfinite(losses))), steps=losses.size - 1,
        final_loss=float(losses[-1]) if ok else None, losses=losses, diagnostics=diagnostics,
        pred_discrete=pred, pred_discrete_inf=pred, pred_ode=ode,
        lambda_min_k=None if lam is None else lam[0], lambda_max_k=None if lam is None else lam[1],
        h0=h0, elapsed=0.1, finished="2026-01-01T00:00:00Z",
        kernel_eigenvalues=None if model is None else model[0],
        kernel_modes=None if model is None else model[1],
    )  # fmt: skip


def _kernel_curve(kernel, spec, steps, *, ode=False):
    K, e0 = kernel
    rule = parse(spec)
    L = predict_discrete(K, e0, rule, steps)
    out = {"pred": L, "h0": rule.lr * K.lambda_min, "lam": (K.lambda_min, K.lambda_max),
           "model": (np.asarray(K.eigenvalues), K.eigenvectors.T @ e0)}  # fmt: skip
    if ode:
        out["ode"] = predict_ode(K, e0, rule, rule.ode().times(rule.lr, np.arange(steps + 1)))
    return L, out


def _analyses(records, kinds):
    return [analyze_run(r, kinds[r.experiment]) for r in records]


def _claims(records, kinds):
    return {c.id: c for c in evaluate_claims(_analyses(records, kinds))}


BETA = None  # set lazily: the critical beta of docs/mathematics.md 6


def _beta(kernel):
    return 1 - 2 * math.sqrt(kernel[0].lambda_min * LR)


# --------------------------------------------------------------------------------------------
# Claims.


def _width_records(kernel, exponent):
    """GD runs whose measured curve deviates from the prediction by ~ m^exponent."""
    L, kw = _kernel_curve(kernel, f"gd:lr={LR}", 500)
    k = np.arange(L.size)
    bump = np.sin(np.pi * np.minimum(k / 200.0, 1.0))  # zero at k = 0
    records = []
    for m in (256, 1024, 4096, 16384):
        for seed in (0, 1, 2):
            scale = 0.3 * m**exponent * (1.0 + 0.1 * seed)
            records.append(
                _record("W", f"gd:lr={LR}", L * (1 + scale * bump), width=m, seed=seed, **kw)
            )
    return records


@pytest.mark.parametrize(
    "exponent, verdict", [(-0.5, "supported"), (0.0, "refuted"), (-1.0, "refuted")]
)
def test_c6_width_slope_band(kernel, exponent, verdict):
    claims = {c.id: c for c in evaluate_claims(
        [analyze_run(r, "theory-ladder") for r in _width_records(kernel, exponent)])}  # fmt: skip
    assert claims["C6"].verdict == verdict, claims["C6"].evidence
    slope = float(re.search(r"slope ([-+]?[\d.]+) ", claims["C6"].evidence).group(1))
    assert slope == pytest.approx(exponent, abs=0.05)


def test_prediction_error_metrics_match_math6_definitions():
    P = np.array([1.0, 0.5, 0.2, 1e-3, 1e-5, 1e-6])
    L = P + np.array([0.0, 0.01, -0.02, 1e-3, 0.5, 0.5])  # beyond the horizons: ignored
    # abs: up to the first P <= 1e-4 P0 (index 4, included), max |L - P| / P0
    assert prediction_error(L, P, horizon=1e-4, relative=False) == pytest.approx(0.5)
    assert prediction_error(L, P, horizon=1e-2, relative=False) == pytest.approx(0.02)
    # rel: relative to the prediction's suffix max, up to P <= 1e-2 P0 (index 3)
    assert prediction_error(L, P, horizon=1e-2, relative=True) == pytest.approx(1.0)
    assert prediction_error(L, None, horizon=1e-2, relative=True) is None


# --------------------------------------------------------------------------------------------
# Findings.


def _nb(experiment, spec, final, *, width=750, seed=218, steps=10, diverge=False):
    L = np.geomspace(30.0, final, steps + 1)
    if diverge:
        L[steps // 2 :] = np.nan
    return _record(
        experiment,
        spec,
        L,
        width=width,
        seed=seed,
        base=NB,
        dtype="float32",
        status="diverged" if diverge else "ok",
    )


# --------------------------------------------------------------------------------------------
# A synthetic results directory: figures, HTML, summary.

EVIL = '<script>alert("x")</script> & $\\notacommand$ "quoted"'


def _write_store(path, records, experiments, environment):
    with Store(path / "results.sqlite") as store:
        store.set_meta(
            {
                "config": json.dumps(
                    {
                        "name": "synthetic <b>",
                        "experiments": [
                            {"id": eid, "kind": kind, "title": title, "mode": mode}
                            for eid, (kind, title, mode) in experiments.items()
                        ],
                    },
                    sort_keys=True,
                ),
                "environment": json.dumps(environment, sort_keys=True),
            }
        )
        ds = load_dataset("gaussian:d=5", n=20, seed=0)
        H = spectrum(two_layer_gram(ds.X))
        key = data_key({**DATA})
        store.write_kernels(
            [
                KernelRecord(
                    key,
                    "gaussian:d=5",
                    20,
                    0,
                    "theory",
                    H.lambda_min,
                    H.lambda_max,
                    np.asarray(H.eigenvalues),
                )
            ]
        )
        store.write_batch(records)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, kernel):
    path = tmp_path_factory.mktemp("report")
    b = _beta(kernel)
    lam0 = kernel[0].lambda_min
    diag = {
        "step": np.arange(0, 501, 100),
        "lambda_min": lam0 * (1 - 0.01 * np.arange(6)),
        "lambda_max": np.full(6, 1.9),
        "h_drift": np.linspace(0, 0.02, 6),
        "w_drift": np.linspace(0, 1.0, 6),
        "flipped": np.linspace(0, 0.01, 6),
    }
    records = []
    for spec, steps in (
        (f"gd:lr={LR}", 3000),
        (f"nesterov-torch:lr={LR},r=2", 3000),
        (f"nesterov-torch:lr={LR},r=8", 3000),
    ):
        L, kw = _kernel_curve(kernel, spec, steps, ode=True)
        records.append(_record("T-curves", spec, L, diagnostics=diag, **kw))
    for spec in (f"hb:lr={LR},beta={b}", f"hom:lr={LR},b1={b - 0.2},b2=0.2"):
        L, kw = _kernel_curve(kernel, spec, 500, ode=True)
        records.append(_record("T-mom", spec, L, **kw))
    records += [r for r in _width_records(kernel, -0.5)]
    records = [
        RunRecord(**{**r.__dict__, "diagnostics": diag}) if r.experiment == "W" else r
        for r in records
    ]
    for m, f in zip((500, 750, 1000), (2.0, 1.0, 1.5)):
        records.append(_nb("E2", "hb:lr=2e-4,beta=0.6", f, width=m))
    for b_, f in ((0.2, 1.0), (0.5, 0.5), (0.8, 0.1)):
        records.append(_nb("E3", f"hb:lr=4e-4,beta={b_}", f))
    for r, f in ((2, 1e-2), (3, 1e-3)):
        records.append(_nb("E5", f"nesterov-torch:lr=4e-4,r={r}", f))
    records.append(_nb("E1", "gd:lr=4e-4", 0.5))
    experiments = {
        "T-curves": ("theory-curves", EVIL, "theory"),
        "T-mom": ("theory-curves", "momentum", "theory"),
        "W": ("theory-ladder", "width sweep", "theory"),
        "E1": ("E1", "E1", "notebook"),
        "E2": ("E2", "E2", "notebook"),
        "E3": ("E3", "E3", "notebook"),
        "E5": ("E5", "E5", "notebook"),
    }
    env = {"python": "3.x-from-store", "created": "2026-01-01T00:00:00Z"}
    _write_store(path, records, experiments, env)
    summary = build_report(path)
    return path, summary


def test_report_writes_at_least_eight_figures_as_png_and_pdf(results_dir):
    path, _ = results_dir
    pngs = sorted(p.stem for p in (path / "figures").glob("*.png"))
    pdfs = sorted(p.stem for p in (path / "figures").glob("*.pdf"))
    assert len(pngs) >= 8 and pngs == pdfs
    assert {
        "T-curves_overlay",
        "T-curves_crossover",
        "C6_error_vs_width",
        "W_kernel_drift",
        "E2_loss_vs_width",
        "E3_hb_epoch",
        "E5_nag_loglog",
        "T-mom_overlay",
    } <= set(pngs)
    for p in (path / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_functions_return_figures_without_training(results_dir):
    from matplotlib.figure import Figure

    from ntkdyn.report import analyze_store

    analyses, kernels, _, info = analyze_store(results_dir[0])
    figs = figures_for(analyses, info, kernels)
    assert len(figs) >= 8 and all(isinstance(f.figure, Figure) for f in figs)
    assert len({f.name for f in figs}) == len(figs)


def test_html_is_self_contained_and_escaped(results_dir):
    path, summary = results_dir
    page = (path / "report.html").read_text(encoding="utf-8")
    assert "://" not in page  # no http(s), no file: base64 has no ':'
    assert not re.search(r"<(script|link|iframe)\b", page, re.IGNORECASE)
    assert "url(" not in page and "@import" not in page
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert all(re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', i) for i in imgs)
    # every figure exactly once
    pngs = sorted(p.stem for p in (path / "figures").glob("*.png"))
    assert len(imgs) == len(pngs) >= 8
    assert sorted(re.search(r'alt="([^"]*)"', i).group(1) for i in imgs) == pngs
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in page
    assert "synthetic &lt;b&gt;" in page
    # the glance table links every claim to its section
    for c in summary["claims"]:
        assert f'href="#claim-{c["id"]}"' in page and f'id="claim-{c["id"]}"' in page
    verdicts = {c["id"]: c["verdict"] for c in summary["claims"]}
    assert verdicts["C6"] == "supported"


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
    "ntkdyn": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "git_dirty": True, "torch": "2.13.0", "numpy": "2.4.6", "devices": {"auto": "cuda"},
    "cuda_device": "Some GPU", "platform": "Linux-x86_64", "python": "3.11.7",
    "created": "2026-01-01T00:00:00Z",
}  # fmt: skip
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
        names = ["T_overlay", "T_nag_loglog", "T_crossover", "T_rates", "W_error_vs_width",
                 "nb3_hb_epoch", "nb3_x_curves"]  # fmt: skip
        figures = [(n, _png(i), f"caption of {n}") for i, n in enumerate(names)]
    summary = {"config": "hand-made", "claims": claims, "findings": findings, "runs": [],
               "environment": environment}  # fmt: skip
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
    assert re.search(r'href="#claim-C3">C3</a></td><td class="vcell"><span class="badge b-bad">'
                     r"refuted</span>", glance)  # fmt: skip
    assert '<span class="badge b-unk">inconclusive</span>' in glance
    assert '<span class="badge b-ok">reproduced</span>' in glance
    assert "criterion of C6" in glance and "finding criterion E5" in glance


def test_html_claim_sections_carry_their_figures_and_tables():
    page, figures = _page()
    c1 = _section(page, "claim-C1")
    for text in ("statement of C1", "hypothesis of C1", "criterion of C1", "reason of C1",
                 "evidence of C1", "rate per step"):  # fmt: skip
        assert text in c1
    assert "<code>RTOL = 0.05</code>" in c1 and "<code>BAND = [-0.8, -0.3]</code>" in c1
    assert _alts(c1) == ["T_overlay"]  # the absent T_missing is skipped
    # the figure comes before (beside) the per-width table, then the per-run table
    assert c1.index("<img") < c1.index("<h4>Per width</h4>") < c1.index("Per run (1)")
    assert re.search(r'<td class="num">256</td><td class="num">3</td><td class="num">0.125'
                     r'</td><td class="num">0.1 .. 0.15</td>', c1)  # fmt: skip
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
    claims = [{"id": "C1", "statement": "s", "verdict": "supported"},
              {"id": "C2", "statement": "t", "verdict": "refuted", "evidence": "old style",
               "figures": None, "by_width": None, "runs": [], "tolerances": None}]  # fmt: skip
    findings = [{"id": "E1", "statement": "f", "verdict": "inconclusive"}]
    page, figures = _page(claims, findings, environment={}, experiments={})
    assert 'href="#claim-C2"' in page and "old style" in page
    assert len(_alts(page)) == len(figures)  # all in "Figures"
    from ntkdyn.report.html import render_html

    empty = render_html({}, [])
    assert "No claims." in empty and '<h2 id="environment"' in empty


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


def test_summary_is_rebuilt_byte_identical_with_the_stored_environment(results_dir):
    path, summary = results_dir
    first = (path / "summary.json").read_bytes()
    (path / "summary.json").unlink()
    again = build_report(path, figures=False)  # the summary never depends on the figures
    assert (path / "summary.json").read_bytes() == first
    assert again == summary
    data = json.loads(first)
    assert data["environment"] == {"python": "3.x-from-store", "created": "2026-01-01T00:00:00Z"}
    assert {"runs", "claims", "kernel", "environment", "findings"} <= set(data)
    run = data["runs"][0]
    assert {
        "id",
        "experiment",
        "optimizer",
        "params",
        "width",
        "seed",
        "status",
        "steps",
        "final_loss",
        "fit",
        "predicted",
        "prediction_error",
    } <= set(run)
    assert [c["id"] for c in data["claims"]] == [f"C{i}" for i in range(1, 8)]
    assert data["kernel"]["n"] == 20 and data["kernel"]["lambda_min"] == pytest.approx(
        0.0447, abs=1e-4
    )
    assert not re.search(
        r"\d{4}-\d\d-\d\dT", first.decode().replace('"created": "2026-01-01T00:00:00Z"', "")
    )  # no timestamp outside "environment"


def test_report_without_store_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="`DIR`"):
        build_report(tmp_path)


_CHECK = """<script>window.addEventListener('load',function(){var i=document.images,n=0;
for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0){n++;}}
document.body.setAttribute('data-images',String(i.length));
document.body.setAttribute('data-images-ok',String(n));});</script></body>"""


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not on PATH (headless rendering check documented in ntkdyn.report.html)",
)
def test_report_renders_in_headless_chromium_with_every_image(results_dir, tmp_path):
    page = (results_dir[0] / "report.html").read_text(encoding="utf-8")
    copy = tmp_path / "check.html"
    copy.write_text(page.replace("</body>", _CHECK), encoding="utf-8")
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    total = re.search(r'data-images="(\d+)"', out.stdout)
    ok = re.search(r'data-images-ok="(\d+)"', out.stdout)
    assert total and ok, out.stderr[-2000:]
    assert int(total.group(1)) >= 8 and int(ok.group(1)) == int(total.group(1))
