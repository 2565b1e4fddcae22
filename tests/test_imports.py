"""The package's import graph (docs/design.md): no cycles, and experiments never import report.

The graph is built statically with ``ast`` from every module under ``src/ntkdyn``, counting
every import statement wherever it stands (module level or inside a function), since a
function-level import only postpones a cycle to the first call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ntkdyn

PACKAGE = "ntkdyn"
ROOT = Path(ntkdyn.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """Absolute name of ``from <level dots><module> import ...`` written in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``ntkdyn`` modules it imports (a ``from pkg import sub`` counts ``sub``
    when it is a module, else ``pkg``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                # `import ntkdyn.a.b` names the deepest module that exists
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.split(".")[0] == PACKAGE and target != name:
                    graph[name].add(target)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "ntkdyn.optim.base" in graph["ntkdyn.optim.rules"]
    assert "ntkdyn.optim.program" in graph["ntkdyn.optim.torch"]
    assert "ntkdyn.optim.torch" in graph["ntkdyn.optim.base"]  # inside LinearRule.torch
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle():
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_experiments_do_not_import_report():
    graph = import_graph()
    edges = sorted(
        f"{src} -> {dst}"
        for src, targets in graph.items()
        if src.startswith(f"{PACKAGE}.experiments")
        for dst in targets
        if dst == f"{PACKAGE}.report" or dst.startswith(f"{PACKAGE}.report.")
    )
    assert not edges, "experiments import report: " + "; ".join(edges)


# --------------------------------------------------------------------------------------------
# Optimizer knowledge lives in optim/: nothing else recognises a rule by its name.

#: Where rule names may be written: the rules themselves, and the presets (spec strings).
NAME_HOMES = ("optim/", "experiments/presets.py")


def _name_literals(rule_names: set[str], root: Path = ROOT) -> list[str]:
    """``file:line 'literal'`` for every string constant outside NAME_HOMES that is a rule
    name or starts a spec (``"hb:..."``)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(NAME_HOMES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text in rule_names or text.split(":", 1)[0] in rule_names and ":" in text:
                    found.append(f"{rel}:{node.lineno} {text!r}")
    return found


def test_no_optimizer_name_literal_outside_optim_and_presets():
    from ntkdyn.optim.rules import RULES

    assert _name_literals(set(RULES)) == []


def test_the_name_scan_finds_a_planted_literal(tmp_path):
    """The scan can fail: a module that matches on "hb" outside optim/ is reported."""
    planted = tmp_path / "ntkdyn"
    (planted / "report").mkdir(parents=True)
    (planted / "report" / "bad.py").write_text('def f(rule):\n    return rule.name == "hb"\n')
    (planted / "optim").mkdir()
    (planted / "optim" / "ok.py").write_text('NAME = "hb"\n')
    assert _name_literals({"hb", "gd"}, planted) == ["report/bad.py:2 'hb'"]


# --------------------------------------------------------------------------------------------
# Each convention and each verdict tolerance is defined once.

#: Modules that are the one home of named constants, relative to the package root.
CONSTANT_HOMES = ("conventions.py", "verdicts/tolerances.py")


def _assignments(root: Path = ROOT) -> dict[str, list[str]]:
    """Module-level (and class-level) assigned UPPER_CASE names -> ``file:line`` places."""
    places: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else ([node.target] if isinstance(node, ast.AnnAssign) else [])
            )
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper():
                    places.setdefault(t.id, []).append(f"{rel}:{node.lineno}")
    return places


def test_conventions_and_tolerances_are_defined_once():
    places = _assignments()
    for home in CONSTANT_HOMES:
        tree = ast.parse((ROOT / home).read_text())
        names = {
            t.id
            for n in tree.body
            if isinstance(n, (ast.Assign, ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Name) and t.id.isupper()
        }
        assert names, home
        for name in sorted(names):
            assert places[name] == [p for p in places[name] if p.startswith(home)], name
    # the loss factor's formula is written once
    sources = {p.relative_to(ROOT).as_posix(): p.read_text() for p in ROOT.rglob("*.py")}
    assert [rel for rel, text in sources.items() if "2.0 / n" in text] == ["conventions.py"]


def test_a_second_definition_would_be_found(tmp_path):
    (tmp_path / "a.py").write_text("SYMMETRY_RTOL = 1e-10\n")
    (tmp_path / "b.py").write_text("class C:\n    SYMMETRY_RTOL = 1e-9\n")
    assert _assignments(tmp_path)["SYMMETRY_RTOL"] == ["a.py:1", "b.py:2"]
