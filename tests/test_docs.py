"""The documentation is checked like code.

* The ``Examples`` of the main entry points and the Python tour of docs/guide.md run as
  doctests (outputs rounded, so they hold on any CPU and BLAS).
* Every relative link in the Markdown files and every ``docs/<file>.md §N`` citation in the
  sources points to an existing file and section.
* The module table of docs/design.md lists every module of the package exactly once.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import ntkdyn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "src" / "ntkdyn"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: the public functions whose docstrings carry doctested examples
ENTRY_POINTS = (
    "spectrum",
    "parse",
    "predict_discrete",
    "predicted_rate",
    "stability",
    "optimal_parameters",
    "fit_rate",
    "ntk_gram",
    "train",
    "load_dataset",
)
#: Markdown pages whose ``>>>`` blocks are doctests
DOCTEST_PAGES = ("docs/guide.md",)


def _run(tests: list[doctest.DocTest]) -> tuple[int, int, str]:
    """(tries, failures, report) of running ``tests`` with :data:`FLAGS`."""
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    return runner.tries, runner.failures, "".join(report)


def _defining_modules() -> list[str]:
    return sorted({getattr(ntkdyn, name).__module__ for name in ENTRY_POINTS})


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_point_has_examples(name):
    doc = getattr(ntkdyn, name).__doc__ or ""
    assert "Examples:" in doc and ">>>" in doc, f"ntkdyn.{name} has no doctested Examples"


@pytest.mark.parametrize("module_name", _defining_modules())
def test_module_doctests(module_name):
    module = importlib.import_module(module_name)
    tries, failures, report = _run(doctest.DocTestFinder().find(module))
    assert tries > 0, f"{module_name} has no examples"
    assert failures == 0, report


@pytest.mark.parametrize("page", DOCTEST_PAGES)
def test_page_doctests(page):
    path = ROOT / page
    test = doctest.DocTestParser().get_doctest(
        path.read_text(encoding="utf-8"), {}, page, str(path), 0
    )
    tries, failures, report = _run([test])
    assert tries > 0, f"{page} has no examples"
    assert failures == 0, report


# --------------------------------------------------------------------------------------------
# Links and citations.

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_SECTION = r"§?\d+[a-z]?(?:\.\d+)?"
_CITATION = re.compile(
    rf"docs/(\w+\.md),?(?:\s+sections?)?\s+({_SECTION}(?:(?:, | and |-){_SECTION})*)(?![\w.])"
)
_NAMED_CITATION = re.compile(r'docs/(\w+\.md),?\s+(?:"([^"\n]+)"|([A-Z][a-z]+)\b)')
_OLD_NAMES = re.compile(r"\b(?:MATH|DESIGN|STYLE|PAPER)\.md")


def _headings(path: Path) -> list[str]:
    return [m.group(2) for m in _HEADING.finditer(_FENCE.sub("", path.read_text("utf-8")))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    for heading in _headings(path):
        slug = _slug(heading)
        suffix = 0
        while (slug if suffix == 0 else f"{slug}-{suffix}") in anchors:
            suffix += 1
        anchors.add(slug if suffix == 0 else f"{slug}-{suffix}")
    return anchors


def _sections(path: Path) -> set[str]:
    """The numbered sections of a page: ``§1.2`` headings give ``"1.2"``."""
    return {m.group(1) for h in _headings(path) if (m := re.match(r"§(\S+)", h))}


def _markdown_files() -> list[Path]:
    """The Markdown pages (sources cite docs by name, checked by the citation test)."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]


def _cited_files() -> list[Path]:
    roots = [ROOT / "src", ROOT / "tests", ROOT / "bench"]
    sources = [p for r in roots for p in sorted(r.rglob("*.py")) if ".egg-info" not in str(p)]
    return sources + _markdown_files()


def test_relative_links_resolve():
    broken = []
    for page in _markdown_files():
        for target in _LINK.findall(_FENCE.sub("", page.read_text("utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such section)")
    assert not broken, "\n".join(broken)


def test_section_citations_resolve():
    broken = []
    for source in _cited_files():
        text = source.read_text("utf-8")
        where = source.relative_to(ROOT)
        for name in re.findall(r"docs/(\w+\.md)", text):
            if not (DOCS / name).exists():
                broken.append(f"{where}: docs/{name} (no such file)")
        for name, refs in _CITATION.findall(text):
            if not (DOCS / name).exists():
                continue
            sections = _sections(DOCS / name)
            for ref in re.split(r", | and |-", refs):
                if ref.lstrip("§") not in sections:
                    broken.append(f"{where}: docs/{name} §{ref.lstrip('§')} (no such section)")
        for name, quoted, word in _NAMED_CITATION.findall(text):
            if not (DOCS / name).exists():
                continue
            headings = [h.replace("`", "").lower() for h in _headings(DOCS / name)]
            title = (quoted or word).lower()
            # a quoted title names a whole heading, a bare capitalised word its first word
            found = title in headings if quoted else title in {h.split()[0] for h in headings}
            if not found:
                broken.append(f"{where}: docs/{name} {quoted or word!r} (no such section)")
    assert not broken, "\n".join(broken)


def test_no_citation_of_files_outside_docs():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _cited_files()
        for name in _OLD_NAMES.findall(path.read_text("utf-8"))
    ]
    assert not offenders, "\n".join(offenders)


def test_every_module_is_in_the_design_table_once():
    text = (DOCS / "design.md").read_text("utf-8")
    section = text[text.index("## Package layout") : text.index("## Order of dependence")]
    listed = [
        name
        for row in section.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`([\w/]+\.py)`", row.split("|")[1])
    ]
    modules = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))
    twice = sorted({name for name in listed if listed.count(name) > 1})
    assert not twice, f"listed more than once in docs/design.md: {twice}"
    assert sorted(set(modules) - set(listed)) == [], "missing from docs/design.md"
    assert sorted(set(listed) - set(modules)) == [], "listed in docs/design.md, not in src"


def test_every_test_cited_by_the_guarantees_exists():
    """docs/guarantees.md names the test behind each promise: the file, and the test function
    where one is named, must exist (a renamed or deleted test breaks the promise's proof)."""
    text = (DOCS / "guarantees.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(cited) >= 12
    missing = []
    for path, name in cited:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and not re.search(rf"^def {name}\(", file.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []
