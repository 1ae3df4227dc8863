"""Every document a comment or docstring cites is in the repository, and so is every section.

Code cites docs by path (``docs/training.md``) and sections of them by number
(``docs/model.md §4``, ``§§2 and 3``, ``§§7.3-7.5``, ``sections 3 and 4``) or by quoted heading
(``docs/model.md, "Conventions"``); a bare ``§6`` refers to the document cited last before it
in the same file. Documents outside the repository (the project brief, the style guide) are
never cited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where citations are looked for, and which files there.
SCANNED = {
    "app": ("*.py",),
    "tests": ("*.py", "*.sh"),
    "bench": ("*.py", "*.sh"),
    "deploy": ("*.py", "*.sh"),
}

_SECTION = r"\d+(?:\.\d+)?"
_SEPARATOR = r"\s*(?:,\s*and|,|and|-|–|to)\s*"
#: A doc path, then optionally its sections: numbers (``§4``, ``§§2 and 3``, ``sections 3-4``,
#: possibly on the next comment line) or a quoted heading (``, "Conventions"``).
_CITATION = re.compile(
    r"docs/(?P<doc>[\w-]+\.md)"
    r"(?:(?:'s)?[ \t]*(?:\n[ \t]*(?:#[ \t]*)?)?"
    rf"(?:§§?|sections?[ \t]+)[ \t]*(?P<numbers>{_SECTION}(?:{_SEPARATOR}{_SECTION})*)"
    r"|,?[ \t]*\"(?P<heading>[^\"\n]+)\")?"
)
#: A section sign not right after a doc path: the file's last cited doc.
_BARE_SECTIONS = re.compile(rf"§§?\s*(?P<numbers>{_SECTION}(?:{_SEPARATOR}{_SECTION})*)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t]*$", re.MULTILINE)
_NUMBERED = re.compile(rf"^(?P<number>{_SECTION})\.?(?:\s|$)")
#: Documents that are not in the repository, by the names code used to cite them (spelled in
#: two pieces here, so that a plain grep for them finds only real citations).
_BRIEF = "SP" + "EC"
_GUIDE = "STY" + "LE"
_OUTSIDE = {
    "the project brief": re.compile(rf"\b{_BRIEF}(?:\.md)?\b"),
    "the style guide": re.compile(rf"\b{_GUIDE}(?:\.md\b|[ \t]+\d)"),
    "a file outside the repository (../shared)": re.compile(r"\.\./shared\b"),
}


@dataclass(frozen=True)
class DocIndex:
    """The headings of one document: numbered sections and heading texts."""

    numbers: frozenset[str]
    headings: frozenset[str]

    @classmethod
    def read(cls, path: Path) -> DocIndex:
        texts = [m["text"] for m in _HEADING.finditer(path.read_text(encoding="utf-8"))]
        numbers = {m["number"] for t in texts if (m := _NUMBERED.match(t))}
        names = {_NUMBERED.sub("", t).strip() for t in texts}
        return cls(frozenset(numbers), frozenset(texts) | frozenset(names))


def _section_numbers(numbers: str) -> list[str]:
    """``"7.3-7.5"`` -> ``["7.3", "7.5"]``; ``"1, 2 and 6"`` -> ``["1", "2", "6"]``."""
    return re.findall(_SECTION, numbers)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _doc_index(docs_root: Path, doc: str, cache: dict[str, DocIndex | None]) -> DocIndex | None:
    if doc not in cache:
        path = docs_root / doc
        cache[doc] = DocIndex.read(path) if path.is_file() else None
    return cache[doc]


def _missing_sections(index: DocIndex, numbers: str, heading: str | None) -> list[str]:
    missing = [f"§{n}" for n in _section_numbers(numbers) if n not in index.numbers]
    if heading is not None and heading not in index.headings:
        missing.append(f'"{heading}"')
    return missing


def citation_problems(text: str, docs_root: Path) -> list[str]:
    """What is wrong with the citations in ``text`` (one source file): ``"line N: ..."`` each.

    ``docs_root`` is the folder of the cited ``docs/*.md`` (``<repo>/docs``).
    """
    problems: list[str] = []
    cache: dict[str, DocIndex | None] = {}
    cited_spans: list[tuple[int, int, str]] = []
    for match in _CITATION.finditer(text):
        doc, line = match["doc"], _line(text, match.start())
        cited_spans.append((match.start(), match.end(), doc))
        index = _doc_index(docs_root, doc, cache)
        if index is None:
            problems.append(f"line {line}: docs/{doc} does not exist")
            continue
        missing = _missing_sections(index, match["numbers"] or "", match["heading"])
        if missing:
            problems.append(f"line {line}: docs/{doc} has no {', '.join(missing)}")
    for match in _BARE_SECTIONS.finditer(text):
        if any(start <= match.start() < end for start, end, _ in cited_spans):
            continue
        line = _line(text, match.start())
        earlier = [doc for start, _, doc in cited_spans if start < match.start()]
        if not earlier:
            problems.append(f"line {line}: {match.group(0)!r} without a document cited before it")
            continue
        index = _doc_index(docs_root, earlier[-1], cache)
        missing = [] if index is None else _missing_sections(index, match["numbers"], None)
        if missing:
            problems.append(f"line {line}: docs/{earlier[-1]} has no {', '.join(missing)}")
    for what, pattern in _OUTSIDE.items():
        for match in pattern.finditer(text):
            problems.append(f"line {_line(text, match.start())}: cites {what}")
    return problems


def _scanned_files() -> list[Path]:
    files = {
        path
        for folder, patterns in SCANNED.items()
        for pattern in patterns
        for path in (REPO_ROOT / folder).rglob(pattern)
    }
    return sorted(files - {Path(__file__).resolve()})


def test_every_citation_in_code_names_a_document_and_section_that_exist() -> None:
    files = _scanned_files()
    assert len(files) > 100, "the scan found too few files: are the folders right?"
    problems = [
        f"{path.relative_to(REPO_ROOT)} {problem}"
        for path in files
        for problem in citation_problems(path.read_text(encoding="utf-8"), REPO_ROOT / "docs")
    ]
    assert problems == []


def test_the_model_doc_has_the_sections_code_cites() -> None:
    index = DocIndex.read(REPO_ROOT / "docs/model.md")
    expected = {str(n) for n in range(1, 9)} | {f"7.{n}" for n in range(1, 6)}
    assert expected <= index.numbers
    assert "Conventions" in index.headings


@pytest.fixture
def docs_root(tmp_path: Path) -> Path:
    """A docs folder with one numbered document and one plain one."""
    (tmp_path / "model.md").write_text(
        "# Title\n\n## Conventions\n\n## 1. One\n\n## 2. Two\n\n### 2.1 Sub\n\n## 3. Three\n",
        encoding="utf-8",
    )
    (tmp_path / "plain.md").write_text("# Plain\n", encoding="utf-8")
    return tmp_path


# The made-up citations below are built from pieces so that the scan of this repository does
# not read them as citations of its own docs.
DOC = "docs/" + "model.md"


@pytest.mark.parametrize(
    "source",
    [
        f"# see {DOC} §1",
        f"# see {DOC} §§1 and 2",
        f"# see {DOC} §§1, 2 and 3",
        f"# see {DOC} §§2-2.1",
        f'"""Rules of {DOC}\n    §§1 and 3 (wrapped)."""',
        f"# {DOC}'s §2.1 rule, then (§3)",
        f"# {DOC} sections 1 and 2",
        f'# boxes as in {DOC}, "Conventions"',
        f"# {DOC} without a section; see " + "docs/" + "plain.md",
        "x = ASPECT_RATIO  # and INSPECT, SPECTRUM, STYLESHEET",
    ],
)
def test_scanner_accepts_good_citations(source: str, docs_root: Path) -> None:
    assert citation_problems(source, docs_root) == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (f"# see {DOC} §4", "line 1: docs/model.md has no §4"),
        (f"# see {DOC} §§1 and 5", "line 1: docs/model.md has no §5"),
        (f"# see {DOC} §§2.1-2.3", "line 1: docs/model.md has no §2.3"),
        (f'"""x\n{DOC}\n    §§1 and 9."""', "line 2: docs/model.md has no §9"),
        (f"# {DOC} sections 3 and 7", "line 1: docs/model.md has no §7"),
        (f'# {DOC}, "Convention"', 'line 1: docs/model.md has no "Convention"'),
        (f"# {DOC} §1, and later (§6)", "line 1: docs/model.md has no §6"),
        ("# the " + "docs/" + "missing.md rule", "line 1: docs/missing.md does not exist"),
        ("# a bare §" + "2", "line 1: '§2' without a document cited before it"),
        ("# see " + _BRIEF + " section 4", "line 1: cites the project brief"),
        ("# see " + _BRIEF + ".md", "line 1: cites the project brief"),
        ("# " + _GUIDE + " 4", "line 1: cites the style guide"),
        ("# " + _GUIDE + ".md", "line 1: cites the style guide"),
        ("# " + "../shared/DESIGN.md", "line 1: cites a file outside the repository (../shared)"),
    ],
)
def test_scanner_reports_a_broken_citation(source: str, problem: str, docs_root: Path) -> None:
    assert citation_problems(source, docs_root) == [problem]
