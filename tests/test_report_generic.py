"""Report of a user's own grid: no paper claims without their runs (one sentence says so),
generic figures labelled and sorted by value (never by run id), progress lines, and a theory
store that keeps its claims."""

from __future__ import annotations

import json
import re

import pytest

from ntkdyn.report import build_report
from ntkdyn.report.claims import evaluate_claims
from ntkdyn.report.plots import figure_plan
from ntkdyn.report.plots_grid import grid_plan
from ntkdyn.report.summary import analyze_run

from report_cases import GRID_LRS, GRID_WIDTHS, _width_records, grid_records, write_store

HB_LABELS = [
    "lr = 0.5, beta = 0.5",
    "lr = 0.5, beta = 0.9",
    "lr = 2, beta = 0.5",
    "lr = 2, beta = 0.9",
    "lr = 10, beta = 0.5",
    "lr = 10, beta = 0.9",
]


def _analyses(records, kind="curves"):
    """Analysed runs in id order, as a store returns them (against the value order)."""
    return [analyze_run(r, kind) for r in sorted(records, key=lambda r: r.id)]


def _plan(records, kind="curves"):
    return {p.name: p for p in figure_plan(_analyses(records, kind))}


def _by_value(labels: list[str]) -> bool:
    """Whether labels like ``lr = 2, beta = 0.9`` / ``m = 64`` are in increasing value order
    (numbers compared as numbers, axis by axis)."""
    keys = [tuple(float(v) for v in re.findall(r"= ([-+0-9.e]+)", t)) for t in labels]
    return keys == sorted(keys) and len(set(keys)) == len(keys)


def _legend(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def test_the_sorted_order_check_rejects_text_and_run_id_order():
    assert _by_value(HB_LABELS)
    assert not _by_value(sorted(HB_LABELS))  # text order puts "lr = 10" before "lr = 2"
    records = [r for r in grid_records() if r.config["optimizer"].startswith("hb")]
    by_id = sorted(records, key=lambda r: r.id)
    in_id_order = list(
        dict.fromkeys(
            f"lr = {r.config['optimizer'].split('lr=')[1].split(',')[0]}, beta = "
            f"{r.config['optimizer'].split('beta=')[1]}"
            for r in by_id
        )
    )
    assert not _by_value(in_id_order)  # the store's id order is not the value order


def test_final_loss_vs_width_has_one_line_per_setting_sorted_by_value():
    fig = _plan(grid_records())["grid_final_loss_vs_width"].draw()
    gd, hb = [ax for ax in fig.axes if ax.get_visible()][:2]
    assert (gd.get_title(), hb.get_title()) == ("gd", "hb")  # panels by optimizer name
    assert _legend(hb) == HB_LABELS
    assert _by_value(_legend(hb))
    assert _legend(gd) == ["lr = 10"]
    # the x axis is labelled at the widths, in increasing order
    ticks = [t.get_text() for t in hb.get_xticklabels()]
    assert ticks == [str(m) for m in sorted(GRID_WIDTHS)]
    # median over the two seeds at each width (the final losses differ by seed)
    line = hb.get_lines()[0]
    x, y = line.get_data()
    assert list(x) == sorted(GRID_WIDTHS)
    from report_cases import _grid_final

    expected = [(_grid_final(0.5, 0.5, m, 0) + _grid_final(0.5, 0.5, m, 1)) / 2 for m in x]
    assert y == pytest.approx(expected, rel=1e-9)


def test_heat_map_panels_are_widths_by_value_and_cells_sorted_by_value():
    plan = _plan(grid_records())
    assert "grid_final_loss_map_gd" not in plan  # one axis varies for GD: no heat map
    fig = plan["grid_final_loss_map_hb"].draw()
    panels = [ax for ax in fig.axes if ax.get_title().startswith("m = ")]
    titles = [ax.get_title() for ax in panels]
    assert titles == [f"m = {m}" for m in sorted(GRID_WIDTHS)]
    assert _by_value(titles)
    ax = panels[0]
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("lr", "beta")
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{v:.4g}" for v in sorted(GRID_LRS)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "0.9"]


def test_heat_map_only_when_two_axes_vary():
    one_axis = [r for r in grid_records(betas=(0.9,)) if r.config["optimizer"].startswith("hb")]
    assert not [n for n in _plan(one_axis) if "_map_" in n]
    # a third varying axis (n) gives one map per value of it, named and titled by value
    records = grid_records(extra={"n": 20}) + grid_records(experiment="H", extra={"n": 10})
    maps = {n: p for n, p in _plan(records).items() if "_map_hb" in n}
    assert sorted(maps) == ["grid_final_loss_map_hb_1", "grid_final_loss_map_hb_2"]
    assert "n = 10" in maps["grid_final_loss_map_hb_1"].caption
    assert "n = 20" in maps["grid_final_loss_map_hb_2"].caption


def test_one_width_has_no_width_figures():
    plan = _plan(grid_records(widths=(256,)))
    assert "grid_final_loss_vs_width" not in plan
    assert "grid_kernel_error_vs_width" not in plan
    assert "grid_final_loss_map_hb" in plan  # lr x beta still varies
    plan = _plan(grid_records())
    assert {"grid_final_loss_vs_width", "grid_kernel_error_vs_width"} <= set(plan)


def test_kernel_error_vs_width_shrinks_and_is_sorted():
    fig = _plan(grid_records())["grid_kernel_error_vs_width"].draw()
    hb = [ax for ax in fig.axes if ax.get_title() == "hb"][0]
    assert _legend(hb) == HB_LABELS
    x, y = hb.get_lines()[0].get_data()
    assert list(x) == sorted(GRID_WIDTHS) and list(y) == sorted(y, reverse=True)


def test_diverged_settings_are_marked_not_dropped():
    records = grid_records(diverge={(10.0, 0.9)})
    fig = _plan(records)["grid_final_loss_vs_width"].draw()
    hb = [ax for ax in fig.axes if ax.get_title() == "hb"][0]
    assert _legend(hb) == HB_LABELS
    marks = [ln for ln in hb.get_lines() if ln.get_marker() == "x"]
    assert len(marks) == 1 and len(marks[0].get_xdata()) == len(GRID_WIDTHS)
    fig = _plan(records)["grid_final_loss_map_hb"].draw()
    assert "diverged" in {t.get_text() for ax in fig.axes for t in ax.texts}


def test_overlay_panels_are_named_and_sorted_by_value():
    fig = _plan(grid_records())["G_overlay"].draw()
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0] == "gd, lr = 10, m = 1024"
    assert [t.removeprefix("hb, ").removesuffix(", m = 1024") for t in titles[1:]] == HB_LABELS


