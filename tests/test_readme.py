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
    # wide networks follow the kernel prediction (docs/mathematics.md §6): the loss ratios at step 500 agree
    pred = namespace["losses"][500] / namespace["losses"][0]
    for r in runs:
        assert abs(r.losses[-1] / r.losses[0] - pred) < 0.05
