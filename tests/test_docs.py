"""The documents in the repository point at things that exist, in the repository.

Every relative link in the README, the CHANGELOG, the benchmarks' README and ``docs/*.md``
leads to a file or folder of this repository, and a ``#anchor`` to a heading of the page it
names (GitHub's rules for heading ids). Every module path ``docs/architecture.md`` names exists.
A clone of the repository is all a reader has: nothing may lead outside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "benchmarks" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
ARCHITECTURE = ROOT / "docs" / "architecture.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\S\n]*$", re.MULTILINE | re.DOTALL)
# [text](target "title"), ![alt](target); the text may hold one level of brackets.
_INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# Module paths as the architecture document names them: litetasks/..., tests/..., or a layer
# folder's module (``_store/claiming.py``, in link texts), which lives under litetasks/.
_MODULE_PATH = re.compile(
    r"(?<![\w/.])("
    r"(?:litetasks|tests|benchmarks)/[\w/]+\.py"
    r"|_(?:store|django|runtime|cli)/\w+\.py)"
)


def without_code_blocks(text: str) -> str:
    """``text`` without fenced code blocks (diagrams and examples are not links)."""
    return _FENCE.sub("", text)


def link_targets(text: str) -> list[str]:
    """Every link target of a Markdown text, inline or by reference, in order."""
    text = without_code_blocks(text)
    return _INLINE_LINK.findall(text) + _REFERENCE.findall(text)


def heading_ids(text: str) -> set[str]:
    """The ids GitHub gives the headings of a Markdown text (``#`` headings outside code)."""
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(without_code_blocks(text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", plain.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def broken_links(page: Path, text: str, root: Path) -> list[str]:
    """Say what is wrong with each relative link of ``text`` (the page ``page``); [] if none."""
    problems: list[str] = []
    for target in link_targets(text):
        if _SCHEME.match(target):
            continue  # http:, https:, mailto:
        path_part, _, anchor = target.partition("#")
        if path_part.startswith("/"):
            problems.append(f"{target}: an absolute path; link relative to {page.name}")
            continue
        if not path_part:  # an anchor of this page
            if anchor not in heading_ids(text):
                problems.append(f"{target}: no heading #{anchor} in {page.name}")
            continue
        resolved = (page.parent / path_part).resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file or folder")
        elif (
            anchor and resolved.suffix == ".md" and anchor not in heading_ids(resolved.read_text())
        ):
            problems.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return problems


def missing_modules(text: str, root: Path) -> list[str]:
    """The module paths ``text`` names that do not exist under ``root``."""
    missing = []
    for name in sorted(set(_MODULE_PATH.findall(without_code_blocks(text)))):
        path = root / name if not name.startswith("_") else root / "litetasks" / name
        if not path.is_file():
            missing.append(name)
    return missing


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    assert page.is_file()
    assert broken_links(page, page.read_text(), ROOT) == []


def test_the_architecture_document_names_only_modules_that_exist() -> None:
    text = ARCHITECTURE.read_text()
    assert len(set(_MODULE_PATH.findall(text))) > 30  # it does name modules, and they are read
    assert missing_modules(text, ROOT) == []


def test_the_readme_links_to_the_architecture_document() -> None:
    assert "docs/architecture.md" in link_targets((ROOT / "README.md").read_text())


# -- the checks themselves ---------------------------------------------------------------------


def test_a_broken_link_a_missing_anchor_and_a_link_outside_are_each_reported(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "code.py").write_text("")
    page = tmp_path / "docs" / "page.md"
    text = (
        "# The `Title`, here\n\n## Twice\n\n## Twice\n\n"
        "[ok](../code.py) [ok](#the-title-here) [ok](#twice-1) [ok](https://example.com/x)\n"
        "[gone](../missing.py) [anchor](#nowhere) [out](../../elsewhere.md) [abs](/etc/passwd)\n"
        "```\n[in code](../not-a-link.py)\n```\n"
        "[ref]: ../also-missing.md\n"
    )

    problems = broken_links(page, text, tmp_path)

    assert [problem.split(":")[0] for problem in problems] == [
        "../missing.py",
        "#nowhere",
        "../../elsewhere.md",
        "/etc/passwd",
        "../also-missing.md",
    ]


def test_module_paths_that_do_not_exist_are_reported(tmp_path: Path) -> None:
    (tmp_path / "litetasks" / "_store").mkdir(parents=True)
    (tmp_path / "litetasks" / "_store" / "store.py").write_text("")
    text = (
        "[`_store/store.py`](../litetasks/_store/store.py), `_store/gone.py`, "
        "`litetasks/_runtime/pool.py` and tests/store/test_x.py"
    )

    assert missing_modules(text, tmp_path) == [
        "_store/gone.py",
        "litetasks/_runtime/pool.py",
        "tests/store/test_x.py",
    ]
