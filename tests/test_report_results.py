"""Report: a synthetic results directory (exact kernel-model curves on docs/mathematics.md §6's
data, notebook-mode findings) built into figures, a self-contained HTML page and a stable summary.
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
from ntkdyn.experiments.runs import data_key
from ntkdyn.experiments.store import KernelRecord, RunRecord, Store
from ntkdyn.kernels import spectrum, two_layer_gram
from ntkdyn.report import build_report
from ntkdyn.report.plots import figures_for

from report_cases import DATA, EVIL, LR, _kernel_curve, _record, _width_records

NB = {"mode": "notebook", "data": "digits", "n": 60, "data_seed": 0, "loss": "mse"}


BETA = None  # set lazily: the critical beta of docs/mathematics.md §6


def _beta(kernel):
    return 1 - 2 * math.sqrt(kernel[0].lambda_min * LR)


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
    for m, f in zip((500, 750, 1000), (2.0, 1.0, 1.5), strict=True):
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
    # T-mom's HB and HOM runs are theory-curves, which C2 and C5 do not read; no NAG-SC runs
    assert [c["id"] for c in data["claims"]] == ["C1", "C3", "C6", "C7"]
    assert [o["id"] for o in data["claims_omitted"]] == ["C2", "C4", "C5"]
    assert data["claims_note"].count(" needs ") == 3
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
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    total = re.search(r'data-images="(\d+)"', out.stdout)
    ok = re.search(r'data-images-ok="(\d+)"', out.stdout)
    assert total and ok, out.stderr[-2000:]
    assert int(total.group(1)) >= 8 and int(ok.group(1)) == int(total.group(1))