def test_a_custom_grid_store_has_no_claims_and_says_which_were_left_out(tmp_path):
    # small (10 runs in two experiments; the figures' content is tested above, in memory):
    # HB at (lr, beta) = (10, 0.9), (0.5, 0.9) and (0.5, 0.5), GD at lr = 10 and 0.5
    small = {"widths": (256, 64), "seeds": (0,)}
    records = grid_records(lrs=(10.0, 0.5), betas=(0.9,), **small)
    records += grid_records(lrs=(0.5,), betas=(0.5,), experiment="H", **small)
    write_store(tmp_path, records, {"G": ("curves", "theory"), "H": ("curves", "theory")})
    lines: list[str] = []
    summary = build_report(tmp_path, say=lines.append)
    assert summary["claims"] == [] and summary["findings"] == []
    assert [o["id"] for o in summary["claims_omitted"]] == [f"C{i}" for i in range(1, 8)]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Claims left out" in page and 'id="claim-C' not in page
    assert "inconclusive" not in page
    figures = sorted(p.stem for p in (tmp_path / "figures").glob("*.png"))
    assert figures == [
        "G_overlay",
        "H_overlay",
        "grid_final_loss_map_hb",  # lr x beta vary for HB across both experiments
        "grid_final_loss_vs_width",
        "grid_kernel_error_vs_width",
    ]  # and none for GD, whose only varying axis is lr
    # progress: what it does, in order, with the figure count
    assert lines[0] == "analysing 10 runs"
    assert lines[1:3] == ["claims", "findings"]
    assert lines[3:8] == [f"figures {i}/5" for i in range(1, 6)]
    assert lines[8:] == ["writing report.html", "writing summary.json"]
    # summary.json is a pure function of the store
    first = (tmp_path / "summary.json").read_bytes()
    build_report(tmp_path, figures=False)
    assert (tmp_path / "summary.json").read_bytes() == first
    assert json.loads(first)["claims_note"].startswith("Claims left out")


def test_build_report_is_silent_by_default(tmp_path, capsys):
    write_store(tmp_path, grid_records(widths=(64,)), {"G": ("curves", "theory")})
    build_report(tmp_path, figures=False)
    assert capsys.readouterr() == ("", "")


def test_a_theory_store_keeps_its_claims_and_gets_no_grid_figures(kernel):
    ladder = _analyses(_width_records(kernel, -0.5), "theory-ladder")
    assert [c.id for c in evaluate_claims(ladder)] == ["C1", "C6"]
    assert grid_plan(ladder) == []
    # a user's grid next to it adds its figures and no claim
    mixed = ladder + _analyses(grid_records())
    assert [c.id for c in evaluate_claims(mixed)] == ["C1", "C6"]
    assert "grid_final_loss_vs_width" in {p.name for p in grid_plan(mixed)}
    # the grid's figures read only the grid's runs
    fig = next(p for p in grid_plan(mixed) if p.name == "grid_final_loss_vs_width").draw()
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["gd", "hb"]
