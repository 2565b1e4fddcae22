"""The README's Python tour runs as written."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_block_runs(capsys):
    text = README.read_text()
    start = text.index("```python") + len("```python")
    code = text[start : text.index("```", start)]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "linear"  # fit_rate of the HB prediction
    runs = namespace["runs"]
    assert all(r.status == "ok" for r in runs)
    # each network against its own linearised prediction at step 200 (the README's comments):
    # the wide one within the 10% band and passing its probe, the narrow one neither
    rows = {int(w): (float(ratio), holds == "True") for w, ratio, holds in map(str.split, out[3:5])}
    assert abs(rows[16384][0] - 1) < 0.10 and rows[16384][1]
    assert rows[1024][0] > 1.10 and not rows[1024][1]
